"""The worker side of ``bench_train.py``: one framework, one model, one batch size, in its own process.

A worker builds the model, generates the seeded synthetic data, warms up, times inference then training,
and prints one JSON line (``RESULT_MARKER``) for the parent. Workers: ``xpcnn`` (on ``--backend``),
``torch`` (plain PyTorch eager, the reference for numpy, torch and cupy) and ``jax`` (the same network in
plain JAX under ``jax.jit``, the reference for xpcnn on JAX).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import bench_env
import bench_models

RESULT_MARKER = "@@XPCNN_BENCH_RESULT@@ "
SEED = 0



def synthetic_data(model: str, n: int) -> tuple[Any, Any]:
    """Seeded float32 images of the model's input shape and int64 labels; identical in every worker."""
    import numpy as np

    spec = bench_models.MODELS[model]
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((n, *spec["input_shape"]), dtype=np.float32)
    y = rng.integers(0, spec["classes"], size=n, dtype=np.int64)
    return x, y


def _timed(fn, sync) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _batch_order(n: int, batch: int, shuffle: bool, epoch_seed: int) -> list[Any]:
    """Index batches as fit visits them: slices in order, or a seeded permutation when fit shuffles."""
    import numpy as np

    if not shuffle:
        return [slice(i, i + batch) for i in range(0, n, batch)]
    perm = np.random.default_rng(epoch_seed).permutation(n)
    return [perm[i : i + batch] for i in range(0, n, batch)]


def _fit_kwargs(model: Any) -> dict[str, Any]:
    import inspect

    params = inspect.signature(model.fit).parameters
    return {"verbose": 0} if "verbose" in params else {}


def _fit_shuffles(model: Any) -> bool:
    """Whether ``fit`` shuffles by default (then the torch loop gathers shuffled batches too, same work)."""
    import inspect

    param = inspect.signature(model.fit).parameters.get("shuffle")
    return bool(param is not None and param.default)


def _stop_after(batches: int) -> Any:
    """An xpcnn callback that ends ``fit`` after ``batches`` training batches (the warm-up)."""
    from xpcnn.callbacks import Callback

    class StopAfter(Callback):
        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            if batch + 1 >= batches:
                self.model.stop_training = True

    return StopAfter()


def xpcnn_sync_for(backend: Any):
    """A function that waits for the backend's queued device work (no-op on the CPU)."""
    name = backend.name
    if name == "cupy":
        import cupy

        return lambda: cupy.cuda.runtime.deviceSynchronize()
    if name == "torch" and getattr(backend.device, "type", "cpu") == "cuda":
        import torch

        return torch.cuda.synchronize
    if name == "jax":
        import jax

        return lambda: jax.effects_barrier()
    return lambda: None


def make_xpcnn_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    import xpcnn
    from xpcnn.losses import CrossEntropy
    from xpcnn.optimizers import Adam

    backend = xpcnn.set_backend(args.backend, device=args.device, dtype="float32")
    if backend.name == "torch":
        import torch

        torch.set_num_threads(args.threads or bench_env.usable_cores())
    xpcnn.manual_seed(SEED)
    xpcnn.mixed_precision.set_global_policy(args.dtype_policy)  # before the layers are made: they take it
    model = bench_models.build_xpcnn(args.model)
    optimizer = Adam()
    model.compile(loss=CrossEntropy(), optimizer=optimizer, metrics=[])
    return backend, model, getattr(model, "optimizer", optimizer)


def run_xpcnn(args: argparse.Namespace) -> dict[str, Any]:
    import xpcnn

    backend, model, optimizer = make_xpcnn_model(args)
    base_sync = xpcnn_sync_for(backend)
    b, steps, warmup = args.batch, args.steps, args.warmup

    def sync() -> None:
        base_sync()
        if backend.name == "jax":  # asynchronous dispatch: wait for the parameters the last step wrote
            import jax

            jax.block_until_ready(model.params)

    x_host, y_host = synthetic_data(args.model, steps * b)
    xt, yt = xpcnn.asarray(x_host), xpcnn.asarray(y_host)  # on the device before any timing
    fit_kwargs = _fit_kwargs(model)
    out: dict[str, Any] = {"framework": "xpcnn", "backend": backend.name, "device": str(backend.device),
                           "fit_shuffles": _fit_shuffles(model), "dtype_policy": model.dtype_policy.name,
                           "optimizer": type(optimizer).__name__}
    out["rss_baseline_mb"] = bench_env.peak_rss_mb()

    def predict(xs: Any) -> None:
        xpcnn.to_numpy(model.predict(xs, batch_size=b))

    if not args.skip_infer:
        if warmup:
            predict(xt[: warmup * b])
        out["infer_s"] = _timed(lambda: predict(xt), sync)
        out["infer_images_per_s"] = steps * b / out["infer_s"]
        out["rss_peak_infer_mb"] = bench_env.peak_rss_mb()

    if warmup:  # the first batches of an epoch over the very data timed next (same shapes: JAX compiles once)
        model.fit(xt, yt, batch_size=b, epochs=1, callbacks=[_stop_after(warmup)], **fit_kwargs)
        sync()
    if args.profile:
        out["profile"] = profile_xpcnn(model, optimizer, backend, xt, yt, b, steps, fit_kwargs, sync)
    else:
        out["train_s"] = _timed(lambda: model.fit(xt, yt, batch_size=b, epochs=1, **fit_kwargs), sync)
        out["train_images_per_s"] = steps * b / out["train_s"]
    out["rss_peak_train_mb"] = bench_env.peak_rss_mb()
    out.update(_gpu_memory_xpcnn(backend))
    out["blas"] = bench_env.blas_info()
    if backend.name == "torch":
        import torch

        out["torch_threads"] = torch.get_num_threads()
    return out


