"""CIFAR-10 ("python version" layout) loading, checking, downloading, and one framework-neutral sampler.

Where the data comes from, in order: ``--data-dir`` / the ``data_dir`` argument, ``$TWINBENCH_DATA_DIR``,
``./data``, ``~/.cache/twinbench``. Each may hold ``cifar-10-batches-py/`` or be that folder itself.
When none has it and the network is up, the official archive is downloaded with a progress bar,
md5-checked and unpacked atomically into the first candidate. Every failure is a ``DataError`` whose
message says which directory or file and what to do.

The sampler (:class:`EpochSampler`) decides, from one seed, the order of examples and the crop offsets
and flips of every batch; each framework only applies that plan (``augment_numpy`` /
``bench.stacks.pytorch.data.augment_torch``), so PyTorch and Keras twins see the same batches.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
NUM_CLASSES = 10
# per-channel statistics of the official training set, in [0, 1]
MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32)
# md5 of the official files (the same list torchvision checks): tells official data from a copy
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
}
STANDIN_BUILD = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "build.py"
PAD = 4  # standard augmentation: pad 4, random 32x32 crop, horizontal flip
OFFLINE_HINT = "python ../shared/data/cifar10/build.py DIR  (the offline stand-in copy, where ../shared exists)"


class DataError(RuntimeError):
    """CIFAR-10 is missing, corrupt or malformed; the message says where and what to do."""


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    out = []
    for d in (data_dir, os.environ.get("TWINBENCH_DATA_DIR"), "data", Path.home() / ".cache" / "twinbench"):
        if d:
            out.append(Path(d).expanduser())
    return out


def _batches_dir(d: Path) -> Path | None:
    if (d / FOLDER / TEST_FILE).exists() or (d / FOLDER).is_dir():
        return d / FOLDER
    if d.name == FOLDER and d.is_dir():
        return d
    return None


def find_cifar10(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first candidate directory that holds ``cifar-10-batches-py/`` (returned as the parent)."""
    dirs = [Path(data_dir).expanduser()] if data_dir else candidate_dirs()
    for d in dirs:
        b = _batches_dir(d)
        if b is not None:
            return b.parent
    return None


