"""
Segmentation with a small U-Net
===============================

A small U-Net (strided Conv2D down, Conv2DTranspose up, Concatenate skips) segmenting generated images
of circles, rectangles and triangles on a noisy, unevenly lit background: input, target and predicted
mask for a few held-out images, and the IoU of the shape pixels.

This page runs ``examples/unet_segmentation.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/unet_segmentation.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import unet_segmentation  # examples/unet_segmentation.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
unet_segmentation.main(["--quick", "--out", str(out)])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/unet_segmentation.py
#    :language: python
#    :caption: examples/unet_segmentation.py
