import dataclasses
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import write_idx_set
from numpy.testing import assert_array_equal

from fcnet import datasets
from fcnet.datasets import FILES
from fcnet.errors import ChecksumError, DataError, DataNotFoundError
from fcnet.idx import write_idx


def _generated_gz(tmp_path):
    """Generated IDX .gz files, their bytes and MD5s."""
    arrays = write_idx_set(tmp_path / "src", n_train=120, n_test=40)
    blobs = {stem: (tmp_path / "src" / (stem + ".gz")).read_bytes() for stem in FILES}
    md5 = {stem: hashlib.md5(b).hexdigest() for stem, b in blobs.items()}
    return arrays, blobs, md5


def _patch(monkeypatch, name, **changes):
    monkeypatch.setitem(datasets.REGISTRY, name, dataclasses.replace(datasets.REGISTRY[name], **changes))
    monkeypatch.setattr(datasets, "SYSTEM_ROOT", datasets.cache_dir() / "no-system-copies")
    monkeypatch.setenv("HOME", str(datasets.cache_dir() / "home"))


def test_download_skips_a_mirror_serving_html_and_verifies(tmp_path, monkeypatch, mirror):
    arrays, blobs, md5 = _generated_gz(tmp_path)
    for stem, blob in blobs.items():
        mirror.routes[f"/a/{stem}.gz"] = "html"
        mirror.routes[f"/b/{stem}.gz"] = blob
    _patch(monkeypatch, "mnist", mirrors=(mirror.url + "/a/", mirror.url + "/b/"), md5=md5)
    (x, y), (xt, yt) = datasets.load("mnist")
    for got, want in zip((x, y, xt, yt), arrays):
        assert_array_equal(got, want)
    cached = sorted(p.name for p in (datasets.cache_dir() / "mnist").iterdir())
    assert cached == sorted(stem + ".gz" for stem in FILES)  # no temporary or partial files
    n_hits = len(mirror.hits)
    datasets.load("mnist")
    assert len(mirror.hits) == n_hits  # the second load reads the cache


def test_truncated_body_and_404_move_on_and_leave_nothing(tmp_path, monkeypatch, mirror):
    _, blobs, md5 = _generated_gz(tmp_path)
    for stem, blob in blobs.items():
        mirror.routes[f"/cut/{stem}.gz"] = ("truncate", blob)
        mirror.routes[f"/ok/{stem}.gz"] = blob
    _patch(monkeypatch, "kmnist", mirrors=(mirror.url + "/gone/", mirror.url + "/cut/", mirror.url + "/ok/"), md5=md5)
    assert datasets.download("kmnist") == datasets.cache_dir() / "kmnist"
    assert f"/cut/{FILES[0]}.gz" in mirror.hits


@pytest.mark.slow
def test_a_trickling_or_oversized_mirror_is_abandoned_and_leaves_nothing(tmp_path, monkeypatch, mirror):
    _, blobs, md5 = _generated_gz(tmp_path)
    for stem, blob in blobs.items():
        mirror.routes[f"/slow/{stem}.gz"] = ("trickle", blob)
        mirror.routes[f"/huge/{stem}.gz"] = ("huge", blob)
        mirror.routes[f"/ok/{stem}.gz"] = blob
    monkeypatch.setattr(datasets, "DOWNLOAD_DEADLINE", 0.3)
    _patch(monkeypatch, "kmnist", mirrors=(mirror.url + "/slow/", mirror.url + "/huge/", mirror.url + "/ok/"),
           md5=md5)
    assert datasets.download("kmnist") == datasets.cache_dir() / "kmnist"
    assert sorted(p.name for p in (datasets.cache_dir() / "kmnist").iterdir()) == sorted(s + ".gz" for s in FILES)
    for stem in FILES:
        assert f"/slow/{stem}.gz" in mirror.hits and f"/huge/{stem}.gz" in mirror.hits
    stale = datasets.cache_dir() / "kmnist" / ".tmp-killed-train-images-idx3-ubyte.gz"
    stale.write_bytes(b"half a download")
    os.utime(stale, (0, 0))  # from a download killed long ago
    datasets.download_files(datasets.REGISTRY["kmnist"], datasets.cache_dir() / "kmnist", stems=())
    assert not stale.exists()
    _patch(monkeypatch, "mnist", mirrors=(mirror.url + "/slow/", mirror.url + "/huge/"), md5=md5)
    with pytest.raises(DataNotFoundError, match=r"still downloading after 0.3 s .*more than a data file has"):
        datasets.download("mnist")
    assert not list((datasets.cache_dir() / "mnist").glob("*"))


