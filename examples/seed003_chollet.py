"""Seed 003, Chollet's walk-through: 784-512 (relu) - 10 (softmax), rmsprop, 5 epochs, batch 128.

60 000 images in batches of 128 make ceil(60000 / 128) = 469 gradient updates per epoch, 2 345 in all.
``python examples/seed003_chollet.py fashion-mnist``
"""

import math
import sys

import fcnet


class CountUpdates(fcnet.Callback):
    """Counts optimizer steps, to show the 469 updates per epoch."""

    def __init__(self):
        self.updates = 0

    def on_batch_end(self, batch, logs):
        self.updates += 1


def main(dataset="mnist", epochs=5):
    (train_images, train_labels), (test_images, test_labels) = fcnet.datasets.load(dataset)
    model = fcnet.Sequential([fcnet.Dense(512, activation="relu"), fcnet.Dense(10, activation="softmax")], seed=0)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    counter = CountUpdates()
    model.fit(train_images, train_labels, epochs=epochs, batch_size=128, verbose=2, callbacks=[counter])
    print(f"{counter.updates} gradient updates ({math.ceil(len(train_images) / 128)} per epoch)")
    test = model.evaluate(test_images, test_labels)
    print(f"test accuracy {test.accuracy:.4f}")
    return {"updates": counter.updates, "test": test}


if __name__ == "__main__":
    main(*sys.argv[1:2])
