"""The seed 001 notebook's ``NeuralNetwork`` class, transcribed for timing: the baseline fcnet grew from.

Kept as the seed wrote it — float64 data scaled up front, one-hot targets for the whole set, softmax
without max-subtraction, ``log`` of probabilities — except that an epoch visits the rows in the order
it is given (the seed uses file order) so every contender does the same work.
"""

import time

import numpy as np


class NeuralNetwork:
    def __init__(self, weights):
        self.w = [weights[0].astype(np.float64), weights[2].astype(np.float64)]
        self.b = [weights[1].astype(np.float64), weights[3].astype(np.float64)]

    def relu(self, x):
        return np.maximum(x, 0)

    def derived_relu(self, x):
        return np.where(x > 0.0, 1, 0)

    def softmax(self, x):
        exp_x = np.exp(x)
        return np.divide(exp_x.T, np.sum(exp_x, axis=1)).T

    def forward(self, x):
        x = np.matmul(x, self.w[0]) + self.b[0]
        self.inner_layer_w = x.copy()
        x = self.relu(x)
        self.h = x.copy()
        x = np.matmul(x, self.w[1]) + self.b[1]
        return self.softmax(x)

    def backward(self, x_train, y_pred, y_true):
        one_devide_l = -1 / x_train.shape[0]
        d_z2 = y_pred - y_true
        d_w2 = one_devide_l * np.matmul(self.h.T, d_z2)
        d_z1 = np.matmul(d_z2, self.w[1].T) * self.derived_relu(self.inner_layer_w)
        d_w1 = one_devide_l * np.matmul(x_train.T, d_z1)
        d_b2 = one_devide_l * np.sum(d_z2, axis=0)
        d_b1 = one_devide_l * np.sum(d_z1, axis=0)
        self.w[1] = self.w[1] + self.learning_rate * d_w2
        self.w[0] = self.w[0] + self.learning_rate * d_w1
        self.b[1] = self.b[1] + self.learning_rate * d_b2
        self.b[0] = self.b[0] + self.learning_rate * d_b1


class SeedRunner:
    """The transcription behind the benchmark's runner interface."""

    name = "seed001"

    def __init__(self, model, batch_size, learning_rate):
        self.net = NeuralNetwork(model.get_weights())
        self.net.learning_rate = learning_rate
        self.batch_size = batch_size
        self._data = None

    def _prepared(self, x, y):
        if self._data is None or self._data[0] is not x:
            self._data = (x, x.reshape(len(x), -1) / 255.0, np.eye(10)[y])  # as the seed does, for the whole set
        return self._data[1], self._data[2]

    def train_epoch(self, x, y, order):
        xs, ys = self._prepared(x, y)
        start = time.perf_counter()
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            xb = xs[idx]
            self.net.backward(xb, self.net.forward(xb), ys[idx])
        return time.perf_counter() - start, float("nan")

    def evaluate(self, x, y):
        p = self.net.forward(x.reshape(len(x), -1) / 255.0)
        return float("nan"), float((p.argmax(1) == y).mean())
