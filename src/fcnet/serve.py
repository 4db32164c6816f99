"""``fcnet serve``: a page to draw a digit (or upload a picture) and watch the network's answer.

FastAPI + uvicorn, one plain HTML/JS page (``static/index.html``, no build step).
``POST /api/predict`` takes JSON ``{"pixels": [784 numbers in 0..1]}`` or an
image body (``Content-Type: image/png``, ``image/jpeg``, ...); ``GET /api/model``
describes the model; ``GET /healthz`` says it is up. Bad input gets a 4xx with
a JSON ``{"error": ...}`` — wrong length, NaN, non-numbers, a body over 1 MB,
a picture that is not one or is a decompression bomb, a wrong content type.

A model trained on a table (:mod:`fcnet.tables`) takes ``{"features": {"column": value, ...}}`` instead,
every feature column named once (numbers for numeric columns, strings for categorical ones), and answers
``{"label", "class_name", "probabilities"}`` or, for a regression, ``{"value"}``; its page
(``static/table.html``) is a form with one field per column.
Parsing, decoding and predicting run on worker threads, at most
:data:`MAX_CONCURRENT` at a time, so the event loop (and ``/healthz``) stays
responsive while large pictures are decoded.
"""

import json
import math
from pathlib import Path

import numpy as np

from . import tables
from .errors import DataError, FcnetError
from .images import is_blank
from .records import ModelInfo

__all__ = ["create_app", "serve", "MAX_BODY", "MAX_CONCURRENT"]

MAX_BODY = 1 << 20  # bytes
MAX_CONCURRENT = 2  # requests decoded and predicted at once; the rest wait their turn
STATIC = Path(__file__).resolve().parent / "static"


