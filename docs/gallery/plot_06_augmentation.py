"""
Data augmentation on the device
===============================

One batch of photos through :mod:`xpcnn.transforms`: RandomFlip, RandomRotation and
RandomTranslation, each drawn per image on the device (``fit(..., transform=...)`` applies such a
pipeline to every training batch).

This page runs ``examples/augmentation.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/augmentation.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import augmentation  # examples/augmentation.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
augmentation.main(["--quick", "--out", str(out)])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/augmentation.py
#    :language: python
#    :caption: examples/augmentation.py
