"""The text of ``model.summary()``: Keras's table of layers, output shapes and parameter counts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["param_count", "shape_text", "table"]


def table(model_name: str, input_description: str, headers: Sequence[str], rows: Sequence[Sequence[str]],
          trainable: int, non_trainable: int) -> str:
    """The summary: a column per header, sized to its widest cell, then the parameter totals."""
    widths = [max(len(headers[c]), *(len(r[c]) for r in rows)) + 4 for c in range(len(headers))]
    total_width = sum(widths)

    def line(cells: Sequence[str]) -> str:
        return "".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

    return "\n".join([
        f'Model: "{model_name}"  input shape {input_description}',
        "_" * total_width,
        line(headers),
        "=" * total_width,
        *[line(r) for r in rows],
        "=" * total_width,
        f"Total params: {trainable + non_trainable:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {non_trainable:,}",
        "_" * total_width,
    ])


def param_count(layer: Any) -> str:
    """A layer's parameters and buffers, counted, with thousands separators."""
    return f"{sum(math.prod(v.shape) for v in (*layer.params.values(), *layer.buffers.values())):,}"


def shape_text(shape: Sequence[int]) -> str:
    """A per-sample shape with the batch axis in front: ``(None, 1, 28, 28)``."""
    return "(None, " + ", ".join(str(d) for d in shape) + ")"
