"""``fcnet sweep``: many ordinary training runs, in parallel on Dask, recorded in a SQLite run store.

A sweep is a TOML file, or the name of one shipped with fcnet (``seed002``,
``seed004``). Top-level keys are fixed settings of :class:`~fcnet.config.TrainConfig`
(``fcnet train``'s flags, dashes as underscores); ``[grid]`` maps settings to
lists of values, and every combination is a trial; ``[random]`` draws ``samples`` trials instead, each
option from a list (a choice) or a table ``{uniform = [a, b]}``,
``{log_uniform = [a, b]}`` or ``{int = [a, b]}``, seeded by its ``seed`` key::

    dataset = "fashion-mnist"
    epochs = 10
    [grid]
    hidden = ["300", "256,128,64,64"]
    optimizer = [{optimizer = "sgd", lr = 0.1}, {optimizer = "adam", lr = 0.001}]
    seed = [0, 1, 2]

(a table in a grid list sets several options together).
Each trial is an in-process :func:`~fcnet.run.train_run`. A trial's identity is
the hash of its settings' difference from ``TrainConfig()``, so running a sweep again
skips finished trials and resumes unfinished ones from their last checkpoint.
Trials run on a ``distributed.LocalCluster`` (one single-threaded worker process
per core, BLAS limited to one thread per trial) or on an existing cluster given
by ``--scheduler``; a cluster needs the sweep folder on a file system every
worker shares. Only the driver writes the run store.
"""

import hashlib
import itertools
import math
import os
import socket
import tomllib
from pathlib import Path

import numpy as np

from .checkpoint import CHECKPOINT
from .config import TrainConfig, trial_name, varied
from .errors import FcnetError
from .records import RunMetrics
from .run import train_run
from .runstore import RunStore, score_metric

__all__ = ["bundled_sweeps", "spec_path", "load_spec", "count_trials", "trials", "parse_trial", "run_trial",
           "run_sweep", "write_outputs"]

CONNECT_TIMEOUT = "20s"  # how long to wait for a --scheduler to answer
MAX_TRIALS = 10_000  # a sweep of more trials runs only when confirmed (--yes)


SWEEPS = Path(__file__).resolve().parent / "sweeps"  # the sweep files shipped with fcnet


def bundled_sweeps():
    """Names of the sweep files shipped with fcnet (``fcnet sweep NAME`` runs one)."""
    return sorted(p.stem for p in SWEEPS.glob("*.toml"))


def spec_path(spec):
    """The sweep file ``spec`` names: a path, else the name of a shipped sweep (``seed002``)."""
    path = Path(spec)
    if not path.exists() and (SWEEPS / f"{spec}.toml").is_file():
        return SWEEPS / f"{spec}.toml"
    return path


