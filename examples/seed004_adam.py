"""Seed 004: 784-512 (relu) - 10 (softmax), Adam, 5 epochs, batch 128; evaluate, predict, argmax.

``python examples/seed004_adam.py fashion-mnist``
"""

import sys

import fcnet


def main(dataset="mnist", epochs=5):
    (train_images, train_labels), (test_images, test_labels) = fcnet.datasets.load(dataset)
    model = fcnet.Sequential(seed=0)
    model.add(fcnet.Dense(512, activation="relu", input_dim=28 * 28))
    model.add(fcnet.Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_images, train_labels, epochs=epochs, batch_size=128, verbose=2)
    test = model.evaluate(test_images, test_labels)
    print(f"test loss {test.loss:.4f}  test accuracy {test.accuracy:.4f}")
    predictions = model.predict(test_images[:10])
    names = fcnet.datasets.class_names(dataset)
    for label, p in zip(test_labels[:10], predictions.argmax(axis=1)):
        print(f"True: {names[label]}  Pred: {names[p]}")
    return {"test": test, "predicted": predictions.argmax(axis=1), "true": test_labels[:10]}


if __name__ == "__main__":
    main(*sys.argv[1:2])
