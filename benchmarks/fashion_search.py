"""Fashion-MNIST with dropout: 16 candidate settings, one single-threaded train_run each, all at once.

Scored on a validation split (the last 6 000 training images), never on the test set; each run stops after
``LIMIT`` seconds of training (``EPOCHS`` at most). Prints a line per finished run and appends its per-epoch
validation accuracy to ``$OUT/search.jsonl``. The run behind ``examples/fashion_dropout.toml`` was on a lent
machine's 16 cores (``EPOCHS=60 LIMIT=430``): ``benchmarks/results/fashion_search_h100_cpu.jsonl``.

    EPOCHS=60 LIMIT=430 OUT=/tmp python benchmarks/fashion_search.py
"""
import json
import multiprocessing as mp
import os
import sys
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"
sys.path.insert(0, "src")

LIMIT = float(os.environ.get("LIMIT", "480"))
BASE = dict(dataset="fashion-mnist", data_dir=os.environ.get("FCNET_DATA"), validation_split=0.1,
            epochs=int(os.environ.get("EPOCHS", "40")),
            threads=1, optimizer="adam", lr=1e-3, batch_size=64, engine="numpy")
CONFIGS = [
    dict(hidden="1024,512", dropout=0.2), dict(hidden="1024,512", dropout=0.3), dict(hidden="1024,512", dropout=0.4),
    dict(hidden="1024,512", dropout=0.3, optimizer="adamw", weight_decay=0.01),
    dict(hidden="1024,512", dropout=0.3, optimizer="adamw", weight_decay=0.05),
    dict(hidden="1024,512", dropout=0.3, lr_decay=0.93), dict(hidden="1024,512", dropout=0.4, lr_decay=0.93),
    dict(hidden="2048,1024", dropout=0.4), dict(hidden="2048,1024", dropout=0.5, lr_decay=0.93),
    dict(hidden="1024,1024,1024", dropout=0.3), dict(hidden="512,512", dropout=0.2),
    dict(hidden="1024,512", dropout=0.3, optimizer="sgd", momentum=0.9, lr=0.02, lr_decay=0.95),
    dict(hidden="1024,512", dropout=0.5, lr_decay=0.93),
    dict(hidden="1024,512", dropout=0.3, batch_size=128, lr=2e-3, lr_decay=0.93),
    dict(hidden="2048,1024", dropout=0.3, optimizer="adamw", weight_decay=0.02, lr_decay=0.93),
    dict(hidden="1024,512", dropout=0.3, batch_size=32),
]


def one(changes):
    from fcnet import Callback, TrainConfig, train_run

    class Clock(Callback):
        def on_train_begin(self, logs):
            self.start = time.time()

        def on_epoch_end(self, epoch, logs):
            if time.time() - self.start > LIMIT:
                self.model.stop_training = True

    config = TrainConfig(**{**BASE, **changes})
    try:
        r = train_run(config, callbacks=[Clock()], verbose=0, figures=False)
        return {"changes": changes, "val_accuracy": r.metrics.history["val_accuracy"],
                "seconds": [e["seconds"] for e in r.metrics.epochs]}
    except Exception as exc:
        return {"changes": changes, "error": repr(exc)}


if __name__ == "__main__":
    out = os.environ.get("OUT", "/tmp")
    with mp.Pool(min(len(CONFIGS), os.cpu_count())) as pool:
        for res in pool.imap_unordered(one, CONFIGS):
            best = max(res.get("val_accuracy") or [0])
            print(json.dumps({k: v for k, v in res.items() if k != "val_accuracy"} | {"best": best,
                  "epochs": len(res.get("val_accuracy") or [])}), flush=True)
            with open(f"{out}/search.jsonl", "a") as f:
                f.write(json.dumps(res) + "\n")