def load_spec(path):
    """Read and check a sweep file; returns ``(fixed, grid, random)`` dicts."""
    try:
        spec = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FcnetError(f"{path}: no such sweep file (shipped with fcnet: {', '.join(bundled_sweeps())})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FcnetError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise FcnetError(f"{path}: cannot read the sweep file ({exc.strerror or exc})") from None
    grid, random = spec.pop("grid", {}), spec.pop("random", {})
    for name, table in (("grid", grid), ("random", random)):
        if not isinstance(table, dict):
            raise FcnetError(f"{path}: {name} must be a table ([{name}] with one key per setting), "
                             f"not {type(table).__name__}")
    if grid and random:
        raise FcnetError(f"{path}: use [grid] or [random], not both")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise FcnetError(f"{path}: [grid] {key} must be a non-empty list of values")
    if random and (not isinstance(random.get("samples"), int) or random["samples"] < 1):
        raise FcnetError(f"{path}: [random] needs samples = N (an integer ≥ 1)")
    if random and not isinstance(random.get("seed", 0), int):
        raise FcnetError(f"{path}: [random] seed must be an integer, got {random['seed']!r}")
    return spec, grid, random


def _draw(rng, key, rule):
    if isinstance(rule, list):
        return rule[int(rng.integers(len(rule)))]
    if isinstance(rule, dict) and len(rule) == 1:
        kind, (low, high) = next(iter(rule.items()))
        if kind == "uniform":
            return float(rng.uniform(low, high))
        if kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if kind == "int":
            return int(rng.integers(low, high + 1))
    raise FcnetError(f"[random] {key}: give a list of choices or {{uniform|log_uniform|int = [low, high]}}")


def count_trials(grid, random):
    """How many trials :func:`trials` would make, without making them."""
    return random["samples"] if random else math.prod(len(values) for values in grid.values())


def trials(fixed, grid, random):
    """The trials' raw settings (dicts), in order."""
    if random:
        rules = {k: v for k, v in random.items() if k not in ("samples", "seed")}
        rng = np.random.default_rng(random.get("seed", 0))
        return [{**fixed, **{k: _draw(rng, k, rule) for k, rule in rules.items()}} for _ in range(random["samples"])]
    keys = list(grid)
    result = []
    for values in itertools.product(*(grid[k] for k in keys)):
        settings = dict(fixed)
        for key, value in zip(keys, values):
            # A table sets several options together, e.g. {optimizer = "adam", lr = 0.001}.
            if isinstance(value, dict):
                settings.update(value)
            else:
                settings[key] = value
        result.append(settings)
    return result


def parse_trial(settings):
    """Check one trial's settings as a :class:`~fcnet.config.TrainConfig`; returns ``(id, config)``.

    The id is :meth:`TrainConfig.identity`: what differs from the defaults, so a setting left at its default
    is the same trial as one that never mentions it.
    """
    try:
        config = TrainConfig.from_dict(settings)
    except ValueError as exc:
        raise FcnetError(f"trial {settings}: {exc}") from None
    return config.identity(), config


def run_trial(config, folder):
    """Train one trial into ``folder`` (resuming its checkpoint if there is one); runs on a Dask worker.

    Returns
    -------
    dict
        ``metrics`` (the run's :class:`~fcnet.records.RunMetrics`), ``host`` and ``artifacts`` (name → path).
    """
    from threadpoolctl import threadpool_limits

    folder = Path(folder)
    with threadpool_limits(1):
        result = train_run(config, out=folder, resume=(folder / CHECKPOINT).exists(), verbose=0, figures=False)
    artifacts = {p.name: str(p) for p in result.files}
    return {"metrics": result.metrics, "host": socket.gethostname(), "artifacts": artifacts}


def run_sweep(path, out, scheduler=None, workers=None, progress=True, max_trials=MAX_TRIALS, say=None):
    """Run the sweep in ``path`` into folder ``out``; returns the store's finished runs, best first.

    Trials finished in an earlier run are skipped; unfinished ones resume from their checkpoints. A
    worker that dies takes its trial with it; Dask runs it again on another worker, from its checkpoint.
    A sweep of more than ``max_trials`` trials is refused before any is made (``None``: no limit); ``say``
    (a callable) hears how many trials there are before anything runs.
    """
    from distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    fixed, grid, random = load_spec(path)
    count = count_trials(grid, random)
    if max_trials is not None and count > max_trials:
        raise FcnetError(f"{path}: {count:,} trials is more than {max_trials:,}; pass --yes to run them all")
    parsed = [parse_trial(t) for t in trials(fixed, grid, random)]
    unique = dict(parsed)  # the same configuration twice is one trial
    metric = score_metric(c.to_dict() for c in unique.values())
    out = Path(out).resolve()  # workers elsewhere must not resolve a relative folder against their own
    # Dask keys are cluster-wide: two sweeps of the same file into two folders must not share a trial.
    sweep_key = hashlib.sha256(str(out).encode()).hexdigest()[:8]
    (out / "trials").mkdir(parents=True, exist_ok=True)
    store = RunStore(out / "runs.sqlite")
    try:
        todo = {rid: s for rid, s in unique.items() if store.status(rid) != "done"}
        if say:
            done = len(unique) - len(todo)
            say(f"fcnet: sweep {Path(path).name}: {count} trials, {len(unique)} distinct, {done} done already, "
                f"{len(todo)} to run, into {out}")
        bar = tqdm(total=len(unique), initial=len(unique) - len(todo), unit="trial", desc="sweep",
                   disable=not progress or None, dynamic_ncols=True)
        if todo:
            cluster = None if scheduler else LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1,
                                                          processes=True, dashboard_address=":0")
            try:
                client = Client(scheduler or cluster, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                if cluster is not None:
                    cluster.close()
                raise FcnetError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
            try:
                futures = {}
                for rid, config in todo.items():
                    folder = out / "trials" / rid
                    store.start(rid, config.to_dict(), folder)
                    futures[client.submit(run_trial, config, str(folder), key=f"fcnet-trial-{rid}-{sweep_key}",
                                          pure=False)] = rid
                for future in as_completed(futures):
                    rid = futures[future]
                    try:
                        result = future.result()
                        store.finish(rid, result["metrics"], result["host"], result["artifacts"])
                    except Exception as exc:  # a trial's failure is recorded, the sweep goes on
                        store.fail(rid, f"{type(exc).__name__}: {exc}")
                    bar.update(1)
                    best = store.best(metric, 1)
                    if best and best[0][metric] is not None:
                        bar.set_postfix_str(f"best {best[0][metric]:.4f} ({best[0]['id']})")
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        bar.close()
        ranked = [r for r in store.best(metric, len(unique)) if r["id"] in unique]
        failed = [r for r in store.runs("failed") if r["id"] in unique]
        return ranked, failed
    finally:
        store.close()


def write_outputs(out, runs):
    """The ranked table (returned as text), ``sweep.csv``, ``sweep_axes.png`` and ``sweep_curves.png``."""
    import csv

    out = Path(out)
    axes = varied([r["config"] for r in runs])
    metric = score_metric(r["config"] for r in runs)
    header = ["rank", "id", *axes, metric, "seconds_per_epoch", "total_seconds"]
    rows = [[i + 1, r["id"], *(_show(r["config"].get(k)) for k in axes), r[metric],
             r["seconds_per_epoch"], r["total_seconds"]] for i, r in enumerate(runs)]
    with open(out / "sweep.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    widths = [max(len(_cell(v)) for v in col) for col in zip(header, *rows)]
    lines = ["  ".join(_cell(v).rjust(w) for v, w in zip(row, widths)) for row in [header, *rows]]
    by_seed = _over_seeds(runs, axes, metric)
    if by_seed:
        lines += ["", "mean ± std over seeds:"] + by_seed
    if runs:
        _axes_figure(runs, axes, metric, out / "sweep_axes.png")
        from . import plots

        top = runs[:5]
        configs = [r["config"] for r in runs]
        plots.save(plots.learning_curves([RunMetrics.read(r["folder"]) for r in top],
                                         labels=[trial_name(r["config"], configs) for r in top]),
                   out / "sweep_curves.png")
    return "\n".join(lines)


_TITLE = {"test_accuracy": "test accuracy", "test_r2": "test R²"}


def _natural(label):
    """Sort key that puts "64" before "128" and "64,32" before "128": numbers as numbers, text after."""
    try:
        return (0, tuple(float(part) for part in label.split(",")), "")
    except ValueError:
        return (1, (), label)


def _show(value):
    return ",".join(map(str, value)) if isinstance(value, list) else value


def _cell(value):
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _over_seeds(runs, axes, metric):
    """Lines ``config: mean ± std (n seeds)`` when trials differ only by seed."""
    if "seed" not in axes:
        return []
    groups = {}
    for r in runs:
        key = ", ".join(f"{k}={_show(r['config'].get(k))}" for k in axes if k != "seed") or "all"
        groups.setdefault(key, []).append(r[metric])
    ranked = sorted(groups.items(), key=lambda kv: -np.mean(kv[1]))
    return [f"  {key}: {np.mean(v):.4f} ± {np.std(v):.4f} ({len(v)} seeds)" for key, v in ranked]


def _axes_figure(runs, axes, metric, path):
    from . import plots

    plt = plots.pyplot()
    axes = axes or ["id"]
    fig, grid = plt.subplots(1, len(axes), figsize=(4 * len(axes), 3.5), squeeze=False)
    for ax, key in zip(grid[0], axes):
        labels = sorted({str(_show(r["config"].get(key, r["id"]))) for r in runs}, key=_natural)
        for i, label in enumerate(labels):
            acc = [r[metric] for r in runs if str(_show(r["config"].get(key, r["id"]))) == label]
            ax.scatter([i] * len(acc), acc, alpha=0.6)
            ax.plot([i - 0.2, i + 0.2], [np.mean(acc)] * 2, color="black")
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel(key)
        ax.set_ylabel(_TITLE[metric])
        ax.grid(alpha=0.3)
    fig.suptitle(f"{_TITLE[metric].capitalize()} along each axis of the sweep (bar: mean)")
    fig.tight_layout()
    plots.save(fig, path)
