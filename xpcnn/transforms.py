"""Data augmentation on NCHW batches, on the device, with Array API operations only.

Every geometric transform is written as an inverse map: for each output pixel, the source pixel it reads
(plus a mask for sources that fall outside the image, which read zero). The read is one ``xp.take`` on the
flattened batch, so no transform writes into an array and all of them run unchanged on JAX. Random numbers
are drawn per sample through ``xpcnn.random`` on the current backend's device; nothing is read back to the
host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat

from ._checks import check_flag
from . import random
from .backend import get_backend

__all__ = ["Compose", "RandomCrop", "RandomFlip", "RandomRotation", "RandomTranslation"]


# --- helpers: shapes, dtypes, the one gather -----------------------------------------------------------

def _check_nchw(x: Any, who: str) -> tuple[int, int, int, int]:
    if len(x.shape) != 4:
        raise ValueError(f"{who} takes NCHW batches (4 dimensions), got shape {tuple(x.shape)}")
    n, c, h, w = (int(s) for s in x.shape)
    return n, c, h, w


def _float_dtype(xp: Any, x: Any) -> Any:
    """Coordinates are computed in x's float dtype (or the backend's, for integer images)."""
    return x.dtype if xp.isdtype(x.dtype, "real floating") else get_backend().dtype


def _index_dtype(xp: Any, dev: Any) -> Any:
    """The namespace's default index dtype (int32 on JAX without x64, int64 elsewhere)."""
    return xp.__array_namespace_info__().default_dtypes(device=dev)["indexing"]


def _uniform(n: int, low: float, high: float, dtype: Any) -> Any:
    """(n,) samples of U[low, high) on the device."""
    return random.uniform((n,), dtype=dtype) * (high - low) + low


def _gather(x: Any, rows: Any, cols: Any) -> Any:
    """``out[n, c, i, j] = x[n, c, rows[n, i, j], cols[n, i, j]]``, zero where the source is outside.

    ``rows``/``cols`` are integer arrays broadcastable to (N, Ho, Wo); out-of-range entries read zero.
    """
    xp = array_api_compat.array_namespace(x)
    dev = array_api_compat.device(x)
    n, c, h, w = (int(s) for s in x.shape)
    valid = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
    pixel = xp.clip(rows, 0, h - 1) * w + xp.clip(cols, 0, w - 1)  # (N, Ho, Wo), in [0, h*w)
    ho, wo = int(pixel.shape[-2]), int(pixel.shape[-1])
    pixel = xp.broadcast_to(pixel, (n, ho, wo))
    valid = xp.broadcast_to(valid, (n, ho, wo))
    plane = xp.reshape(xp.arange(n * c, dtype=pixel.dtype, device=dev) * (h * w), (n, c, 1, 1))
    index = xp.reshape(plane + pixel[:, None, :, :], (-1,))
    out = xp.reshape(xp.take(xp.reshape(x, (-1,)), index, axis=0), (n, c, ho, wo))
    return xp.where(valid[:, None, :, :], out, xp.zeros_like(out))


def _range(value: float | Sequence[float], name: str) -> tuple[float, float]:
    """``f`` -> (-f, f); ``(lo, hi)`` kept (Keras's convention for factors)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = -abs(float(value)), abs(float(value))
    else:
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be a number or a (low, high) pair, got {value!r}") from exc
    if lo > hi:
        raise ValueError(f"{name} range ({lo}, {hi}) has low > high")
    return lo, hi


# --- transforms ---------------------------------------------------------------------------------------

class Compose:
    """Apply transforms in order, each to the previous one's output.

    Parameters
    ----------
    transforms : sequence of callables
        Each takes an NCHW batch and returns one, such as the other classes of this module.

    Raises
    ------
    TypeError
        If an element is not callable.

    Examples
    --------
    The CIFAR recipe: pad by 4 and crop back at random, then mirror half of the images.

    >>> import numpy as np
    >>> import xpcnn
    >>> from xpcnn.transforms import Compose, RandomCrop, RandomFlip
    >>> augment = Compose([RandomCrop(padding=4), RandomFlip()])
    >>> x = xpcnn.asarray(np.random.default_rng(0).random((8, 3, 32, 32)))
    >>> augment(x).shape
    (8, 3, 32, 32)
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose takes callables, got {t!r}")

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomFlip:
    """Mirror each sample with probability ``p``: left-right and/or top-bottom.

    The two flips are drawn independently per sample, on the device.

    Parameters
    ----------
    horizontal : bool, default True
        Mirror left-right (the last axis).
    vertical : bool, default False
        Mirror top-bottom (the height axis).
    p : float, default 0.5
        Probability of each flip, in ``[0, 1]``.

    Raises
    ------
    ValueError
        If neither flip is asked for, or ``p`` lies outside ``[0, 1]``.
    TypeError
        If a flag is not a bool.

    Examples
    --------
    >>> import numpy as np
    >>> import xpcnn
    >>> from xpcnn.transforms import RandomFlip
    >>> x = xpcnn.asarray(np.arange(4.0).reshape(1, 1, 1, 4))
    >>> xpcnn.to_numpy(RandomFlip(p=1.0)(x)).ravel()
    array([3., 2., 1., 0.], dtype=float32)
    """

    def __init__(self, horizontal: bool = True, vertical: bool = False, p: float = 0.5) -> None:
        horizontal = check_flag(horizontal, "horizontal", type(self).__name__)
        vertical = check_flag(vertical, "vertical", type(self).__name__)
        if not (horizontal or vertical):
            raise ValueError("RandomFlip needs horizontal=True or vertical=True")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomFlip probability p must lie in [0, 1], got {p}")
        self.horizontal, self.vertical, self.p = horizontal, vertical, float(p)

    def __call__(self, x: Any) -> Any:
        n, _, _, _ = _check_nchw(x, "RandomFlip")
        xp = array_api_compat.array_namespace(x)
        for flag, axis in ((self.horizontal, 3), (self.vertical, 2)):
            if flag:
                mask = random.bernoulli((n, 1, 1, 1), self.p)
                x = xp.where(mask, xp.flip(x, axis=axis), x)
        return x

    def __repr__(self) -> str:
        return f"RandomFlip(horizontal={self.horizontal}, vertical={self.vertical}, p={self.p})"


