"""The compiled sampler of :mod:`fcnet.augment` (Numba): the distortions of a batch of images, drawn by
:class:`fcnet.augment.Augment`, applied in one parallel loop. ``fcnet.augment._sample_numpy`` is its reference,
and ``tests/test_augment.py`` proves them equal."""

import numba
import numpy as np

__all__ = ["sample_bilinear"]


@numba.njit(cache=True, parallel=True)
def sample_bilinear(images, affine, z, b_rows, b_cols_t, out):
    """``out[k, i, j]``: image ``k`` sampled bilinearly (0 outside) at ``(a i + b j + t, c i + d j + u)`` from its
    ``affine`` row plus, when ``z`` has entries, its elastic fields ``B_rows z[:, :, 2k] B_colsᵀ`` (row shift) and
    ``B_rows z[:, :, 2k + 1] B_colsᵀ`` (column shift), blurred here (the layout of
    :meth:`fcnet.augment.Augment._displacements`; ``b_cols_t`` is ``B_colsᵀ``), rounded to uint8 —
    :func:`fcnet.augment._sample_numpy` (the reference) as one loop, operation for operation: the blur's sums
    term by term in the same order, in float32 (coordinates are ≥ 0 in the padded frame, so ``int`` is
    ``floor`` there). Blocks of 64 images run on Numba's threads, each blurring its 128 fields at once (the
    larger product's innermost loop runs along all of them, which the compiler can vectorise) into a buffer that
    stays in cache; each value is computed alone, so the result does not depend on the number of threads."""
    n, rows, cols = images.shape
    k_rows, k_cols = z.shape[0], z.shape[1]
    for block in numba.prange((n + 63) // 64):
        first, last = block * 64, min(n, block * 64 + 64)
        padded = np.zeros((rows + 2, cols + 2))  # the picture in a frame of zeros: no test per read
        bj, dj = np.empty(cols), np.empty(cols)
        fields = 2 * (last - first) if k_rows else 0
        half = np.zeros((k_rows, fields * cols), dtype=np.float32)  # z B_colsᵀ of the block's fields: (e, m, j)
        field = np.zeros((rows, fields * cols), dtype=np.float32)  # B_rows z B_colsᵀ: (i, m, j)
        for e in range(k_rows):
            for m in range(fields):
                for g in range(k_cols):
                    weight = z[e, g, 2 * first + m]
                    for j in range(cols):
                        half[e, m * cols + j] += weight * b_cols_t[g, j]
        for i in range(rows):  # the long loop: along every field of the block at once
            for e in range(k_rows):
                weight = b_rows[i, e]
                for x in range(fields * cols):
                    field[i, x] += weight * half[e, x]
        for k in range(first, last):
            for i in range(rows):
                for j in range(cols):
                    padded[i + 1, j + 1] = images[k, i, j]
            a, b, t, c, d, u = affine[k, 0], affine[k, 1], affine[k, 2], affine[k, 3], affine[k, 4], affine[k, 5]
            for j in range(cols):  # the products of a i + b j + t, each rounded once as before: the same sums
                bj[j], dj[j] = b * j, d * j
            f = 2 * (k - first)
            for i in range(rows):
                ai, ci = a * i, c * i
                for j in range(cols):
                    r, s = ai + bj[j] + t, ci + dj[j] + u
                    if fields:
                        r, s = r + float(field[i, f * cols + j]), s + float(field[i, (f + 1) * cols + j])
                    r = max(min(r, rows), -1.0) + 1.0
                    s = max(min(s, cols), -1.0) + 1.0
                    r0, s0 = min(int(r), rows), min(int(s), cols)
                    fr, fs = r - r0, s - s0
                    p, q = padded[r0, s0], padded[r0, s0 + 1]
                    v, w = padded[r0 + 1, s0], padded[r0 + 1, s0 + 1]
                    value = (1 - fr) * ((1 - fs) * p + fs * q) + fr * ((1 - fs) * v + fs * w)
                    out[k, i, j] = min(int(value + 0.5), 255)
