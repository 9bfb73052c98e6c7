"""The streaming input pipeline: JPEG decode throughput against PyTorch, memory of a big folder, stream vs memory.

    python benchmarks/bench_input.py                        # the full run (about 15 minutes on 2 cores)
    python benchmarks/bench_input.py --quick                # seconds: tiny folder, numbers meaningless
    python benchmarks/bench_input.py --folder /data/fake-pets --images 6000 --json out.json
    python benchmarks/bench_input.py --sections decode --rounds 5

What it measures (issue 23's benchmark list), on a generated folder of JPEGs shaped like Microsoft's
PetImages (two classes ``Cat``/``Dog``; about 500x375, a tenth portrait; gradients, shapes, blotches and
noise so that a file is 30-60 KB as photos are; quality 80-92; plus truncated, empty and not-an-image files
that the loader must skip):

1. ``decode``: decode + resize to 300x300 and to 180x180, images/s, over ``--subset`` files: xpcnn's
   streaming ``image_dataset_from_directory(..., batch_size=B, num_workers=k)`` for one epoch (numpy
   backend: the "device" copy is a plain copy, then the uint8 -> float32 scaling) with 1 and 2 worker
   threads, against PyTorch's ``DataLoader(num_workers=2)`` (and 1) over torchvision's ``ImageFolder`` with
   ``transforms.Resize((h, w))`` + ``ToTensor()``. Every measurement is a fresh process; the sides alternate
   over ``--rounds`` rounds and the summary is the median of each side and of the per-round ratios. Besides
   the wall-clock rate, each run reports its CPU time per image (user + system of the process and of its
   worker processes), which a busy shared machine disturbs less than the wall clock. xpcnn decodes a JPEG at
   1/2 scale when the target is at most half its size (Pillow's draft mode: 500x375 -> 180x180 qualifies,
   -> 300x300 does not); a row with draft mode switched off (a module constant patched in the worker)
   shows what that is worth. ``torch`` reads the good files only (``ImageFolder`` stops on a corrupt one),
   xpcnn reads all of them and skips the corrupt ones; both count decoded images.

   THE REFERENCE: the torchvision wheel from PyPI does not import beside the CPU torch wheel installed here
   (``RuntimeError: operator torchvision::nms does not exist``: its compiled ops fail to register). When
   ``import torchvision`` fails, the reference is a ``torch.utils.data.Dataset`` written here that does
   exactly what ``ImageFolder`` + ``Resize((h, w))`` + ``ToTensor()`` do on a PIL image: ``open`` the file,
   ``Image.open(f).convert("RGB")``, ``img.resize((w, h), Image.BILINEAR)`` (torchvision's PIL path; PIL's
   bilinear filter always antialiases), ``torch.from_numpy(np.array(img, np.uint8, copy=True))
   .view(h, w, 3).permute(2, 0, 1).contiguous().to(torch.float32).div(255)``, class folders sorted, files
   sorted; the default collate stacks the batch. The output and the JSON say which reference ran.

2. ``memory``: peak resident memory (``ru_maxrss`` in a fresh process) of one epoch of ``fit`` in the
   tutorial's code shape, ``image_dataset_from_directory(folder, validation_split=0.2, subset="both",
   seed=1337, image_size=(300, 300), batch_size=128)`` then ``model.fit(train_ds, epochs=1,
   validation_data=val_ds)``, numpy backend, a small model (``Conv2D(16, 4, stride=4)`` stem, ``MaxPool2D(5)``,
   ``GlobalAvgPool2D``, ``Dense(1, sigmoid)``) so that an epoch takes a minute: on ``--images`` distinct
   files (default 6,000: as float32 300x300x3 that is 6.5 GB, over 6 GiB) and on the tutorial's 25,000
   files. The 25,000 are 25,000 directory entries (12,500 per class) that are hard links cycling over the
   generated files (a folder of 25,000 distinct JPEGs takes too long to generate here): the loader indexes,
   opens and decodes 25,000 files, but the bytes on disk (and in the page cache, which is not RSS) repeat.
   The RSS is also sampled after every training batch (``/proc/self/statm``), so growth over the epoch shows.
   The big folder runs with the BLAS's default threads (what the tutorial's user gets) and with one BLAS
   thread; the 25,000 entries with the last of ``--memory-blas`` (default: one thread, which keeps that epoch
   within minutes on two cores: see the next section for why).

3. ``stream``: one epoch of ``fit`` streaming from the folder against the same images already in memory
   (``image_dataset_from_directory(..., batch_size=None)``, then ``fit(x, y)``), same model, same backend,
   180x180, batch 64, ``--stream-rounds`` rounds (who goes first alternates), medians. The small model on
   ``--subset`` files, two epochs each, the second (steady) one compared, both with the BLAS's default threads
   (OpenBLAS: one per core) and with one (``OPENBLAS_NUM_THREADS=1`` etc. for the process): the decode
   threads and the BLAS's threads share the cores, and OpenBLAS's threads slow down when they cannot all run
   at once. Then ``examples/cats_vs_dogs.py``'s network (four Conv2D/MaxPool2D blocks of 32-256 channels), one
   epoch on ``--stream-tutorial-images`` files, default BLAS threads: a model whose step dominates, as in the
   tutorial. The share of the epoch that the training loop spent waiting for its next batch is measured too
   (between a batch's end and the next one's start).

4. ``profile``: where the time goes, with ``cProfile``: the loader at 300x300 with 2 worker threads, one
   profiler in the main thread (waiting, device copy, scaling) and one in each worker thread (decoding), and
   the reference's ``__getitem__`` in one thread over the same files; grouped into categories.

The folder (``--folder``, default ``<tmp>/xpcnn-bench-input``) is kept and reused: generated files that
exist are not made again (each file is a function of its index and ``--seed``); the subset and 25,000-entry
views are hard links rebuilt each run. ``--clean`` removes the folder at the end. Results go to
``benchmarks/results/<date>-<machine>-input[-quick].json`` unless ``--json`` names a file; it is rewritten
after each section, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import io
import json
import math
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(HERE), str(ROOT)):  # the helpers beside this file, and the checkout's xpcnn
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bench_env  # noqa: E402

SCHEMA = "xpcnn-bench-input/1"
RESULT_MARKER = "@@XPCNN_BENCH_INPUT@@ "
GENERATOR_VERSION = 1
CLASSES = ("Cat", "Dog")
TUTORIAL_IMAGES = 25_000
CORRUPT = ("truncated", "not_an_image", "empty")  # per class: what a folder of photos from the web holds
SECTIONS = ("decode", "memory", "stream", "profile")
FULL = {"sides": ["xpcnn_1", "xpcnn_2", "torch_1", "torch_2", "xpcnn_2_no_draft"], "images": 6000, "subset": 1000,
        "rounds": 5, "sizes": [300, 180], "batch_size": 64,
        "memory_batch_size": 128, "tutorial_images": TUTORIAL_IMAGES, "profile_images": 400}
QUICK = {"sides": ["xpcnn_1", "xpcnn_2", "torch_2"], "images": 48, "subset": 32, "rounds": 1, "sizes": [96],
         "batch_size": 8,
         "memory_batch_size": 8, "tutorial_images": 64, "profile_images": 16}


# --- the folder -------------------------------------------------------------------------------------------

_NOISE_BANKS: list[Any] = []


def _noise_banks() -> list[Any]:
    """Three 700x700 RGB images of Gaussian noise (sigma 5, 8, 11 around 128), made once per process; an
    image takes a random window of one (Pillow's ``effect_noise`` would cost 15 ms a picture)."""
    import numpy as np
    from PIL import Image

    if not _NOISE_BANKS:
        rng = np.random.default_rng(12345)
        for sigma in (5, 8, 11):
            noise = 128 + rng.standard_normal((700, 700, 3), dtype=np.float32) * sigma
            _NOISE_BANKS.append(Image.fromarray(np.clip(noise, 0, 255).astype(np.uint8)))
    return _NOISE_BANKS


def make_jpeg(seed: int, label: int, index: int) -> tuple[bytes, int, int]:
    """One synthetic photo as JPEG bytes, a function of ``(seed, label, index)``: about 500x375 (one in ten
    portrait), a two-colour gradient at a random angle, 6-15 filled shapes and lines, low-frequency colour
    blotches and fine noise, quality 80-92."""
    import numpy as np
    from PIL import Image, ImageChops, ImageDraw

    rng = np.random.default_rng([seed, label, index, GENERATOR_VERSION])
    w, h = int(rng.integers(440, 521)), int(rng.integers(330, 401))
    if rng.random() < 0.1:
        w, h = h, w
    c0, c1 = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
    mask = Image.linear_gradient("L").rotate(float(rng.uniform(0, 360)), resample=Image.BILINEAR, expand=True)
    img = Image.composite(Image.new("RGB", (w, h), c1), Image.new("RGB", (w, h), c0),
                          mask.resize((w, h), Image.BILINEAR))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 16))):
        kind = int(rng.integers(0, 4))
        x0, y0, side = float(rng.uniform(-50, w)), float(rng.uniform(-50, h)), float(rng.uniform(20, 200))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (x0, y0, x0 + side, y0 + side * float(rng.uniform(0.5, 1.5)))
        if kind == 0:
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle(box, fill=colour)
        else:
            points = [tuple(p) for p in rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * [w, h]]
            if kind == 2:
                draw.polygon(points, fill=colour)
            else:
                draw.line(points, fill=colour, width=int(rng.integers(2, 12)))
    blotches = rng.integers(0, 256, (h // 24 + 2, w // 24 + 2, 3), dtype=np.uint8)
    img = Image.blend(img, Image.fromarray(blotches).resize((w, h), Image.BICUBIC), float(rng.uniform(0.1, 0.3)))
    bank = _noise_banks()[int(rng.integers(0, 3))]
    ox, oy = int(rng.integers(0, bank.size[0] - w)), int(rng.integers(0, bank.size[1] - h))
    img = ImageChops.add(img, bank.crop((ox, oy, ox + w, oy + h)), 1.0, -128)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=int(rng.integers(80, 93)))
    return out.getvalue(), w, h


def _write(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # an interrupted run never leaves a half-written "good" file


def _make_file(task: tuple[str, int, int, int]) -> tuple[str, int, int, int]:
    path, seed, label, index = task
    data, w, h = make_jpeg(seed, label, index)
    _write(pathlib.Path(path), data)
    return path, len(data), w, h


def _store_name(index: int) -> str:
    return f"{index:05d}.jpg"


def generate_store(folder: pathlib.Path, images: int, seed: int, jobs: int) -> dict[str, Any]:
    """``folder/store/{Cat,Dog}``: ``images`` JPEGs (half per class) and the corrupt files, made in ``jobs``
    processes; files already there (same generator version and seed) are kept."""
    store = folder / "store"
    manifest_path = folder / "manifest.json"
    key = {"generator_version": GENERATOR_VERSION, "seed": seed}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    if {k: manifest.get(k) for k in key} != key and store.exists():
        shutil.rmtree(store)  # made by another generator or seed: start again
        manifest = {}
    sizes: dict[str, list[int]] = manifest.get("files", {})
    per_class = math.ceil(images / 2)
    tasks = []
    for label, name in enumerate(CLASSES):
        (store / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            path = store / name / _store_name(index)
            rel = f"{name}/{path.name}"
            if not path.exists() or rel not in sizes:
                tasks.append((str(path), seed, label, index))
    t0 = time.perf_counter()
    if tasks:
        print(f"generating {len(tasks)} JPEGs in {folder} ({jobs} processes) ...", flush=True)
        with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
            for path, nbytes, w, h in pool.map(_make_file, tasks, chunksize=16):
                p = pathlib.Path(path)
                sizes[f"{p.parent.name}/{p.name}"] = [nbytes, w, h]
    corrupt = []
    for label, name in enumerate(CLASSES):  # truncated, not an image, empty: never decodable
        whole = (store / name / _store_name(0)).read_bytes()
        contents = {"truncated": whole[: len(whole) // 3], "not_an_image": b"<html>404 not found</html>\n",
                    "empty": b""}
        for kind in CORRUPT:
            path = store / name / f"corrupt_{kind}.jpg"
            if not path.exists():
                _write(path, contents[kind])
            corrupt.append(f"{name}/{path.name}")
    manifest = {**key, "files": sizes, "corrupt": corrupt}
    manifest_path.write_text(json.dumps(manifest) + "\n")
    chosen = [v for rel, v in sizes.items() if int(rel.split("/")[1][:5]) < per_class]
    kb = sorted(v[0] / 1024 for v in chosen)
    return {
        "images": 2 * per_class, "corrupt_files": len(corrupt), "generated_now": len(tasks),
        "generate_s": round(time.perf_counter() - t0, 1),
        "kb_mean": round(statistics.fmean(kb), 1), "kb_p10": round(kb[len(kb) // 10], 1),
        "kb_median": round(statistics.median(kb), 1), "kb_p90": round(kb[len(kb) * 9 // 10], 1),
        "width_range": [min(v[1] for v in chosen), max(v[1] for v in chosen)],
        "height_range": [min(v[2] for v in chosen), max(v[2] for v in chosen)],
        "portrait_share": round(sum(v[2] > v[1] for v in chosen) / len(chosen), 3),
    }


def _link(src: pathlib.Path, dst: pathlib.Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        os.symlink(src, dst)


def make_view(folder: pathlib.Path, name: str, entries: int, available: int) -> pathlib.Path:
    """``folder/name/{Cat,Dog}``: ``entries`` image entries (half per class) that are hard links to the
    store's files, cycling when there are more entries than ``available`` files, plus the corrupt files."""
    view = folder / name
    if view.exists():
        shutil.rmtree(view)
    per_class, have = math.ceil(entries / 2), math.ceil(available / 2)
    for cls in CLASSES:
        (view / cls).mkdir(parents=True)
        source = folder / "store" / cls
        for k in range(per_class):
            _link(source / _store_name(k % have), view / cls / f"{k:05d}.jpg")
        for kind in CORRUPT:
            _link(source / f"corrupt_{kind}.jpg", view / cls / f"corrupt_{kind}.jpg")
    return view


def warm_page_cache(view: pathlib.Path) -> None:
    """Read every file once so that no side pays for the disk (both sides then read from the page cache)."""
    for path in view.rglob("*.jpg"):
        path.read_bytes()


# --- workers: one measurement each, in a fresh process ----------------------------------------------------

def _cpu_times() -> tuple[float, float]:
    """User and system CPU seconds of this process and of its ended children (the DataLoader's workers)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + children.ru_utime, own.ru_stime + children.ru_stime


def _cpu_seconds() -> float:
    return sum(_cpu_times())


def _timed_epoch(loader: Any) -> dict[str, Any]:
    """Iterate ``loader`` once: images, seconds, images/s, CPU (user + system) per image, and minor page
    faults (fresh memory touched for the first time: the kernel zeroes a page for each)."""
    (user0, sys0), faults0 = _cpu_times(), _minor_faults()
    t0 = time.perf_counter()
    images = 0
    for xb, _ in loader:
        images += xb.shape[0]
    seconds = time.perf_counter() - t0
    (user1, sys1), faults1 = _cpu_times(), _minor_faults()
    cpu = user1 - user0 + sys1 - sys0
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds, "cpu_s": cpu,
            "cpu_ms_per_image": 1e3 * cpu / images, "sys_share": (sys1 - sys0) / cpu if cpu else 0.0,
            "minor_faults_per_image": (faults1 - faults0) / images, "dtype": str(xb.dtype)}


def _minor_faults() -> int:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_minflt + children.ru_minflt


def _rss_now_mb() -> float | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError):
        return None


def _xpcnn_setup(no_draft: bool = False) -> Any:
    import warnings

    import xpcnn

    xpcnn.set_backend("numpy")
    warnings.filterwarnings("ignore", message=".*could not be read.*")  # the corrupt files, counted instead
    if no_draft:
        import xpcnn.datasets.images as images

        images._DRAFT_FROM = math.inf
    return xpcnn


def worker_decode_xpcnn(args: argparse.Namespace) -> dict[str, Any]:
    _xpcnn_setup(args.no_draft)
    from xpcnn.datasets import image_dataset_from_directory

    loader = image_dataset_from_directory(args.view, image_size=(args.size, args.size), batch_size=args.batch_size,
                                          num_workers=args.workers, seed=0, verbose=False)
    loader.peek()  # Pillow's plugins imported, the first file read: one-time costs out of the timing
    epoch = _timed_epoch(loader)
    assert epoch["dtype"] == "float32", epoch
    return {"framework": "xpcnn", **epoch, "files": loader.num_samples, "skipped": len(loader._source.skipped),
            "num_workers": loader.num_workers}


def reference_samples(view: pathlib.Path) -> list[tuple[str, int]]:
    """``ImageFolder``'s samples: classes sorted, files sorted within each, the corrupt files left out (it
    would stop on them)."""
    samples = []
    for label, cls in enumerate(sorted(p.name for p in view.iterdir() if p.is_dir())):
        samples += [(str(p), label) for p in sorted((view / cls).iterdir()) if not p.name.startswith("corrupt_")]
    return samples


def reference_dataset(view: pathlib.Path, size: int) -> tuple[Any, str]:
    """torchvision's ``ImageFolder`` with ``Resize((size, size))`` and ``ToTensor()``, or, where torchvision
    does not import, the equivalent dataset below. Returns it and which it is."""
    try:
        import torchvision
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
        dataset = datasets.ImageFolder(str(view), transform=transform,
                                       is_valid_file=lambda p: not os.path.basename(p).startswith("corrupt_"))
        return dataset, f"torchvision {torchvision.__version__} ImageFolder + Resize + ToTensor"
    except Exception as exc:  # noqa: BLE001 (the broken wheel raises RuntimeError at import)
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return ImageFolderEquivalent(reference_samples(view), size), (
            f"ImageFolder + Resize((h, w)) + ToTensor written out as a torch Dataset (torchvision does not "
            f"import: {why})")


class ImageFolderEquivalent:
    """What ``torchvision.datasets.ImageFolder(root, transform=Compose([Resize((h, w)), ToTensor()]))`` does
    for one sample, step by step (torchvision 0.2x, PIL path): ``pil_loader``, ``F_pil.resize`` with
    ``Image.BILINEAR``, ``to_tensor``."""

    def __init__(self, samples: list[tuple[str, int]], size: int) -> None:
        self.samples, self.size = samples, (size, size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        import numpy as np
        import torch
        from PIL import Image

        path, target = self.samples[index]
        with open(path, "rb") as f:  # torchvision.datasets.folder.pil_loader
            img = Image.open(f)
            img = img.convert("RGB")
        h, w = self.size
        img = img.resize((w, h), Image.BILINEAR)  # transforms.Resize((h, w)): F_pil.resize
        tensor = torch.from_numpy(np.array(img, np.uint8, copy=True))  # transforms.ToTensor: F.to_tensor
        tensor = tensor.view(img.size[1], img.size[0], 3).permute((2, 0, 1)).contiguous()
        return tensor.to(dtype=torch.get_default_dtype()).div(255), target


def worker_decode_torch(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    dataset, reference = reference_dataset(pathlib.Path(args.view), args.size)
    dataset[0]  # one-time costs out of the timing, as on the xpcnn side
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                         num_workers=args.workers)
    epoch = _timed_epoch(loader)  # the workers have ended by then: their CPU is the children's
    assert epoch["dtype"] == "torch.float32", epoch
    return {"framework": "torch", **epoch, "files": len(dataset), "skipped": 0, "num_workers": args.workers,
            "reference": reference, "torch_threads": torch.get_num_threads()}


def small_model(size: int) -> Any:
    """A strided stem and a linear head: cheap enough that an epoch of thousands of 300x300 images takes a
    minute on two cores (the input pipeline is what is measured)."""
    from xpcnn.layers import Conv2D, Dense, GlobalAvgPool2D, MaxPool2D
    from xpcnn.model import Sequential

    return Sequential([Conv2D(16, 4, stride=4, activation="relu"), MaxPool2D(5), GlobalAvgPool2D(),
                       Dense(1, activation="sigmoid")], input_shape=(3, size, size))


def tutorial_model(size: int) -> Any:
    """The network of ``examples/cats_vs_dogs.py`` at full size: four Conv2D(3x3, same, relu)/MaxPool2D(2)
    blocks of 32, 64, 128 and 256 channels, GlobalAvgPool2D, Dense(1, sigmoid): its step, not the input,
    dominates an epoch."""
    from xpcnn.layers import Conv2D, Dense, GlobalAvgPool2D, MaxPool2D
    from xpcnn.model import Sequential

    layers = []
    for block in range(4):
        layers += [Conv2D(32 * 2 ** block, 3, padding="same", activation="relu"), MaxPool2D(2)]
    return Sequential([*layers, GlobalAvgPool2D(), Dense(1, activation="sigmoid")], input_shape=(3, size, size))


MODELS = {"small": small_model, "tutorial": tutorial_model}


def _timing_callback() -> Any:
    """Epoch times, the time spent waiting for each next training batch, and the RSS after each batch."""
    from xpcnn.callbacks import Callback

    class Timing(Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[dict[str, Any]] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = self.last = time.perf_counter()
            self.wait, self.batches, self.rss = 0.0, 0, []

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.wait += time.perf_counter() - self.last

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.batches += 1
            self.rss.append(_rss_now_mb())
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            seconds = time.perf_counter() - self.start
            rss = [r for r in self.rss if r is not None]
            tenth = max(1, len(rss) // 10)
            self.epochs.append({
                "seconds": seconds, "train_batches": self.batches, "input_wait_s": self.wait,
                "input_wait_share": self.wait / seconds,
                "rss_first_tenth_max_mb": max(rss[:tenth], default=None),
                "rss_last_tenth_max_mb": max(rss[-tenth:], default=None), "rss_max_mb": max(rss, default=None),
                "loss": logs.get("loss") if logs else None,
            })

    return Timing()


def worker_fit(args: argparse.Namespace) -> dict[str, Any]:
    """``fit`` from the folder (``--mode stream``, the tutorial's code shape, with a validation split for
    ``--split``) or from the same images decoded into memory first (``--mode memory``)."""
    import resource

    xpcnn = _xpcnn_setup()
    from xpcnn.datasets import image_dataset_from_directory
    from xpcnn.optimizers import Adam

    rss_start = _rss_now_mb()
    xpcnn.manual_seed(0)
    model = MODELS[args.model](args.size)
    model.compile(loss="binary_crossentropy", optimizer=Adam(1e-3), metrics=["accuracy"])
    timing = _timing_callback()
    split = {"validation_split": 0.2, "subset": "both", "seed": 1337} if args.split else {"seed": 0}
    common = {"image_size": (args.size, args.size), "label_mode": "binary", "verbose": False, **split}
    out: dict[str, Any] = {"mode": args.mode, "model": args.model, "size": args.size, "batch_size": args.batch_size}
    t0 = time.perf_counter()
    if args.mode == "stream":
        data = image_dataset_from_directory(args.view, batch_size=args.batch_size, **common)
        train, val = data if args.split else (data, None)
        out.update(files=train.num_samples + (val.num_samples if val is not None else 0),
                   train_files=train.num_samples, num_workers=train.num_workers)
        rss_ready = _rss_now_mb()
        model.fit(train, epochs=args.epochs, validation_data=val, verbose=0, callbacks=[timing])
    else:
        data = image_dataset_from_directory(args.view, batch_size=None, **common)
        x, y = data[0] if args.split else data
        out.update(files=len(x), train_files=len(x), decode_s=time.perf_counter() - t0,
                   in_memory_mb=round((x.nbytes + y.nbytes) / 2**20, 1))
        rss_ready = _rss_now_mb()
        model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, callbacks=[timing])
    out.update(total_s=time.perf_counter() - t0, epochs=timing.epochs, rss_start_mb=rss_start,
               rss_ready_mb=rss_ready, peak_rss_mb=bench_env.peak_rss_mb(),
               ru_maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return out


# --- profile ----------------------------------------------------------------------------------------------

CATEGORIES = {  # role -> (category, substrings of "file:function" of cProfile entries); first match wins
    "main": (
        ("waiting for a worker's batch", ("acquire", "wait")),
        ("device copy (np.array copy of the batch)", ("numpy.array", "device.py:put")),
        ("uint8 -> float32 scaling", ("scale_images", "astype")),
    ),
    "worker": (
        ("JPEG decode (ImagingDecoder.decode)", ("method 'decode'",)),
        ("resize (ImagingCore.resize)", ("method 'resize'",)),
        ("image -> NumPy (tobytes)", ("method 'encode'", "tobytes", "__array_interface__", "numpy.asarray")),
        ("HWC -> CHW copy (decode_image's own time)", ("images.py:decode_image",)),
        ("batch buffer write", ("workers.py:write",)),
        ("file open + JPEG header", ("Image.py:open", "JpegImagePlugin", "ImageFile.py", "builtins.open",
                                     "io.open", "method 'read'", "_io.", "draft")),
    ),
    "reference": (
        ("JPEG decode (ImagingDecoder.decode)", ("method 'decode'",)),
        ("resize (ImagingCore.resize)", ("method 'resize'",)),
        ("image -> NumPy (tobytes)", ("method 'encode'", "tobytes", "__array_interface__", "numpy.array")),
        ("to float tensor (from_numpy/permute/contiguous/to/div)", ("from_numpy", "'to' of", "'div' of",
                                                                   "'contiguous' of", "'permute' of", "'view' of")),
        ("file open + JPEG header", ("Image.py:open", "JpegImagePlugin", "ImageFile.py", "builtins.open",
                                     "io.open", "method 'read'", "_io.")),
    ),
}


def _categorise(stats: Any, role: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
    """cProfile stats (tottime, i.e. self time) summed by ``CATEGORIES``; the top functions too."""
    import pstats

    rows: dict[str, float] = {}
    functions = []
    total = 0.0
    stats = stats if isinstance(stats, pstats.Stats) else pstats.Stats(stats)
    for (file, line, fn), (_, _, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = f"{file}:{fn}" if file != "~" else fn
        total += tottime
        functions.append({"function": f"{os.path.basename(file)}:{line}({fn})" if file != "~" else fn,
                          "self_s": tottime, "cum_s": cumtime})
        category = next((name for name, needles in CATEGORIES[role] if any(n in key for n in needles)),
                        "other (Python)")
        rows[category] = rows.get(category, 0.0) + tottime
    table = [{"category": c, "self_s": s, "percent": 100 * s / total if total else 0.0}
             for c, s in sorted(rows.items(), key=lambda kv: -kv[1])]
    functions.sort(key=lambda r: -r["self_s"])
    return table, functions[:15], total


def worker_profile(args: argparse.Namespace) -> dict[str, Any]:
    """The loader with ``--workers`` threads under cProfile: the main thread, and each worker thread with its
    own profiler (wrapped around ``fill``); then the reference's ``__getitem__`` over the same files."""
    import cProfile
    import pstats
    import threading

    _xpcnn_setup()
    import xpcnn.data.workers as workers
    from xpcnn.datasets import image_dataset_from_directory

    profilers: dict[int, cProfile.Profile] = {}
    plain_fill = workers._Workers._fill

    def profiled_fill(self: Any, *a: Any) -> Any:
        profiler = profilers.setdefault(threading.get_ident(), cProfile.Profile())
        try:
            profiler.enable()  # per thread up to Python 3.11; from 3.12 one profiler at a time (ValueError)
        except ValueError:
            return plain_fill(self, *a)
        try:
            return plain_fill(self, *a)
        finally:
            profiler.disable()

    workers._Workers._fill = profiled_fill
    loader = image_dataset_from_directory(args.view, image_size=(args.size, args.size), batch_size=args.batch_size,
                                          num_workers=args.workers, seed=0, verbose=False)
    loader.peek()
    profilers.clear()
    main = cProfile.Profile()
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    main.enable()
    images = sum(xb.shape[0] for xb, _ in loader)
    main.disable()
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    workers._Workers._fill = plain_fill
    profiled = [p for p in profilers.values() if p.getstats()]
    merged = pstats.Stats(*profiled) if profiled else None
    main_table, main_functions, main_total = _categorise(main, "main")
    out: dict[str, Any] = {
        "size": args.size, "num_workers": args.workers, "images": images, "seconds": seconds, "cpu_s": cpu,
        "cores_busy": cpu / seconds, "images_per_s_profiled": images / seconds,
        "main_thread": {"total_s": main_total, "categories": main_table, "functions": main_functions},
    }
    if merged is not None:
        table, functions, total = _categorise(merged, "worker")
        out["worker_threads"] = {"threads": len(profilers), "total_s": total, "per_image_ms": 1e3 * total / images,
                                 "categories": table, "functions": functions}
    import torch

    torch.set_num_threads(1)  # as in a DataLoader worker process
    dataset, reference = reference_dataset(pathlib.Path(args.view), args.size)
    dataset[0]
    ref = cProfile.Profile()
    t0 = time.perf_counter()
    ref.enable()
    for i in range(len(dataset)):
        dataset[i]
    ref.disable()
    table, functions, total = _categorise(ref, "reference")
    out["reference_one_thread"] = {"reference": reference, "images": len(dataset),
                                   "seconds": time.perf_counter() - t0, "total_s": total,
                                   "per_image_ms": 1e3 * total / len(dataset), "categories": table,
                                   "functions": functions}
    return out


WORKERS = {"decode-xpcnn": worker_decode_xpcnn, "decode-torch": worker_decode_torch, "fit": worker_fit,
           "profile": worker_profile}


# --- the parent -------------------------------------------------------------------------------------------

def spawn(args: argparse.Namespace, worker: str, blas_threads: int | None = None, **options: Any) -> dict[str, Any]:
    """Run one worker in a fresh process; ``blas_threads`` sets the BLAS and OpenMP thread variables."""
    env = dict(os.environ)
    if blas_threads:
        env.update({var: str(blas_threads) for var in bench_env.THREAD_ENV_VARS})
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", worker]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            cmd.append(flag)
        elif value not in (None, False):
            cmd += [flag, str(value)]
    what = f"{worker} worker ({', '.join(f'{k}={v}' for k, v in options.items() if k != 'view')})"
    return bench_env.run_worker(cmd, what, RESULT_MARKER, args.worker_timeout, ROOT, env, tail=3000)


DECODE_SIDES = (  # (key, worker, workers, variant, sizes it runs at: None = all)
    ("xpcnn_1", "decode-xpcnn", 1, None, None),
    ("xpcnn_2", "decode-xpcnn", 2, None, None),
    ("torch_1", "decode-torch", 1, None, None),
    ("torch_2", "decode-torch", 2, None, None),
    ("xpcnn_2_no_draft", "decode-xpcnn", 2, "no_draft", "draft"),  # only where draft mode applies
)


def _draft_applies(size: int) -> bool:
    """Whether xpcnn's draft rule (``images._DRAFT_FROM``: both sides at least twice the target's) holds for
    some of the generated pictures (short sides 330-400)."""
    return 400 / size >= 2


def run_decode(args: argparse.Namespace, view: pathlib.Path, report: dict[str, Any], save: Any) -> None:
    results: dict[str, Any] = {"files": None, "batch_size": args.batch_size, "rounds": [], "summary": {}}
    report["results"]["decode"] = results
    for r in range(args.rounds):
        for size in args.sizes:
            row: dict[str, Any] = {"round": r, "size": size}
            shift = r % len(DECODE_SIDES)  # each round starts with another side
            for key, worker, k, variant, only in DECODE_SIDES[shift:] + DECODE_SIDES[:shift]:
                if key not in args.sides or only == "draft" and not _draft_applies(size):
                    continue
                res = spawn(args, worker, view=view, size=size, workers=k, batch_size=args.batch_size,
                            no_draft=variant == "no_draft")
                row[key] = res
                if res["framework"] == "torch":
                    results["reference"] = res["reference"]
            results["rounds"].append(row)
            print(f"   round {r} {size}x{size}: " + ", ".join(
                f"{key} {row[key]['images_per_s']:.0f} img/s ({row[key]['cpu_ms_per_image']:.2f} CPU ms/img)"
                for key, *_ in DECODE_SIDES if key in row), flush=True)
            save()
    for size in args.sizes:
        rows = [row for row in results["rounds"] if row["size"] == size]
        summary: dict[str, Any] = {}
        for key, *_ in DECODE_SIDES:
            if key in rows[0]:
                summary[key] = {"images_per_s": bench_env.median([row[key]["images_per_s"] for row in rows]),
                                "cpu_ms_per_image": bench_env.median([row[key]["cpu_ms_per_image"] for row in rows]),
                                "images": rows[0][key]["images"], "skipped": rows[0][key]["skipped"]}
        for name, a, b in (("xpcnn_2_over_torch_2", "xpcnn_2", "torch_2"),
                           ("xpcnn_1_over_torch_1", "xpcnn_1", "torch_1"),
                           ("xpcnn_2_over_1", "xpcnn_2", "xpcnn_1"), ("torch_2_over_1", "torch_2", "torch_1"),
                           ("draft_speedup", "xpcnn_2", "xpcnn_2_no_draft")):
            if a in rows[0] and b in rows[0]:
                ratios = [row[a]["images_per_s"] / row[b]["images_per_s"] for row in rows]
                summary[name] = {"ratio": bench_env.median(ratios), "min": min(ratios), "max": max(ratios)}
        results["summary"][str(size)] = summary
    results["files"] = results["rounds"][0]["xpcnn_1"]["files"]
    save()


STREAM_SETTINGS = {"default": None, "blas_1_thread": 1}  # the BLAS's threads: its default (= cores), or one


def run_memory(args: argparse.Namespace, views: dict[str, pathlib.Path], report: dict[str, Any], save: Any) -> None:
    """Each folder under each of ``--memory-blas`` (the 25,000-entry folder under the last one only)."""
    entries = report["results"]["memory"] = []
    for name, view in views.items():
        for setting in args.memory_blas if name != "tutorial" else args.memory_blas[-1:]:
            res = spawn(args, "fit", blas_threads=STREAM_SETTINGS[setting], view=view, size=args.memory_size,
                        batch_size=args.memory_batch_size, mode="stream", split=True, epochs=1)
            images = res["files"]
            res.update(what=name, blas=setting, float32_gb=round(images * 3 * args.memory_size ** 2 * 4 / 1e9, 2),
                       float32_gib=round(images * 3 * args.memory_size ** 2 * 4 / 2**30, 2),
                       distinct_files=args.images if name == "tutorial" else None)
            entries.append(res)
            epoch = res["epochs"][0]
            print(f"   {name}, BLAS threads {setting}: {images} files ({res['float32_gb']} GB as float32): peak RSS "
                  f"{res['peak_rss_mb']} MiB, RSS {epoch['rss_first_tenth_max_mb']} MiB in the first tenth of the "
                  f"epoch, {epoch['rss_last_tenth_max_mb']} MiB in the last; epoch {epoch['seconds']:.1f} s "
                  f"(input wait {epoch['input_wait_share']:.0%})", flush=True)
            save()


def run_stream(args: argparse.Namespace, views: dict[str, pathlib.Path], report: dict[str, Any], save: Any) -> None:
    """The small model (two epochs, the second compared) under each of ``--stream-blas``; the tutorial's
    model (one epoch, on ``views["tutorial"]``) with the BLAS's default threads."""
    results = report["results"]["stream_vs_memory"] = {"rounds": [], "size": args.stream_size,
                                                       "batch_size": args.batch_size, "summary": {}}
    plan = [("small", setting, 2, views["small"]) for setting in args.stream_blas]
    if "tutorial" in args.stream_models:
        plan.append(("tutorial", "default", 1, views["tutorial"]))
    plan = [p for p in plan if p[0] in args.stream_models]
    for r in range(args.stream_rounds):
        for model, setting, epochs, view in plan:
            row: dict[str, Any] = {"round": r, "model": model, "blas": setting}
            for mode in ("memory", "stream") if r % 2 == 0 else ("stream", "memory"):  # alternate who goes first
                row[mode] = spawn(args, "fit", blas_threads=STREAM_SETTINGS[setting], view=view, model=model,
                                  size=args.stream_size, batch_size=args.batch_size, mode=mode, epochs=epochs)
            row["ratio"] = row["stream"]["epochs"][-1]["seconds"] / row["memory"]["epochs"][-1]["seconds"]
            results["rounds"].append(row)
            print(f"   round {r}, {model} model, BLAS threads {setting}: last epoch in memory "
                  f"{row['memory']['epochs'][-1]['seconds']:.2f} s, streamed "
                  f"{row['stream']['epochs'][-1]['seconds']:.2f} s: {row['ratio']:.2f}x; input wait "
                  f"{row['stream']['epochs'][-1]['input_wait_share']:.0%} of the streamed epoch", flush=True)
            save()
    for model, setting, epochs, _ in plan:
        rounds = [row for row in results["rounds"] if (row["model"], row["blas"]) == (model, setting)]
        last = lambda row, mode, key: row[mode]["epochs"][-1][key]  # noqa: E731
        results["summary"].setdefault(model, {})[setting] = {
            "epochs_run": epochs, "rounds": len(rounds),
            "memory_epoch_s": bench_env.median([last(row, "memory", "seconds") for row in rounds]),
            "stream_epoch_s": bench_env.median([last(row, "stream", "seconds") for row in rounds]),
            "stream_over_memory": bench_env.median([row["ratio"] for row in rounds]),
            "stream_input_wait_share": bench_env.median([last(row, "stream", "input_wait_share") for row in rounds]),
            "memory_input_wait_share": bench_env.median([last(row, "memory", "input_wait_share") for row in rounds]),
            "images": rounds[0]["stream"]["train_files"], "in_memory_images": rounds[0]["memory"]["train_files"],
            "memory_peak_rss_mb": bench_env.median([row["memory"]["peak_rss_mb"] for row in rounds]),
            "stream_peak_rss_mb": bench_env.median([row["stream"]["peak_rss_mb"] for row in rounds]),
        }
    save()


def run_profile(args: argparse.Namespace, view: pathlib.Path, report: dict[str, Any], save: Any) -> None:
    res = spawn(args, "profile", view=view, size=args.profile_size, workers=2, batch_size=args.batch_size)
    report["results"]["profile"] = res
    print(f"   {res['images']} images at {args.profile_size}x{args.profile_size}, 2 worker threads: "
          f"{res['images_per_s_profiled']:.0f} img/s profiled, {res['cores_busy']:.2f} cores busy")
    for part in ("main_thread", "worker_threads", "reference_one_thread"):
        if part in res:
            print(f"   {part.replace('_', ' ')}: " + "; ".join(f"{c['category']} {c['percent']:.0f}%"
                                                          for c in res[part]["categories"][:6]))
    save()


# --- tables -----------------------------------------------------------------------------------------------

def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _rate(summary: dict[str, Any], key: str) -> str:
    side = summary.get(key)
    return "-" if side is None else f"{side['images_per_s']:.0f} ({side['cpu_ms_per_image']:.1f})"


def tables(report: dict[str, Any]) -> list[str]:
    res, lines = report["results"], []
    if res.get("decode", {}).get("summary"):
        decode = res["decode"]
        lines += [f"Decode + resize of {decode['files']} JPEGs (about 500x375; "
                  f"{decode['summary'][str(report['settings']['sizes'][0])]['xpcnn_1']['skipped']} corrupt files "
                  f"skipped by xpcnn), batch {decode['batch_size']}, images/s (CPU ms per image); medians of "
                  f"{report['settings']['rounds']} rounds. Reference: {decode.get('reference')}", "",
                  "| size | xpcnn 1 worker | xpcnn 2 workers | PyTorch 1 worker | PyTorch 2 workers | "
                  "xpcnn/PyTorch (2 workers) | xpcnn/PyTorch (1 worker) | xpcnn 2/1 workers | PyTorch 2/1 workers | "
                  "xpcnn 2 workers without draft mode |",
                  "|" + " --- |" * 10]
        for size, s in decode["summary"].items():
            ratio = {k: (s[k]["ratio"] if k in s else None) for k in ("xpcnn_2_over_torch_2", "xpcnn_1_over_torch_1",
                                                                       "xpcnn_2_over_1", "torch_2_over_1")}
            lines.append(f"| {size}x{size} | {_rate(s, 'xpcnn_1')} | {_rate(s, 'xpcnn_2')} | {_rate(s, 'torch_1')} | "
                         f"{_rate(s, 'torch_2')} | {_x(ratio['xpcnn_2_over_torch_2'])} | "
                         f"{_x(ratio['xpcnn_1_over_torch_1'])} | {_x(ratio['xpcnn_2_over_1'])} | "
                         f"{_x(ratio['torch_2_over_1'])} | {_rate(s, 'xpcnn_2_no_draft')} |")
        lines.append("")
    if res.get("memory"):
        lines += ["Peak RSS of one epoch of `fit(train_ds, epochs=1, validation_data=val_ds)` streaming from a folder "
                  "(tutorial code shape, numpy backend, small model, fresh process per row)", "",
                  "| folder | files | as float32 | batch | workers | BLAS threads | peak RSS | RSS first/last tenth of "
                  "the epoch | epoch | input wait |", "|" + " --- |" * 10]
        for e in res["memory"]:
            ep = e["epochs"][0]
            files = f"{e['files']:,}" + (f" (hard links over {e['distinct_files']:,} distinct)"
                                         if e.get("distinct_files") else "")
            lines.append(f"| {e['what']} | {files} | {e['float32_gb']} GB | {e['batch_size']} | {e['num_workers']} | "
                         f"{e['blas']} | {e['peak_rss_mb']:.0f} MiB | {ep['rss_first_tenth_max_mb']:.0f} / "
                         f"{ep['rss_last_tenth_max_mb']:.0f} MiB | {ep['seconds']:.0f} s | "
                         f"{ep['input_wait_share']:.0%} |")
        lines.append("")
    if res.get("stream_vs_memory", {}).get("summary"):
        s = res["stream_vs_memory"]
        lines += [f"One epoch of `fit` at {s['size']}x{s['size']}, batch {s['batch_size']}, numpy backend: streamed "
                  "from the folder (2 worker threads) vs the same images already in memory (`batch_size=None`, "
                  "then `fit(x, y)`); small model: second of two epochs, median of rounds", "",
                  "| model | files | BLAS threads | in memory | streamed | streamed/in memory | input wait "
                  "(streamed) | peak RSS in memory / streamed |", "|" + " --- |" * 8]
        for model, settings in s["summary"].items():
            for setting, sm in settings.items():
                files = f"{sm['in_memory_images']} (+{sm['images'] - sm['in_memory_images']} corrupt)"
                lines.append(f"| {model} | {files} | {setting} | {sm['memory_epoch_s']:.2f} s | "
                             f"{sm['stream_epoch_s']:.2f} s | {_x(sm['stream_over_memory'])} | "
                             f"{sm['stream_input_wait_share']:.0%} of the epoch | {sm['memory_peak_rss_mb']:.0f} / "
                             f"{sm['stream_peak_rss_mb']:.0f} MiB |")
        lines.append("")
    return lines


def machine_tag(info: dict[str, Any]) -> str:
    return f"cpu-{info['usable_cores']}core"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--folder", type=pathlib.Path, default=None,
                   help="where the generated JPEGs go, reused if present (default <tmp>/xpcnn-bench-input,\n"
                        "--quick: a fresh temporary folder, removed at the end)")
    p.add_argument("--images", type=int, default=None, help="distinct JPEGs, half per class (default 6000: 6.5 GB "
                   "as float32 300x300)")
    p.add_argument("--subset", type=int, default=None, help="files of the decode and stream sections (default 1000)")
    p.add_argument("--tutorial-images", type=int, default=None,
                   help="entries of the tutorial-sized folder (default 25000; 0 skips it)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run")
    p.add_argument("--rounds", type=int, default=None, help="decode rounds (default 5)")
    p.add_argument("--sides", nargs="+", choices=[side[0] for side in DECODE_SIDES], default=None,
                   help="decode measurements (default all; --quick: xpcnn_1 xpcnn_2 torch_2)")
    p.add_argument("--stream-rounds", type=int, default=None, help="stream vs memory rounds (default 2)")
    p.add_argument("--memory-blas", nargs="+", choices=sorted(STREAM_SETTINGS), default=None,
                   help="BLAS thread settings of the memory section's big folder; the 25,000-entry folder runs\n"
                        "the last (default: default blas_1_thread; --quick: default)")
    p.add_argument("--stream-models", nargs="+", choices=sorted(MODELS), default=None,
                   help="models of the stream section (default: small tutorial; --quick: small)")
    p.add_argument("--stream-tutorial-images", type=int, default=None,
                   help="files the tutorial model's stream comparison reads (default 500)")
    p.add_argument("--stream-blas", nargs="+", choices=sorted(STREAM_SETTINGS), default=None,
                   help="BLAS thread settings of the stream section (default: default blas_1_thread; --quick:\n"
                        "default)")
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="decode target sides (default 300 180)")
    p.add_argument("--batch-size", type=int, default=None, help="decode and stream batch (default 64)")
    p.add_argument("--memory-batch-size", type=int, default=None, help="memory section batch (default 128, the "
                   "tutorial's)")
    p.add_argument("--seed", type=int, default=0, help="of the generated pictures")
    p.add_argument("--jobs", type=int, default=None, help="processes generating pictures (default: usable cores)")
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run on a tiny folder (numbers meaningless)")
    p.add_argument("--clean", action="store_true", help="remove the generated folder at the end")
    p.add_argument("--json", default=None, help="write results here (default benchmarks/results/<date>-...json)")
    p.add_argument("--worker-timeout", type=float, default=1200.0, help="seconds before a worker is killed")
    # worker-only
    p.add_argument("--worker", choices=sorted(WORKERS), default=None, help=argparse.SUPPRESS)
    p.add_argument("--view", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-draft", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["stream", "memory"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--split", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--model", choices=sorted(MODELS), default="small", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return args
    base = QUICK if args.quick else FULL
    for key in ("sides", "images", "subset", "rounds", "sizes", "batch_size", "memory_batch_size", "tutorial_images",
                "profile_images"):
        if getattr(args, key, None) is None:
            setattr(args, key, base[key])
    if args.stream_models is None:
        args.stream_models = ["small"] if args.quick else ["small", "tutorial"]
    if args.stream_tutorial_images is None:
        args.stream_tutorial_images = min(500, args.images)
    if args.memory_blas is None:
        args.memory_blas = ["default"] if args.quick else ["default", "blas_1_thread"]
    if args.stream_blas is None:
        args.stream_blas = ["default"] if args.quick else ["default", "blas_1_thread"]
    if args.stream_rounds is None:
        args.stream_rounds = 1 if args.quick else 2
    args.memory_size = 300 if not args.quick else args.sizes[0]
    args.stream_size = 180 if not args.quick else args.sizes[0]
    args.profile_size = args.sizes[0]
    args.jobs = args.jobs or bench_env.usable_cores()
    if "xpcnn_1" not in args.sides:
        p.error("--sides must include xpcnn_1 (the table counts the files from it)")
    if min(args.images, args.subset, args.rounds, args.stream_rounds, args.batch_size, args.memory_batch_size) < 1:
        p.error("--images, --subset, --rounds, --stream-rounds and the batch sizes must be >= 1")
    if args.subset > args.images or args.tutorial_images < 0 or min(args.sizes) < 8:
        p.error("--subset must be at most --images, --tutorial-images >= 0, --sizes >= 8")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        result = WORKERS[args.worker](args)
        print(RESULT_MARKER + json.dumps(result), flush=True)
        return 0

    started = datetime.datetime.now().astimezone()
    own_folder = args.folder is None and args.quick
    folder = (pathlib.Path(tempfile.mkdtemp(prefix="xpcnn-bench-input-")) if own_folder
              else args.folder or pathlib.Path(tempfile.gettempdir()) / "xpcnn-bench-input")
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "date": started.isoformat(timespec="seconds"),
        "command": [pathlib.Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
        "settings": {
            "backend": "numpy", "dtype": "float32", "quick": args.quick, "sections": args.sections,
            "images": args.images, "subset": args.subset, "tutorial_images": args.tutorial_images,
            "rounds": args.rounds, "decode_sides": args.sides, "memory_blas": args.memory_blas,
            "stream_blas": args.stream_blas,
            "stream_models": args.stream_models, "stream_tutorial_images": args.stream_tutorial_images,
            "stream_rounds": args.stream_rounds, "sizes": args.sizes,
            "batch_size": args.batch_size, "memory_batch_size": args.memory_batch_size,
            "memory_size": args.memory_size, "stream_size": args.stream_size, "seed": args.seed,
            "folder": str(folder),
            "models": {"small": "Conv2D(16, 4, stride=4, relu) MaxPool2D(5) GlobalAvgPool2D Dense(1, sigmoid)",
                       "tutorial": "examples/cats_vs_dogs.py's: 4 x [Conv2D(32*2**k, 3, same, relu) MaxPool2D(2)] "
                                   "GlobalAvgPool2D Dense(1, sigmoid)",
                       "training": "Adam(1e-3), binary cross-entropy, metrics accuracy"},
        },
        "machine": bench_env.machine_info(),
        "versions": {**bench_env.versions(), "pillow": bench_env._version("pillow"),
                     "torchvision": bench_env._version("torchvision")},
        "blas": bench_env.blas_info(),
        "thread_env": bench_env.thread_env(),
        "allocator_env": bench_env.allocator_env(),
        "results": {},
    }
    m, v = report["machine"], report["versions"]
    print("xpcnn input pipeline benchmark" + (" [QUICK: smoke test, numbers meaningless]" if args.quick else ""))
    print(f"  machine : {m['cpu_model']}, {m['usable_cores']} usable cores of {m['cpu_count']}, "
          f"{m.get('memory_gb', '?')} GB, {m['platform']}; load average {m.get('loadavg')}")
    print(f"  versions: python {v['python']}, numpy {v.get('numpy')}, Pillow {v.get('pillow')}, "
          f"torch {v.get('torch')}, torchvision {v.get('torchvision')}, xpcnn {v.get('xpcnn')} ({v.get('xpcnn_git')})",
          flush=True)

    def save() -> pathlib.Path:
        report["elapsed_s"] = round((datetime.datetime.now().astimezone() - started).total_seconds(), 1)
        try:
            report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            pass
        report["table"] = tables(report)
        path = pathlib.Path(args.json) if args.json else HERE / "results" / (
            f"{started.date().isoformat()}-{machine_tag(report['machine'])}-input" + ("-quick" if args.quick else "")
            + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        return path

    try:
        folder.mkdir(parents=True, exist_ok=True)
        report["folder"] = generate_store(folder, args.images, args.seed, args.jobs)
        f = report["folder"]
        print(f"  folder  : {folder}: {f['images']} JPEGs ({f['generated_now']} made now in {f['generate_s']} s), "
              f"{f['kb_p10']}..{f['kb_p90']} KB (10th..90th percentile, mean {f['kb_mean']}), widths "
              f"{f['width_range']}, heights {f['height_range']}, {f['corrupt_files']} corrupt files", flush=True)
        def section(name: str) -> None:  # the load average when each section starts: how quiet it was
            try:
                report["machine"].setdefault("loadavg_at_section_start", {})[name] = [
                    round(x, 2) for x in os.getloadavg()]
            except OSError:
                pass

        subset = make_view(folder, "subset", args.subset, args.images)
        warm_page_cache(subset)
        if "decode" in args.sections:
            section("decode")
            print("== decode + resize, images/s (CPU ms per image)", flush=True)
            run_decode(args, subset, report, save)
        if "memory" in args.sections:
            section("memory")
            print("== peak RSS of one epoch of fit streaming from a folder", flush=True)
            views = {"6 GB folder" if not args.quick else "folder": make_view(folder, "big", args.images, args.images)}
            if args.tutorial_images:
                views["tutorial"] = make_view(folder, "tutorial", args.tutorial_images, args.images)
            for view in views.values():
                warm_page_cache(view)
            run_memory(args, views, report, save)
        if "stream" in args.sections:
            section("stream")
            print("== one epoch streamed from the folder vs in memory", flush=True)
            views = {"small": subset}
            if "tutorial" in args.stream_models:
                views["tutorial"] = make_view(folder, "subset-tutorial-model", args.stream_tutorial_images, args.images)
                warm_page_cache(views["tutorial"])
            run_stream(args, views, report, save)
        if "profile" in args.sections:
            section("profile")
            print("== profile of the loader loop (cProfile, self time)", flush=True)
            profile_view = make_view(folder, "profile", min(args.profile_images, args.images), args.images)
            warm_page_cache(profile_view)
            run_profile(args, profile_view, report, save)
    except bench_env.WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        save()
        return 1
    finally:
        if own_folder or args.clean:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print("\n".join(tables(report)))
    print(f"results written to {save()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
