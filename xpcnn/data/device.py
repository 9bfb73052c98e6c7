"""Batches from the host to the device: where they are written, how they are copied, and uint8 scaling.

The one module of ``xpcnn.data`` that knows the backends, because the copy does (DESIGN: the loader's
device prefetch must know pinned memory and streams):

- NumPy, array-api-strict, and torch or JAX on the CPU: a plain copy into a new array (the host buffer is
  reused for the next batch at once, so the device array may never share its memory).
- torch on CUDA: host buffers in pinned memory, copied with ``non_blocking=True`` on a side stream that
  first waits for the compute stream (the caching allocator may hand out memory that queued kernels still
  read); the compute stream then waits for the copy, and ``record_stream`` keeps the batch's memory from
  being reused early. An event recorded after the copy tells when the buffer may be written again.
- CuPy: pinned host buffers (``cupyx.empty_pinned``), copied on a side stream that first waits for the
  compute stream (the pool hands out blocks freed on it); the compute stream waits on an event recorded after
  the copy, and the host buffer is written again only once that event has passed.
- JAX on an accelerator: ``jax.device_put``, which returns at once; the buffer waits for the copy to end.

``put`` returns the device array and a function that waits until the host buffer is free again; the loader
calls it before it refills the buffer, not before the step, so the copy overlaps the work in between.
uint8 images stay uint8 until they are on the device and become floats in [0, 1] there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import Backend, asarray, get_backend

__all__ = ["HostToDevice", "inputs_on_device", "scale_images"]

Array = Any
_ALREADY_FREE: Callable[[], None] = lambda: None  # noqa: E731
_UINT8_SCALE = 1.0 / 255.0


def scale_images(a: Array, backend: Backend) -> Array:
    """uint8 images as the backend's float dtype in [0, 1], on the device; other arrays unchanged. NumPy and
    CuPy do it in one pass (a ufunc with an output dtype: 5x faster than a cast and a multiply on the CPU,
    where the loop's thread shares the cores with the workers), the other namespaces in a cast and a multiply."""
    xp = backend.xp
    if a.dtype != xp.uint8:
        return a
    if backend.name == "numpy":
        return np.multiply(a, _UINT8_SCALE, dtype=backend.dtype)
    if backend.name == "cupy":
        import cupy

        return cupy.multiply(a, _UINT8_SCALE, dtype=backend.dtype)
    return xp.astype(a, backend.dtype) * _UINT8_SCALE


def inputs_on_device(a: Any) -> Array:
    """Model inputs of any origin (NumPy, another backend's arrays) on the current device, floats in the
    backend's dtype and uint8 images scaled to [0, 1]."""
    backend = get_backend()
    return scale_images(asarray(a), backend)


class HostToDevice:
    """Host buffers for one backend and the copy of their contents to its device."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.kind = _kind(backend)
        self._pinned: dict[int, Any] = {}  # address of a host buffer -> the torch tensor that owns its memory
        self._side_stream: Any = None  # CuPy and torch on CUDA: the stream the copies run on

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A host array that workers write into and ``put`` copies from (pinned memory on a GPU)."""
        if self.kind == "torch-cuda":
            import torch

            owner = torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype, pin_memory=True)
            host = owner.numpy()
            self._pinned[host.ctypes.data] = owner
            return host
        if self.kind == "cupy":
            import cupyx

            return cupyx.empty_pinned(shape, dtype)
        return np.empty(shape, dtype)

    def put(self, host: np.ndarray) -> tuple[Array, Callable[[], None]]:
        """``host`` (or a leading slice of a buffer from ``empty``) as a new device array, and a function that
        returns once ``host`` may be written again."""
        backend, xp = self.backend, self.backend.xp
        if self.kind == "torch-cuda":
            import torch

            owner = self._pinned.get(host.ctypes.data)  # a leading slice starts where its buffer does
            source = torch.from_numpy(host) if owner is None else owner[: host.shape[0]]
            compute = torch.cuda.current_stream(backend.device)
            if self._side_stream is None:
                self._side_stream = torch.cuda.Stream(backend.device)
            side = self._side_stream
            side.wait_stream(compute)  # memory the caching allocator hands out may still be read by queued kernels
            with torch.cuda.stream(side):
                device = source.to(backend.device, non_blocking=True)
                done = torch.cuda.Event()
                done.record(side)
            compute.wait_stream(side)  # the step's kernels start after the copy, on the GPU, without the host waiting
            device.record_stream(compute)  # its memory is not reused while the compute stream may read it
            return device, done.synchronize
        if self.kind == "cupy":
            import cupy

            if self._side_stream is None:
                self._side_stream = cupy.cuda.Stream(non_blocking=True)
            side = self._side_stream
            compute = cupy.cuda.get_current_stream()
            device = cupy.empty(host.shape, host.dtype)  # from the compute stream's pool: kernels queued there
            side.wait_event(compute.record())  # may still read this memory, so the copy waits for them
            device.set(host, stream=side)
            done = side.record()
            cupy.cuda.get_current_stream().wait_event(done)
            return device, done.synchronize
        if self.kind == "jax-accelerator":
            import jax

            device = jax.device_put(host, backend.device)
            return device, device.block_until_ready
        return xp.asarray(np.array(host, copy=True), device=backend.device), _ALREADY_FREE


def _kind(backend: Backend) -> str:
    """How this backend copies: ``"copy"`` (a host device), or the accelerator path of its library."""
    if backend.name == "cupy":
        return "cupy"
    if backend.name == "torch" and getattr(backend.device, "type", "cpu") == "cuda":
        return "torch-cuda"
    if backend.name == "jax" and getattr(backend.device, "platform", "cpu") != "cpu":
        return "jax-accelerator"
    return "copy"
