"""
Training a CNN on MNIST
=======================

The classic CNN (two Conv2D/ReLU/MaxPool2D stages and a Dense layer) trained with ``fit`` on MNIST,
validated each epoch, saved, and its loss and accuracy curves plotted. The quick mode here trains on
2,000 images for one epoch; ``python examples/train_mnist.py --epochs 1`` trains on all 60,000 and
reaches about 98.8% test accuracy in under half a minute on two CPU cores (see
:doc:`/guides/results`).

This page runs ``examples/train_mnist.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/train_mnist.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import train_mnist  # examples/train_mnist.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
train_mnist.main(["--quick", "--out", str(out)])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/train_mnist.py
#    :language: python
#    :caption: examples/train_mnist.py
