"""Training and inference throughput of xpcnn on each backend against that backend's own framework.

    python benchmarks/bench_train.py                               # numpy backend vs PyTorch CPU, 5 rounds
    python benchmarks/bench_train.py --backends numpy torch jax    # one table: every backend vs its reference
    python benchmarks/bench_train.py --models mnist --batch-sizes 64 --rounds 3 --steps 10
    python benchmarks/bench_train.py --configs mnist:256 cifar:128 # chosen model and batch pairs
    python benchmarks/bench_train.py --backend cupy                # vs PyTorch on CUDA
    python benchmarks/bench_train.py --profile                     # where an xpcnn training step spends its time
    python benchmarks/bench_train.py --quick                       # tiny smoke run (numbers meaningless)
    python benchmarks/bench_train.py --threads 1                   # both sides single-threaded
    python benchmarks/bench_train.py --backend torch --dtype-policies float32 mixed_bfloat16  # mixed precision

References. A backend switch is worth it when xpcnn runs at the speed of the framework it switched to, so each
backend is measured against that framework written as its users write it: numpy, array_api_strict and torch
against PyTorch eager (``nn.Sequential``, ``torch.optim.Adam``, ``CrossEntropyLoss``), cupy against PyTorch
eager on CUDA (cuDNN), and jax against the same network in plain JAX under ``jax.jit`` (``lax`` convolution
and ``reduce_window`` pooling, Adam written out as optax's ``adam``); see ``bench_workers.py``.

Method. Each measurement runs in a fresh worker process (this script with ``--worker``), one framework per
process so that their thread pools never compete; the workers alternate xpcnn, reference, xpcnn, reference,
... over ``--rounds`` rounds. A worker builds the model, generates the same synthetic data (seeded normal
images, uniform labels, float32; ``--steps`` batches), runs ``--warmup`` steps (so that JAX compiles for the
timed shapes) and then times ``--steps`` training steps (xpcnn through ``model.fit``; the references through
their standard loop over the same batches, with the same shuffled gather per batch that ``fit`` does) and
inference over the same data (``model.predict``; the references in eval mode, outputs concatenated).

It reports images/s and the worker's peak resident set (``ru_maxrss``; inference is measured first, so the
inference peak excludes training), and on GPUs each side's device memory. The summary per backend, model and
batch is the median over rounds of each side's images/s and the median of the per-round ratios
xpcnn/reference (> 1: xpcnn is faster); the closing table shows the training ratios. Both sides use every
usable core (``torch.set_num_threads(cores)``, the BLAS and XLA their defaults); ``--threads N`` pins both
to N. Results go to ``benchmarks/results/<date>-<machine>-<backends>[-profile|-quick].json`` unless
``--json`` names a file; the file is rewritten after every configuration, so a run stopped by a time limit
keeps what it measured.

``--dtype-policies`` measures each configuration under each ``xpcnn.mixed_precision`` policy: xpcnn with the
global policy set before the model is built, PyTorch under ``torch.autocast`` with the policy's half dtype
(and a ``GradScaler`` for float16, as xpcnn's ``compile`` adds a ``LossScaleOptimizer``); the plain-JAX
reference has no mixed-precision variant, so jax runs float32 only.

``--profile`` instead times xpcnn training steps with every op wrapped (see ``bench_profile.py``) and prints
ms/step and % of the step by category (matmul, im2col, col2im, padding, pooling, ..., other).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import re
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
from bench_workers import RESULT_MARKER, SEED  # noqa: E402

SCHEMA = "xpcnn-bench-train/2"
QUICK = {"rounds": 2, "steps": 2, "warmup": 1, "models": ["mnist"], "batch_sizes": [16]}
DEFAULTS = {"rounds": 5, "steps": 20, "warmup": 3}
#: the framework each xpcnn backend is measured against (the worker that runs it)
REFERENCE = {"numpy": "torch", "array_api_strict": "torch", "torch": "torch", "cupy": "torch", "jax": "jax"}
REFERENCE_NAME = {"torch": "PyTorch eager", "jax": "plain JAX under jax.jit"}


def torch_device_for(args: argparse.Namespace, backend: str) -> str:
    """Where the PyTorch reference runs: ``--torch-device``, else cuda when the xpcnn run is on a GPU."""
    if args.torch_device:
        return args.torch_device
    on_gpu = backend == "cupy" or any(s in str(args.device or "").lower() for s in ("cuda", "gpu"))
    return "cuda" if on_gpu else "cpu"


def spawn(args: argparse.Namespace, framework: str, backend: str, model: str, batch: int, *,
          profile: bool = False, shuffle: bool = False, policy: str = "float32") -> dict[str, Any]:
    cmd = [
        sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", framework,
        "--model", model, "--batch", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
        "--backend", backend, "--torch-device", torch_device_for(args, backend), "--dtype-policy", policy,
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
    what = f"{framework} worker ({backend}, {model}, batch {batch}, {policy})"
    return bench_env.run_worker(cmd, what, RESULT_MARKER, args.worker_timeout, ROOT, env, tail=4000)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in ("train", "infer"):
        key = f"{mode}_images_per_s"
        pairs = [(r["xpcnn"].get(key), r["reference"].get(key)) for r in rounds]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        if not pairs:
            continue
        ratios = [a / b for a, b in pairs]
        summary[mode] = {
            "xpcnn_images_per_s": bench_env.median([a for a, _ in pairs]),
            "reference_images_per_s": bench_env.median([b for _, b in pairs]),
            "ratio": bench_env.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "ratios": ratios,
        }
    summary["peak_rss_mb"] = {
        f"{side}_{what}": _round(bench_env.median([r[side].get(f"rss_{what}_mb") for r in rounds]))
        for side in ("xpcnn", "reference") for what in ("baseline", "peak_infer", "peak_train")
    }
    for side in ("xpcnn", "reference"):
        for key in ("gpu_pool_bytes_mb", "gpu_peak_reserved_mb", "gpu_peak_bytes_mb"):
            value = _round(bench_env.median([r[side].get(key) for r in rounds]))
            if value is not None:
                summary["peak_rss_mb"][f"{side}_{key}"] = value
    return summary


def configs(args: argparse.Namespace) -> list[tuple[str, int]]:
    if args.configs:
        return args.configs
    out = []
    for model in args.models:
        sizes = args.batch_sizes or bench_models.MODELS[model]["batch_sizes"]
        out += [(model, int(b)) for b in sizes]
    return out


def machine_tag(info: dict[str, Any], device_name: str | None) -> str:
    if device_name:
        slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
        return f"gpu-{slug}"
    return f"cpu-{info['usable_cores']}core"


def print_header(report: dict[str, Any]) -> None:
    m, v, s = report["machine"], report["versions"], report["settings"]
    print("xpcnn training benchmark")
    print(f"  machine : {m['cpu_model']}, {m['usable_cores']} usable cores of {m['cpu_count']}, "
          f"{m.get('memory_gb', '?')} GB, {m['platform']}; load average {m.get('loadavg')}")
    print(f"  vector  : {', '.join(m.get('vector_extensions') or ['none found'])}")
    print(f"  versions: python {v['python']}, numpy {v.get('numpy')}, torch {v.get('torch')}, jax {v.get('jax')}, "
          f"xpcnn {v.get('xpcnn')} ({v.get('xpcnn_git')}), array-api-compat {v.get('array-api-compat')}")
    print(f"  BLAS    : {bench_env.blas_summary(report['blas'])}; thread env {report['thread_env'] or 'unset'}; "
          f"allocator env {report.get('allocator_env') or 'unset'}")
    refs = ", ".join(f"{b} vs {REFERENCE_NAME[REFERENCE[b]]}" for b in s["backends"])
    print(f"  run     : {refs}; {' then '.join(s['dtype_policies'])}, {s['rounds']} rounds x {s['steps']} timed steps (+{s['warmup']} warm-up), "
          f"threads {s['threads'] or 'default'}" + (" [QUICK: smoke test, numbers meaningless]" if s["quick"] else ""))
    print(flush=True)


def print_summary(entry: dict[str, Any]) -> None:
    sm, ref = entry["summary"], entry["reference"]
    print(f"== xpcnn on {entry['backend']} vs {REFERENCE_NAME[ref]} ({entry['reference_device']}), "
          f"{entry.get('dtype_policy', 'float32')}: {entry['model']} batch {entry['batch_size']}: "
          f"{bench_models.describe(entry['model'])}")
    print(f"   {'':<6} {'xpcnn img/s':>12} {'reference':>12} {'ratio':>9} {'(min..max)':>14}")
    for mode in ("train", "infer"):
        if mode in sm:
            r = sm[mode]
            print(f"   {mode:<6} {r['xpcnn_images_per_s']:>12.1f} {r['reference_images_per_s']:>12.1f} "
                  f"{r['ratio']:>8.3f}x {r['ratio_min']:>6.3f}..{r['ratio_max']:<6.3f}")
    mem = sm["peak_rss_mb"]
    line = (f"   peak RSS MB (baseline / infer / train): xpcnn {mem['xpcnn_baseline']} / "
            f"{mem['xpcnn_peak_infer']} / {mem['xpcnn_peak_train']}, reference {mem['reference_baseline']} / "
            f"{mem['reference_peak_infer']} / {mem['reference_peak_train']}")
    gpu = {k: v for k, v in mem.items() if "gpu" in k}
    print(line + (f"; GPU {gpu}" if gpu else ""))
    print(flush=True)


def ratio_table(report: dict[str, Any]) -> list[str]:
    """Markdown rows: one per backend and dtype policy, one column per configuration, the median training
    ratio in each."""
    cols = configs_in(report)
    head = ["xpcnn on", "policy", "reference", *(f"{m} b{b}" for m, b in cols)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for backend, policy in _rows(report):
        cells = [backend, policy, REFERENCE_NAME[REFERENCE[backend]] + _AUTOCAST.get(policy, "")]
        for model, batch in cols:
            entry = next((e for e in report["results"] if (e["backend"], e["model"], e["batch_size"],
                                                           e.get("dtype_policy", "float32"))
                          == (backend, model, batch, policy)), None)
            train = entry and entry["summary"].get("train")
            cells.append(f"{train['ratio']:.2f}x ({train['ratio_min']:.2f}..{train['ratio_max']:.2f})" if train
                         else "not run")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


_AUTOCAST = {"mixed_bfloat16": " (autocast bfloat16)", "mixed_float16": " (autocast float16 + GradScaler)"}


def _rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    policies = report["settings"].get("dtype_policies", ["float32"])
    return [(b, p) for b in report["settings"]["backends"] for p in policies if p == "float32" or b != "jax"]


def configs_in(report: dict[str, Any]) -> list[tuple[str, int]]:
    return [tuple(c) for c in report["settings"]["configs"]]


def run_compare(args: argparse.Namespace, report: dict[str, Any], save: Any) -> None:
    for backend, policy in _rows(report):
        reference = REFERENCE[backend]
        probe_shuffle = None
        for model, batch in configs(args):
            rounds = []
            for r in range(args.rounds):
                t0 = time.perf_counter()
                xr = spawn(args, "xpcnn", backend, model, batch, policy=policy)
                if probe_shuffle is None:
                    probe_shuffle = bool(xr.get("fit_shuffles"))
                rr = spawn(args, reference, backend, model, batch, shuffle=probe_shuffle, policy=policy)
                ratio = {m: xr[f"{m}_images_per_s"] / rr[f"{m}_images_per_s"]
                         for m in ("train", "infer") if f"{m}_images_per_s" in xr and f"{m}_images_per_s" in rr}
                rounds.append({"round": r, "xpcnn": xr, "reference": rr, "ratio": ratio})
                if args.verbose:
                    print(f"   round {r}: train {xr['train_images_per_s']:.1f} vs {rr['train_images_per_s']:.1f} "
                          f"img/s (ratio {ratio.get('train', float('nan')):.3f}), {time.perf_counter() - t0:.1f}s",
                          flush=True)
            entry = {"backend": backend, "reference": reference, "reference_device": rounds[0]["reference"]["device"],
                     "model": model, "batch_size": batch, "dtype_policy": policy,
                     "layers": bench_models.describe(model),
                     "rounds": rounds, "summary": summarise(rounds)}
            report["results"].append(entry)
            save()  # after every configuration: a run stopped by a time limit keeps what it measured
            print_summary(entry)
    print("training throughput ratio xpcnn/reference (median of the per-round ratios, min..max):")
    print("\n".join(ratio_table(report)))


def run_profile(args: argparse.Namespace, report: dict[str, Any], save: Any) -> None:
    import bench_profile

    for backend in args.backends:
        for model, batch in configs(args):
            res = spawn(args, "xpcnn", backend, model, batch, profile=True)
            prof = res["profile"]
            report["profile"].append({"backend": backend, "model": model, "batch_size": batch, **prof,
                                      "rss_peak_train_mb": res.get("rss_peak_train_mb")})
            save()
            print(f"== profile: {model} batch {batch}, xpcnn backend {backend}, mean over {prof['steps']} steps")
            before, after = prof["step_ms_plain_runs"]
            print(f"   step {prof['step_ms_profiled']:.2f} ms profiled; unprofiled {before:.2f} ms before, {after:.2f} "
                  f"ms after (instrumentation overhead about {prof['step_ms_profiled'] - prof['step_ms_plain']:+.2f} ms)")
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
    p.add_argument("--backends", nargs="+", choices=sorted(REFERENCE), default=None,
                   help="xpcnn backends, each against its reference (default: --backend)")
    p.add_argument("--backend", default="numpy", choices=sorted(REFERENCE), help="one xpcnn backend (default numpy)")
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
    p.add_argument("--dtype-policies", nargs="+", default=["float32"], metavar="POLICY",
                   choices=["float32", "mixed_bfloat16", "mixed_float16"],
                   help="xpcnn.mixed_precision policies to measure, each against torch.autocast (default float32)")
    p.add_argument("--json", default=None, help="write results here (default: benchmarks/results/<date>-...json)")
    p.add_argument("--worker-timeout", type=float, default=1800.0, help="seconds before a worker is killed")
    p.add_argument("-v", "--verbose", action="store_true", help="print every round")
    # worker-only
    p.add_argument("--worker", choices=["xpcnn", "torch", "jax"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--shuffle", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--dtype-policy", default="float32", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    base = {**DEFAULTS, **(QUICK if args.quick else {})}
    for key in ("rounds", "steps", "warmup"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])
    if args.models is None:
        args.models = QUICK["models"] if args.quick else list(bench_models.MODELS)
    if args.batch_sizes is None and args.quick:
        args.batch_sizes = QUICK["batch_sizes"]
    if args.backends is None:
        args.backends = [args.backend]
    if min(args.rounds, args.steps) < 1 or args.warmup < 0:
        p.error("--rounds and --steps must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        import bench_workers

        if args.torch_device is None:
            args.torch_device = torch_device_for(args, args.backend)
        return bench_workers.worker_main(args)

    started = datetime.datetime.now().astimezone()
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "date": started.isoformat(timespec="seconds"),
        "command": [pathlib.Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
        "mode": "profile" if args.profile else "compare",
        "settings": {
            "backends": args.backends, "device": args.device, "torch_device": args.torch_device, "dtype": "float32",
            "dtype_policies": args.dtype_policies,
            "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup, "models": args.models,
            "batch_sizes": args.batch_sizes, "configs": configs(args), "quick": args.quick, "seed": SEED,
            "threads": args.threads, "references": {b: REFERENCE_NAME[REFERENCE[b]] for b in args.backends},
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
        device_name = next((r["reference"].get("device_name") for e in report["results"] for r in e["rounds"]
                            if r["reference"].get("device_name")), None)
        if device_name:
            report["machine"]["gpu"] = device_name
        if report["results"] and not report["profile"]:
            report["table"] = ratio_table(report)
        path = pathlib.Path(args.json) if args.json else HERE / "results" / (
            f"{started.date().isoformat()}-{machine_tag(report['machine'], device_name)}-{'-'.join(args.backends)}"
            + "".join(f"-{p}" for p in args.dtype_policies if p != "float32")
            + ("-profile" if args.profile else "") + ("-quick" if args.quick else "") + ".json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        return path

    try:
        (run_profile if args.profile else run_compare)(args, report, save)
    except bench_env.WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"results written to {save()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
