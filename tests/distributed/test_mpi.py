"""Data-parallel fit over MPI: ``mpiexec -n 2`` and ``-n 3`` give the one-process parameters, logs and
``evaluate``; only rank 0 prints and writes; an error on one rank ends every rank. Each test starts a worker
script as users start theirs; skipped without mpi4py and an ``mpiexec`` (the ``mpi`` extra)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import BACKEND, REPO_ROOT

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(pathlib.Path(sys.executable).parent),
                                                        os.environ.get("PATH", "")]))
pytestmark = [pytest.mark.serial,
              pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich, or the mpi extra)"),
              pytest.mark.skipif(BACKEND not in ("numpy", "torch", "jax"), reason="MPI runs on the CPU backends")]
TIMEOUT_S = 120

WORKER = """
import json, sys
import numpy as np
import xpcnn
from xpcnn.callbacks import ModelCheckpoint
from xpcnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, ReLU

backend, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
xpcnn.set_backend(backend, dtype="float32" if mode == "mixed" else "float64")
if mode == "mixed":  # float16 arithmetic on float32 weights, the loss scaled (a LossScaleOptimizer)
    import warnings
    warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's float16 warning
    xpcnn.mixed_precision.set_global_policy("mixed_float16")
comm = xpcnn.distributed.init()
xpcnn.manual_seed(0)
rng = np.random.default_rng(0)
samples = 37 if mode in ("ok", "fail", "resume", "stream", "alike", "backup", "backup-kill") else 39  # batches of 12, 12, 12 and 1 (3 with batch norm)
x, y = rng.standard_normal((samples, 2, 5, 5)), rng.integers(0, 3, samples)
norm = [BatchNorm2D()] if mode in ("bn", "syncbn") else []
conv = Conv2D(3, 3, padding=1, bias=not norm)  # a bias before batch norm has no gradient but rounding noise
model = xpcnn.Sequential([conv, *norm, ReLU(), Flatten(), Dense(3)], input_shape=(2, 5, 5))
model.compile("cross_entropy", xpcnn.optimizers.Adam(0.01), metrics=["accuracy"])
if mode == "resume":  # one epoch, a checkpoint from rank 0, every rank loads it and trains the second epoch
    model.fit(x, y, batch_size=12, epochs=1, verbose=0, callbacks=[ModelCheckpoint(out + "/epoch1.xpcnn")],
              distributed=comm)
    comm.barrier()
    model = xpcnn.load_model(out + "/epoch1.xpcnn", restore_random_state=True)
    model.fit(x, y, batch_size=12, epochs=2, initial_epoch=1, verbose=0, distributed=comm)
    np.savez(f"{out}/rank{comm.rank}.npz", **{k: xpcnn.to_numpy(v) for k, v in model.state_dict().items()})
    sys.exit(0)
if mode == "stream":  # a DataLoader over a dataset: each rank reads only its share of every batch
    class Recording(xpcnn.data.ArrayDataset):
        read = []
        def __getitem__(self, index):
            self.read.append(int(index))
            return super().__getitem__(index)
    data = Recording(x, y)
    model.fit(xpcnn.DataLoader(data, batch_size=12, num_workers=2), epochs=2, verbose=0, distributed=comm)
    np.savez(f"{out}/rank{comm.rank}.npz", read=np.asarray(data.read),
             **{k: xpcnn.to_numpy(v) for k, v in model.state_dict().items()})
    sys.exit(0)
if mode == "alike":  # a batch size 2 ranks cannot share: the same ValueError on both, caught; then they go on
    try:
        model.fit(x, y, batch_size=7, verbose=0, distributed=comm)
    except ValueError as exc:
        print(f"rank {comm.rank} caught: {exc}", flush=True)
    model.fit(x, y, batch_size=12, epochs=1, verbose=0, distributed=comm)
    sys.exit(0)
