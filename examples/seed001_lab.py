"""Seed 001, the backpropagation lab: 784-300-10, ReLU then softmax, cross-entropy, SGD lr 0.1, batch 64, 20 epochs.

The seed's own NumPy class, written with fcnet's parts: He-normal first layer, fused softmax
cross-entropy, a fresh shuffle every epoch. Prints per-epoch time, loss and accuracy, then the
total time and the test loss and accuracy. ``python examples/seed001_lab.py fashion-mnist``
"""

import sys
import time

import fcnet


def main(dataset="mnist", epochs=20):
    (x_train, y_train), (x_test, y_test) = fcnet.datasets.load(dataset)
    model = fcnet.Sequential([
        fcnet.Dense(300, activation="relu", input_dim=784, kernel_initializer="he_normal"),
        fcnet.Dense(10, activation="softmax"),
    ], seed=0)
    model.compile(optimizer=fcnet.SGD(lr=0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=2)
    print(f"total training time {time.perf_counter() - start:.2f} s")
    test = model.evaluate(x_test, y_test)
    print(f"test loss {test.loss:.4f}  test accuracy {test.accuracy:.4f}")
    return {"history": history.history, "test": test}


if __name__ == "__main__":
    main(*sys.argv[1:2])
