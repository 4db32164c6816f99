"""Image files and drawings to network inputs, with Pillow (imported only here).

Two preparations: :func:`load_image` fits a picture into the model's
rows × cols (Fashion-MNIST style: the object fills the frame);
:func:`mnist_style` does what was done to MNIST's digits — crop to the ink's
bounding box, scale it to fit 20 × 20, and place it in 28 × 28 so that its
centre of mass is in the middle. Both make light strokes on black, inverting
pictures whose border is light (dark ink on paper).
"""

import io
import os
import stat
import warnings

import numpy as np

from .errors import DataError

__all__ = ["load_image", "decode_image", "mnist_style", "fit", "is_blank", "MAX_PIXELS", "MAX_FILE_BYTES"]

MAX_PIXELS = 4096 * 4096  # larger images are refused before they are decoded (decompression bombs)
MAX_FILE_BYTES = 64 << 20  # image files larger than this are refused before they are read


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise DataError("reading images needs Pillow: pip install 'fcnet[image]'") from None
    return Image


def decode_image(data, name="image"):
    """Bytes of a PNG, JPEG or other Pillow-readable image as a 2-D ``uint8`` grayscale array.

    Raises
    ------
    DataError
        Not an image, or one of more than :data:`MAX_PIXELS` pixels (checked from the header, before decoding).
    """
    Image = _pil()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise DataError(f"{name}: {img.width}x{img.height} pixels is more than the {MAX_PIXELS:,} allowed")
                return _gray(img)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{name}: refused, a decompression bomb ({exc})") from None
    except Exception as exc:  # Pillow raises many types for corrupt data (OSError, SyntaxError, ValueError...)
        raise DataError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from None


def _gray(img):
    """Grayscale ``uint8`` pixels of a Pillow image; a transparent background is filled with the colour that
    contrasts with what is drawn (white behind dark strokes, black behind light ones), not left black."""
    if img.mode not in ("RGBA", "LA", "PA") and "transparency" not in img.info:
        return np.asarray(img.convert("L"), dtype=np.uint8)
    la = np.asarray(img.convert("LA"), dtype=np.float64)
    gray, alpha = la[..., 0], la[..., 1] / 255
    ink = (gray * alpha).sum() / alpha.sum() if alpha.sum() else 0.0
    background = 255.0 if ink < 128 else 0.0
    return np.round(alpha * gray + (1 - alpha) * background).astype(np.uint8)


def is_blank(pixels):
    """Whether a prepared picture holds nothing to classify: its pixels span less than 5 % of the range."""
    pixels = np.asarray(pixels, dtype=np.float64)
    scale = 255.0 if pixels.max(initial=0) > 1 else 1.0
    return pixels.size == 0 or (pixels.max() - pixels.min()) < 0.05 * scale


def _light_on_dark(pixels):
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 255 - pixels if border.mean() > 127 else pixels


def _resize(pixels, width, height):
    Image = _pil()
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS), dtype=np.uint8)


def fit(pixels, shape=(28, 28)):
    """Light-on-dark ``pixels`` resized to ``shape`` (rows, cols)."""
    return _resize(_light_on_dark(pixels), shape[1], shape[0])


def mnist_style(pixels, size=28, box=20):
    """A drawing prepared like MNIST's digits: bounding box, fit into ``box`` × ``box``, centre of mass centred.

    Parameters
    ----------
    pixels : ndarray, shape (rows, cols), uint8
        Any size, either polarity.

    Returns
    -------
    ndarray, shape (size, size), uint8
        Light strokes on black; all zeros for an empty drawing.
    """
    pixels = _light_on_dark(pixels)
    ink = pixels > 0.1 * pixels.max() if pixels.max() > 0 else np.zeros(pixels.shape, bool)
    out = np.zeros((size, size), np.uint8)
    if not ink.any():
        return out
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    scale = box / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = _resize(crop, w, h).astype(float)
    total = small.sum()
    cy, cx = ((np.indices(small.shape) * small).reshape(2, -1).sum(axis=1) / total) if total else (h / 2, w / 2)
    top = int(np.clip(round(size / 2 - cy), 0, size - h))
    left = int(np.clip(round(size / 2 - cx), 0, size - w))
    out[top:top + h, left:left + w] = small.round().astype(np.uint8)
    return out


def load_image(path, shape=(28, 28), digits=False):
    """Read an image file as a ``uint8`` array of ``shape``: :func:`mnist_style` if ``digits`` else :func:`fit`.

    Only a regular file of at most :data:`MAX_FILE_BYTES` is read (``/dev/zero`` or a FIFO would never end).
    """
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DataError(f"{path}: not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise DataError(f"{path}: {info.st_size:,} bytes is more than the {MAX_FILE_BYTES:,} an image may have")
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a directory, not an image") from None
    pixels = decode_image(data, str(path))
    return mnist_style(pixels, size=shape[0]) if digits and shape[0] == shape[1] else fit(pixels, shape)
