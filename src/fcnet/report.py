"""A run folder's figures, and ``fcnet report``: one self-contained HTML file for one run or several.

``fcnet train --out runs/NAME`` calls :func:`save_figures`, which adds to the
folder the learning curves, the confusion matrix, the prediction grids and the
first-layer weights as PNG files. :func:`write_report` turns folders into one HTML page whose
images are embedded as data URIs, so it opens anywhere, offline.
"""

import base64
import html
from pathlib import Path

from . import plots, tables
from .config import trial_name, varied
from .records import EPOCH_KEYS, TEST_NAMES, ModelInfo, RunMetrics

__all__ = ["FIGURES", "kinds", "save_figures", "figure", "write_report"]

FIGURES = {
    "curves": ("curves.png", "Learning curves"),
    "confusion": ("confusion.png", "Confusion matrix"),
    "predictions": ("predictions.png", "Test predictions"),
    "mistakes": ("mistakes.png", "Most confident mistakes"),
    "weights": ("weights.png", "First-layer weights"),
    "regression": ("regression.png", "Test predictions against the truth"),
}


def kinds(model):
    """The figures that mean something for ``model``: pictures of inputs need an image model, a regression has
    no classes."""
    spec = tables.spec_of(model)
    if spec is None:
        return ("curves", "confusion", "predictions", "mistakes", "weights")
    return ("curves", "regression") if spec.task == "regression" else ("curves", "confusion")


def figure(kind, model, metrics, x_test, y_test):
    """The matplotlib figure ``kind`` (a key of :data:`FIGURES`) for a trained model and its test set.

    ``metrics`` is the run's :class:`~fcnet.records.RunMetrics` (only ``curves`` reads it).
    """
    if kind == "curves":
        return plots.learning_curves(metrics)
    if kind not in kinds(model):
        raise ValueError(f"figure {kind!r} does not fit this model; its figures are {', '.join(kinds(model))}")
    if kind == "regression":
        spec = tables.spec_of(model)
        return plots.regression_figure(spec.decode(y_test), spec.decode(model.predict(x_test)), spec.target)
    info = ModelInfo.of(model)
    names, shape = list(info.class_names), info.image_shape or (1, model.input_dim)
    if kind == "weights":
        return plots.first_layer_weights(model, shape=shape)
    probs = model.predict_proba(x_test)
    if kind == "confusion":
        return plots.confusion_figure(y_test, probs.argmax(axis=1), names)
    images = x_test.reshape(len(x_test), *shape)
    if kind == "predictions":
        return plots.prediction_grid(images, y_test, probs, names)
    if kind == "mistakes":
        return plots.confident_mistakes(images, y_test, probs, names)
    raise ValueError(f"unknown figure {kind!r}; choose from {', '.join(FIGURES)}")


def save_figures(folder, model, metrics, x_test, y_test):
    """Write every figure of :func:`kinds` into ``folder``; returns their paths."""
    paths = [Path(folder) / FIGURES[kind][0] for kind in kinds(model)]
    for kind, path in zip(kinds(model), paths):
        plots.save(figure(kind, model, metrics, x_test, y_test), path)
    return paths


def _img(data, alt):
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _figure_png(fig):
    import io

    buffer = io.BytesIO()
    plots.save(fig, buffer)
    return buffer.getvalue()


def _table(header, rows, cls=""):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(value):
    if isinstance(value, list):  # hidden widths
        return ",".join(map(str, value)) or "none"
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)




def _anchor(text):
    return "s-" + "".join(c if c.isalnum() else "-" for c in str(text))


def _run_section(folder, metrics, name):
    parts = [f'<h2 id="{_anchor(folder)}">{html.escape(name)} <small>{html.escape(str(folder))}</small></h2>',
             "<h3>Configuration</h3>",
             _table(["setting", "value"], sorted((k, v) for k, v in metrics.config.items() if k != "command"),
                    "config")]
    test = metrics.test
    parts += ["<h3>Final metrics</h3>",
              _table([f"test {TEST_NAMES.get(k, k)}" for k in test] + ["steps per epoch", "total seconds"],
                     [[*test.values(), metrics.steps_per_epoch, metrics.total_seconds]], "metrics final")]
    parts += ["<h3>Per epoch</h3>",
              _table(list(EPOCH_KEYS), [[e.get(k) for k in EPOCH_KEYS] for e in metrics.epochs], "metrics epochs")]
    if metrics.per_class:
        parts += ["<h3>Per class</h3>",
                  _table(["class", "precision", "recall", "F1", "support"],
                         [[c["class"], c["precision"], c["recall"], c["f1"], c["support"]]
                          for c in metrics.per_class], "metrics per-class")]
    for filename, title in FIGURES.values():
        path = Path(folder) / filename
        if path.is_file():
            parts += [f"<h3>{title}</h3>", _img(path.read_bytes(), title)]
    return "\n".join(parts)