class RandomCrop:
    """Pad each image with ``padding`` zeros per side, then crop ``size`` at a random per-sample offset.

    Parameters
    ----------
    size : int or (int, int) or None, default None
        Output height and width; None crops back to the input size (the CIFAR recipe:
        ``RandomCrop(padding=4)``).
    padding : int, default 4
        Zeros added on each side before cropping.

    Raises
    ------
    ValueError
        If ``size`` is not positive, ``padding`` is negative, or (when called) ``size`` exceeds the
        padded image.

    Examples
    --------
    >>> import numpy as np
    >>> import xpcnn
    >>> from xpcnn.transforms import RandomCrop
    >>> x = xpcnn.asarray(np.ones((2, 3, 32, 32)))
    >>> RandomCrop(24, padding=0)(x).shape
    (2, 3, 24, 24)
    """

    def __init__(self, size: int | tuple[int, int] | None = None, padding: int = 4) -> None:
        if size is not None:
            size = (size, size) if isinstance(size, int) else tuple(size)
            if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
                raise ValueError(f"RandomCrop size must be a positive int or (height, width), got {size!r}")
        if not isinstance(padding, int) or padding < 0:
            raise ValueError(f"RandomCrop padding must be a non-negative int, got {padding!r}")
        self.size, self.padding = size, padding

    def __call__(self, x: Any) -> Any:
        n, _, h, w = _check_nchw(x, "RandomCrop")
        xp = array_api_compat.array_namespace(x)
        dev = array_api_compat.device(x)
        ho, wo = self.size if self.size is not None else (h, w)
        span_h, span_w = h + 2 * self.padding - ho, w + 2 * self.padding - wo
        if span_h < 0 or span_w < 0:
            raise ValueError(
                f"RandomCrop size {(ho, wo)} exceeds the padded image {(h + 2 * self.padding, w + 2 * self.padding)}"
            )
        idt, fdt = _index_dtype(xp, dev), _float_dtype(xp, x)
        # integer offsets in [0, span]: floor(u * (span + 1)), clipped against float rounding at the top
        oy = xp.clip(xp.astype(xp.floor(_uniform(n, 0.0, span_h + 1.0, fdt)), idt), 0, span_h)
        ox = xp.clip(xp.astype(xp.floor(_uniform(n, 0.0, span_w + 1.0, fdt)), idt), 0, span_w)
        rows = xp.reshape(oy - self.padding, (n, 1, 1)) + xp.reshape(xp.arange(ho, dtype=idt, device=dev), (1, ho, 1))
        cols = xp.reshape(ox - self.padding, (n, 1, 1)) + xp.reshape(xp.arange(wo, dtype=idt, device=dev), (1, 1, wo))
        return _gather(x, rows, cols)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomTranslation:
    """Shift each image by a random whole number of pixels; vacated pixels are zero.

    Parameters
    ----------
    height_factor, width_factor : float or (float, float)
        Fractions of the height and width, Keras's convention: ``f`` draws a shift in ``[-f, f] * size``,
        a pair ``(lo, hi)`` in ``[lo, hi] * size``. Positive shifts move the image down and right.

    Raises
    ------
    ValueError
        If a pair has ``lo > hi``.
    TypeError
        If a factor is neither a number nor a pair of numbers.

    Examples
    --------
    A shift of exactly a quarter of the width to the right:

    >>> import numpy as np
    >>> import xpcnn
    >>> from xpcnn.transforms import RandomTranslation
    >>> x = xpcnn.asarray(np.arange(1.0, 5.0).reshape(1, 1, 1, 4))
    >>> xpcnn.to_numpy(RandomTranslation(0.0, (0.25, 0.25))(x)).ravel()
    array([0., 1., 2., 3.], dtype=float32)
    """

    def __init__(self, height_factor: float | Sequence[float], width_factor: float | Sequence[float]) -> None:
        self.height_range = _range(height_factor, "height_factor")
        self.width_range = _range(width_factor, "width_factor")

    def __call__(self, x: Any) -> Any:
        n, _, h, w = _check_nchw(x, "RandomTranslation")
        xp = array_api_compat.array_namespace(x)
        dev = array_api_compat.device(x)
        idt, fdt = _index_dtype(xp, dev), _float_dtype(xp, x)
        (hlo, hhi), (wlo, whi) = self.height_range, self.width_range
        dy = xp.astype(xp.round(_uniform(n, hlo * h, hhi * h, fdt)), idt)
        dx = xp.astype(xp.round(_uniform(n, wlo * w, whi * w, fdt)), idt)
        rows = xp.reshape(xp.arange(h, dtype=idt, device=dev), (1, h, 1)) - xp.reshape(dy, (n, 1, 1))
        cols = xp.reshape(xp.arange(w, dtype=idt, device=dev), (1, 1, w)) - xp.reshape(dx, (n, 1, 1))
        return _gather(x, rows, cols)

    def __repr__(self) -> str:
        return f"RandomTranslation(height_factor={self.height_range}, width_factor={self.width_range})"


