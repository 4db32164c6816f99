"""Reading and writing IDX files (LeCun's MNIST format), gzipped or raw.

Layout: two zero bytes, a type code, the number of dimensions ``d``, then
``d`` big-endian uint32 sizes, then the values, big-endian, C order. The
reader checks every part of that against the file before it allocates the
payload, so a corrupt header cannot make it reserve gigabytes, and a gzip
stream is decompressed no further than the header says it should go.
"""

import gzip
import struct
import zlib

import numpy as np

from .errors import DataError

__all__ = ["read_idx", "write_idx", "MAX_BYTES"]

_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder(">"): k for k, v in _TYPES.items()}
MAX_BYTES = 1 << 30  # 1 GiB: far above any IDX data set fcnet reads; a header asking more is corrupt


def _read_exactly(f, n):
    """Read up to ``n`` bytes into a fresh buffer; returns (buffer, bytes read)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            break
        got += k
    return buf, got


def read_idx(path, max_bytes=MAX_BYTES, digest=None):
    """Read an IDX file into an array of the file's type, in native byte order.

    Parameters
    ----------
    path : str or Path
        Gzipped (detected by its magic bytes, whatever the name) or raw.
    max_bytes : int
        Refuse headers that declare a larger payload.
    digest : hashlib hash object, optional
        Updated with the decompressed bytes, for checksums of recompressed copies.

    Returns
    -------
    ndarray
        Shape as declared in the header; ``uint8`` for images and labels.

    Raises
    ------
    DataError
        Empty, truncated, oversized or trailing data, a bad magic number or type
        code, or a corrupt gzip stream — with the file name in the message.
    """
    try:
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            f = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            return _parse(f, path, max_bytes, digest)
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a cut-off gzip stream raises EOFError.
        if isinstance(exc, FileNotFoundError):
            raise DataError(f"{path}: no such file") from None
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from None


def _parse(f, path, max_bytes, digest):
    head = f.read(4)
    if len(head) == 0:
        raise DataError(f"{path}: empty file")
    if len(head) < 4 or head[:2] != b"\0\0":
        raise DataError(f"{path}: not an IDX file (bad magic number {head.hex()})")
    code, ndim = head[2], head[3]
    if code not in _TYPES:
        raise DataError(f"{path}: unsupported IDX type code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares no dimensions")
    dims_raw = f.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    dtype = np.dtype(_TYPES[code])
    size = int(np.prod(dims, dtype=object)) * dtype.itemsize
    if size > max_bytes:
        raise DataError(f"{path}: header declares {size:,} bytes of data, more than the {max_bytes:,} allowed")
    buf, got = _read_exactly(f, size)
    if got < size:
        raise DataError(f"{path}: truncated: header declares {size:,} bytes of data, file has {got:,}")
    if f.read(1):
        raise DataError(f"{path}: trailing bytes after the {size:,} bytes the header declares")
    if digest is not None:
        digest.update(head)
        digest.update(dims_raw)
        digest.update(buf)
    return np.frombuffer(buf, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file; gzipped when ``compress`` or when ``path`` ends in ``.gz``."""
    array = np.asarray(array)
    big = array.dtype.newbyteorder(">")
    if big not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    data = struct.pack(f">BBBB{array.ndim}I", 0, 0, _CODES[big], array.ndim, *array.shape)
    data += np.ascontiguousarray(array, dtype=big).tobytes()
    if compress or (compress is None and str(path).endswith(".gz")):
        data = gzip.compress(data, mtime=0)  # no timestamp: the same array always gives the same bytes
    with open(path, "wb") as f:
        f.write(data)