def profile_xpcnn(model, optimizer, backend, x, y, b, steps, fit_kwargs, sync) -> dict[str, Any]:
    """The same steps untouched, with every op wrapped (see bench_profile), and untouched again: the two plain
    runs bracket the profiled one, so their mean against it estimates the instrumentation overhead."""
    import bench_profile

    def fit() -> None:
        model.fit(x, y, batch_size=b, epochs=1, **fit_kwargs)

    plain_s = [_timed(fit, sync)]
    gpu = backend.name == "cupy" or "cuda" in str(backend.device) or "gpu" in str(backend.device).lower()
    block = None
    if backend.name == "jax":
        import jax

        block = jax.block_until_ready
    prof = bench_profile.OpProfiler(sync=sync if gpu and block is None else None, block=block)
    try:
        wrapped = prof.install(backend.xp, optimizer)
        prof.enabled = True
        profiled_s = _timed(fit, sync)
        prof.enabled = False
    finally:
        prof.restore()
    plain_s.append(_timed(fit, sync))
    table = prof.table(steps, profiled_s / steps)
    return {
        "steps": steps,
        "step_ms_plain": statistics.mean(plain_s) / steps * 1e3,
        "step_ms_plain_runs": [t / steps * 1e3 for t in plain_s],
        "step_ms_profiled": profiled_s / steps * 1e3,
        "wrapped": wrapped,
        "device_sync_in_wrappers": gpu or block is not None,
        **table,
    }


