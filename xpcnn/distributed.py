"""Data-parallel training over MPI: the same script on one process or many (``mpiexec -n 4 python train.py``).

``init()`` returns a communicator: MPI's world when the process runs under ``mpiexec``/``srun`` with more than
one rank (``mpi4py``, the ``mpi`` extra), else a single-process one whose collectives return their input.
``model.fit(..., distributed=comm)`` then trains data-parallel (see ``Trainer.fit``). Arrays are reduced
through host buffers packed per dtype, one collective per dtype (NumPy arrays without a copy), as ChainerMN
and Horovod pack their gradients.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .backend import asarray, to_numpy

__all__ = ["Communicator", "DataParallel", "MPICommunicator", "data_parallel", "init"]

Array = Any
_LAUNCHER_SIZES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")


class Communicator:
    """One process: rank 0 of 1; every collective returns its input."""

    rank = 0
    size = 1

    @property
    def is_main(self) -> bool:
        """The rank that prints and writes files (rank 0)."""
        return self.rank == 0

    def allreduce_sum(self, arrays: Sequence[Array]) -> list[Array]:
        """The element-wise sums of ``arrays`` over the ranks, on the current backend and device."""
        return list(arrays)

    def broadcast(self, arrays: Mapping[str, Array]) -> dict[str, Array]:
        """Rank 0's ``arrays`` on every rank."""
        return dict(arrays)

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's (small, plain) ``value`` on every rank."""
        return value

    def barrier(self) -> None:
        """Wait until every rank gets here (e.g. before reading a file rank 0 wrote)."""

    def abort(self, message: str) -> None:
        """End every rank at once (after an error on this one); one process just returns."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPICommunicator(Communicator):
    """The ranks of an MPI communicator (``mpi4py``)."""

    def __init__(self, comm: Any) -> None:
        self._comm = comm
        self.rank, self.size = int(comm.Get_rank()), int(comm.Get_size())

    def allreduce_sum(self, arrays: Sequence[Array]) -> list[Array]:
        from mpi4py import MPI

        return self._packed(arrays, lambda buffer: self._comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM))

    def broadcast(self, arrays: Mapping[str, Array]) -> dict[str, Array]:
        keys = list(arrays)
        return dict(zip(keys, self._packed([arrays[k] for k in keys], lambda buffer: self._comm.Bcast(buffer, 0))))

    def broadcast_object(self, value: Any) -> Any:
        return self._comm.bcast(value, root=0)

    def barrier(self) -> None:
        self._comm.Barrier()

    def abort(self, message: str) -> None:
        print(f"xpcnn.distributed: rank {self.rank} of {self.size} failed, ending every rank: {message}",
              file=sys.stderr, flush=True)
        time.sleep(0.5)  # the message reaches mpiexec's output before the abort kills the ranks (CI lost it once)
        self._comm.Abort(1)

    @staticmethod
    def _packed(arrays: Sequence[Array], collective: Any) -> list[Array]:
        """Run ``collective`` in place on one contiguous host buffer per dtype holding ``arrays``; the results
        come back on the current backend in the arrays' shapes and dtypes."""
        hosts = [np.asarray(to_numpy(a)) for a in arrays]
        out: list[Array] = [None] * len(hosts)
        for dtype in sorted({h.dtype.str for h in hosts}):
            members = [i for i, h in enumerate(hosts) if h.dtype.str == dtype]
            buffer = np.concatenate([hosts[i].reshape(-1) for i in members]) if members else None
            collective(buffer)
            offset = 0
            for i in members:
                size = hosts[i].size
                out[i] = asarray(buffer[offset:offset + size].reshape(hosts[i].shape), dtype=_dtype_of(arrays[i]))
                offset += size
        return out


def _dtype_of(array: Array) -> Any:
    return getattr(array, "dtype", None) if not isinstance(array, np.ndarray) else None


