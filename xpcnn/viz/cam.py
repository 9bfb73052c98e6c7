"""Class activation maps (Zhou et al., 2016): where in each image the evidence for a class lies.

The maps are read off the model's own plan (``xpcnn.graph.Plan``), so they work the same on a ``Sequential``
stack and on a graph ``Model`` (a ResNet's last stage, say): the features are what the chosen
``GlobalAvgPool2D`` receives, the class weights those of the ``Dense`` layer its pooled output flows into.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backend import asarray, get_backend
from ..graph import Plan
from ..layers.base import Layer
from ..layers.dense import Dense
from ..layers.pool import GlobalAvgPool2D
from ..model import Sequential
from ..model.base import LayerGraph
from .plots import _numpy

__all__ = ["class_activation_map"]


def _as_model(model: Any, x: Any) -> LayerGraph:
    """The model, built for ``x``; a list of layers becomes the ``Sequential`` of them."""
    if isinstance(model, (list, tuple)) and all(isinstance(layer, Layer) for layer in model):
        model = Sequential(list(model))
    if not isinstance(model, LayerGraph):
        raise TypeError(f"class_activation_map takes a model (Sequential or Model) or a list of layers, "
                        f"got {type(model).__name__}")
    if model.plan is None:
        model.build(tuple(x.shape[1:]))
    return model


def _chosen_layer(model: LayerGraph, layer: Any) -> Layer:
    """``layer`` given as a layer object of the model, its name, its index, or its type (the last of it)."""
    if isinstance(layer, Layer):
        if not any(layer is own for own in model.layers):
            raise ValueError(f"class_activation_map: layer {layer.name!r} is not a layer of {model.name!r}")
        return layer
    if isinstance(layer, str):
        return model.get_layer(name=layer)
    if isinstance(layer, int) and not isinstance(layer, bool):
        return model.get_layer(index=layer)
    if isinstance(layer, type) and issubclass(layer, Layer):
        of_type = [own for own in model.layers if isinstance(own, layer)]
        if not of_type:
            raise ValueError(f"class_activation_map: {model.name!r} has no {layer.__name__} layer")
        return of_type[-1]
    raise TypeError(f"class_activation_map: layer must be a Layer of the model, a layer name, an index or a layer "
                    f"type, got {layer!r}")


def _step_of(plan: Plan, layer: Layer) -> int:
    """The index of the (last) step that runs ``layer`` and writes its output."""
    found = [i for i, step in enumerate(plan.steps) if any(own is layer for own in step.layers)]
    if not found:
        raise ValueError(f"class_activation_map: layer {layer.name!r} has no output of its own here (a ReLU runs "
                         "fused into the MaxPool2D after it); choose the layer before or after it")
    return found[-1]


def _pooling_step(plan: Plan, start: int | None) -> int:
    """The first GlobalAvgPool2D step downstream of step ``start``'s output, or the last one (``start=None``)."""
    is_gap = [isinstance(step.runner, GlobalAvgPool2D) for step in plan.steps]
    if start is None:
        found = [i for i, gap in enumerate(is_gap) if gap]
        if not found:
            raise ValueError("class_activation_map: the model has no GlobalAvgPool2D; it must end "
                             "... -> Conv2D -> GlobalAvgPool2D -> Dense (see the docstring)")
        return found[-1]
    reached = {plan.steps[start].output}
    for i in range(start + 1, len(plan.steps)):
        step = plan.steps[i]
        if any(t in reached for t in step.inputs):
            if is_gap[i]:
                return i
            reached.add(step.output)
    layer = plan.steps[start].layers[0]
    raise ValueError(f"class_activation_map: no GlobalAvgPool2D after layer {layer.name!r} "
                     f"({type(layer).__name__}); the model must be ... -> Conv2D -> GlobalAvgPool2D -> Dense")


def _dense_step(plan: Plan, gap: int) -> int:
    """The Dense step the pooled features flow into through parameter-free one-input layers (Flatten, Dropout)."""
    readers: dict[int, list[int]] = {}
    for i, step in enumerate(plan.steps):
        for t in step.inputs:
            readers.setdefault(t, []).append(i)
    tensor = plan.steps[gap].output
    while True:
        after = readers.get(tensor, [])
        if len(after) != 1 or plan.steps[after[0]].several:
            raise ValueError("class_activation_map: the GlobalAvgPool2D must be followed by a Dense layer, through "
                             f"one-input layers only (its output feeds {len(after)} layers here)")
        step = plan.steps[after[0]]
        if isinstance(step.runner, Dense):
            return after[0]
        if any(layer.params for layer in step.layers):
            raise ValueError(f"class_activation_map: layer {step.runner.name!r} ({type(step.runner).__name__}) "
                             "between GlobalAvgPool2D and Dense has parameters; the class score must be linear "
                             "in the pooled features")
        tensor = step.output


