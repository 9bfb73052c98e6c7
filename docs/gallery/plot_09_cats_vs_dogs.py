"""
Cats vs dogs: a folder of images streamed from disk
===================================================

Keras's "image classification from scratch" tutorial: a folder of photos (``Cat/``, ``Dog/``) read by
:func:`xpcnn.datasets.image_dataset_from_directory` and streamed from disk by worker threads, augmented on
the device, four Conv2D/MaxPool2D blocks with a sigmoid output trained with RMSprop, then class
activation maps over the photos. Without a folder of photos (as here) the example generates one of
circles against squares; six epochs keep the page's build short (``--quick`` alone trains 16).

This page runs ``examples/cats_vs_dogs.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/cats_vs_dogs.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import cats_vs_dogs  # examples/cats_vs_dogs.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
cats_vs_dogs.main(["--quick", "--out", str(out), "--epochs", "6"])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/cats_vs_dogs.py
#    :language: python
#    :caption: examples/cats_vs_dogs.py