class RandomRotation:
    """Rotate each image about its centre by a random angle; pixels whose source falls outside are zero.

    Positive angles turn counter-clockwise, as in torchvision. Each sample draws its own angle on the
    device.

    Parameters
    ----------
    degrees : float or (float, float)
        The angle is drawn uniformly from ``[-degrees, degrees]``, or from ``[lo, hi]`` for a pair.
    interpolation : {"bilinear", "nearest"}, default "bilinear"
        How a pixel is read between source pixels; bilinear needs floating images.

    Raises
    ------
    ValueError
        If ``interpolation`` is neither, or a pair of ``degrees`` has ``lo > hi``.
    TypeError
        If ``degrees`` is neither a number nor a pair; when called, for integer images with
        ``interpolation="bilinear"``.

    Examples
    --------
    A quarter turn counter-clockwise moves the top-right pixel to the top-left corner:

    >>> import numpy as np
    >>> import xpcnn
    >>> from xpcnn.transforms import RandomRotation
    >>> x = xpcnn.asarray([[[[0.0, 1.0], [0.0, 0.0]]]])
    >>> xpcnn.to_numpy(RandomRotation((90, 90), interpolation="nearest")(x))[0, 0]
    array([[1., 0.],
           [0., 0.]], dtype=float32)
    """

    def __init__(self, degrees: float | Sequence[float], interpolation: str = "bilinear") -> None:
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.degrees = _range(degrees, "degrees")
        self.interpolation = interpolation

    def __call__(self, x: Any) -> Any:
        n, _, h, w = _check_nchw(x, "RandomRotation")
        xp = array_api_compat.array_namespace(x)
        dev = array_api_compat.device(x)
        if self.interpolation == "bilinear" and not xp.isdtype(x.dtype, "real floating"):
            raise TypeError(f"bilinear rotation needs floating images, got {x.dtype}; use interpolation='nearest'")
        idt, fdt = _index_dtype(xp, dev), _float_dtype(xp, x)
        lo, hi = self.degrees
        theta = xp.reshape(_uniform(n, lo * math.pi / 180.0, hi * math.pi / 180.0, fdt), (n, 1, 1))
        cos, sin = xp.cos(theta), xp.sin(theta)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        yy = xp.reshape(xp.arange(h, dtype=fdt, device=dev), (1, h, 1)) - cy
        xx = xp.reshape(xp.arange(w, dtype=fdt, device=dev), (1, 1, w)) - cx
        # inverse map (image rows point down): the output pixel reads the source rotated by -theta
        src_r = cy + sin * xx + cos * yy
        src_c = cx + cos * xx - sin * yy
        if self.interpolation == "nearest":
            return _gather(x, xp.astype(xp.round(src_r), idt), xp.astype(xp.round(src_c), idt))
        r0f, c0f = xp.floor(src_r), xp.floor(src_c)
        wr, wc = src_r - r0f, src_c - c0f
        r0, c0 = xp.astype(r0f, idt), xp.astype(c0f, idt)
        wr, wc = xp.astype(wr, x.dtype)[:, None, :, :], xp.astype(wc, x.dtype)[:, None, :, :]
        top = _gather(x, r0, c0) * (1.0 - wc) + _gather(x, r0, c0 + 1) * wc
        bottom = _gather(x, r0 + 1, c0) * (1.0 - wc) + _gather(x, r0 + 1, c0 + 1) * wc
        return top * (1.0 - wr) + bottom * wr

    def __repr__(self) -> str:
        return f"RandomRotation(degrees={self.degrees}, interpolation={self.interpolation!r})"
