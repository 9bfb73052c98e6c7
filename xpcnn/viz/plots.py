"""Plots: training curves, image grids, feature maps, filters, class activation maps over their images.

matplotlib is an optional extra (``pip install "xpcnn[examples]"``) imported only when a function runs. On
a Linux machine without a display, and when nobody chose a matplotlib backend, the non-interactive "Agg"
backend is selected so that scripts and CI can save PNGs. Every ``plot_*`` function creates a new figure
through ``matplotlib.pyplot`` and returns it: save it with ``fig.savefig(path)``, show it with
``plt.show()``, and ``plt.close(fig)`` it in loops. Arrays may come from any backend; they are copied to
the host with ``xpcnn.to_numpy`` (this module is I/O at the edge of the library, not a hot path).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import array_api_compat
import numpy as np

from ..backend import to_numpy

__all__ = [
    "plot_class_activation_maps",
    "plot_feature_maps",
    "plot_filters",
    "plot_history",
    "plot_images",
]

_INSTALL_HINT = 'xpcnn.viz needs matplotlib: pip install "xpcnn[examples]"'


def _pyplot() -> Any:
    """``matplotlib.pyplot``, with Agg chosen first on a headless Linux machine that chose no backend."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc
    if "matplotlib.pyplot" not in sys.modules and _headless() and _backend_unchosen(matplotlib):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _headless() -> bool:
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _backend_unchosen(matplotlib: Any) -> bool:
    if os.environ.get("MPLBACKEND"):
        return False
    get = getattr(matplotlib.rcParams, "_get_backend_or_none", None)  # matplotlib >= 3.7
    if get is not None:
        return get() is None
    return True


def _numpy(x: Any) -> np.ndarray:
    """Any backend's array, a NumPy array, a list or a scalar, on the host."""
    if array_api_compat.is_array_api_obj(x) and not isinstance(x, np.ndarray):
        return np.asarray(to_numpy(x))
    return np.asarray(x)


# --- training curves ------------------------------------------------------------------------------------

def _history_dict(history: Any) -> dict[str, list[float]]:
    logs = getattr(history, "history", history)
    if not isinstance(logs, Mapping):
        raise TypeError(
            f"plot_history takes a History (from Model.fit) or a dict of lists, got {type(history).__name__}"
        )
    out = {}
    for key, values in logs.items():
        if isinstance(values, np.ndarray):
            values = values.reshape(-1).tolist()
        elif not isinstance(values, (list, tuple)):
            values = [values]
        out[str(key)] = [float(_numpy(v)) for v in values]
    if not any(out.values()):
        raise ValueError("plot_history: the history holds no values (was fit run for at least one epoch?)")
    return out


def _panel_name(key: str) -> str:
    base = key[4:] if key.startswith("val_") else key
    return "accuracy" if base in ("acc", "accuracy") else base


