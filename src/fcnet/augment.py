"""Data augmentation of uint8 images: random shifts, rotations, scalings, elastic distortions (Simard 2003), mirroring
and random erasing (Zhong et al. 2020).

``Augment(shift=2, rotate=10, scale=0.1, elastic=34, sigma=4, flip=0.5, erase=0.5)`` draws, for every image, one
affine map (a shift of up to ``shift`` pixels along each axis, a rotation of up to ``rotate`` degrees, a scaling
by up to ``±scale``, a left-right mirror with probability ``flip`` — for clothes, not digits) and, with
``elastic`` = α > 0, a displacement field of uniform noise in [−1, 1] smoothed by a Gaussian of ``sigma`` pixels
and multiplied by α, as in Simard, Steinkraus & Platt (2003) (drawn in a basis of the blur, see
:meth:`Augment._displacements`). Each output pixel ``p`` samples the input at ``A(p − c) + c + t + d(p)`` (``c``
the centre) by bilinear interpolation, outside the picture being 0 (paper), and is rounded back to uint8. Then,
with probability ``erase``, a random rectangle of the result is set to 0, as torchvision's
``RandomErasing(p=erase, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)`` sets it (:meth:`Augment._erase`).

Everything random is drawn from the generator passed in, in one fixed order, so the model's generator fixes the
distortions of a run and a resumed run draws those it would have drawn. The smoothing (two small products per
field) and the sampling are one loop, compiled with Numba when it is installed (``fcnet[fast]``): each block of
images blurs its fields where they are used, into a buffer that stays in cache; NumPy computes the same sums in
the same order otherwise — the two give the same bytes (``tests/test_augment.py``). ``fit(augment=...)``
distorts the training images once per epoch, before drawing the epoch's order.
"""

import functools
import math

import numpy as np

__all__ = ["Augment", "parse", "KINDS"]

KINDS = {"shift": 2.0, "rotate": 10.0, "scale": 0.1, "elastic": 34.0, "flip": 0.5, "erase": 0.5}  # name → default
ERASE_SCALE, ERASE_RATIO = (0.02, 0.33), (0.3, 3.3)  # torchvision's RandomErasing defaults
SIGMA = 4.0


