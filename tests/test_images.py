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
