"""What a DataLoader's worker processes import first: the forkserver they fork from preloads this module.

A scheduler ending a job (Slurm at the time limit, ``kill -TERM -<pgid>``) signals the whole process group.
The loader's owner handles that (``fit`` finishes its step and backs up) and ends its workers itself, so the
forkserver and the workers ignore SIGTERM and SIGINT: were they to die first, the owner's next batch would fail
(``BrokenProcessPool``) before its backup. An ignored signal stays ignored in the processes forked from here.
"""

from __future__ import annotations

import signal

from . import workers as _workers  # noqa: F401  (the point of the preload: each worker forks with it imported)

for _signal in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signal, signal.SIG_IGN)
