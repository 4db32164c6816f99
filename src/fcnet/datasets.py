"""MNIST-family data sets: find them on disk, or download and verify them.

``load(name)`` returns ``(x_train, y_train), (x_test, y_test)`` with images
as ``uint8`` arrays of shape ``(n, 28, 28)`` and labels as ``uint8``. Look-up
order for ``mnist``, ``fashion-mnist`` and ``kmnist``:

1. ``data_dir`` (or the ``FCNET_DATA`` variable): the folder itself, its
   ``<name>/`` subfolder, or torchvision's ``<Name>/raw/`` layout;
2. the cache, ``$XDG_CACHE_HOME/fcnet/<name>`` (default ``~/.cache/fcnet``);
3. system and framework copies: Debian's ``/usr/share/datasets/<name>``,
   Keras' ``~/.keras/datasets/<name>`` (and its ``mnist.npz``);
4. a download from the mirrors, tried in order for each file, into the cache.

Every file is verified against a published checksum: the MD5 of the ``.gz``
that torchvision lists, or the SHA-256 of the decompressed IDX bytes, so that
recompressed copies such as Debian's still verify. ``idx:DIR`` loads any
folder of the four standard IDX files without checksums.
"""

import dataclasses
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .errors import ChecksumError, DataError, DataNotFoundError
from .files import atomic_write
from .idx import read_idx

__all__ = ["load", "locate", "download", "Dataset", "REGISTRY", "FILES", "NAMES", "class_names", "cache_dir"]

log = logging.getLogger("fcnet")

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DIGITS = tuple(str(i) for i in range(10))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Where a data set lives and how to verify it.

    ``md5`` maps each of :data:`FILES` to the MD5 of its published ``.gz``;
    ``sha256`` to the SHA-256 of its decompressed bytes, where known.
    """

    name: str
    classes: tuple
    mirrors: tuple
    md5: dict
    sha256: dict = dataclasses.field(default_factory=dict)
    torchvision_name: str = ""
    keras_npz: tuple = ()  # (file name, SHA-256) of a Keras .npz copy


REGISTRY = {
    "mnist": Dataset(
        "mnist", DIGITS,
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        md5=dict(zip(FILES, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                             "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"))),
        sha256=dict(zip(FILES, ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"))),
        torchvision_name="MNIST",
        keras_npz=("mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
    ),
    "fashion-mnist": Dataset(
        "fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                 "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"),
        md5=dict(zip(FILES, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                             "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"))),
        sha256=dict(zip(FILES, ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"))),
        torchvision_name="FashionMNIST",
    ),
    "kmnist": Dataset(
        "kmnist", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        md5=dict(zip(FILES, ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
                             "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134"))),
        torchvision_name="KMNIST",
    ),
}
NAMES = tuple(REGISTRY)
SYSTEM_ROOT = Path("/usr/share/datasets")
_DOWNLOAD_TIMEOUT = 30  # seconds without a byte before a mirror is abandoned
DOWNLOAD_DEADLINE = 600  # seconds a whole file may take
MAX_DOWNLOAD_BYTES = 256 << 20  # no data file is this large: a larger body is not one
_CHUNK = 1 << 16


def class_names(name):
    """The class names of a registered data set, else the digits 0-9."""
    return REGISTRY[name].classes if name in REGISTRY else DIGITS


def cache_dir():
    """``$XDG_CACHE_HOME/fcnet``, default ``~/.cache/fcnet``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fcnet"


def _data_dir(data_dir):
    data_dir = data_dir or os.environ.get("FCNET_DATA")
    return Path(data_dir).expanduser() if data_dir else None


def _candidates(spec, data_dir):
    """Folders to search, in look-up order."""
    folders = []
    if data_dir is not None:
        folders += [data_dir, data_dir / spec.name, data_dir / spec.torchvision_name / "raw"]
    folders += [cache_dir() / spec.name, SYSTEM_ROOT / spec.name, Path.home() / ".keras" / "datasets" / spec.name]
    return folders