class DataParallel:
    """What ``fit``/``evaluate`` do differently on several ranks: one start (rank 0's weights, buffers and
    random stream everywhere), each rank's share of every batch, and the sums that make every rank's logs the
    one-process ones."""

    def __init__(self, comm: Communicator) -> None:
        self.comm = comm

    @property
    def shard(self) -> tuple[int, int]:
        """``(rank, ranks)``: what a ``DataLoader(shard=...)`` takes to read only this rank's share."""
        return self.comm.rank, self.comm.size

    def check(self, batch_size: int, samples: int, what: str = "x", sync_batch_norm: bool = False) -> None:
        """Refuse, with a ValueError that every rank raises alike, a global ``batch_size`` the ranks cannot share
        evenly, fewer ``samples`` than ranks, or (with ``sync_batch_norm``) a last batch that leaves a rank none."""
        ranks = self.comm.size
        if batch_size % ranks:
            raise ValueError(f"batch_size {batch_size} (the global batch) cannot be shared evenly by {ranks} ranks; "
                             f"use a multiple of {ranks}")
        if samples < ranks:
            raise ValueError(f"{what} holds {samples} samples, fewer than the {ranks} ranks that share it")
        last = samples % batch_size
        if sync_batch_norm and 0 < last < ranks:
            raise ValueError(f"sync_batch_norm: the last batch of {last} samples leaves some of the {ranks} ranks "
                             "none, and each rank takes part in every batch's statistics; choose a batch_size or a "
                             "sample count that leaves it at least one per rank")

    def synchronised_batch_norm(self, model: Any) -> list[Any]:
        """Make the model's batch-norm layers compute training statistics over the global batch; returns them
        (set their ``sync`` back to None after training)."""
        from .layers.normalization import BatchNorm1D, BatchNorm2D

        norms = [layer for layer in model.layers if isinstance(layer, (BatchNorm1D, BatchNorm2D))]
        for layer in norms:
            layer.sync = self.comm.allreduce_sum
        return norms

    def start(self, model: Any) -> None:
        """Every rank from rank 0's state: weights, buffers and the random stream (so that every rank draws
        the same data order)."""
        from . import random

        random.set_state(self.comm.broadcast_object(random.get_state()))
        model.set_params(self.comm.broadcast(model.params))
        model.set_buffers(self.comm.broadcast(model.buffers))

    def global_batch(self, size: int, stop: bool) -> tuple[int, bool, bool]:
        """The samples of a global batch, the sum of the ranks' shares (right whatever the batch lost to
        unreadable samples or where a stream's epoch started), whether any rank was asked to ``stop`` (a
        SIGTERM: every rank stops at the same step) and whether any rank's share is empty: one small allreduce."""
        total, stops, empty = to_numpy(self.comm.allreduce_sum([np.asarray([size, int(stop), int(size == 0)],
                                                                           dtype=np.int64)])[0])
        return int(total), bool(stops), bool(empty)

    def align_random(self) -> None:
        """Every rank's random stream where the furthest one's is: a rank whose share of a batch was empty made
        no dropout draws, and the ranks must go on drawing alike (the next epoch's order above all)."""
        from . import random

        state = random.get_state()
        counters = to_numpy(self.gather(np.asarray([state["counter"]], dtype=np.int64)))
        random.set_state({"seed": state["seed"], "counter": int(counters.max())})

    def gather(self, row: Array) -> Array:
        """Every rank's ``row`` (1-D, one length and dtype on every rank) stacked in rank order, on every rank:
        each rank writes its row into zeros, and the sum over the ranks fills the table (exactly)."""
        import array_api_compat
        import array_api_extra as xpx

        xp = array_api_compat.array_namespace(row)
        table = xp.zeros((self.comm.size, row.shape[0]), dtype=row.dtype, device=array_api_compat.device(row))
        return self.comm.allreduce_sum([xpx.at(table, self.comm.rank).set(row)])[0]

    def count_ranks(self, flag: bool) -> int:
        """On how many ranks ``flag`` is set (one small allreduce)."""
        return int(to_numpy(self.comm.allreduce_sum([np.asarray([int(flag)], dtype=np.int64)])[0])[0])

    def reduce(self, sums: Mapping[str, Array] | None, seen: int) -> tuple[dict[str, Array], int]:
        """Per-rank sums of the batch logs and sample counts, summed over the ranks (a rank that saw no sample
        adds zeros under rank 0's keys)."""
        keys = self.comm.broadcast_object(None if sums is None else list(sums))
        values = [sums[k] if sums is not None else asarray(0.0) for k in keys]
        *totals, count = self.comm.allreduce_sum([*values, np.asarray([seen], dtype=np.int64)])
        return dict(zip(keys, totals)), int(to_numpy(count)[0])

    def assemble(self, parts: Sequence[Array], spans: Sequence[tuple[int, int]], total: int) -> Array:
        """Every rank's ``parts`` (rows ``spans`` of ``total``) put together, on every rank: each rank writes its
        rows into zeros, and the sum over the ranks fills them all."""
        import array_api_compat
        import array_api_extra as xpx

        xp, first = array_api_compat.array_namespace(parts[0]), parts[0]
        full = xp.zeros((total, *first.shape[1:]), dtype=first.dtype, device=array_api_compat.device(first))
        for part, (start, stop) in zip(parts, spans):
            full = xpx.at(full, slice(start, stop)).set(part)
        return self.comm.allreduce_sum([full])[0]

    def average_buffers(self, model: Any) -> None:
        """Batch-norm running statistics, gathered on each rank's share, averaged over the ranks."""
        buffers = model.buffers
        if buffers:
            keys = list(buffers)
            totals = self.comm.allreduce_sum([buffers[k] for k in keys])
            model.set_buffers({k: t / self.comm.size for k, t in zip(keys, totals)})


def data_parallel(comm: Any) -> DataParallel | None:
    """The data-parallel helper for ``distributed=comm``; None for one process."""
    if comm is None:
        return None
    if not isinstance(comm, Communicator):
        raise TypeError(f"distributed takes a communicator from xpcnn.distributed.init(), got {type(comm).__name__}")
    return DataParallel(comm) if comm.size > 1 else None


def init() -> Communicator:
    """MPI's world communicator when this process is one of several ranks, else the single-process one."""
    launched = max((int(os.environ.get(name, "1") or 1) for name in _LAUNCHER_SIZES), default=1)
    try:
        from mpi4py import MPI
    except ImportError:
        if launched > 1:
            raise ImportError('this process is one of several MPI ranks but mpi4py is missing: '
                              'pip install "xpcnn[mpi]"') from None
        return Communicator()
    world = MPI.COMM_WORLD
    return MPICommunicator(world) if world.Get_size() > 1 else Communicator()
