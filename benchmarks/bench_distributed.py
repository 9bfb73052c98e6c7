"""Data-parallel throughput: one process with every core against ranks of one thread each, same global batch.

    python benchmarks/bench_distributed.py                    # mnist model, batch 256, 1 process vs 2 ranks
    python benchmarks/bench_distributed.py --ranks 2 --backend torch --json out.json

The parent starts each run as a user would (``python`` for one process, ``mpiexec -n K`` for K ranks, with
``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` = cores / ranks) and prints one table: images per second of
training (``fit`` steps, after a warm-up), and the share of each rank's step time spent in the gradient
allreduce (the communicator is timed from inside). The model is ``bench_models``'s MNIST CNN on synthetic
data. Needs the ``mpi`` extra (mpi4py, mpich).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def worker(args: argparse.Namespace) -> None:
    """One rank: train ``--steps`` timed steps after ``--warmup``, report from rank 0."""
    import numpy as np

    import xpcnn
    from bench_models import MODELS, build_xpcnn

    xpcnn.set_backend(args.backend)
    comm = xpcnn.distributed.init()
    spent = [0.0]
    reduce = comm.allreduce_sum

    def timed(arrays):  # the gradient sums, timed (a rank waits there for the slowest one too)
        start = time.perf_counter()
        try:
            return reduce(arrays)
        finally:
            spent[0] += time.perf_counter() - start

    comm.allreduce_sum = timed
    spec = MODELS[args.model]
    rng = np.random.default_rng(0)
    samples = args.batch_size * (args.warmup + args.steps)
    x = rng.standard_normal((samples, *spec["input_shape"])).astype(np.float32)
    y = rng.integers(0, spec["classes"], samples)
    xpcnn.manual_seed(0)
    model = build_xpcnn(args.model)
    model.compile("cross_entropy", "adam")
    warm = args.batch_size * args.warmup
    model.fit(x[:warm], y[:warm], batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False,
              check_finite=False, distributed=comm)
    spent[0] = 0.0
    start = time.perf_counter()
    model.fit(x[warm:], y[warm:], batch_size=args.batch_size, epochs=1, verbose=0, shuffle=False,
              check_finite=False, distributed=comm)
    wall = time.perf_counter() - start
    shares = comm.allreduce_sum([np.asarray([spent[0] / wall])]) if comm.size > 1 else [[0.0]]
    if comm.is_main:
        share = float(np.asarray(xpcnn.to_numpy(shares[0]))[0]) / comm.size
        print(json.dumps({"ranks": comm.size, "images_per_s": args.batch_size * args.steps / wall,
                          "seconds": wall, "allreduce_share": share}))


def run(ranks: int, args: argparse.Namespace, cores: int) -> dict:
    threads = str(max(1, cores // ranks))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, __file__, "--worker", "--backend", args.backend, "--model", args.model,
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.pathsep.join([str(pathlib.Path(sys.executable).parent),
                                                                os.environ.get("PATH", "")]))
        if mpiexec is None:
            raise SystemExit('no mpiexec: pip install "xpcnn[mpi]"')
        command = [mpiexec, "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "threads_per_rank": int(threads)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--model", default="mnist")
    p.add_argument("--batch-size", type=int, default=256, help="the global batch (default 256)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--ranks", type=int, default=2, help="ranks to compare with one process (default 2)")
    p.add_argument("--json", type=pathlib.Path, default=None, help="write the results here")
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return
    from bench_env import cpu_model, machine_info, usable_cores

    cores = usable_cores()
    rows = [run(1, args, cores), run(args.ranks, args, cores)]
    print(f"{args.model} model, global batch {args.batch_size}, {args.steps} steps, {args.backend}, "
          f"{cpu_model()} ({cores} cores)")
    print("| run | threads per rank | images/s | allreduce share of step time |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        name = "1 process" if row["ranks"] == 1 else f"{row['ranks']} ranks (mpiexec)"
        print(f"| {name} | {row['threads_per_rank']} | {row['images_per_s']:.0f} | {100 * row['allreduce_share']:.1f}% |")
    print(f"speed-up: {rows[1]['images_per_s'] / rows[0]['images_per_s']:.2f}x")
    if args.json is not None:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "machine": machine_info(),
                                         "results": rows}, indent=2))


if __name__ == "__main__":
    main()