def _find_file(folder, stem):
    """The file for ``stem`` in ``folder``: ``stem.gz``, ``stem``, or seed 001's ``train-images.idx3-ubyte``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        if (folder / name).is_file():
            return folder / name
    return None


def locate(name, data_dir=None):
    """Return ``{file stem: path}`` of the first complete copy of ``name`` on disk, or None.

    The files are not verified here; :func:`load` verifies what it reads.
    """
    for folder in _candidates(_spec(name), _data_dir(data_dir)):
        paths = {stem: _find_file(folder, stem) for stem in FILES}
        if all(paths.values()):
            return paths
    return None


def _not_found(spec, searched, why):
    return (f"data set {spec.name!r} not found offline (searched {', '.join(map(str, dict.fromkeys(searched)))}) "
            f"and not downloaded: {why}; put the four IDX files in one of those folders or pass --data-dir")


def _spec(name):
    if name not in REGISTRY:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(NAMES)} or idx:DIR")
    return REGISTRY[name]


def _verify_gz_md5(path, spec, stem):
    if str(path).endswith(".gz") and stem in spec.md5:
        digest = hashlib.md5()
        with open(path, "rb") as f:  # in chunks: the training set's .gz is 26 MB we need not hold
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest() == spec.md5[stem]
    return False


def _read_verified(path, spec, stem):
    """Read one file and check it: published ``.gz`` MD5, or SHA-256 of the decompressed bytes."""
    md5_ok = _verify_gz_md5(path, spec, stem)
    digest = hashlib.sha256()
    array = read_idx(path, digest=digest)
    if md5_ok or digest.hexdigest() == spec.sha256.get(stem):
        return array
    if stem in spec.sha256 or str(path).endswith(".gz"):
        raise ChecksumError(f"{path}: checksum mismatch: the file is not the published {spec.name} {stem} "
                            "(corrupt, or another data set); delete it to fetch it again")
    return array  # raw IDX without a published SHA-256: the structural checks are all there is


def _read_or_refetch(path, spec, stem):
    """Read and verify one file; a corrupt copy in fcnet's own cache is deleted and downloaded again."""
    try:
        return _read_verified(path, spec, stem)
    except DataError as exc:
        if path.parent != cache_dir() / spec.name:
            raise
        log.warning("%s; downloading it again", exc)
        path.unlink()
        try:
            fresh = download_files(spec, path.parent, stems=(stem,))[stem]
        except DataNotFoundError as again:
            raise DataError(f"{exc}; downloading it again failed: {again}") from None
        return _read_verified(fresh, spec, stem)


class _Mismatch(Exception):
    """A body that arrived whole but has the wrong checksum."""


def _stream(url, f, md5):
    """Copy ``url``'s body into ``f`` a chunk at a time and check its MD5.

    Gives up (OSError or ValueError, saying why) on a body larger than :data:`MAX_DOWNLOAD_BYTES`, one cut
    short, a mirror silent for ``_DOWNLOAD_TIMEOUT`` seconds, or one still sending after
    :data:`DOWNLOAD_DEADLINE` seconds.
    """
    deadline, digest, size = time.monotonic() + DOWNLOAD_DEADLINE, hashlib.md5(), 0
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as response:
        length = response.headers.get("Content-Length")
        if length is not None and int(length) > MAX_DOWNLOAD_BYTES:
            raise ValueError(f"{int(length):,} bytes is more than a data file has")
        while chunk := response.read1(_CHUNK):  # what has arrived: a trickle still reaches the deadline check
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise ValueError(f"more than {MAX_DOWNLOAD_BYTES:,} bytes, more than a data file has")
            if time.monotonic() > deadline:
                raise TimeoutError(f"still downloading after {DOWNLOAD_DEADLINE} s ({size:,} bytes so far)")
            digest.update(chunk)
            f.write(chunk)
    if length is not None and size != int(length):
        raise http.client.IncompleteRead(b"", int(length) - size)
    if digest.hexdigest() != md5:
        raise _Mismatch()