def test_no_network_is_one_clear_error_naming_the_folders(tmp_path, monkeypatch, mirror):
    _, _, md5 = _generated_gz(tmp_path)
    url = mirror.url
    mirror.close()  # nothing listens there any more: connection refused
    _patch(monkeypatch, "mnist", mirrors=(url + "/",), md5=md5)
    with pytest.raises(DataNotFoundError, match="not found offline") as info:
        datasets.load("mnist")
    message = str(info.value)
    assert "\n" not in message and str(datasets.cache_dir() / "mnist") in message and "--data-dir" in message
    assert not (datasets.cache_dir() / "mnist").exists() or not any((datasets.cache_dir() / "mnist").iterdir())


def test_every_mirror_with_a_wrong_checksum_is_a_checksum_error(tmp_path, monkeypatch, mirror):
    _, blobs, md5 = _generated_gz(tmp_path)
    for stem, blob in blobs.items():
        mirror.routes[f"/x/{stem}.gz"] = blob + b"tampered"
    _patch(monkeypatch, "mnist", mirrors=(mirror.url + "/x/",), md5=md5)
    with pytest.raises(ChecksumError, match="wrong checksum"):
        datasets.load("mnist")


def test_lookup_order_data_dir_then_cache(tmp_path, monkeypatch):
    _, _, md5 = _generated_gz(tmp_path)
    _patch(monkeypatch, "mnist", md5=md5, mirrors=())
    cache_arrays = write_idx_set(datasets.cache_dir() / "mnist", n_train=120, n_test=40)
    (x, _), _ = datasets.load("mnist")
    assert_array_equal(x, cache_arrays[0])
    other = tmp_path / "mine"
    # torchvision's layout inside --data-dir, with the published files
    (other / "MNIST" / "raw").mkdir(parents=True)
    for stem in FILES:
        (other / "MNIST" / "raw" / (stem + ".gz")).write_bytes((tmp_path / "src" / (stem + ".gz")).read_bytes())
    assert datasets.locate("mnist", other)[FILES[0]].parent == other / "MNIST" / "raw"
    monkeypatch.setenv("FCNET_DATA", str(other))
    assert datasets.locate("mnist")[FILES[0]].parent == other / "MNIST" / "raw"


def test_recompressed_copy_verifies_by_sha256_of_the_decompressed_bytes(tmp_path, monkeypatch):
    arrays, blobs, md5 = _generated_gz(tmp_path)
    sha = {stem: hashlib.sha256(gzip.decompress(b)).hexdigest() for stem, b in blobs.items()}
    folder = tmp_path / "debian"
    folder.mkdir()
    for stem, blob in blobs.items():
        (folder / (stem + ".gz")).write_bytes(gzip.compress(gzip.decompress(blob), compresslevel=1, mtime=1))
    _patch(monkeypatch, "fashion-mnist", md5=md5, sha256=sha, mirrors=())
    (x, _), _ = datasets.load("fashion-mnist", data_dir=folder)
    assert_array_equal(x, arrays[0])
    # a different file of the right shape fails its checksum, with a distinct message
    write_idx_set(folder, n_train=120, n_test=40, seed=9)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        datasets.load("fashion-mnist", data_dir=folder)


def test_seed_style_names_and_raw_files_through_idx_prefix(tmp_path):
    folder = tmp_path / "seed"
    arrays = write_idx_set(folder, suffix="")
    for stem in FILES:
        (folder / stem).rename(folder / stem.replace("-idx", ".idx"))
    (x, y), (xt, yt) = datasets.load(f"idx:{folder}")
    assert_array_equal(x, arrays[0])
    assert_array_equal(yt, arrays[3])


