"""Saving and loading models: ONE file, a zip of ``.npy`` arrays plus a JSON ``config`` entry.

The file is what ``np.savez`` writes to a file object (so the name is kept exactly as given, whatever its
extension). The ``config`` entry (UTF-8 JSON stored as a uint8 array) holds the architecture (layer class
names, their ``get_config()`` and the input shape, or a graph's nodes), the compile configuration (loss,
optimizer, metrics), the epoch count, the ``xpcnn.random`` state and the names of the arrays that hold the
weights, buffers and optimizer state. Arrays are stored on the host in their own dtype; loading rebuilds the
model on the CURRENT backend and device, so a model trained on one backend predicts the same on another.

What a file can and cannot do: loading never runs code from it (no pickle: object arrays are refused, layer,
loss, metric and optimizer classes are looked up among xpcnn's public, concrete ones); its config is checked
field by field before anything is built (``schema``); a layer asking for more than ``max_array_elements``
values in one parameter is refused before allocation; only the arrays the config names are read, each after
its header matched the shape the model expects (``archive``). Writes are atomic (``atomic``). Weights alone
can also go to and come from the safetensors format (``safetensors``), and come from PyTorch checkpoints
(``torch_checkpoint``: ``torch.save``'s zip and legacy formats, read by a restricted unpickler that runs none of
the pickle's code).
"""

from .loading import MAX_ARRAY_ELEMENTS, load_model, load_weights
from .saving import save_model, save_weights
from .torch_checkpoint import load_torch_checkpoint

__all__ = ["MAX_ARRAY_ELEMENTS", "load_model", "load_torch_checkpoint", "load_weights", "save_model", "save_weights"]
