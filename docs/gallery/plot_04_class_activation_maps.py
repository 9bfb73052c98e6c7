"""
Class activation maps on MNIST
==============================

A CNN that ends with global average pooling and one Dense layer, trained on MNIST, and its class
activation maps (:func:`xpcnn.viz.class_activation_map`): where in each test digit the evidence for the
predicted class lies (title green when right, red when wrong). The quick mode trains briefly on a
small subset, so the maps are rougher than a full run's.

This page runs ``examples/class_activation_maps.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/class_activation_maps.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import class_activation_maps  # examples/class_activation_maps.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
class_activation_maps.main(["--quick", "--out", str(out)])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/class_activation_maps.py
#    :language: python
#    :caption: examples/class_activation_maps.py
