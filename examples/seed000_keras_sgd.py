"""Seed 000: Keras' 784-128 (sigmoid) - 10 (softmax) with plain SGD, then one GradientTape-style step.

The seed trains on MNIST; pass another data set name (``fashion-mnist`` here, where MNIST cannot be
downloaded) as the first argument. ``python examples/seed000_keras_sgd.py fashion-mnist``
"""

import sys

import fcnet


def main(dataset="mnist", epochs=10, verbose=2):
    (x_train, y_train), (x_test, y_test) = fcnet.datasets.load(dataset)
    model = fcnet.Sequential([
        fcnet.Dense(128, activation="sigmoid", input_dim=784),
        fcnet.Dense(10, activation="softmax"),
    ], seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.2, verbose=verbose)
    test = model.evaluate(x_test, y_test)
    print("Test accuracy:", test.accuracy)

    # The GradientTape cell: gradients of the loss over the whole training set w.r.t. every weight, one
    # optimizer step. (Keras sums per-example losses there; fcnet's loss is their mean, so the step is 1/N as big.)
    loss, grads = model.loss_and_gradients(x_train, y_train)
    model.optimizer.apply_gradients(zip(grads, model.parameters))
    after = model.loss_and_gradients(x_train, y_train)[0]
    print(f"full-batch loss before the step {loss:.6f}, after {after:.6f}")

    # "Train again with the updated weights."
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.2, verbose=verbose)
    return {"history": history.history, "test": test, "step_losses": (loss, after),
            "final_test": model.evaluate(x_test, y_test)}


if __name__ == "__main__":
    main(*sys.argv[1:2])
