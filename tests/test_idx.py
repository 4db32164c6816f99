import gzip
import struct
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal

from fcnet.errors import DataError
from fcnet.idx import read_idx, write_idx


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_type(tmp_path, dtype, suffix):
    a = (np.arange(24).reshape(2, 3, 4) * 3 - 10).astype(dtype)
    if dtype == "u1":
        a = np.abs(a).astype("u1")
    write_idx(tmp_path / f"a{suffix}", a)
    b = read_idx(tmp_path / f"a{suffix}")
    assert b.shape == a.shape and b.dtype.isnative
    assert_array_equal(b, a)


def test_a_gzipped_file_has_no_timestamp_so_its_bytes_are_the_arrays(tmp_path, monkeypatch):

    a = np.arange(12, dtype="u1").reshape(3, 4)
    write_idx(tmp_path / "a.gz", a)
    monkeypatch.setattr(time, "time", lambda: 2e9)  # a write a second (or years) later: checksums must not change
    write_idx(tmp_path / "b.gz", a)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_known_bytes_are_big_endian(tmp_path):
    (tmp_path / "x").write_bytes(b"\0\0\x0b\x01" + struct.pack(">I", 2) + struct.pack(">hh", 258, -2))
    assert_array_equal(read_idx(tmp_path / "x"), [258, -2])


def test_gzip_is_detected_by_content_not_name(tmp_path):
    write_idx(tmp_path / "noext", np.arange(5, dtype="u1"), compress=True)
    assert_array_equal(read_idx(tmp_path / "noext"), np.arange(5))


HEADER = b"\0\0\x08\x02" + struct.pack(">II", 2, 3)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "empty file"),
        (b"\x01\x02\x08\x01", "bad magic number"),
        (b"\0\0\x07\x01" + struct.pack(">I", 1) + b"\0", "unsupported IDX type code 0x07"),
        (b"\0\0\x08\x00", "declares no dimensions"),
        (b"\0\0\x08\x03\0\0", "truncated IDX header"),
        (HEADER + bytes(5), "truncated: header declares 6 bytes of data, file has 5"),
        (HEADER + bytes(7), "trailing bytes"),
        (b"\0\0\x08\x03" + struct.pack(">III", 60000, 60000, 60000), "more than the"),
    ],
)
def test_malformed_files_are_rejected_with_the_file_name(tmp_path, payload, message):
    for name, data in (("raw", payload), ("z.gz", gzip.compress(payload))):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataError, match=message) as info:
            read_idx(path)
        assert str(path) in str(info.value)


def test_truncated_and_corrupt_gzip_streams(tmp_path):
    good = gzip.compress(HEADER + bytes(6))
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="gzip"):
        read_idx(tmp_path / "cut.gz")
    corrupt = bytearray(good)
    corrupt[12] ^= 0xFF
    (tmp_path / "bad.gz").write_bytes(bytes(corrupt))
    with pytest.raises(DataError):
        read_idx(tmp_path / "bad.gz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nope")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_give_consistent_arrays_or_data_errors(tmp_path_factory, data, compress):
    path = tmp_path_factory.mktemp("fuzz") / "f"
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        a = read_idx(path)
    except DataError:
        return
    assert a.ndim == data[3] and a.nbytes == len(data) - 4 - 4 * a.ndim


VALID = gzip.decompress(gzip.compress(b"\0\0\x08\x03" + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
                                      + (5).to_bytes(4, "big") + bytes(range(60))))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(data=st.data(), compress=st.booleans())
def test_mutated_idx_files_give_consistent_arrays_or_data_errors(tmp_path_factory, data, compress):
    blob = bytearray(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "append", "insert"]))
        at = data.draw(st.integers(0, max(len(blob) - 1, 0)))
        if kind == "flip" and blob:
            blob[at] = data.draw(st.integers(0, 255))
        elif kind == "truncate":
            del blob[at:]
        elif kind == "append":
            blob += data.draw(st.binary(min_size=1, max_size=8))
        else:
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    path = tmp_path_factory.mktemp("mut") / "f"
    raw = bytes(blob)
    path.write_bytes(gzip.compress(raw) if compress else raw)
    try:
        a = read_idx(path)
    except DataError:
        return
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(raw[3])]
    assert list(a.shape) == dims and a.nbytes == len(raw) - 4 - 4 * raw[3]