def _resize_bilinear(maps: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(N, h, w)`` maps to ``out_hw`` with half-pixel centres (align_corners=False)."""
    n, h, w = maps.shape
    if (h, w) == tuple(out_hw):
        return maps

    def axis(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0, in_size - 1)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, in_size - 1)
        return lo, hi, (src - lo).astype(maps.dtype)

    r0, r1, wr = axis(h, out_hw[0])
    c0, c1, wc = axis(w, out_hw[1])
    rows = maps[:, r0, :] * (1 - wr)[None, :, None] + maps[:, r1, :] * wr[None, :, None]
    return rows[:, :, c0] * (1 - wc)[None, None, :] + rows[:, :, c1] * wc[None, None, :]


def class_activation_map(
    model: Any, x: Any, layer: Any = None, *, classes: Any = None, normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Class activation maps of a model (``Sequential``, graph ``Model`` or a list of layers) for images ``x``.

    The model must end the CAM way::

        ... -> layer (e.g. the last Conv2D, giving (N, C, h, w))
            -> shape-preserving layers, if any (ReLU, BatchNorm2D, the Add of a residual block, ...)
            -> GlobalAvgPool2D -> (Flatten / Dropout, if any) -> Dense(num_classes) -> (Softmax, if any)

    so that the class score is ``sum_c W[k, c] * mean(F_c)`` with ``F`` the GlobalAvgPool2D input and ``W`` the
    Dense weight ``(num_classes, C)``. The map for class ``k`` is ``sum_c W[k, c] * F_c``, upsampled bilinearly
    from ``(h, w)`` to the input's ``(H, W)``. A binary classifier with one output (``Dense(1)``, with or
    without a sigmoid) has two classes: 1 where the score is positive (the probability above 0.5), mapped by
    ``W[0]``, and 0, mapped by ``-W[0]`` (the evidence against class 1).

    ``layer`` picks the GlobalAvgPool2D (the first one after it) and must give maps of the shape that pooling
    receives: a layer of the model, its name (``"conv2d_2"``), its index in ``model.layers``, or a layer type
    (``Conv2D``: the last layer of that type). ``None`` takes the model's last GlobalAvgPool2D.

    ``x`` is a batch ``(N, C_in, H, W)`` of any backend (moved to the current one); ``classes`` (one per
    sample) selects the class to explain, default the predicted one. With ``normalize`` each map is scaled
    to [0, 1]. Returns NumPy ``(maps (N, H, W), predicted labels (N,))``.
    """
    if isinstance(x, (list, tuple, Mapping)):
        raise ValueError("class_activation_map explains models with one image input; got several inputs")
    x = asarray(x)
    if x.ndim != 4:
        raise ValueError(f"class_activation_map: x must be a batch (N, C, H, W), got shape {tuple(x.shape)}")
    model = _as_model(model, x)
    plan = model.plan
    start = None if layer is None else _step_of(plan, _chosen_layer(model, layer))
    gap = _pooling_step(plan, start)
    dense = _dense_step(plan, gap)
    features_t = plan.steps[gap].inputs[0]
    chosen_t = features_t if start is None else plan.steps[start].output
    features, chosen, logits = model.values_of(x, [features_t, chosen_t, plan.steps[dense].output])
    if features.ndim != 4 or tuple(features.shape) != tuple(chosen.shape):
        name = plan.steps[start].layers[0].name
        raise ValueError(f"class_activation_map: layer {name!r} gives {tuple(chosen.shape)} but GlobalAvgPool2D "
                         f"receives {tuple(features.shape)}; only shape-preserving layers may sit between them")
    weight = plan.steps[dense].runner.params["weight"]  # (num_classes, C)
    if weight.shape[1] != features.shape[1]:
        raise ValueError(f"class_activation_map: Dense weight {tuple(weight.shape)} does not take the "
                         f"{features.shape[1]} pooled channels")
    scores = _numpy(logits).reshape(int(logits.shape[0]), -1)
    class_weights = _numpy(weight)
    if class_weights.shape[0] == 1:  # one sigmoid unit: class 1 scores w.F, class 0 its opposite
        threshold = 0.5 if plan.steps[dense].runner.activation == "sigmoid" else 0.0
        predicted = (scores[:, 0] > threshold).astype(np.int64)
        class_weights = np.concatenate([-class_weights, class_weights])
    else:
        predicted = np.argmax(scores, axis=1)
    targets = predicted
    if classes is not None:
        targets = np.broadcast_to(np.asarray(classes, dtype=np.int64), predicted.shape)
        if targets.min() < 0 or targets.max() >= class_weights.shape[0]:
            raise ValueError(f"class_activation_map: classes must lie in [0, {class_weights.shape[0]}), "
                             f"got {classes!r}")
    w_sel = asarray(class_weights[targets])  # (N, C): a small gather on the host
    n, c, fh, fw = (int(s) for s in features.shape)
    xp = get_backend().xp
    cams = xp.matmul(w_sel[:, None, :], xp.reshape(features, (n, c, fh * fw)))  # (N, 1, h*w)
    cams = _numpy(cams).astype(np.float32).reshape(n, fh, fw)
    cams = _resize_bilinear(cams, (int(x.shape[2]), int(x.shape[3])))
    if normalize:
        lo = cams.min(axis=(1, 2), keepdims=True)
        span = cams.max(axis=(1, 2), keepdims=True) - lo
        cams = np.where(span > 0, (cams - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)
    return cams, predicted.astype(np.int64)
