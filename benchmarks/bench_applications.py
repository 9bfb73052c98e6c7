"""Inference speed of the pretrained model families (``xpcnn.applications``) against torchvision eager.

    python benchmarks/bench_applications.py                          # resnet50, mobilenet_v3_large; torch, numpy
    python benchmarks/bench_applications.py --models resnet18 --backends torch --rounds 3 --batches 5
    python benchmarks/bench_applications.py --quick                  # tiny smoke run (numbers meaningless)

Method. Each measurement runs in a fresh worker process (this script with ``--worker``), one framework per
process; the workers alternate xpcnn, torchvision, xpcnn, ... over ``--rounds`` rounds. A worker builds the
model with the same seeded weights (torchvision's model, its state dict loaded into xpcnn's), makes
``--batches`` batches of seeded normal images at ``--size`` (224: ImageNet's), runs one warm-up batch, then
times ``--batches`` forward passes in inference mode: xpcnn's ``model.predict`` on the backend (the batch
starts as NumPy on the host, as a loader gives it, and the logits come back to the host, as a caller reads
them), torchvision under ``torch.inference_mode()`` (the same host-to-tensor and back). Both use every usable
core (``torch.set_num_threads``; NumPy its BLAS's default). Each batch is timed on its own: a worker's
images/s is its median batch's (``batch_images_per_s``), so that a batch during which another process took a
core (a shared machine) does not decide the result; the whole-run rate and the process's CPU time are kept
beside it (``images_per_s``, ``cpu_seconds``). It reports images/s per side and the median of the per-round
ratios xpcnn/torchvision of the median-batch rates (> 1: xpcnn is faster), and of the whole-run rates.
torchvision's model definitions are imported as the tests import them
(``tests/applications/torchvision_models.py``: its compiled operators do not load beside the CPU build of
torch, and are not needed). Results go to ``benchmarks/results/<date>-<machine>-applications[-quick].json``
unless ``--json`` names a file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT), str(ROOT / "tests" / "applications")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bench_env  # noqa: E402

MARKER = "RESULT "


def _weights(arch: str) -> Any:
    """torchvision's ``arch`` in eval mode with seeded weights (batch-norm statistics included)."""
    import torch
    from torchvision_models import torchvision_models

    torch.manual_seed(0)
    model = getattr(torchvision_models(), arch)().eval()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.endswith("running_var"):
                value.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                value.normal_(0.0, 0.1)
    return model


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One timed side: ``args.side`` "xpcnn" (on ``args.backend``) or "torchvision"."""
    import numpy as np
    import torch

    torch.set_num_threads(bench_env.usable_cores())
    reference = _weights(args.model)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
               for _ in range(args.batches)]
    if args.side == "torchvision":
        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return reference(torch.from_numpy(x)).numpy()
    else:
        import xpcnn
        from xpcnn import applications

        xpcnn.set_backend(args.backend)
        model = getattr(applications, args.model)(input_shape=(3, args.size, args.size))
        model.load_state_dict({k: v.numpy() for k, v in reference.state_dict().items()})

        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(xpcnn.to_numpy(model.predict(x, batch_size=args.batch)))
    run(batches[0])  # warm-up: first-call allocations, caches
    times = []
    cpu = time.process_time()
    for x in batches:
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    cpu_seconds = time.process_time() - cpu
    seconds = sum(times)
    return {"images_per_s": args.batch * args.batches / seconds, "seconds": seconds,
            "batch_images_per_s": args.batch / bench_env.median(times), "batch_seconds": times,
            "cpu_seconds": cpu_seconds, "peak_rss_mb": bench_env.peak_rss_mb()}


def measure(args: argparse.Namespace, model: str, backend: str, side: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", "--side", side, "--model", model, "--backend", backend,
           "--batch", str(args.batch), "--batches", str(args.batches), "--size", str(args.size)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return bench_env.run_worker(cmd, f"{side} {model} ({backend})", MARKER, args.timeout, ROOT, env)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v3_large"])
    p.add_argument("--backends", nargs="+", default=["torch", "numpy"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--quick", action="store_true", help="1 round of 1 batch of 2 images at 64x64")
    p.add_argument("--json", type=pathlib.Path, default=None)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--side", default="xpcnn", help=argparse.SUPPRESS)
    p.add_argument("--model", default="resnet50", help=argparse.SUPPRESS)
    p.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(MARKER + json.dumps(worker(args)), flush=True)
        return {}
    if args.quick:
        args.rounds, args.batch, args.batches, args.size = 1, 2, 1, 64
    results = []
    print("| model | backend | xpcnn images/s | torchvision images/s | xpcnn / torchvision | whole runs |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        for backend in args.backends:
            rounds = []
            for _ in range(args.rounds):
                mine, theirs = measure(args, model, backend, "xpcnn"), measure(args, model, backend, "torchvision")
                rounds.append({"xpcnn": mine, "torchvision": theirs,
                               "ratio": mine["batch_images_per_s"] / theirs["batch_images_per_s"],
                               "ratio_whole_run": mine["images_per_s"] / theirs["images_per_s"]})
            row = {"model": model, "backend": backend, "rounds": rounds,
                   "xpcnn_images_per_s": bench_env.median([r["xpcnn"]["batch_images_per_s"] for r in rounds]),
                   "torchvision_images_per_s": bench_env.median([r["torchvision"]["batch_images_per_s"]
                                                                 for r in rounds]),
                   "ratio": bench_env.median([r["ratio"] for r in rounds]),
                   "ratio_whole_run": bench_env.median([r["ratio_whole_run"] for r in rounds])}
            results.append(row)
            print(f"| {model} | {backend} | {row['xpcnn_images_per_s']:.1f} | {row['torchvision_images_per_s']:.1f} "
                  f"| {row['ratio']:.2f}x | {row['ratio_whole_run']:.2f}x |", flush=True)
    report = {"benchmark": "applications", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "settings": {k: getattr(args, k) for k in ("rounds", "batch", "batches", "size", "quick")},
              "machine": bench_env.machine_info(), "versions": bench_env.versions(), "threads": bench_env.thread_env(),
              "results": results}
    path = args.json or HERE / "results" / (f"{datetime.date.today().isoformat()}-cpu-{bench_env.usable_cores()}core-"
                                            f"applications{'-quick' if args.quick else ''}.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {path}")
    return report


if __name__ == "__main__":
    main()