def plot_history(history: Any, title: str | None = None) -> Any:
    """Loss and metric curves per epoch, training and validation side by side.

    ``history`` is the ``History`` returned by ``Model.fit`` or its ``.history`` dict, e.g.
    ``{"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...], "lr": [...]}``. Each
    metric gets one panel (loss first, then accuracy, then any other key) with the training curve solid and
    the ``val_`` curve dashed; the learning rate gets a panel only when it changed (a schedule). Epochs are
    numbered from 1 (from ``History.epoch`` when it is there, so a resumed run continues the axis).
    Returns the matplotlib Figure.
    """
    logs = _history_dict(history)
    for key in ("lr", "learning_rate"):
        if key in logs and len(set(logs[key])) <= 1:
            del logs[key]
    panels: dict[str, list[str]] = {}
    for key in logs:
        panels.setdefault(_panel_name(key), []).append(key)
    recorded = [int(e) + 1 for e in getattr(history, "epoch", None) or []]
    order = sorted(panels, key=lambda p: (p != "loss", p != "accuracy", list(panels).index(p)))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(order), figsize=(4.5 * len(order), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], order):
        for key in sorted(panels[panel], key=lambda k: k.startswith("val_")):
            values = logs[key]
            epochs = np.asarray(recorded) if len(recorded) == len(values) else np.arange(1, len(values) + 1)
            val = key.startswith("val_")
            ax.plot(epochs, values, "--" if val else "-", marker="o" if len(values) < 20 else None, markersize=3,
                    label="validation" if val else "training")
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
        if len(logs[panels[panel][0]]) < 12:
            ax.set_xticks(epochs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- image grids ----------------------------------------------------------------------------------------

def _host(x: Any, what: str) -> np.ndarray:
    arr = _numpy(x)
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise TypeError(f"{what} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float32)


def _grid(plt: Any, nrows: int, ncols: int, cell: float = 1.6, aspect: float = 1.0) -> tuple[Any, np.ndarray]:
    """``nrows x ncols`` bare axes, each ``cell`` inches wide and ``cell * aspect`` (+ a title line) high."""
    height = cell * min(max(aspect, 0.25), 4.0) + 0.25
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols + 0.6, height * nrows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    return fig, axes


def _square(count: int) -> tuple[int, int]:
    ncols = max(1, math.ceil(math.sqrt(count)))
    return math.ceil(count / ncols), ncols


def plot_feature_maps(
    maps: Any, title: str | None = None, *, cmap: str = "viridis", max_channels: int | None = None,
) -> Any:
    """A grid of feature maps, each panel one channel with its own colour scale.

    ``maps`` is one of:

    - ``(C, H, W)``: the C maps of one sample, in a near-square grid;
    - ``(N, C, H, W)``: one row per sample, one column per channel;
    - a dict ``{name: (C, H, W) or (1, C, H, W)}`` (or a list of such arrays): one row per entry, labelled
      with its name, e.g. every stage of a network (``{"conv1": ..., "relu1": ..., "pool1": ...}``);
      the stages may differ in size and channel count.

    ``max_channels`` keeps only the first channels of each map. Returns the matplotlib Figure.
    """
    if isinstance(maps, Mapping) or (isinstance(maps, Sequence) and not isinstance(maps, (str, bytes))):
        items = list(maps.items()) if isinstance(maps, Mapping) else [(f"[{i}]", m) for i, m in enumerate(maps)]
        if not items:
            raise ValueError("plot_feature_maps: got no maps")
        rows = []
        for name, m in items:
            arr = _host(m, f"feature map {name!r}")
            if arr.ndim == 4 and arr.shape[0] == 1:
                arr = arr[0]
            if arr.ndim == 2:
                arr = arr[None]
            if arr.ndim != 3:
                raise ValueError(f"plot_feature_maps: map {name!r} must be (C, H, W) or (1, C, H, W), got {arr.shape}")
            rows.append((str(name), arr[:max_channels]))
    else:
        arr = _host(maps, "maps")
        if arr.ndim == 3:
            arr = arr[:max_channels]
            nrows, ncols = _square(arr.shape[0])
            plt = _pyplot()
            fig, axes = _grid(plt, nrows, ncols, aspect=arr.shape[1] / arr.shape[2])
            for c in range(arr.shape[0]):
                ax = axes.flat[c]
                ax.imshow(arr[c], cmap=cmap)
                ax.set_title(f"channel {c}", fontsize=8)
            for ax in axes.flat[arr.shape[0]:]:
                ax.axis("off")
            return _finish(fig, title)
        if arr.ndim != 4:
            raise ValueError(f"plot_feature_maps: maps must be (C, H, W) or (N, C, H, W), got shape {arr.shape}")
        rows = [(f"sample {n}", arr[n, :max_channels]) for n in range(arr.shape[0])]
    plt = _pyplot()
    ncols = max(r.shape[0] for _, r in rows)
    aspect = float(np.median([r.shape[1] / r.shape[2] for _, r in rows]))
    fig, axes = _grid(plt, len(rows), ncols, aspect=aspect)
    for i, (name, arr) in enumerate(rows):
        for c in range(ncols):
            ax = axes[i, c]
            if c < arr.shape[0]:
                ax.imshow(arr[c], cmap=cmap)
                if i == 0 or arr.shape[0] != rows[i - 1][1].shape[0]:
                    ax.set_title(f"channel {c}", fontsize=8)
            else:
                ax.axis("off")
        axes[i, 0].set_ylabel(f"{name}\n{arr.shape[1]}x{arr.shape[2]}", fontsize=9)
    return _finish(fig, title)


def _finish(fig: Any, title: str | None) -> Any:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_filters(layer: Any, title: str | None = None, *, max_filters: int = 64, cmap: str = "RdBu_r") -> Any:
    """The kernels of a built ``Conv2D`` (or any layer with a 4-D ``params["weight"]``, or the array itself).

    Single-input-channel weights ``(O, 1, kh, kw)`` are drawn in a near-square grid, one panel per filter;
    otherwise one row per output channel and one column per input channel (at most 16 of each). Colours
    share one symmetric scale, red positive and blue negative. At most ``max_filters`` output channels are
    shown. Returns the matplotlib Figure.
    """
    weight = layer
    params = getattr(layer, "params", None)
    if params is not None:
        if "weight" not in params:
            raise ValueError(
                f"plot_filters: {type(layer).__name__} has no weight yet; build it first (run data through the "
                "model or call layer.build(input_shape))"
            )
        weight = params["weight"]
    w = _host(weight, "weight")
    if w.ndim != 4:
        raise ValueError(f"plot_filters: expected a 4-D convolution weight (O, I, kh, kw), got shape {w.shape}")
    w = w[:max_filters]
    limit = float(np.max(np.abs(w))) or 1.0
    plt = _pyplot()
    out_ch, in_ch = w.shape[0], w.shape[1]
    if in_ch == 1:
        nrows, ncols = _square(out_ch)
        fig, axes = _grid(plt, nrows, ncols, cell=1.2)
        panels = [(axes.flat[o], w[o, 0], f"filter {o}") for o in range(out_ch)]
        for ax in axes.flat[out_ch:]:
            ax.axis("off")
    else:
        out_ch, in_ch = min(out_ch, 16), min(in_ch, 16)
        fig, axes = _grid(plt, out_ch, in_ch, cell=1.0)
        panels = [(axes[o, i], w[o, i], None) for o in range(out_ch) for i in range(in_ch)]
        for o in range(out_ch):
            axes[o, 0].set_ylabel(f"out {o}", fontsize=8)
        for i in range(in_ch):
            axes[0, i].set_title(f"in {i}", fontsize=8)
    image = None
    for ax, kernel, label in panels:
        image = ax.imshow(kernel, cmap=cmap, vmin=-limit, vmax=limit)
        if label:
            ax.set_title(label, fontsize=8)
    fig = _finish(fig, title or f"{type(layer).__name__ if params is not None else 'weight'} {tuple(weight.shape)}")
    fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8)
    return fig


def _as_images(batch: Any, what: str) -> np.ndarray:
    """(N, C, H, W), (N, H, W) or (H, W) -> (N, H, W) grey or (N, H, W, 3) colour images on the host."""
    arr = _host(batch, what)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4:
        if arr.shape[1] == 1:
            arr = arr[:, 0]
        elif arr.shape[1] == 3:
            arr = np.moveaxis(arr, 1, -1)
            lo, hi = arr.min(), arr.max()
            if lo < 0.0 or hi > 1.0:  # colour images outside [0, 1]: stretch the batch's range onto it
                arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        else:
            raise ValueError(f"{what}: images need 1 or 3 channels, got shape {arr.shape}")
    if arr.ndim not in (3, 4):
        raise ValueError(f"{what}: expected (N, C, H, W), (N, H, W) or (H, W) images, got shape {arr.shape}")
    return arr


def plot_images(
    images: Any, labels: Sequence[Any] | None = None, title: str | None = None, *, ncols: int | None = None,
    cmap: str = "gray",
) -> Any:
    """A grid of images: a batch ``(N, C, H, W)`` (C = 1 or 3) or ``(N, H, W)``, or a dict of batches.

    A single batch is laid out ``ncols`` to a row (default: near-square), with ``labels[i]`` as titles.
    A dict ``{name: batch}`` gives one row per entry, labelled with its name, for before/after
    comparisons (originals vs reconstructions, one batch through several augmentations). Grey images share
    the display range [0, 1] when all values lie in it. Returns the matplotlib Figure.
    """
    plt = _pyplot()
    if isinstance(images, Mapping):
        rows = [(str(name), _as_images(b, f"images[{name!r}]")) for name, b in images.items()]
        if not rows:
            raise ValueError("plot_images: got no images")
        width = max(len(r) for _, r in rows) if ncols is None else ncols
        fig, axes = _grid(plt, len(rows), width, cell=1.3)
        for i, (name, batch) in enumerate(rows):
            for j in range(width):
                if j < len(batch):
                    _show(axes[i, j], batch[j], cmap)
                else:
                    axes[i, j].axis("off")
            axes[i, 0].set_ylabel(name, fontsize=9)
        return _finish(fig, title)
    batch = _as_images(images, "images")
    if labels is not None and len(labels) != len(batch):
        raise ValueError(f"plot_images: {len(batch)} images but {len(labels)} labels")
    nrows, width = _square(len(batch)) if ncols is None else (math.ceil(len(batch) / ncols), ncols)
    fig, axes = _grid(plt, nrows, width, cell=1.3)
    for k, ax in enumerate(axes.flat):
        if k < len(batch):
            _show(ax, batch[k], cmap)
            if labels is not None:
                ax.set_title(str(labels[k]), fontsize=9)
        else:
            ax.axis("off")
    return _finish(fig, title)


def _show(ax: Any, image: np.ndarray, cmap: str) -> None:
    if image.ndim == 3:
        ax.imshow(image)
    elif image.min() >= 0.0 and image.max() <= 1.0:
        ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0)
    else:
        ax.imshow(image, cmap=cmap)