if mode.startswith("backup"):  # a streamed dataset, dropout, a backup every 2 batches; "backup-kill": rank 1
    import os, signal  # kills itself at the first point left in out/kills ("epoch batch" lines), once each
    from xpcnn.callbacks import BackupAndRestore, Callback
    from xpcnn.layers import Dropout
    model = xpcnn.Sequential([conv, ReLU(), Flatten(), Dropout(0.3), Dense(3)], input_shape=(2, 5, 5))
    model.compile("cross_entropy", xpcnn.optimizers.Adam(0.01), metrics=["accuracy"])
    class Kill(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if mode != "backup-kill" or comm.rank != 1:
                return
            points = open(out + "/kills").read().splitlines()
            if points and points[0] == f"{self.epoch} {batch}":
                open(out + "/kills", "w").write(chr(10).join(points[1:]))
                os.kill(os.getpid(), signal.SIGKILL)
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
    loader = xpcnn.DataLoader(xpcnn.data.ArrayDataset(x, y), batch_size=12, num_workers=2)
    history = model.fit(loader, epochs=6, verbose=0, distributed=comm, validation_data=(x[:10], y[:10]),
                        callbacks=[Kill(), BackupAndRestore(out + "/backup", save_freq=2)])
    np.savez(f"{out}/rank{comm.rank}.npz", **{k: xpcnn.to_numpy(v) for k, v in model.state_dict().items()})
    with open(f"{out}/rank{comm.rank}.json", "w") as f:
        json.dump({"history": history.history}, f)
    sys.exit(0)
if mode == "fail" and comm.rank == 1:
    model.fit(x[:5], np.full(5, 7), distributed=comm)  # label 7 of 3 classes: a ValueError on rank 1 only
history = model.fit(x, y, batch_size=12, epochs=2, validation_data=(x[:10], y[:10]), verbose=2,
                    callbacks=[ModelCheckpoint(out + "/checkpoint.xpcnn")], distributed=comm,
                    sync_batch_norm=mode == "syncbn")
scores = model.evaluate(x, y, batch_size=12, distributed=comm)
predictions = xpcnn.to_numpy(model.predict(x, batch_size=12, distributed=comm))  # every rank: all 37 rows
np.savez(f"{out}/rank{comm.rank}.npz", predict=predictions,
         **{k: xpcnn.to_numpy(v) for k, v in model.state_dict().items()})
with open(f"{out}/rank{comm.rank}.json", "w") as f:
    json.dump({"history": history.history, "evaluate": scores, "size": comm.size}, f)
"""


def _run(tmp_path: pathlib.Path, ranks: int, mode: str = "ok", out: pathlib.Path | None = None
         ) -> subprocess.CompletedProcess:
    out = out or tmp_path / f"{mode}{ranks}"
    out.mkdir(exist_ok=True)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    command = [sys.executable, str(script), BACKEND, str(out), mode]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), *command]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JAX_ENABLE_X64": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
        # one persistent XLA cache for the launches: each fresh JAX process would compile every eager op again
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path.parent / "xla-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=tmp_path)


def _results(tmp_path: pathlib.Path, ranks: int, rank: int, mode: str = "ok") -> tuple[dict, dict]:
    out = tmp_path / f"{mode}{ranks}"
    with np.load(out / f"rank{rank}.npz") as f:
        params = {k: f[k] for k in f.files}
    return params, json.loads((out / f"rank{rank}.json").read_text())


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_train_as_one_process(tmp_path, ranks):
    single = _run(tmp_path, 1)
    assert single.returncode == 0, single.stderr[-3000:]
    several = _run(tmp_path, ranks)
    assert several.returncode == 0, several.stderr[-3000:]
    reference, reference_logs = _results(tmp_path, 1, 0)
    assert reference_logs["size"] == 1
    for rank in range(ranks):
        params, logs = _results(tmp_path, ranks, rank)
        assert logs["size"] == ranks
        for key, value in reference.items():  # the same global batches, gradients averaged over them; predict
            np.testing.assert_allclose(params[key], value, rtol=1e-12, atol=1e-14, err_msg=f"rank {rank} {key}")
        for key, values in reference_logs["history"].items():
            np.testing.assert_allclose(logs["history"][key], values, rtol=1e-12, err_msg=key)
        for key, value in reference_logs["evaluate"].items():
            assert logs["evaluate"][key] == pytest.approx(value, rel=1e-12)
    out = tmp_path / f"ok{ranks}"
    assert (out / "checkpoint.xpcnn").is_file()  # written by rank 0 only: one file, whole
    assert (several.stdout + several.stderr).count("Epoch 2/2") == 1  # only rank 0 prints


def test_mixed_float16_ranks_stay_identical_and_train_as_one_process(tmp_path):
    """Under mixed_float16 each rank's share of a batch goes through float16 with the loss scaled; the summed
    float32 gradients are the same on every rank, so the ranks take the same steps (bit-identical weights and
    loss scale) and end where one process ends, to float16 rounding (the shares are rounded separately)."""
    single = _run(tmp_path, 1, "mixed")
    assert single.returncode == 0, single.stderr[-3000:]
    several = _run(tmp_path, 2, "mixed")
    assert several.returncode == 0, several.stderr[-3000:]
    reference, reference_logs = _results(tmp_path, 1, 0, "mixed")
    first, _ = _results(tmp_path, 2, 0, "mixed")
    second, logs = _results(tmp_path, 2, 1, "mixed")
    for key, value in reference.items():
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        np.testing.assert_allclose(first[key], value, rtol=0, atol=2e-2 * np.abs(value).max() + 1e-6, err_msg=key)
    np.testing.assert_allclose(logs["history"]["loss"], reference_logs["history"]["loss"], rtol=1e-2)


def test_an_error_on_one_rank_ends_every_rank(tmp_path):
    result = _run(tmp_path, 2, mode="fail")
    assert result.returncode != 0
    assert "rank 1 of 2 failed, ending every rank: ValueError" in result.stderr



@pytest.mark.parametrize("ranks", [2, 3])
def test_synchronised_batch_norm_trains_as_one_process(tmp_path, ranks):
    for count in (1, ranks):
        result = _run(tmp_path, count, mode="syncbn")
        assert result.returncode == 0, result.stderr[-3000:]
    reference, _ = _results(tmp_path, 1, 0, "syncbn")
    for rank in range(ranks):
        state, _ = _results(tmp_path, ranks, rank, "syncbn")
        for key, value in reference.items():  # weights and running statistics of the global batches
            np.testing.assert_allclose(state[key], value, rtol=1e-10, atol=1e-12, err_msg=f"rank {rank} {key}")


def test_per_rank_batch_norm_keeps_the_ranks_identical(tmp_path):
    result = _run(tmp_path, 2, mode="bn")
    assert result.returncode == 0, result.stderr[-3000:]
    first, first_logs = _results(tmp_path, 2, 0, "bn")
    second, second_logs = _results(tmp_path, 2, 1, "bn")
    for key, value in first.items():  # running statistics averaged over the ranks at each epoch's end
        np.testing.assert_array_equal(second[key], value, err_msg=key)
    assert first_logs == second_logs



def test_distributed_benchmark_runs_and_reports(tmp_path):
    """The harness runs one process and two ranks and writes its table and JSON (timings are not judged)."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "bench_distributed.py"), "--backend", BACKEND,
                           "--steps", "2", "--warmup", "1", "--batch-size", "16", "--json", str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp_path,
                          env={**os.environ, "JAX_ENABLE_X64": "0"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| 2 ranks (mpiexec) | 1 |" in done.stdout and "speed-up:" in done.stdout
    assert [row["ranks"] for row in json.loads(out.read_text())["results"]] == [1, 2]



def test_save_on_rank_0_load_everywhere_and_resume(tmp_path):
    for count, mode in ((1, "ok"), (2, "resume")):
        result = _run(tmp_path, count, mode=mode)
        assert result.returncode == 0, result.stderr[-3000:]
    reference, _ = _results(tmp_path, 1, 0, "ok")
    for rank in range(2):
        with np.load(tmp_path / "resume2" / f"rank{rank}.npz") as f:
            for key, value in reference.items():  # as if never interrupted
                if key == "predict":
                    continue
                np.testing.assert_allclose(f[key], value, rtol=1e-12, atol=1e-14, err_msg=f"rank {rank} {key}")


def test_a_streamed_dataset_is_read_in_shares_and_trains_as_one_process(tmp_path):
    for count in (1, 2):
        result = _run(tmp_path, count, mode="stream")
        assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp_path / "stream1" / "rank0.npz") as f:
        reference = {k: f[k] for k in f.files}
    reads = []
    for rank in range(2):
        with np.load(tmp_path / "stream2" / f"rank{rank}.npz") as f:
            for key, value in reference.items():
                if key != "read":
                    np.testing.assert_allclose(f[key], value, rtol=1e-12, atol=1e-14, err_msg=f"rank {rank} {key}")
            reads.append(f["read"])
    # the model's first-batch check reads sample 0 on every rank; after it, each sample once per epoch, by one rank
    shares = [np.sort(r[1:]) for r in reads]
    np.testing.assert_array_equal(np.sort(np.concatenate(shares)), np.repeat(np.arange(37), 2))
    # halves of 12, 12, 12, and the last batch's one sample to rank 0 (rank 1 takes part with an empty share)
    assert (len(shares[0]), len(shares[1])) == (38, 36)


def test_an_argument_error_every_rank_sees_is_raised_on_every_rank_and_can_be_caught(tmp_path):
    result = _run(tmp_path, 2, mode="alike")
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in range(2):
        assert f"rank {rank} caught: batch_size 7 (the global batch) cannot be shared evenly by 2 ranks" in result.stdout


def test_a_run_whose_rank_was_killed_at_twenty_points_resumes_as_if_never_killed(tmp_path):
    """Rank 1 SIGKILLed at 20 batch ends over 6 epochs (mpiexec then ends rank 0), relaunched each time: the
    weights and the history on both ranks are those of the run never killed. With dropout, and a last batch
    of 1 sample that leaves rank 1 an empty share (no dropout draw: each rank's random stream is its own)."""
    never = _run(tmp_path, 2, mode="backup")
    assert never.returncode == 0, never.stderr[-3000:]
    out = tmp_path / "killed"
    out.mkdir()
    points = [f"{epoch} {batch}" for epoch in range(6) for batch in range(4) if (epoch * 4 + batch) % 6 != 5][:20]
    (out / "kills").write_text("\n".join(points))
    kills = 0
    while (done := _run(tmp_path, 2, mode="backup-kill", out=out)).returncode != 0:
        kills += 1
        assert kills <= len(points), done.stderr[-3000:]
    assert kills == len(points) == 20
    for rank in range(2):
        with np.load(tmp_path / "backup2" / f"rank{rank}.npz") as a, np.load(out / f"rank{rank}.npz") as b:
            for key in a.files:
                assert a[key].tobytes() == b[key].tobytes(), f"rank {rank} {key}"
        assert json.loads((out / f"rank{rank}.json").read_text()) == json.loads(
            (tmp_path / "backup2" / f"rank{rank}.json").read_text())