def _gpu_memory_xpcnn(backend: Any) -> dict[str, Any]:
    if backend.name == "cupy":
        import cupy

        return {"gpu_pool_bytes_mb": round(cupy.get_default_memory_pool().total_bytes() / 2**20, 1)}
    if backend.name == "torch" and getattr(backend.device, "type", "cpu") == "cuda":
        import torch

        return {"gpu_peak_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1)}
    if backend.name == "jax":
        return _jax_gpu_memory(backend.xp.zeros((), device=backend.device))
    return {}


def run_torch(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads or bench_env.usable_cores())
    torch.manual_seed(SEED)
    device = torch.device(args.torch_device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    b, steps, warmup = args.batch, args.steps, args.warmup
    model = bench_models.build_torch(args.model).to(device=device, dtype=torch.float32)
    optimizer = torch.optim.Adam(model.parameters())
    criterion = torch.nn.CrossEntropyLoss()
    half = {"mixed_bfloat16": torch.bfloat16, "mixed_float16": torch.float16}.get(args.dtype_policy)
    scaler = torch.amp.GradScaler(device.type, enabled=half is torch.float16)

    def autocast() -> Any:  # the mixed policy's counterpart: torch's own automatic mixed precision
        return torch.autocast(device.type, dtype=half, enabled=half is not None)

    x_host, y_host = synthetic_data(args.model, steps * b)
    xt, yt = torch.from_numpy(x_host).to(device), torch.from_numpy(y_host).to(device)
    out: dict[str, Any] = {"framework": "torch", "device": str(device), "torch_threads": torch.get_num_threads(),
                           "shuffle": args.shuffle, "autocast": None if half is None else str(half),
                           "grad_scaler": scaler.is_enabled()}
    out["rss_baseline_mb"] = bench_env.peak_rss_mb()

    def predict(xs: Any) -> None:
        model.eval()
        with torch.no_grad(), autocast():
            outs = [model(xs[i : i + b]) for i in range(0, xs.shape[0], b)]
            torch.cat(outs).cpu()

    def train(xs: Any, ys: Any, epoch_seed: int, max_batches: int | None = None) -> None:
        model.train()
        for idx in _batch_order(xs.shape[0], b, args.shuffle, epoch_seed)[:max_batches]:
            if not isinstance(idx, slice):
                idx = torch.from_numpy(idx).to(device)
            xb, yb = xs[idx], ys[idx]
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                logits = model(xb)
            loss = criterion(logits.float(), yb)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    if not args.skip_infer:
        if warmup:
            predict(xt[: warmup * b])
        out["infer_s"] = _timed(lambda: predict(xt), sync)
        out["infer_images_per_s"] = steps * b / out["infer_s"]
        out["rss_peak_infer_mb"] = bench_env.peak_rss_mb()

    if warmup:
        train(xt, yt, 1, max_batches=warmup)
        sync()
    out["train_s"] = _timed(lambda: train(xt, yt, 2), sync)
    out["train_images_per_s"] = steps * b / out["train_s"]
    out["rss_peak_train_mb"] = bench_env.peak_rss_mb()
    if device.type == "cuda":
        out["gpu_peak_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
        out["device_name"] = torch.cuda.get_device_name(device)
    out["mkldnn"] = bool(torch.backends.mkldnn.is_available())
    return out


def run_jax(args: argparse.Namespace) -> dict[str, Any]:
    if args.dtype_policy != "float32":
        raise ValueError("the plain-JAX reference computes in float32 only")
    """The plain-JAX reference: the whole step (forward, cross-entropy, ``jax.grad``, Adam) under ``jax.jit``,
    the batches gathered on the device in the same shuffled order ``fit`` uses."""
    import jax
    import jax.numpy as jnp

    b, steps, warmup = args.batch, args.steps, args.warmup
    params, stats, apply = bench_models.build_jax(args.model, SEED)
    lr, beta1, beta2, eps = 1e-3, 0.9, 0.999, 1e-8  # optax.adam's defaults and update, written out

    def loss_fn(p, s, x, y):
        logits, s = apply(p, s, x, True)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1)), s

    @jax.jit
    def train_step(p, s, opt, x, y):
        (loss, s), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, s, x, y)
        mu, nu, count = opt
        count = count + 1
        mu = jax.tree.map(lambda m, g: beta1 * m + (1 - beta1) * g, mu, grads)
        nu = jax.tree.map(lambda v, g: beta2 * v + (1 - beta2) * g * g, nu, grads)
        c1, c2 = 1 - beta1**count, 1 - beta2**count
        p = jax.tree.map(lambda w, m, v: w - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, mu, nu)
        return p, s, (mu, nu, count), loss

    predict_step = jax.jit(lambda p, s, x: apply(p, s, x, False)[0])
    zeros = jax.tree.map(jnp.zeros_like, params)
    opt = (zeros, zeros, jnp.zeros((), jnp.int32))
    x_host, y_host = synthetic_data(args.model, steps * b)
    xt, yt = jnp.asarray(x_host.transpose(0, 2, 3, 1)), jnp.asarray(y_host)  # JAX's own layout, NHWC
    out: dict[str, Any] = {"framework": "jax", "device": str(xt.devices().pop()), "shuffle": args.shuffle}
    out["rss_baseline_mb"] = bench_env.peak_rss_mb()

    def predict(xs: Any) -> None:
        outs = [predict_step(params, stats, xs[i : i + b]) for i in range(0, xs.shape[0], b)]
        jax.device_get(jnp.concatenate(outs))

    def train(epoch_seed: int, max_batches: int | None = None) -> None:
        nonlocal params, stats, opt
        for idx in _batch_order(xt.shape[0], b, args.shuffle, epoch_seed)[:max_batches]:
            if not isinstance(idx, slice):
                idx = jnp.asarray(idx)
            params, stats, opt, _ = train_step(params, stats, opt, xt[idx], yt[idx])

    def sync() -> None:
        jax.block_until_ready((params, stats, opt))

    if not args.skip_infer:
        if warmup:
            predict(xt[: warmup * b])
        out["infer_s"] = _timed(lambda: predict(xt), sync)
        out["infer_images_per_s"] = steps * b / out["infer_s"]
        out["rss_peak_infer_mb"] = bench_env.peak_rss_mb()
    if warmup:
        train(1, max_batches=warmup)
        sync()
    out["train_s"] = _timed(lambda: train(2), sync)
    out["train_images_per_s"] = steps * b / out["train_s"]
    out["rss_peak_train_mb"] = bench_env.peak_rss_mb()
    out.update(_jax_gpu_memory(xt))
    return out


def _jax_gpu_memory(like: Any) -> dict[str, Any]:
    """Peak device memory of JAX's allocator on a GPU (nothing on the CPU)."""
    device = like.devices().pop()
    stats = device.memory_stats() if device.platform == "gpu" else None
    if not stats:
        return {}
    return {"gpu_peak_bytes_mb": round(stats.get("peak_bytes_in_use", 0) / 2**20, 1), "device_name": device.device_kind}


WORKERS = {"xpcnn": run_xpcnn, "torch": run_torch, "jax": run_jax}


def worker_main(args: argparse.Namespace) -> int:
    result = WORKERS[args.worker](args)
    result.update(model=args.model, batch_size=args.batch, steps=args.steps, warmup=args.warmup)
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0
