"""Training and inference throughput of xpcnn against PyTorch on the same models, data, batch and dtype.

    python benchmarks/bench_train.py                      # numpy backend vs torch CPU, 5 rounds
    python benchmarks/bench_train.py --models mnist --batch-sizes 64 --rounds 3 --steps 10
    python benchmarks/bench_train.py --configs mnist:256 cifar:128   # chosen model and batch pairs
    python benchmarks/bench_train.py --backend cupy       # vs torch on CUDA
    python benchmarks/bench_train.py --profile            # where an xpcnn training step spends its time
    python benchmarks/bench_train.py --quick              # tiny smoke run (tests use it; numbers meaningless)
    python benchmarks/bench_train.py --threads 1          # both frameworks single-threaded

Method. Each measurement runs in a fresh worker process (this script with ``--worker``), one framework per
process so that their thread pools never compete; the workers alternate xpcnn, torch, xpcnn, torch, ...
over ``--rounds`` rounds. A worker builds the model, generates the same synthetic data (seeded normal
images, uniform labels, float32; ``--steps`` batches), runs ``--warmup`` steps on the first batches (an
early-stopped ``fit`` for xpcnn, so that JAX compiles for the timed shapes) and then times ``--steps`` steps

* training: xpcnn through ``model.fit`` (forward, loss, backward, Adam step, and fit's own batching);
  torch through the standard loop ``zero_grad; loss = CrossEntropyLoss(model(x), y); backward; step``
  over the same data and batch size, with the same batching work (a shuffled gather per batch when
  ``fit`` shuffles by default, contiguous slices when it does not);
* inference: xpcnn ``model.predict``; torch ``model.eval()`` under ``torch.no_grad()``, outputs concatenated.

It reports images/s and the worker's peak resident set (``ru_maxrss``; inference is measured first, so the
inference peak excludes training). The summary per model and batch is the median over rounds of each
framework's images/s and the median of the per-round ratios xpcnn/torch (> 1: xpcnn is faster). Both use
every usable core: ``torch.set_num_threads(cores)``, NumPy's BLAS its default (all cores); ``--threads N``
pins both to N (torch threads and OMP/OPENBLAS/MKL_NUM_THREADS). Results go to
``benchmarks/results/<date>-<machine>-<backend>[-profile|-quick].json`` unless ``--json`` names a file; the
file is rewritten after every configuration, so a run stopped by a time limit keeps what it measured.

``--profile`` instead times xpcnn training steps with every op wrapped (see ``bench_profile.py``) and prints
ms/step and % of the step by category (matmul, im2col, col2im, padding, pooling, ..., other).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT)):  # the helpers beside this file, and the checkout's xpcnn
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bench_env  # noqa: E402
import bench_models  # noqa: E402

RESULT_MARKER = "@@XPCNN_BENCH_RESULT@@ "
SCHEMA = "xpcnn-bench-train/1"
QUICK = {"rounds": 2, "steps": 2, "warmup": 1, "models": ["mnist"], "batch_sizes": [16]}
DEFAULTS = {"rounds": 5, "steps": 20, "warmup": 3}
SEED = 0


# ====================================================================================================
# worker side: one framework, one model, one batch size
# ====================================================================================================

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
                           "fit_shuffles": _fit_shuffles(model)}
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

    x_host, y_host = synthetic_data(args.model, steps * b)
    xt, yt = torch.from_numpy(x_host).to(device), torch.from_numpy(y_host).to(device)
    out: dict[str, Any] = {"framework": "torch", "device": str(device), "torch_threads": torch.get_num_threads(),
                           "shuffle": args.shuffle}
    out["rss_baseline_mb"] = bench_env.peak_rss_mb()

    def predict(xs: Any) -> None:
        model.eval()
        with torch.no_grad():
            outs = [model(xs[i : i + b]) for i in range(0, xs.shape[0], b)]
            torch.cat(outs).cpu()

    def train(xs: Any, ys: Any, epoch_seed: int, max_batches: int | None = None) -> None:
        model.train()
        for idx in _batch_order(xs.shape[0], b, args.shuffle, epoch_seed)[:max_batches]:
            if not isinstance(idx, slice):
                idx = torch.from_numpy(idx).to(device)
            xb, yb = xs[idx], ys[idx]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()

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


def worker_main(args: argparse.Namespace) -> int:
    result = run_xpcnn(args) if args.worker == "xpcnn" else run_torch(args)
    result.update(model=args.model, batch_size=args.batch, steps=args.steps, warmup=args.warmup)
    print(RESULT_MARKER + json.dumps(result), flush=True)
    return 0


# ====================================================================================================
# parent side: schedule workers, summarise, report
# ====================================================================================================

class WorkerError(RuntimeError):
    pass


def spawn(args: argparse.Namespace, framework: str, model: str, batch: int, *, profile: bool = False,
          shuffle: bool = False) -> dict[str, Any]:
    cmd = [
        sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", framework,
        "--model", model, "--batch", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--backend", args.backend, "--torch-device", args.torch_device,
    ]
    if args.device is not None:
        cmd += ["--device", args.device]
    if profile:
        cmd.append("--profile")
    if shuffle:
        cmd.append("--shuffle")
    if args.skip_infer or profile:
        cmd.append("--skip-infer")
    env = dict(os.environ)
    if args.threads:
        cmd += ["--threads", str(args.threads)]
        env.update({var: str(args.threads) for var in bench_env.THREAD_ENV_VARS})
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.worker_timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired as exc:
        raise WorkerError(f"{framework} worker ({model}, batch {batch}) exceeded {args.worker_timeout}s") from exc
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    raise WorkerError(
        f"{framework} worker ({model}, batch {batch}) failed with exit code {proc.returncode}:\n"
        f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in ("train", "infer"):
        key = f"{mode}_images_per_s"
        pairs = [(r["xpcnn"].get(key), r["torch"].get(key)) for r in rounds]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        ratios = [a / b for a, b in pairs]
        summary[mode] = {
            "xpcnn_images_per_s": _median([a for a, _ in pairs]),
            "torch_images_per_s": _median([b for _, b in pairs]),
            "ratio": _median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "ratios": ratios,
        }
    summary["peak_rss_mb"] = {
        f"{fw}_{what}": _round(_median([r[fw].get(f"rss_{what}_mb") for r in rounds]))
        for fw in ("xpcnn", "torch") for what in ("baseline", "peak_infer", "peak_train")
    }
    for fw in ("xpcnn", "torch"):
        for key in ("gpu_pool_bytes_mb", "gpu_peak_reserved_mb"):
            value = _round(_median([r[fw].get(key) for r in rounds]))
            if value is not None:
                summary["peak_rss_mb"][f"{fw}_{key}"] = value
    return summary


def configs(args: argparse.Namespace) -> list[tuple[str, int]]:
    if args.configs:
        return args.configs
    out = []
    for model in args.models:
        sizes = args.batch_sizes or bench_models.MODELS[model]["batch_sizes"]
        out += [(model, int(b)) for b in sizes]
    return out


def machine_tag(args: argparse.Namespace, info: dict[str, Any], device_name: str | None) -> str:
    if device_name:
        slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
        return f"gpu-{slug}"
    return f"cpu-{info['usable_cores']}core"


def print_header(report: dict[str, Any]) -> None:
    m, v, s = report["machine"], report["versions"], report["settings"]
    print("xpcnn training benchmark")
    print(f"  machine : {m['cpu_model']}, {m['usable_cores']} usable cores of {m['cpu_count']}, "
          f"{m.get('memory_gb', '?')} GB, {m['platform']}; load average {m.get('loadavg')}")
    print(f"  versions: python {v['python']}, numpy {v.get('numpy')}, torch {v.get('torch')}, "
          f"xpcnn {v.get('xpcnn')} ({v.get('xpcnn_git')}), array-api-compat {v.get('array-api-compat')}")
    print(f"  BLAS    : {bench_env.blas_summary(report['blas'])}; thread env {report['thread_env'] or 'unset'}; "
          f"allocator env {report.get('allocator_env') or 'unset'}")
    print(f"  run     : xpcnn backend {s['backend']} (device {s['device']}) vs torch on {s['torch_device']}, "
          f"float32, {s['rounds']} rounds x {s['steps']} timed steps (+{s['warmup']} warm-up), "
          f"threads {s['threads'] or 'default'}"
          + (" [QUICK: smoke test, numbers meaningless]" if s["quick"] else ""))
    print(flush=True)


def print_summary(entry: dict[str, Any]) -> None:
    sm = entry["summary"]
    print(f"== {entry['model']} batch {entry['batch_size']}: {bench_models.describe(entry['model'])}")
    print(f"   {'':<6} {'xpcnn img/s':>12} {'torch img/s':>12} {'ratio xpcnn/torch':>18} {'(min..max)':>14}")
    for mode in ("train", "infer"):
        if mode in sm:
            r = sm[mode]
            print(f"   {mode:<6} {r['xpcnn_images_per_s']:>12.1f} {r['torch_images_per_s']:>12.1f} "
                  f"{r['ratio']:>17.3f}x {r['ratio_min']:>6.3f}..{r['ratio_max']:<6.3f}")
    mem = sm["peak_rss_mb"]
    line = (f"   peak RSS MB (baseline / infer / train): xpcnn {mem['xpcnn_baseline']} / "
            f"{mem['xpcnn_peak_infer']} / {mem['xpcnn_peak_train']}, torch {mem['torch_baseline']} / "
            f"{mem['torch_peak_infer']} / {mem['torch_peak_train']}")
    gpu = {k: v for k, v in mem.items() if "gpu" in k}
    print(line + (f"; GPU {gpu}" if gpu else ""))
    print(flush=True)


def run_compare(args: argparse.Namespace, report: dict[str, Any], save: Any) -> None:
    probe_shuffle = None
    for model, batch in configs(args):
        rounds = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            xr = spawn(args, "xpcnn", model, batch)
            if probe_shuffle is None:
                probe_shuffle = bool(xr.get("fit_shuffles"))
            tr = spawn(args, "torch", model, batch, shuffle=probe_shuffle)
            ratio = {m: xr[f"{m}_images_per_s"] / tr[f"{m}_images_per_s"]
                     for m in ("train", "infer") if f"{m}_images_per_s" in xr and f"{m}_images_per_s" in tr}
            rounds.append({"round": r, "xpcnn": xr, "torch": tr, "ratio": ratio})
            if args.verbose:
                print(f"   round {r}: train {xr['train_images_per_s']:.1f} vs {tr['train_images_per_s']:.1f} img/s "
                      f"(ratio {ratio.get('train', float('nan')):.3f}), {time.perf_counter() - t0:.1f}s",
                      flush=True)
        entry = {"model": model, "batch_size": batch, "layers": bench_models.describe(model),
                 "rounds": rounds, "summary": summarise(rounds)}
        report["results"].append(entry)
        save()  # after every configuration: a run stopped by a time limit keeps what it measured
        print_summary(entry)
    train = [e["summary"]["train"]["ratio"] for e in report["results"] if "train" in e["summary"]]
    if train:
        print("training throughput ratio xpcnn/torch (median per config): "
              + ", ".join(f"{e['model']}@{e['batch_size']} {e['summary']['train']['ratio']:.3f}x"
                          for e in report["results"]))


def run_profile(args: argparse.Namespace, report: dict[str, Any], save: Any) -> None:
    import bench_profile

    for model, batch in configs(args):
        res = spawn(args, "xpcnn", model, batch, profile=True)
        prof = res["profile"]
        report["profile"].append({"model": model, "batch_size": batch, **prof,
                                  "rss_peak_train_mb": res.get("rss_peak_train_mb")})
        save()
        print(f"== profile: {model} batch {batch}, xpcnn backend {res['backend']}, mean over {prof['steps']} steps")
        before, after = prof["step_ms_plain_runs"]
        print(f"   step {prof['step_ms_profiled']:.2f} ms profiled; unprofiled {before:.2f} ms before, {after:.2f} ms "
              f"after (instrumentation overhead about {prof['step_ms_profiled'] - prof['step_ms_plain']:+.2f} ms)")
        print(bench_profile.format_table(prof["categories"], prof["step_ms_profiled"]))
        print(bench_profile.format_functions(prof["functions"]))
        print(flush=True)


def _config(text: str) -> tuple[str, int]:
    model, _, batch = text.partition(":")
    if model not in bench_models.MODELS or not batch.isdigit() or int(batch) < 1:
        raise argparse.ArgumentTypeError(f"expected MODEL:BATCH with MODEL in {sorted(bench_models.MODELS)} "
                                         f"and BATCH >= 1, got {text!r}")
    return model, int(batch)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", default="numpy", help="xpcnn backend (default numpy; cupy pairs with torch on cuda)")
    p.add_argument("--device", default=None, help="xpcnn device (backend default if omitted)")
    p.add_argument("--torch-device", default=None,
                   help="device of the PyTorch reference (default: cuda when the xpcnn run is on a GPU, else cpu)")
    p.add_argument("--models", nargs="+", choices=sorted(bench_models.MODELS), default=None,
                   help="models to run (default: all; --quick: mnist)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                   help="batch sizes for every model (default: per model, mnist 64 256, cifar 128)")
    p.add_argument("--configs", nargs="+", type=_config, default=None, metavar="MODEL:BATCH",
                   help="model and batch pairs, e.g. mnist:256 cifar:128 (instead of --models x --batch-sizes)")
    p.add_argument("--rounds", type=int, default=None, help=f"A/B rounds (default {DEFAULTS['rounds']})")
    p.add_argument("--steps", type=int, default=None, help=f"timed steps per worker (default {DEFAULTS['steps']})")
    p.add_argument("--warmup", type=int, default=None, help=f"warm-up steps per worker (default {DEFAULTS['warmup']})")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 2 rounds x 2 steps, mnist, batch 16")
    p.add_argument("--profile", action="store_true", help="per-op profile of xpcnn training steps instead")
    p.add_argument("--skip-infer", action="store_true", help="training throughput only")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both sides: torch.set_num_threads and OMP/OPENBLAS/MKL_NUM_THREADS in the\n"
                        "workers (default: torch uses every usable core, the BLAS its own default)")
    p.add_argument("--json", default=None, help="write results here (default: benchmarks/results/<date>-...json)")
    p.add_argument("--worker-timeout", type=float, default=1800.0, help="seconds before a worker is killed")
    p.add_argument("-v", "--verbose", action="store_true", help="print every round")
    # worker-only
    p.add_argument("--worker", choices=["xpcnn", "torch"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--shuffle", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    base = {**DEFAULTS, **(QUICK if args.quick else {})}
    for key in ("rounds", "steps", "warmup"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])
    if args.models is None:
        args.models = QUICK["models"] if args.quick else list(bench_models.MODELS)
    if args.batch_sizes is None and args.quick:
        args.batch_sizes = QUICK["batch_sizes"]
    if args.torch_device is None:
        on_gpu = args.backend == "cupy" or any(s in str(args.device or "").lower() for s in ("cuda", "gpu"))
        args.torch_device = "cuda" if on_gpu else "cpu"
    if min(args.rounds, args.steps) < 1 or args.warmup < 0:
        p.error("--rounds and --steps must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)

    started = datetime.datetime.now().astimezone()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "date": started.isoformat(timespec="seconds"),
        "command": [pathlib.Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
        "mode": "profile" if args.profile else "compare",
        "settings": {
            "backend": args.backend, "device": args.device, "torch_device": args.torch_device, "dtype": "float32",
            "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "models": args.models,
            "batch_sizes": args.batch_sizes, "configs": configs(args), "quick": args.quick, "seed": SEED, "threads": args.threads,
        },
        "machine": bench_env.machine_info(),
        "versions": bench_env.versions(),
        "blas": bench_env.blas_info(),
        "thread_env": bench_env.thread_env(),
        "allocator_env": bench_env.allocator_env(),
        "results": [],
        "profile": [],
    }
    print_header(report)

    def save() -> pathlib.Path:
        report["elapsed_s"] = round((datetime.datetime.now().astimezone() - started).total_seconds(), 1)
        try:
            report["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        except OSError:
            pass
        device_name = next((r["torch"].get("device_name") for e in report["results"] for r in e["rounds"]
                            if r["torch"].get("device_name")), None)
        if device_name:
            report["machine"]["gpu"] = device_name
        path = pathlib.Path(args.json) if args.json else HERE / "results" / (
            f"{started.date().isoformat()}-{machine_tag(args, report['machine'], device_name)}-{args.backend}"
            + ("-profile" if args.profile else "") + ("-quick" if args.quick else "") + ".json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        return path

    try:
        (run_profile if args.profile else run_compare)(args, report, save)
    except WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"results written to {save()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