class BadInput(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def describe(model, path):
    """The model summary ``GET /api/model`` returns."""
    info = ModelInfo.of(model)
    widths = [model.input_dim, *(layer.units for layer in model.layers)]
    return {"name": Path(path).name, "architecture": "-".join(map(str, widths)),
            "activations": [layer.activation.name for layer in model.layers],
            "parameters": int(model.count_params()), "dataset": info.dataset, "class_names": list(info.class_names),
            "test_accuracy": info.test_accuracy, "image_shape": list(info.image_shape) if info.image_shape else None,
            "preparation": info.preparation, "table": info.table and {
                k: info.table[k] for k in ("features", "target", "task", "classes")}}


def _pixels_from_json(body, n_inputs):
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # ValueError: bad JSON, bad UTF-8, a 5000-digit number
        raise BadInput(400, f"body is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(data, dict) or "pixels" not in data:
        raise BadInput(422, 'expected {"pixels": [...]}')
    pixels = data["pixels"]
    if not isinstance(pixels, list) or len(pixels) != n_inputs:
        raise BadInput(422, f"pixels must be a list of {n_inputs} numbers, got "
                            f"{len(pixels) if isinstance(pixels, list) else type(pixels).__name__}")
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in pixels):
        raise BadInput(422, "pixels must all be numbers")
    if not all(math.isfinite(p) and 0 <= p <= 1 for p in pixels):
        raise BadInput(422, "pixels must be finite numbers in 0..1")
    return np.asarray(pixels, dtype=np.float64)


def _row_from_json(body, spec, dtype):
    """``{"features": {...}}`` as the network's input row, and the categories training never saw."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadInput(400, f"body is not valid JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("features"), dict):
        raise BadInput(422, 'expected {"features": {"column": value, ...}}')
    given, names = data["features"], [f.name for f in spec.features]
    missing, unknown = [n for n in names if n not in given], [n for n in given if n not in names]
    if missing or unknown:
        raise BadInput(422, f"features must name each of {', '.join(names)}"
                            + (f"; missing {', '.join(missing)}" if missing else "")
                            + (f"; unknown {', '.join(unknown[:10])}" if unknown else ""))
    columns = {}
    for f in spec.features:
        value = given[f.name]
        if f.categories is None:
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                raise BadInput(422, f"feature {f.name!r} must be a finite number, got {json.dumps(value)[:50]}")
            columns[f.name] = np.array([value], dtype=np.float64)
        else:
            if not isinstance(value, str) or not value.strip():
                raise BadInput(422, f"feature {f.name!r} must be one of its categories (a string), got "
                                    f"{json.dumps(value)[:50]}")
            columns[f.name] = np.array([value[:200]])
    table = tables.Table(columns, lambda i: "the request")
    return spec.transform(table, dtype)[0], spec.unknown(table)


def _pixels_from_image(body, shape, digits):
    from .images import decode_image, fit, mnist_style

    try:
        pixels = decode_image(body, "upload")
    except DataError as exc:
        raise BadInput(413 if "allowed" in str(exc) or "bomb" in str(exc) else 422, str(exc)) from None
    prepared = mnist_style(pixels, size=shape[0]) if digits else fit(pixels, shape)
    return prepared.reshape(-1) / 255.0


def create_app(model, path):
    """The FastAPI application serving ``model`` (loaded from ``path``)."""
    import anyio
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse

    info = describe(model, path)
    spec = tables.spec_of(model)
    shape = tuple(info["image_shape"] or ())
    digits = info["preparation"] == "digits"
    app = FastAPI(title="fcnet", docs_url=None, redoc_url=None)
    limiter = anyio.CapacityLimiter(MAX_CONCURRENT)

    @app.exception_handler(BadInput)
    async def bad_input(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    @app.get("/")
    async def index():
        return FileResponse(STATIC / ("index.html" if spec is None else "table.html"), media_type="text/html")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/api/model")
    async def model_info():
        return info

    @app.post("/api/predict")
    async def predict(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            raise BadInput(413, f"body over {MAX_BODY} bytes")
        body = bytearray()
        async for chunk in request.stream():  # a chunked body has no length to check up front
            body += chunk
            if len(body) > MAX_BODY:
                raise BadInput(413, f"body over {MAX_BODY} bytes")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        return await anyio.to_thread.run_sync(answer, bytes(body), kind, limiter=limiter)

    def answer(body, kind):
        """The work of one prediction, on a worker thread: parse or decode, predict, describe."""
        if spec is not None:
            if kind != "application/json":
                raise BadInput(415, f"content type {kind or 'missing'}: this model takes application/json rows")
            return _answer_row(*_row_from_json(body, spec, model.dtype))
        if kind == "application/json":
            x = _pixels_from_json(body, model.input_dim)
        elif kind.startswith("image/"):
            if not shape:
                raise BadInput(422, f"this model's {model.input_dim} inputs are not an image")
            x = _pixels_from_image(body, shape, digits)
        else:
            raise BadInput(415, f"content type {kind or 'missing'}: send application/json or an image/* body")
        probs = model.predict_proba(x[None, :].astype(model.dtype))[0].astype(np.float64)
        label = int(probs.argmax())
        result = {"label": label, "class_name": info["class_names"][label], "probabilities": probs.tolist(),
                  "input": np.round(x, 4).tolist()}
        if is_blank(x):
            result["warning"] = "the input is blank: nothing drawn, so this prediction means nothing"
        return result

    def _answer_row(x, unknown):
        result = {}
        if spec.task == "regression":
            result["value"] = float(spec.decode(model.predict(x[None, :]))[0])
        else:
            probs = model.predict_proba(x[None, :])[0].astype(np.float64)
            label = int(probs.argmax())
            result.update(label=label, class_name=spec.classes[label], class_names=list(spec.classes),
                          probabilities=probs.tolist())
        if unknown:
            result["warning"] = "categories training never saw (encoded as none): " + ", ".join(
                f"{column}={value!r}" for _, column, value in unknown)
        return result

    return app


def serve(model, path, host="127.0.0.1", port=8000, say=print):
    """Serve :func:`create_app` for ``model`` (read from ``path``) on ``host:port`` until Ctrl-C.

    The socket is our own: a port in use is one line before uvicorn starts (:class:`FcnetError`), port 0 says
    which port it got, and ``SO_REUSEADDR`` lets a restart bind at once while the last run's connections linger
    in TIME_WAIT.
    """
    try:
        import uvicorn
    except ImportError:
        raise FcnetError("serving needs FastAPI and uvicorn: pip install 'fcnet[serve]'") from None
    import socket

    app = create_app(model, path)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FcnetError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from None
    port = sock.getsockname()[1]
    say(f"serving {path} on http://{host}:{port}/ (Ctrl-C stops)")
    with sock:
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run(sockets=[sock])
