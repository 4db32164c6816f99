"""Image files to network inputs (``fcnet predict``), with Pillow, imported only here."""

import numpy as np

from .errors import DataError

__all__ = ["load_image"]


def load_image(path, shape=(28, 28)):
    """Read an image file as a ``uint8`` array of ``shape``, MNIST-style: light strokes on black.

    The image is converted to grayscale and resized; if its border is mostly
    light (dark ink on white paper), the polarity is inverted.

    Returns
    -------
    ndarray, shape ``shape``, dtype uint8
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("reading images needs Pillow: pip install 'fcnet[image]'") from None
    try:
        with Image.open(path) as img:
            gray = img.convert("L").resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    pixels = np.asarray(gray, dtype=np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 255 - pixels if border.mean() > 127 else pixels
