"""Does averaging the weights of the last epochs (stochastic weight averaging, Izmailov et al. 2018) beat the
last epoch's weights? A paired check on one run: the Fashion-MNIST record's settings (``examples/
fashion_record.toml``, seed 0) with a validation split (the last 6 000 training images); after every epoch from
each start, the mean of the weights so far since that start is scored on validation beside the run's own weights.

``cosine``: the record's 100-epoch cosine schedule. ``constant``: SWA's own schedule, cosine from lr 0.02 down to
``SWA_LR`` over 80 epochs, then constant for 40 more. Writes one JSON list (a row per epoch) to ``OUT``.
Results: ``benchmarks/results/weight_averaging/``.

    FCNET_DATA=.data python benchmarks/weight_averaging.py cosine cosine.json
    FCNET_DATA=.data SWA_LR=0.004 python benchmarks/weight_averaging.py constant constant_tail.json
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, "src")
from fcnet import Callback, TrainConfig, train_run  # noqa: E402
from fcnet.callbacks import LearningRateScheduler  # noqa: E402
from fcnet.run import prepare  # noqa: E402

BASE = dict(dataset="fashion-mnist", hidden=(1024, 512), dropout=0.3, augment="flip", optimizer="sgd", momentum=0.9,
            lr=0.02, batch_size=64, threads=1, seed=0, validation_split=0.1)


class Averages(Callback):
    """After every epoch from each of ``starts`` (0-based), the mean of the weights since then, scored on
    ``(x_val, y_val)``; the run's own weights are put back untouched."""

    def __init__(self, starts, x_val, y_val):
        self.starts, self.x_val, self.y_val = starts, x_val, y_val
        self.sums, self.counts, self.rows = {}, {}, []

    def on_epoch_end(self, epoch, logs):
        weights = self.model.get_weights()
        row = {"epoch": epoch + 1, "val": logs["val_accuracy"], "lr": float(self.model.optimizer.learning_rate)}
        for s in (s for s in self.starts if epoch >= s):
            self.sums[s] = [w.astype(np.float64) + (self.sums[s][i] if s in self.sums else 0)
                            for i, w in enumerate(weights)]
            self.counts[s] = self.counts.get(s, 0) + 1
            self.model.set_weights([total / self.counts[s] for total in self.sums[s]])
            row[f"swa{s}"] = self.model.evaluate(self.x_val, self.y_val).accuracy
            self.model.set_weights(weights)
        self.rows.append(row)
        print(json.dumps(row), flush=True)


def main(mode, out):
    if mode == "cosine":
        config, schedule = TrainConfig(**BASE, lr_schedule="cosine", epochs=100), []
        starts = (50, 60, 70, 75, 80, 85, 90, 95)
    else:
        swa_lr, decay = float(os.environ.get("SWA_LR", "0.004")), 80
        config, starts = TrainConfig(**BASE, epochs=120), (60, 70, 80, 90, 100)
        schedule = [LearningRateScheduler(lambda e, lr: swa_lr + (BASE["lr"] - swa_lr) * 0.5 * (
            1 + math.cos(math.pi * min(e, decay) / decay)))]
    (x, y), _, _ = prepare(config)
    n = int(len(x) * (1 - config.validation_split))
    averages = Averages(list(starts), x[n:], y[n:])
    train_run(config, callbacks=[*schedule, averages], verbose=0, figures=False)
    with open(out, "w") as f:
        json.dump(averages.rows, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("cosine", "constant"))
    parser.add_argument("out")
    args = parser.parse_args()
    main(args.mode, args.out)
