import io

import numpy as np
import pytest
from PIL import Image

from fcnet.errors import DataError
from fcnet.images import MAX_PIXELS, decode_image, fit, mnist_style


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_mnist_style_fits_the_ink_in_20x20_and_centres_its_mass():
    canvas = np.zeros((280, 280), np.uint8)
    canvas[30:150, 200:230] = 255  # a tall bar in the top-right corner
    out = mnist_style(canvas)
    rows, cols = np.nonzero(out > 30)
    assert out.shape == (28, 28) and rows.max() - rows.min() + 1 == 20  # the longer side is 20 pixels
    mass = out.astype(float)
    cy, cx = (np.indices(out.shape) * mass).reshape(2, -1).sum(axis=1) / mass.sum()
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


def test_dark_ink_on_white_paper_is_inverted_and_empty_drawings_stay_empty():
    paper = np.full((100, 100), 255, np.uint8)
    paper[40:60, 45:55] = 0
    out = mnist_style(paper)
    assert out[14, 14] > 200 and out[0, 0] == 0
    assert not mnist_style(np.zeros((50, 50), np.uint8)).any()
    assert fit(paper).shape == (28, 28) and fit(paper)[0, 0] == 0


def test_decode_refuses_non_images_and_decompression_bombs():
    assert decode_image(_png(np.eye(8, dtype=np.uint8) * 255)).shape == (8, 8)
    with pytest.raises(DataError, match="not a readable image"):
        decode_image(b"GIF89a definitely not")
    side = int(np.sqrt(MAX_PIXELS)) + 16
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")  # a few kB that would decode to 17 M pixels
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(DataError, match="more than the"):
        decode_image(buffer.getvalue())


def test_device_files_fifos_folders_and_oversized_files_are_refused_before_reading(tmp_path, monkeypatch, capsys):
    import os

    from fcnet import images
    from fcnet.cli import main

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading does not block only because nothing is read from it before the check
    for path, why in (("/dev/zero", "not a regular file"), (fifo, "not a regular file"),
                      (tmp_path, "a directory, not an image")):
        if path == fifo:
            writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer end, so that opening it returns
        with pytest.raises(DataError, match=why):
            images.load_image(path)
        if path == fifo:
            os.close(writer)
    big = tmp_path / "big.png"
    big.write_bytes(_png(np.zeros((8, 8), np.uint8)) + b"\0" * 2000)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    with pytest.raises(DataError, match=r"2,0\d\d bytes is more than the 1,000 an image may have"):
        images.load_image(big)
    import fcnet

    model = fcnet.Sequential([fcnet.Dense(10, "softmax", input_dim=784)], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.save(tmp_path / "m.npz")
    assert main(["predict", str(tmp_path / "m.npz"), "/dev/zero"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("/dev/zero: not a regular file") and len(err.splitlines()) == 1


def test_a_transparent_background_becomes_paper_not_ink():
    from fcnet.images import decode_image, is_blank, mnist_style

    rgba = np.zeros((40, 40, 4), np.uint8)  # a drawing tool's export: black strokes on nothing
    rgba[8:32, 18:22] = (0, 0, 0, 255)
    gray = decode_image(_png(rgba))
    assert gray[0, 0] == 255 and gray[20, 20] == 0  # transparent → white paper behind dark ink
    prepared = mnist_style(gray)
    assert not is_blank(prepared) and prepared.max() > 200
    light = rgba.copy()
    light[8:32, 18:22] = (255, 255, 255, 255)  # white strokes on nothing: black behind them
    gray = decode_image(_png(light))
    assert gray[0, 0] == 0 and gray[20, 20] == 255
    assert is_blank(mnist_style(np.full((30, 30), 255, np.uint8))) and is_blank(np.zeros(784))
