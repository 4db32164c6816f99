"""Seed 002, the Fashion-MNIST homework: a baseline and a deeper network, both Adam on logits.

Baseline 784-128 (relu) - 10 (logits), 3 epochs (the seed: 0.8589 test accuracy); deeper
256-128-64-64 (relu) - 10, 10 epochs (the seed: 0.8812). Then the two GradientTape examples:
d(x²)/dx at x = 3, and the gradient of mean((xW + b)²). ``python examples/seed002_fashion.py``
"""

import numpy as np

import fcnet


def train(hidden, epochs, x_train, y_train, x_test, y_test):
    # No input_dim: like Keras, the model is built from the data (28x28 images are flattened to 784).
    model = fcnet.Sequential([fcnet.Dense(n, activation="relu") for n in hidden] + [fcnet.Dense(10)], seed=0)
    model.compile(optimizer="adam", loss=fcnet.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, verbose=2)  # Keras' default batch of 32
    test = model.evaluate(x_test, y_test)
    print(f"{'-'.join(map(str, [784, *hidden, 10]))}: test accuracy {test.accuracy:.4f}")
    return test


def square_derivative(x=3.0):
    """d(x²)/dx through fcnet: a 1-unit linear layer with weight x fed the input 1, MSE against 0."""
    model = fcnet.Sequential([fcnet.Dense(1, input_dim=1)], dtype="float64")
    model.compile("sgd", "mse")
    model.set_weights([np.array([[x]]), np.zeros(1)])
    _, (dw, _) = model.loss_and_gradients(np.ones((1, 1)), np.zeros((1, 1)))
    return float(dw[0, 0])


def linear_gradients(x, w, b):
    """Gradients of mean((xW + b)²) w.r.t. W and b, computed by fcnet's backward pass."""
    model = fcnet.Sequential([fcnet.Dense(w.shape[1], input_dim=w.shape[0])], dtype="float64")
    model.compile("sgd", "mse")
    model.set_weights([w, b])
    _, (dw, db) = model.loss_and_gradients(x, np.zeros((len(x), w.shape[1])))
    return dw, db


def main(epochs=(3, 10)):
    (x_train, y_train), (x_test, y_test) = fcnet.datasets.load("fashion-mnist")
    baseline = train([128], epochs[0], x_train, y_train, x_test, y_test)
    deeper = train([256, 128, 64, 64], epochs[1], x_train, y_train, x_test, y_test)
    print("d(x^2)/dx at 3 =", square_derivative(3.0))
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    dw, db = linear_gradients(x, w, b)
    print("d mean((xW+b)^2)/dW =\n", dw, "\nd/db =", db)
    return {"baseline": baseline, "deeper": deeper}


if __name__ == "__main__":
    main()
