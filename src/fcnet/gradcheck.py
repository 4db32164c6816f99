"""Checking hand-written gradients against central finite differences.

For a parameter entry ``θ_i`` the numerical derivative is
``(L(θ + ε e_i) − L(θ − ε e_i)) / 2ε``, whose error is ``O(ε²)`` from
truncation plus about ``ε_mach |L| / ε`` from rounding. In float64 that
rounding noise is ~1e-10 at ``ε = 1e-6`` — more than 1e-6 of the ~1e-5
gradients of a five-layer softmax stack, a false failure. So the losses are
evaluated in ``np.longdouble`` (80-bit extended precision on x86-64,
ε_mach ≈ 1e-19; where it is no wider than float64 the check degrades to
float64), while the analytic gradients come from the float64 model.

Each parameter array gets one relative error,
``max_i |a_i − n_i| / max_i max(|a_i|, |n_i|)`` (analytic ``a``, numerical
``n``): normwise, so entries that are zero in both (a dead ReLU unit) do not
divide by zero, while a wrong formula — a dropped transpose, a wrong
derivative — gives errors of the order of the gradient itself.
"""

import collections

import numpy as np

__all__ = ["gradcheck", "GradcheckRow", "GradcheckResult", "relative_error", "biases_off_the_kinks", "TOLERANCE"]

_KINKED = ("relu", "leaky_relu")  # activations whose derivative jumps at z = 0

TOLERANCE = 1e-6

GradcheckRow = collections.namedtuple("GradcheckRow", "name shape checked max_abs_error max_rel_error passed")


class GradcheckResult(list):
    """A list of :class:`GradcheckRow`, one per parameter array, with the overall verdict."""

    @property
    def passed(self):
        return all(row.passed for row in self)

    @property
    def max_rel_error(self):
        return max(row.max_rel_error for row in self)

    def table(self):
        """The rows as aligned text: parameter, shape, entries checked, errors, verdict."""
        head = ("parameter", "shape", "checked", "max abs error", "max rel error", "verdict")
        rows = [head] + [(r.name, "x".join(map(str, r.shape)), str(r.checked), f"{r.max_abs_error:.2e}",
                          f"{r.max_rel_error:.2e}", "ok" if r.passed else "FAIL") for r in self]
        widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def relative_error(analytic, reference):
    """``max |a − r| / max(max |a|, max |r|)``; 0 when both are all zeros."""
    scale = max(np.abs(analytic).max(initial=0), np.abs(reference).max(initial=0))
    diff = np.abs(analytic - reference).max(initial=0)
    return float(diff / scale) if scale > 0 else float(diff)


def parameter_names(model):
    """``["W1", "b1", "W2", ...]`` in the order of ``model.parameters``."""
    return [f"{key}{i + 1}" for i, layer in enumerate(model.layers) for key in layer.params]


def _loss(model, x, y):
    """The mean batch loss in the model's own precision (``evaluate`` would round it to a float); a model with
    dropout runs its training forward pass, through the masks pinned on its layers, and one with batch
    normalization too, normalising with the batch's statistics (which depend on every weight before it)."""
    training = any(layer.dropout or layer.batch_norm is not None for layer in model.layers)
    loss_input, _ = model.forward(x, training=training)
    return model.loss.per_example(loss_input, y).mean() + model.penalty(exact=True)


def biases_off_the_kinks(model, x, rng, margin=1e-3, tries=100):
    """Draw the biases (normal, σ = 0.1) until no ReLU-family unit has ``|z| < margin`` on the batch ``x``.

    A central difference across a kink measures neither one-sided derivative, so a check there fails
    for a correct backward pass; ``margin`` is far above the finite-difference step. Returns the margin
    reached (the smallest ``|z|`` of a kinked unit; ``inf`` without such units). Batch normalization runs as
    in training, and its moving averages are left as they were.
    """
    moving = [(state, {k: v.copy() for k, v in state.items()}) for state in (layer.state for layer in model.layers)]
    closest = 0.0
    for _ in range(tries):
        for layer in model.layers:
            layer.params["b"][:] = rng.normal(0, 0.1, layer.units)
        a, closest = np.asarray(x, dtype=model.dtype).reshape(len(x), -1), np.inf
        for layer in model.layers:
            z = layer.forward_z(a, activate=False)[0]  # activating would overwrite z in place
            a = layer.activation.forward(z)
            if layer.activation.name in _KINKED and z.size:
                closest = min(closest, float(np.abs(z).min()))
            if layer.batch_norm is not None:
                a = layer.batch_norm.forward(a, training=True)
        if closest >= margin:
            break
    for state, saved in moving:
        for key, value in saved.items():
            state[key][...] = value
    return closest


def gradcheck(model, x, y, eps=1e-6, max_entries=64, seed=0, tol=TOLERANCE, engine="numpy"):
    """Compare ``model.loss_and_gradients`` with central finite differences, in float64.

    Parameters
    ----------
    model : Sequential
        Compiled; it is copied to float64 and to longdouble (the original is not touched).
    x : array_like, shape (n_batch, n_in)
    y : array_like, shape (n_batch,) or (n_batch, n_out)
    eps : float
        Finite-difference step.
    max_entries : int
        Arrays with more entries are checked on this many, drawn at random (``seed``); smaller ones fully.
    tol : float
        A parameter passes when its relative error is below ``tol``.
    engine : {"numpy", "cuda"}
        Who computes the analytic gradients: the layers' own backward passes, or the CUDA engine's kernels
        on the GPU (:func:`fcnet.engines.cuda.loss_and_gradients`), in float64 either way.

    Returns
    -------
    GradcheckResult
        One row per parameter array: name, shape, entries checked, max abs and relative error, verdict.
    """
    x = np.asarray(x)
    x = x / 255.0 if x.dtype == np.uint8 else np.asarray(x, dtype=np.float64)
    double = model.astype("float64")
    if engine == "cuda":
        from .engines.cuda import loss_and_gradients

        _, grads = loss_and_gradients(double, x, y)
    elif engine == "numpy":
        _, grads = double.loss_and_gradients(x, y)
    else:
        raise ValueError(f"engine must be 'numpy' or 'cuda', got {engine!r}")
    wide = model.astype(np.longdouble)
    for narrow, layer in zip(double.layers, wide.layers):  # the dropout masks the analytic gradients saw
        layer.fixed_mask = None if narrow.mask is None else narrow.mask.astype(np.longdouble)
    x_wide, y = x.astype(np.longdouble).reshape(len(x), -1), wide.check_targets(y, len(x))
    step = np.longdouble(eps)
    rng = np.random.default_rng(seed)
    result = GradcheckResult()
    for name, param, grad in zip(parameter_names(wide), wide.parameters, grads):
        flat = param.reshape(-1)  # a view: perturbing it perturbs the model
        n = flat.size
        idx = np.arange(n) if n <= max_entries else np.sort(rng.choice(n, max_entries, replace=False))
        numeric = np.empty(len(idx))
        for k, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + step
            plus = _loss(wide, x_wide, y)
            flat[i] = old - step
            minus = _loss(wide, x_wide, y)
            flat[i] = old
            numeric[k] = (plus - minus) / (2 * step)
        analytic = grad.reshape(-1)[idx]
        rel = relative_error(analytic, numeric)
        result.append(GradcheckRow(name, param.shape, len(idx), float(np.abs(analytic - numeric).max()), rel,
                                   rel < tol))
    return result
