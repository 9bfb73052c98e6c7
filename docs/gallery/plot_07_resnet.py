"""
A small ResNet with the Functional API
======================================

ResNet-20's layout scaled down, built with the Functional API (:class:`xpcnn.Model`): a 3x3 stem,
three stages of residual blocks with BatchNorm, stride-2 projection shortcuts, global average pooling;
trained on MNIST with Adam under a 1cycle schedule. The quick mode trains a narrow net on 2,000 images;
the full run reaches 99.27% test accuracy after two epochs (:doc:`/guides/results`).

This page runs ``examples/resnet.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/resnet.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import resnet  # examples/resnet.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
resnet.main(["--quick", "--out", str(out)])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/resnet.py
#    :language: python
#    :caption: examples/resnet.py