class Augment:
    """Random distortions of ``(n, rows, cols)`` (or ``(n, rows·cols)`` square) uint8 images; see the module.

    Parameters
    ----------
    shift : float
        Pixels, uniform in ``[−shift, shift]`` along each axis.
    rotate : float
        Degrees, uniform in ``[−rotate, rotate]``.
    scale : float
        The zoom, uniform in ``[1 − scale, 1 + scale]``.
    elastic, sigma : float
        Simard's α (pixels) and σ of the smoothing Gaussian; 0 turns the elastic part off.
    flip : float
        The probability of mirroring an image left to right.
    erase : float
        The probability of erasing (setting to 0) a rectangle of an image: its area a uniform fraction in
        ``ERASE_SCALE`` of the picture's, its height ÷ width log-uniform in ``ERASE_RATIO``, each side clipped to the
        picture, placed uniformly inside it.
    shape : (int, int), optional
        ``(rows, cols)`` of images given as flat rows ``(n, rows·cols)``, as ``fit`` holds them; default square.
    """

    def __init__(self, shift=0.0, rotate=0.0, scale=0.0, elastic=0.0, sigma=SIGMA, flip=0.0, erase=0.0, shape=None):
        for name, value, top in (("shift", shift, 28), ("rotate", rotate, 180), ("scale", scale, 0.9),
                                 ("elastic", elastic, 1000), ("sigma", sigma, 100), ("flip", flip, 1),
                                 ("erase", erase, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
                raise ValueError(f"augment {name} must be a number in [0, {top}], got {value!r}")
        if sigma <= 0:
            raise ValueError("augment sigma must be > 0")
        self.shift, self.rotate, self.scale = float(shift), float(rotate), float(scale)
        self.elastic, self.sigma, self.flip, self.erase = float(elastic), float(sigma), float(flip), float(erase)
        self.shape = None if shape is None else tuple(int(v) for v in shape)

    def get_config(self):
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def __call__(self, images, rng):
        """Distorted copies of ``images`` (uint8, ``(n, rows, cols)`` or ``(n, side²)``), same shape."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"augmentation works on uint8 images, got {images.dtype}")
        shape = images.shape
        if images.ndim == 2:
            side = math.isqrt(shape[1])
            rows, cols = self.shape or (side, side)
            if rows * cols != shape[1]:
                raise ValueError(f"rows of {shape[1]} pixels are not {rows}×{cols} images: give the shape "
                                 "(Augment(shape=...)) or pass (n, rows, cols)")
            images = images.reshape(len(images), rows, cols)
        if images.ndim != 3:
            raise ValueError(f"images must have shape (n, rows, cols), got {shape}")
        images = np.ascontiguousarray(images)
        n, rows, cols = images.shape
        affine = self._affine(n, rows, cols, rng)
        out = np.empty_like(images)
        scratch = {}  # the noise buffer, reused by every chunk: no fresh pages to fault in
        for start in range(0, n, CHUNK):  # the noise of CHUNK images at a time: bounded memory, the same draws
            part = slice(start, start + CHUNK)
            noise = self._displacements(len(images[part]), rows, cols, rng, scratch)
            _sample(images[part], affine[part], noise, self._bases(rows, cols), out[part])
        if self.erase:  # drawn after everything else: the other kinds' draws stay what they were
            self._erase(out, rng)
        return out.reshape(shape)

    def _erase(self, images, rng):
        """Random erasing, in place on ``(n, rows, cols)`` ``images``: each image with probability ``erase`` gets
        one rectangle set to 0 (see the class). Drawn for every image, in one fixed order."""
        n, rows, cols = images.shape
        chosen = rng.random(n) < self.erase
        area = rng.uniform(*ERASE_SCALE, n) * (rows * cols)
        ratio = np.exp(rng.uniform(*np.log(ERASE_RATIO), n))
        height = np.clip(np.rint(np.sqrt(area * ratio)), 1, rows).astype(np.intp)
        width = np.clip(np.rint(np.sqrt(area / ratio)), 1, cols).astype(np.intp)
        top = (rng.random(n) * (rows - height + 1)).astype(np.intp)
        left = (rng.random(n) * (cols - width + 1)).astype(np.intp)
        for k in np.flatnonzero(chosen):
            images[k, top[k]:top[k] + height[k], left[k]:left[k] + width[k]] = 0

    def _affine(self, n, rows, cols, rng):
        """Per image ``[a, b, t, c, d, u]``: output pixel ``(i, j)`` samples the input at ``(a i + b j + t,
        c i + d j + u)`` — rotation and zoom about the centre, inverted, then the shift; a mirrored image's
        output ``(i, j)`` is the unmirrored one's ``(i, cols − 1 − j)``. ``(n, 6)`` float64."""
        angle = np.deg2rad(rng.uniform(-self.rotate, self.rotate, n))
        zoom = rng.uniform(1 - self.scale, 1 + self.scale, n)
        shift = rng.uniform(-self.shift, self.shift, (n, 2))
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        cr, cc = (rows - 1) / 2, (cols - 1) / 2
        affine = np.stack([cos, -sin, cr - cos * cr + sin * cc + shift[:, 0],
                           sin, cos, cc - sin * cr - cos * cc + shift[:, 1]], axis=1)
        if self.flip:  # drawn last, and only when asked: the other kinds' draws stay what they were
            mirrored = rng.random(n) < self.flip
            for col, offset in ((1, 2), (4, 5)):  # j → cols − 1 − j in a i + b j + t and c i + d j + u
                affine[mirrored, offset] += affine[mirrored, col] * (cols - 1)
                affine[mirrored, col] *= -1
        return affine

    def _bases(self, rows, cols):
        """``(B_rows, B_colsᵀ)`` of the blur (:func:`_blur_basis`), or empty ones without elastic distortion."""
        if not self.elastic:
            return np.zeros((rows, 0), dtype=np.float32), np.zeros((0, cols), dtype=np.float32)
        return _blur_basis(rows, self.sigma), _blur_basis(cols, self.sigma).T.copy()

    def _displacements(self, n, rows, cols, rng, scratch=None):
        """Simard's fields for ``n`` images, as their coordinates ``Z`` in the blur's basis: ``(k_rows, k_cols,
        2n)`` float32, ``[:, :, 2k]`` that of image ``k``'s row and ``[:, :, 2k + 1]`` of its column displacement,
        the field being ``B_rows Z B_colsᵀ`` (:func:`_fields`) — or ``(0, 0, 2n)`` without elastic distortion.

        The blur ``G U Gᵀ`` of a noise field ``U`` (α times uniform noise in [−1, 1]) is drawn as ``B Z Bᵀ``, with
        ``G = V S Vᵀ`` and ``B`` the eigenvectors of ``G`` scaled by their eigenvalues, kept down to 1e-3 of the
        largest (10 of 28 for σ = 4): ``Z = Vᵀ U V`` has uncorrelated entries of the noise's variance, so ``Z``
        is drawn directly, α times uniform in [−1, 1] too — 100 numbers per field instead of 784; each value of
        the field sums 100 of them, as it summed 784 — and the field has the full blur's covariance except in
        the parts ``G`` damps by more than 1000×. ``scratch`` (a dict) keeps the array between calls.
        """
        if not self.elastic:
            return np.zeros((0, 0, 2 * n), dtype=np.float32)
        k_rows, k_cols = _blur_basis(rows, self.sigma).shape[1], _blur_basis(cols, self.sigma).shape[1]
        scratch = {} if scratch is None else scratch
        size = k_rows * 2 * n * k_cols
        if "z" not in scratch or scratch["z"].size < size:
            scratch["z"] = np.empty(size, dtype=np.float32)
        z = rng.random((k_rows, k_cols, 2 * n), dtype=np.float32, out=scratch["z"][:size].reshape(k_rows, k_cols, -1))
        z *= np.float32(2 * self.elastic)
        z -= np.float32(self.elastic)  # α · U(−1, 1): the variance the blurred noise's coordinates have
        return z


def _fields(z, b_rows, b_cols_t):
    """The displacement fields ``B_rows Z_f B_colsᵀ`` of :meth:`Augment._displacements`' ``z``, ``(rows, cols,
    2n)`` float32: each sum taken term by term in the order the compiled sampler takes it (same bytes)."""
    half = np.zeros((z.shape[0], b_cols_t.shape[1], z.shape[2]), dtype=np.float32)
    for g in range(z.shape[1]):
        half += z[:, g, None, :] * b_cols_t[g, None, :, None]
    fields = np.zeros((len(b_rows), b_cols_t.shape[1], z.shape[2]), dtype=np.float32)
    for e in range(z.shape[0]):
        fields += b_rows[:, e, None, None] * half[e]
    return fields


CHUNK = 2048


def _gaussian_matrix(size, sigma):
    """``G`` with ``(G v)_i = Σ_j g(i − j) v_j``: a Gaussian blur of a length-``size`` signal, zeros outside
    (weights summing to 1 away from the edges)."""
    offsets = np.arange(size)[:, None] - np.arange(size)[None, :]
    g = np.exp(-0.5 * (offsets / sigma) ** 2)
    return g / np.exp(-0.5 * (np.arange(-size + 1, size) / sigma) ** 2).sum()


@functools.cache
def _blur_basis(size, sigma):
    """``B = V_k S_k``: the eigenvectors of the Gaussian blur matrix scaled by their eigenvalues, those down to
    1e-3 of the largest, ``(size, k)`` float32 (see :meth:`Augment._displacements`)."""
    values, vectors = np.linalg.eigh(_gaussian_matrix(size, sigma).astype(np.float64))
    keep = np.abs(values) >= 1e-3 * np.abs(values).max()
    return np.ascontiguousarray(vectors[:, keep] * values[keep], dtype=np.float32)


def _sample_numpy(images, affine, noise, bases):
    """Bilinear samples of ``images`` at the mapped coordinates (0 outside), rounded to uint8: the reference."""
    n, rows, cols = images.shape
    i, j = np.mgrid[0:rows, 0:cols].astype(np.float64)
    a, b, t, c, d, u = (affine[:, k, None, None] for k in range(6))
    r, s = a * i + b * j + t, c * i + d * j + u
    if noise.shape[0]:
        fields = _fields(noise, *bases).transpose(2, 0, 1)  # (2n, rows, cols)
        r = r + fields[0::2].astype(np.float64)
        s = s + fields[1::2].astype(np.float64)
    padded = np.zeros((n, rows + 2, cols + 2), dtype=np.float64)
    padded[:, 1:-1, 1:-1] = images
    r = np.maximum(np.minimum(r, rows), -1.0) + 1.0  # in the padded frame: −1 and rows are the zero border
    s = np.maximum(np.minimum(s, cols), -1.0) + 1.0
    r0, s0 = np.minimum(np.floor(r), rows).astype(np.intp), np.minimum(np.floor(s), cols).astype(np.intp)
    fr, fs = r - r0, s - s0
    k = np.arange(n)[:, None, None]
    p, q = padded[k, r0, s0], padded[k, r0, s0 + 1]
    v, w = padded[k, r0 + 1, s0], padded[k, r0 + 1, s0 + 1]
    value = (1 - fr) * ((1 - fs) * p + fs * q) + fr * ((1 - fs) * v + fs * w)
    return np.minimum(np.maximum(np.floor(value + 0.5), 0.0), 255.0).astype(np.uint8)


def _sample(images, affine, noise, bases, out=None):
    """The distorted images, written into ``out`` (uint8, shaped like ``images``) when given; ``noise`` and
    ``bases`` as :meth:`Augment._displacements` and :meth:`Augment._bases` give them."""
    out = np.empty(images.shape, dtype=np.uint8) if out is None else out
    try:
        from .sampler import sample_bilinear
    except ImportError:  # no Numba: the NumPy reference
        out[...] = _sample_numpy(images, affine, noise, bases)
        return out
    sample_bilinear(images, affine, noise, *bases, out)
    return out


def parse(text, shape=None):
    """``"shift,rotate,elastic"``, ``"flip"`` or ``"shift=3,elastic=30,sigma=5"`` (``fcnet train --augment``) →
    Augment.

    A kind named without a strength takes its default (:data:`KINDS`); ``shape`` is the images' ``(rows, cols)``.
    """
    settings = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in KINDS and name != "sigma":
            raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(KINDS)} (and sigma=)")
        if name == "sigma" and not value:
            raise ValueError("sigma needs a value: sigma=4")
        try:
            settings[name] = float(value) if value else KINDS[name]
        except ValueError:
            raise ValueError(f"augmentation {name}={value!r}: not a number") from None
    if not settings:
        raise ValueError("name at least one of " + ", ".join(KINDS))
    return Augment(**settings, shape=shape)