@dataclass(frozen=True)
class Cifar10:
    """uint8 images NHWC (N, 32, 32, 3) and int64 labels; ``source`` is the folder read, ``kind`` says
    whether its files are the official ones (md5) or a copy such as the JPEG stand-in."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: Path
    kind: str = "unknown"


def _unpickle(path: Path):
    """The object pickled in a CIFAR-10 file, or a DataError naming the file and the fix."""
    if not path.exists():
        raise DataError(f"CIFAR-10 file missing: {path}. The folder {path.parent} is incomplete: delete it and "
                        f"download again, or rebuild it with {OFFLINE_HINT}.")
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated pickles raise EOFError / UnpicklingError / ValueError
        raise DataError(f"CIFAR-10 file {path} is truncated or corrupt ({type(e).__name__}: {e}). Delete "
                        f"{path.parent} and download again, or rebuild it with {OFFLINE_HINT}.") from None


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if not isinstance(d, dict):
        raise DataError(f"CIFAR-10 file {path} does not hold a batch dict (got {type(d).__name__}).")
    data, labels = d.get(b"data", d.get("data")), d.get(b"labels", d.get("labels"))
    if data is None or labels is None:
        raise DataError(f"CIFAR-10 file {path} has no 'data'/'labels' keys: not a CIFAR-10 python batch.")
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"CIFAR-10 file {path}: data has shape {data.shape} dtype {data.dtype}, expected "
                        "(N, 3072) uint8 (3 planes of 32x32).")
    if labels.shape != (data.shape[0],) or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"CIFAR-10 file {path}: {labels.shape[0]} labels for {data.shape[0]} images, or labels "
                        "outside 0..9.")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def _read_meta(path: Path) -> list[str]:
    """The label names of ``batches.meta``; exactly the 10 CIFAR-10 classes, else a DataError."""
    d = _unpickle(path)
    try:
        names = d.get(b"label_names", d.get("label_names"))
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    except Exception as e:
        raise DataError(f"CIFAR-10 file {path} has no label_names ({type(e).__name__}: {e}). Delete {path.parent} "
                        f"and download again, or rebuild it with {OFFLINE_HINT}.") from None
    if len(names) != NUM_CLASSES:
        raise DataError(f"CIFAR-10 file {path} lists {len(names)} label names, expected the {NUM_CLASSES} classes of "
                        f"CIFAR-10: this is another data set or a damaged copy; delete {path.parent} and download "
                        f"again, or rebuild it with {OFFLINE_HINT}.")
    return names


def _refuse_file(data_dir: str | os.PathLike | None) -> None:
    """A data directory that is a regular file is a mistake to name, not a place to download into."""
    for d, what in ((data_dir, "--data-dir"), (os.environ.get("TWINBENCH_DATA_DIR"), "$TWINBENCH_DATA_DIR")):
        if d and Path(d).expanduser().is_file():
            raise DataError(f"{what} {d} is a file, not a directory: point it at the folder that holds "
                            f"{FOLDER}/ (or at that folder itself).")
        if data_dir:
            return  # --data-dir given: the environment variable is not used


def _unwritable(target: Path) -> str | None:
    """None when CIFAR-10 can be downloaded into ``target`` (created if absent), else the sentence saying why not."""
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=target, prefix=".twinbench-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return (f"CIFAR-10 is not in {target} and that folder cannot be created or written ({e.strerror or e}): give "
                f"--data-dir (or $TWINBENCH_DATA_DIR) a folder that holds '{FOLDER}' or that can be written")
    return None


def locate_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder holding ``cifar-10-batches-py/``, downloaded (or the offline stand-in built) when absent.

    Raises:
        DataError: the data directory is a file, or nothing found and no download possible.
    """
    _refuse_file(data_dir)
    root = find_cifar10(data_dir)
    if root is None:
        target = candidate_dirs(data_dir)[0]
        if not download:
            raise DataError(f"CIFAR-10 not found in {target} (looked for {target / FOLDER}). Put the official "
                            f"'{FOLDER}' folder there, or build the offline copy: {OFFLINE_HINT}.")
        problem = _unwritable(target)
        if problem:
            raise DataError(problem)
        try:
            root = download_cifar10(target)
        except DataError:
            if not STANDIN_BUILD.exists():
                raise
            root = build_standin(target)
    return root


CACHE = Path.home() / ".cache" / "twinbench"


def prepare_cifar10(data_dir: str | os.PathLike | None = None) -> Path:
    """CIFAR-10 made ready on a machine that serves data jobs (a Ray node): found where the loader looks and
    checked (:func:`check_cifar10`), else downloaded (or the offline stand-in built) into ``data_dir``, else
    ``$TWINBENCH_DATA_DIR``, else the persistent per-user cache ``~/.cache/twinbench``, which the loader also
    reads: never into ``./data`` (with Ray, that is the shipped copy of the code, new for every change).

    Returns:
        The ``cifar-10-batches-py`` folder.

    Raises:
        DataError: one sentence naming the folder and what to do.
    """
    _refuse_file(data_dir)
    if find_cifar10(data_dir) is None:
        locate_cifar10(Path(data_dir or os.environ.get("TWINBENCH_DATA_DIR") or CACHE).expanduser())
    return check_cifar10(data_dir)


def _check_counts(b: Path, n_train: int, n_test: int) -> None:
    if n_train != 50000 or n_test != 10000:
        raise DataError(f"CIFAR-10 in {b} has {n_train} train / {n_test} test images, expected 50000 / 10000: "
                        f"delete {b} and download again, or rebuild it with {OFFLINE_HINT}.")


