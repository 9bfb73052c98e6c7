"""
A convolutional autoencoder
===========================

A convolutional autoencoder on MNIST: strided Conv2D layers down to a small code, Conv2DTranspose
(or UpSampling2D) layers back up, trained with the mean squared error. Test digits on the top row,
their reconstructions below; the quick mode trains briefly on a small subset.

This page runs ``examples/autoencoder.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/autoencoder.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import autoencoder  # examples/autoencoder.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
autoencoder.main(["--quick", "--out", str(out)])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/autoencoder.py
#    :language: python
#    :caption: examples/autoencoder.py