def test_idx_folder_with_mismatched_counts_or_missing_files(tmp_path):
    folder = tmp_path / "bad"
    write_idx_set(folder)
    from fcnet.idx import write_idx

    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match="600 train images but 5 labels"):
        datasets.load(f"idx:{folder}")
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataNotFoundError, match="missing IDX file"):
        datasets.load(f"idx:{folder}")


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="choose from mnist, fashion-mnist, kmnist"):
        datasets.load("cifar")


def test_real_fashion_mnist(fashion):
    (x, y), (xt, yt) = fashion
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.uint8
    assert_array_equal(np.bincount(y), [6000] * 10)
    assert_array_equal(np.bincount(yt), [1000] * 10)


def test_recompressed_mnist_verifies_by_the_sha256_of_its_bytes():
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    if not (shared / "mnist").is_dir():
        pytest.skip("the real MNIST copy beside the checkout (../shared/datasets/mnist) is not here")
    (x, y), (xt, yt) = datasets.load("mnist", shared)  # gzip -9 -n: not the published .gz, the same bytes
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert list(y[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert datasets.download("mnist", shared, fetch=False) == shared / "mnist"


def _blobs(tmp_path, **kwargs):
    write_idx_set(tmp_path / "src", n_train=100, n_test=30, **kwargs)
    return {stem: (tmp_path / "src" / (stem + ".gz")).read_bytes() for stem in FILES}


def _patch_registry(monkeypatch, name, blobs, mirrors):
    md5 = {stem: hashlib.md5(b).hexdigest() for stem, b in blobs.items()}
    monkeypatch.setitem(datasets.REGISTRY, name, dataclasses.replace(datasets.REGISTRY[name], md5=md5,
                                                                     mirrors=mirrors, sha256={}))
    monkeypatch.setattr(datasets, "SYSTEM_ROOT", datasets.cache_dir() / "none")
    monkeypatch.setenv("HOME", str(datasets.cache_dir() / "home"))


def test_dropped_connection_moves_on_to_the_next_mirror(tmp_path, monkeypatch, mirror):
    blobs = _blobs(tmp_path)
    for stem, blob in blobs.items():
        mirror.routes[f"/drop/{stem}.gz"] = "drop"
        mirror.routes[f"/ok/{stem}.gz"] = blob
    _patch_registry(monkeypatch, "mnist", blobs, (mirror.url + "/drop/", mirror.url + "/ok/"))
    (x, _), _ = datasets.load("mnist")
    assert len(x) == 100 and f"/drop/{FILES[0]}.gz" in mirror.hits


def test_a_corrupt_file_in_the_cache_is_fetched_again(tmp_path, monkeypatch, mirror, caplog):
    blobs = _blobs(tmp_path)
    for stem, blob in blobs.items():
        mirror.routes[f"/m/{stem}.gz"] = blob
    _patch_registry(monkeypatch, "mnist", blobs, (mirror.url + "/m/",))
    datasets.load("mnist")
    cached = datasets.cache_dir() / "mnist" / (FILES[1] + ".gz")
    cached.write_bytes(gzip.compress(b"\0\0\x08\x01" + (100).to_bytes(4, "big") + bytes(100)))  # valid IDX, wrong data
    hits = len(mirror.hits)
    (_, y), _ = datasets.load("mnist")
    assert len(mirror.hits) == hits + 1 and "downloading it again" in caplog.text
    assert cached.read_bytes() == blobs[FILES[1]]
    assert y.any()


def test_labels_outside_the_classes_are_rejected(tmp_path, monkeypatch):
    folder = tmp_path / "bad"
    arrays = write_idx_set(folder, n_train=50, n_test=20)
    labels = arrays[1].copy()
    labels[7] = 12
    write_idx(folder / (FILES[1] + ".gz"), labels)
    blobs = {stem: (folder / (stem + ".gz")).read_bytes() for stem in FILES}
    _patch_registry(monkeypatch, "kmnist", blobs, ())
    with pytest.raises(DataError, match="train labels must lie in 0..9, found 12"):
        datasets.load("kmnist", data_dir=folder)