def check_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Everything :func:`load_cifar10` checks, without keeping the images or hashing them (``bench.run``'s
    precondition pass, once before any job starts): every file present and loadable (pickle), with (N, 3072) uint8
    images and labels in 0..9, 50000 / 10000 images, ``batches.meta`` with the 10 class names.

    Returns:
        The ``cifar-10-batches-py`` folder.

    Raises:
        DataError: one sentence naming the directory or file and what to do.
    """
    b = locate_cifar10(data_dir, download) / FOLDER
    _read_meta(b / META_FILE)
    n_train = sum(_read_batch(b / f)[1].shape[0] for f in TRAIN_FILES)
    _check_counts(b, n_train, _read_batch(b / TEST_FILE)[1].shape[0])
    return b


def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True) -> Cifar10:
    """Load (and if needed download) CIFAR-10.

    Args:
        data_dir: folder holding (or to receive) ``cifar-10-batches-py/``; default: the candidates above.
        download: fetch the official archive when nothing is found.

    Raises:
        DataError: nothing found and no download possible, or a file is corrupt or malformed.
    """
    b = locate_cifar10(data_dir, download) / FOLDER
    _read_meta(b / META_FILE)
    parts = [_read_batch(b / f) for f in TRAIN_FILES]
    x_test, y_test = _read_batch(b / TEST_FILE)
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    _check_counts(b, x_train.shape[0], x_test.shape[0])
    return Cifar10(x_train, y_train, x_test, y_test, b, data_kind(b))


def data_kind(batches_dir: Path) -> str:
    """'official' when every file has the official md5, else 'copy (md5 differs from the official files)'."""
    for name, md5 in OFFICIAL_MD5.items():
        if hashlib.md5((batches_dir / name).read_bytes()).hexdigest() != md5:
            return "copy (md5 differs from the official files, e.g. the JPEG-q75 stand-in)"
    return "official"


def build_standin(target: Path) -> Path:
    """No network: build the offline stand-in of ../shared/data/cifar10 (92% JPEG-q75 re-encoded) into target."""
    import subprocess
    import sys
    print(f"CIFAR-10 download failed; building the offline stand-in copy into {target} with {STANDIN_BUILD} "
          "(labels and order official, 55,000 images JPEG-q75 re-encoded: accuracy lands below the papers)",
          file=sys.stderr)
    p = subprocess.run([sys.executable, str(STANDIN_BUILD), str(target)], capture_output=True, text=True)
    if p.returncode != 0:
        raise DataError(f"building the stand-in CIFAR-10 into {target} failed: {p.stdout[-300:]} {p.stderr[-300:]}")
    return target


def download_cifar10(target: Path, url: str = URL, md5: str = MD5) -> Path:
    """Download, md5-check and unpack the official archive into ``target`` atomically; returns ``target``."""
    from tqdm.auto import tqdm
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".download-") as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as r, open(archive, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc="CIFAR-10") as bar:
                    while chunk := r.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
        except OSError as e:
            raise DataError(f"CIFAR-10 not found in {target} and the download from {url} failed ({e}). "
                            f"Without network, build the offline copy: {OFFLINE_HINT}, or copy "
                            f"'{FOLDER}' into {target}.") from None
        digest = hashlib.md5(archive.read_bytes()).hexdigest()
        if digest != md5:
            raise DataError(f"downloaded {url} has md5 {digest}, expected {md5}: corrupt or truncated download. "
                            "Run again.")
        with tarfile.open(archive) as t:
            t.extractall(tmp, filter="data")
        if (target / FOLDER).exists():
            shutil.rmtree(target / FOLDER)
        os.replace(Path(tmp) / FOLDER, target / FOLDER)
    return target


def normalize(x_uint8: np.ndarray) -> np.ndarray:
    """uint8 NHWC -> float32 NHWC, per-channel standardised."""
    return (x_uint8.astype(np.float32) / 255.0 - MEAN) / STD


@dataclass(frozen=True)
class BatchPlan:
    """What one training batch is: which examples, where to crop (0..2*PAD), whether to flip."""

    index: np.ndarray
    crop_y: np.ndarray
    crop_x: np.ndarray
    flip: np.ndarray


class EpochSampler:
    """Framework-neutral order + augmentation plan. Same (seed, epoch) -> same batches in every framework.

    Args:
        n: examples in the training set.
        batch_size: batch size; the last incomplete batch is dropped (as the reference script does).
        seed: base seed; epoch e uses ``numpy.random.default_rng([seed, e])``.
        augment: False gives crop offsets of PAD (centre) and no flips.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, augment: bool = True) -> None:
        if batch_size < 1 or batch_size > n:
            raise ValueError(f"batch_size must be in 1..{n}, got {batch_size}")
        self.n, self.batch_size, self.seed, self.augment = n, batch_size, seed, augment

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch_size

    def epoch(self, epoch: int) -> list[BatchPlan]:
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(self.n)
        steps, b = self.steps_per_epoch, self.batch_size
        if self.augment:
            cy, cx = rng.integers(0, 2 * PAD + 1, (2, steps * b))
            flip = rng.random(steps * b) < 0.5
        else:
            cy = cx = np.full(steps * b, PAD)
            flip = np.zeros(steps * b, dtype=bool)
        return [BatchPlan(perm[i * b:(i + 1) * b], cy[i * b:(i + 1) * b], cx[i * b:(i + 1) * b],
                          flip[i * b:(i + 1) * b]) for i in range(steps)]

    def forever(self, start_epoch: int = 0):
        """Batch plans of epoch after epoch, without end (for timing loops that outlast an epoch)."""
        epoch = start_epoch
        while True:
            yield from self.epoch(epoch)
            epoch += 1