# --- class activation maps ------------------------------------------------------------------------------

_CAM_CELL = 1.4  # inches: the width of one image in plot_class_activation_maps
_CAM_TITLE_SIZE = 8  # points
_TITLE_GAP = 0.15  # inches: the least free space between neighbouring titles
_MARGIN = 0.1  # inches around the grid


def _text_size(fig: Any, texts: Sequence[str], **props: Any) -> tuple[float, float]:
    """The width and height in inches of the widest and of the tallest of ``texts`` drawn with ``props``."""
    probe = fig.text(0, 0, "", **props)
    width = height = 0.0
    for text in texts:
        probe.set_text(text)
        box = probe.get_window_extent()
        width, height = max(width, box.width / fig.dpi), max(height, box.height / fig.dpi)
    probe.remove()
    return width, height


def plot_class_activation_maps(
    images: Any, maps: Any, predicted: Sequence[Any] | None = None, labels: Sequence[Any] | None = None,
    title: str | None = None, *, ncols: int | None = None, alpha: float = 0.5, cmap: str = "jet",
    class_names: Sequence[str] | None = None,
) -> Any:
    """Class activation maps (from ``class_activation_map``) overlaid on their images.

    ``images`` ``(N, 1, H, W)``, ``(N, 3, H, W)`` or ``(N, H, W)``, ``maps`` ``(N, H, W)``; titles read
    ``pred 7`` or, with true ``labels``, ``pred 7 / true 7`` (red when they differ), with the classes'
    names when ``class_names`` is given. Where some title is too wide for its image, every title puts the
    prediction and the truth on two lines, and the columns are widened beyond the longest line if need be,
    so that titles never run into each other or into the images. Returns the matplotlib Figure.
    """
    batch = _as_images(images, "images")
    heat = _host(maps, "maps")
    if heat.shape[0] != batch.shape[0] or heat.shape[1:] != batch.shape[1:3]:
        raise ValueError(f"plot_class_activation_maps: images {batch.shape} and maps {heat.shape} do not match")
    plt = _pyplot()
    nrows, width = _square(len(batch)) if ncols is None else (math.ceil(len(batch) / ncols), ncols)
    fig, axes = _grid(plt, nrows, width)  # sized and laid out below, once the titles are known

    def named(label: Any) -> str:
        return str(label if class_names is None else class_names[int(label)])

    for k, ax in enumerate(axes.flat):
        if k >= len(batch):
            ax.axis("off")
            continue
        _show(ax, batch[k], "gray")
        ax.imshow(heat[k], cmap=cmap, alpha=alpha)

    # one title per panel: its lines (prediction, then truth) and colour (red where they differ)
    titles: list[tuple[list[str], str]] = []
    if predicted is not None:
        for k in range(len(batch)):
            lines, color = [f"pred {named(predicted[k])}"], "black"
            if labels is not None:
                lines.append(f"true {named(labels[k])}")
                color = "black" if int(predicted[k]) == int(labels[k]) else "red"
            titles.append((lines, color))
    # Neighbouring titles sit one column apart, so a column must be as wide as the widest title: "pred 7 /
    # true 7" on one line where every title fits over its image, else prediction and truth on two lines, the
    # columns widened past the longest line if need be (the images keep their size). The grid is laid out
    # here in inches rather than by tight_layout, which misplaces titles over fixed-aspect images.
    font = {"fontsize": _CAM_TITLE_SIZE, "linespacing": 1.1}
    texts = [" / ".join(lines) for lines, _ in titles]
    if texts and _text_size(fig, texts, **font)[0] > _CAM_CELL:
        texts = ["\n".join(lines) for lines, _ in titles]
    title_w, title_h = _text_size(fig, texts, **font)
    image_w = _CAM_CELL
    image_h = _CAM_CELL * min(max(batch.shape[1] / batch.shape[2], 0.25), 4.0)
    col_w = max(image_w, title_w) + _TITLE_GAP
    band = title_h + plt.rcParams["axes.titlepad"] / 72 + 0.05 if texts else _MARGIN  # above each image
    head_w, head = _text_size(fig, [title] if title else [], fontsize=plt.rcParams["figure.titlesize"],
                              fontweight=plt.rcParams["figure.titleweight"])
    head += _MARGIN if title else 0.0
    fig_w = max(width * col_w, head_w) + 2 * _MARGIN  # the grid centred under a wider suptitle
    fig_h = nrows * (band + image_h) + head + 2 * _MARGIN
    fig.set_layout_engine("none")
    fig.set_size_inches(fig_w, fig_h)
    side = (fig_w - width * col_w) / 2 + (col_w - image_w) / 2
    fig.subplots_adjust(left=side / fig_w, right=1 - side / fig_w, bottom=_MARGIN / fig_h,
                        top=1 - (_MARGIN + head + band) / fig_h, wspace=(col_w - image_w) / image_w,
                        hspace=band / image_h)
    for ax, text, (_, color) in zip(axes.flat, texts, titles):
        ax.set_title(text, color=color, **font)
    if title:
        fig.suptitle(title, y=1 - _MARGIN / fig_h, va="top")
    return fig
