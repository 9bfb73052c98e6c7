"""
Transfer learning from a pretrained backbone
============================================

A torchvision architecture (:mod:`xpcnn.applications`) as a frozen backbone under a new head, trained on
a streamed folder of images, then fine-tuned with its batch norms kept frozen; both phases' curves. With
``--weights FILE`` the backbone starts from a torchvision checkpoint read without torch; the quick mode
here generates pictures and starts from random weights (no download), so it shows the mechanics, not
the accuracy.

This page runs ``examples/transfer_learning.py`` in its quick mode on the NumPy backend; its full source is at the
bottom. ``python examples/transfer_learning.py --help`` lists its options (``--backend``, ``--device``, ...).
"""

# %%
# Run the example; it writes its figures into ``out``, shown below.
import pathlib
import tempfile

import transfer_learning  # examples/transfer_learning.py

out = pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-gallery-"))
transfer_learning.main(["--quick", "--out", str(out)])

# %%
# The example's source
# --------------------
#
# .. literalinclude:: /../examples/transfer_learning.py
#    :language: python
#    :caption: examples/transfer_learning.py