def pad_images(x_nhwc: np.ndarray) -> np.ndarray:
    return np.pad(x_nhwc, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))


def normalize_padded(x_uint8: np.ndarray, channels_first: bool = False) -> np.ndarray:
    """``pad_images(normalize(x))``, bit for bit: float32 NHWC (or NCHW with ``channels_first``, what a torch loop
    keeps resident), the border zero.

    :func:`normalize`'s float32 operations in its order (exact uint8 -> float32, / 255, - mean, / std), without
    ``np.pad``'s copy and, for NCHW, without a torch permute's: NHWC is normalised contiguously, then copied once
    into the padded array; NCHW is normalised in place inside the padded array (a transposed copy of the uint8
    images), the order each was fastest in, in fresh processes on a 2-core CPU. A smoke real-input torch job's
    data phase: 4.8-4.9 s before, 3.3 s after (jobs.csv in docs/evidence/2026-12-07/time-smoke)."""
    n, h, w, c = x_uint8.shape
    p = PAD
    if channels_first:
        out = np.empty((n, c, h + 2 * p, w + 2 * p), np.float32)
        view = out.transpose(0, 2, 3, 1)  # NHWC view of the NCHW array
        view[:, :p] = view[:, h + p:] = view[:, p:h + p, :p] = view[:, p:h + p, w + p:] = 0
        inner = view[:, p:h + p, p:w + p]
        np.copyto(inner, x_uint8, casting="unsafe")  # uint8 -> float32: exact
        np.divide(inner, np.float32(255.0), out=inner)
        np.subtract(inner, MEAN, out=inner)
        np.divide(inner, STD, out=inner)
        return out
    x = x_uint8.astype(np.float32)
    x /= np.float32(255.0)
    x -= MEAN
    x /= STD
    out = np.empty((n, h + 2 * p, w + 2 * p, c), np.float32)
    out[:, :p] = out[:, h + p:] = out[:, p:h + p, :p] = out[:, p:h + p, w + p:] = 0
    out[:, p:h + p, p:w + p] = x
    return out


def augment_numpy(x_padded: np.ndarray, plan: BatchPlan, size: int = 32) -> np.ndarray:
    """Apply a plan to padded NHWC images (any dtype) on the host; returns (B, size, size, C)."""
    ar = np.arange(size)
    rows = (plan.crop_y[:, None] + ar)[:, :, None]
    cols = (plan.crop_x[:, None] + ar)[:, None, :]
    cols = np.where(plan.flip[:, None, None], plan.crop_x[:, None, None] + size - 1 - ar[None, None, :], cols)
    return x_padded[plan.index[:, None, None], rows, cols]


def plan_array(plans: BatchPlan | list[BatchPlan]) -> np.ndarray:
    """Batch plans as one int32 array of rows (index, crop_y, crop_x, flip), ready to copy to a device once."""
    plans = [plans] if isinstance(plans, BatchPlan) else plans
    return np.concatenate([np.stack([p.index, p.crop_y, p.crop_x, p.flip], axis=1) for p in plans]).astype("int32")


def real_batches(data_dir: str | os.PathLike | None, batch_size: int, seed: int, channels_first: bool = False):
    """(normalised padded training images NHWC, or NCHW with ``channels_first``; labels; sampler): the real-input
    pipeline's pieces."""
    data = load_cifar10(data_dir)
    sampler = EpochSampler(len(data.y_train), batch_size, seed)
    return normalize_padded(data.x_train, channels_first), data.y_train, sampler
