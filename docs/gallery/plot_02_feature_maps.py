"""
Feature maps of the cat picture
===============================

The pipeline of the classic "CNN from scratch in NumPy" tutorial, written with :mod:`xpcnn.ops` only
(no layers, no training): Chelsea the cat from scikit-image, in grey, through two fixed 3x3 edge filters,
ReLU and 2x2 max pooling, then three random 5x5 filters, then one random 7x7 filter, each stage followed by
ReLU and pooling. The figure shows every stage's maps, one row per stage.

This page runs ``examples/feature_maps.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/feature_maps.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import feature_maps  # examples/feature_maps.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
feature_maps.main(["--quick", "--out", str(out)])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/feature_maps.py
#    :language: python
#    :caption: examples/feature_maps.py