def _sweep_section(folder):
    """A sweep folder's ranked table and figures; returns (html, folders of its best finished trials)."""
    from .runstore import RunStore, score_metric

    store = RunStore(folder / "runs.sqlite")
    try:
        metric = score_metric(r["config"] for r in store.runs())
        ranked = store.best(metric, 10**6)
    finally:
        store.close()
    keys = varied([r["config"] for r in ranked])
    rows = [[i + 1, r["id"], *(r["config"].get(k) for k in keys), r[metric], r["seconds_per_epoch"]]
            for i, r in enumerate(ranked)]
    parts = [f'<h2 id="{_anchor(folder)}">Sweep {html.escape(str(folder))}</h2>',
             _table(["rank", "id", *keys, metric.replace("_", " ").replace("r2", "R²"), "s / epoch"], rows,
                    "metrics sweep")]
    for name, title in (("sweep_axes.png", "Test accuracy along each axis"),
                        ("sweep_curves.png", "Learning curves of the best trials")):
        if (folder / name).is_file():
            parts += [f"<h3>{title}</h3>", _img((folder / name).read_bytes(), title)]
    return "\n".join(parts), [Path(r["folder"]) for r in ranked[:5]]


def write_report(folders, out):
    """Write one self-contained HTML report of run folders (or sweep folders) to ``out``; returns its path.

    A sweep folder (one with ``runs.sqlite``) contributes its ranked table, its figures and its five best trials.
    """
    sections, expanded = [], []
    for folder in map(Path, folders):
        if (folder / "runs.sqlite").is_file():
            section, best = _sweep_section(folder)
            sections.append(section)
            expanded += best
        else:
            expanded.append(folder)
    runs = [(f, RunMetrics.read(f)) for f in expanded]
    # a run is named by the settings in which it differs from the others (trial folders are hashes)
    names = {f: trial_name(m.config, [r.config for _, r in runs]) if len(runs) > 1 else f.name for f, m in runs}
    nav = []
    if len(runs) > 1:
        rows = []
        for folder, m in runs:
            c = m.config
            rows.append([str(folder), f"{m.architecture} {c.get('activation', '')}", c.get("optimizer"), c.get("lr"),
                         c.get("batch_size"), len(m.epochs), m.test.get("accuracy", m.test.get("r2")),
                         m.seconds_per_epoch])
        rows.sort(key=lambda r: -(r[6] or 0))
        curves = plots.learning_curves([m for _, m in runs], labels=[names[f] for f, _ in runs])
        nav.append(("comparison", "Comparison"))
        sections += ['<h2 id="comparison">Comparison</h2>',
                     _table(["run", "network", "optimizer", "lr", "batch", "epochs", "test accuracy (R²)",
                             "s / epoch (median)"], rows, "metrics comparison"),
                     _img(_figure_png(curves), "Learning curves of every run")]
    sections += [_run_section(folder, m, names[folder]) for folder, m in runs]
    nav = [(_anchor(f), f"Sweep {f.name}") for f in map(Path, folders) if (f / "runs.sqlite").is_file()] + nav
    nav += [(_anchor(f), names[f]) for f, _ in runs]
    title = "fcnet report — " + ", ".join(Path(f).name for f in folders)
    contents = "" if len(nav) < 2 else "<nav><strong>Contents</strong><ul>" + "".join(
        f'<li><a href="#{a}">{html.escape(text)}</a></li>' for a, text in nav) + "</ul></nav>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f2f2f2; }} td:first-child {{ text-align: left; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0 1.5em; }}
h2 {{ border-bottom: 2px solid #444; margin-top: 2em; }} h2 small {{ color: #777; font-weight: normal; }}
nav ul {{ columns: 2; }}
</style></head>
<body><h1>{html.escape(title)}</h1>
{contents}
{chr(10).join(sections)}
</body></html>
"""
    out = Path(out)
    from .files import atomic_write

    atomic_write(out, lambda f: f.write(page.encode()))
    return out