def download_files(spec, folder, stems=FILES):
    """Download ``stems`` (default: every file) of ``spec`` into ``folder``, trying the mirrors in order.

    Bodies are streamed to a temporary file (see :func:`_stream` for when a mirror is given up); one that
    fails its checksum or breaks off moves on to the next mirror and leaves nothing behind; a file is
    renamed into place only once verified.
    Returns ``{stem: path}``.
    """
    paths = {}
    cutoff = time.time() - 2 * DOWNLOAD_DEADLINE  # older temporary files belong to no download still running
    for stale in Path(folder).glob(".tmp-*"):  # left by a download that was killed
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except OSError:
            pass
    for stem in stems:
        target = folder / (stem + ".gz")
        errors = []
        for mirror in spec.mirrors:
            url = mirror + stem + ".gz"
            try:
                log.info("downloading %s", url)
                atomic_write(target, lambda f, url=url, md5=spec.md5[stem]: _stream(url, f, md5))
            except _Mismatch:
                errors.append(f"{url}: checksum mismatch")
                continue
            except (OSError, http.client.HTTPException, ValueError) as exc:
                errors.append(f"{url}: {exc or type(exc).__name__}")
                continue
            break
        else:
            if errors and all(e.endswith("checksum mismatch") for e in errors):
                raise ChecksumError(f"every mirror served a {stem} with the wrong checksum ({'; '.join(errors)})")
            raise DataNotFoundError("; ".join(errors) or "no mirrors")
        paths[stem] = target
    return paths


def _paths(spec, data_dir, fetch):
    """Paths of the four files: found on disk, else downloaded into the cache (when ``fetch``)."""
    paths = locate(spec.name, data_dir)
    if paths is not None:
        return paths
    searched = _candidates(spec, _data_dir(data_dir))
    if not fetch:
        raise DataNotFoundError(_not_found(spec, searched, "downloads are off"))
    try:
        return download_files(spec, cache_dir() / spec.name)
    except DataNotFoundError as exc:
        raise DataNotFoundError(_not_found(spec, searched, str(exc))) from None


def download(name, data_dir=None, fetch=True):
    """Make sure data set ``name`` is on disk and verifies, downloading it into the cache if needed.

    With ``fetch=False`` only the disk is searched.

    Returns
    -------
    Path
        The folder that holds it.
    """
    spec = _spec(name)
    paths = _paths(spec, data_dir, fetch)
    for stem in FILES:
        _read_verified(paths[stem], spec, stem)
    return paths[FILES[0]].parent


def _load_keras_npz(spec):
    if not spec.keras_npz:
        return None
    path = Path.home() / ".keras" / "datasets" / spec.keras_npz[0]
    if not path.is_file():
        return None
    if hashlib.sha256(path.read_bytes()).hexdigest() != spec.keras_npz[1]:
        raise ChecksumError(f"{path}: checksum mismatch: not Keras' published {spec.keras_npz[0]}")
    with np.load(path, allow_pickle=False) as f:
        return [f[key] for key in ("x_train", "y_train", "x_test", "y_test")]


def load(name, data_dir=None):
    """Load a data set as ``(x_train, y_train), (x_test, y_test)``.

    Parameters
    ----------
    name : str
        ``mnist``, ``fashion-mnist``, ``kmnist``, or ``idx:DIR`` for any folder
        holding the four standard IDX files (no checksums).
    data_dir : str or Path, optional
        Searched first; defaults to ``$FCNET_DATA``.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        Images ``uint8``, shape ``(n, rows, cols)``; labels ``uint8``, shape ``(n,)``.
    """
    if name.startswith("idx:"):
        folder = Path(name[4:]).expanduser()
        paths = {stem: _find_file(folder, stem) for stem in FILES}
        missing = [stem for stem, p in paths.items() if p is None]
        if missing:
            raise DataNotFoundError(f"{folder}: missing IDX file(s) {', '.join(missing)}")
        arrays = [read_idx(paths[stem]) for stem in FILES]
    else:
        spec = _spec(name)
        paths = locate(name, data_dir)
        arrays = _load_keras_npz(spec) if paths is None else None
        if arrays is None:
            paths = paths or _paths(spec, data_dir, fetch=True)
            arrays = [_read_or_refetch(paths[stem], spec, stem) for stem in FILES]
    n_classes = 10 if name in REGISTRY else 256
    for images, labels, part in ((arrays[0], arrays[1], "train"), (arrays[2], arrays[3], "test")):
        _check_pair(images, labels, part, name, n_classes)
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])


def _check_pair(images, labels, part, name, n_classes):
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{name}: {part} images must be uint8 of shape (n, rows, cols), "
                        f"got {images.dtype}{images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{name}: {part} labels must be uint8 of shape (n,), got {labels.dtype}{labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{name}: {len(images)} {part} images but {len(labels)} labels")
    if len(labels) and labels.max() >= n_classes:
        raise DataError(f"{name}: {part} labels must lie in 0..{n_classes - 1}, found {labels.max()}")
