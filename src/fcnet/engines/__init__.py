"""Training engines: who runs the steps of an epoch. One contract (:mod:`fcnet.engines.base`), three
implementations: :mod:`fcnet.engines.numpy` (the reference), :mod:`fcnet.engines.numba` (compiled by Numba, CPU)
and :mod:`fcnet.engines.cuda` (CuPy, an NVIDIA GPU). This module chooses and builds one.
"""

from .base import Engine, Step, Support, unsupported
from .numpy import NumpyEngine

__all__ = ["Engine", "NumpyEngine", "Step", "Support", "make_engine", "choose_engine", "engine_choice", "ENGINES"]

ENGINES = ("auto", "numpy", "numba", "cuda")


def engine_choice(model, y, engine="auto", weighted=False):
    """``(name, note)``: the engine that trains ``model`` on checked targets ``y``, and, when ``"auto"`` fell back
    to NumPy although Numba is installed, why (else ``None``).

    ``"auto"`` takes the compiled loop of :mod:`fcnet.engines.numba` when Numba is installed and covers the model,
    else NumPy; ``"numba"`` and ``"cuda"`` insist (ValueError saying why they cannot); ``"numpy"`` is the
    reference. ``weighted``: the loss is weighted per example (class weights), which only NumPy does.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "numpy":
        return engine, None
    if engine == "cuda":
        from . import cuda

        reason = cuda.unavailable() or ("class weights are not compiled" if weighted else
                                        unsupported(model, y, cuda.SUPPORT))
        if reason:
            raise ValueError(f"engine 'cuda' cannot train this model: {reason}")
        return engine, None
    try:
        from . import numba
    except ImportError:
        if engine == "numba":
            raise ValueError("engine 'numba' needs Numba: pip install 'fcnet[fast]'") from None
        return "numpy", None
    reason = "class weights are not compiled" if weighted else numba.unsupported(model, y)
    if reason and engine == "numba":
        raise ValueError(f"engine 'numba' cannot train this model: {reason}")
    return ("numpy", f"the compiled engine cannot train this model: {reason}") if reason else ("numba", None)


def choose_engine(model, y, engine="auto", weighted=False):
    """The name of the engine that trains ``model`` on checked targets ``y``: ``"numba"``, ``"cuda"`` or
    ``"numpy"`` (:func:`engine_choice` without its note)."""
    return engine_choice(model, y, engine, weighted)[0]


def make_engine(model, x, y, batch_size, engine="auto", class_weights=None):
    """Choose (:func:`engine_choice`) and build the engine for ``model`` and checked inputs ``x``, targets ``y``.

    ``class_weights`` is an array of one weight per class (see ``fit(class_weight=...)``). The compiled
    engines load (or, the first time, compile) their code here, outside any timed epoch; the CUDA engine
    also uploads ``x`` and ``y`` and captures its graphs. The engine's ``note`` says why ``"auto"`` fell back to
    NumPy (``None`` when it did not).
    """
    name, note = engine_choice(model, y, engine, weighted=class_weights is not None)
    if name == "numpy":
        runner = NumpyEngine(model, batch_size, class_weights)
    elif name == "cuda":
        from .cuda import CudaEngine

        runner = CudaEngine(model, batch_size, x, y)
    else:
        from .numba import NumbaEngine

        runner = NumbaEngine(model, batch_size, x.dtype, y.dtype, y.ndim)
    runner.note = note
    return runner
