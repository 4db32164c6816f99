"""fcnet.augment: shifts, rotations, scalings and Simard's elastic distortions of uint8 images — the geometry, the
compiled and NumPy samplers byte for byte, the field's statistics, seeding, and augment= in fit and the CLI."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import fcnet
from fcnet import TrainConfig, augment, train_run
from fcnet.augment import Augment, _blur_basis, _fields, _gaussian_matrix, _sample, _sample_numpy, parse

IDENTITY = np.array([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]])
NO_NOISE = np.zeros((0, 0, 2), dtype=np.float32), Augment()._bases(28, 28)  # noise and blur without elastic


def digits(n=64, seed=0, shape=(28, 28)):
    rng = np.random.default_rng(seed)
    images = np.zeros((n, *shape), dtype=np.uint8)
    images[:, 6:-6, 8:-8] = rng.integers(0, 256, (n, shape[0] - 12, shape[1] - 16))
    return images


def test_the_geometry_of_shifts_and_quarter_turns():
    image = digits(1)
    shifted = _sample(image, np.array([[1.0, 0.0, -3.0, 0.0, 1.0, 2.0]]), *NO_NOISE)  # samples (i − 3, j + 2)
    expected = np.zeros_like(image)
    expected[0, 3:, :-2] = image[0, :-3, 2:]
    assert_array_equal(shifted, expected)
    # output (i, j) samples (j, 27 − i): a quarter turn about the centre, np.rot90's (counter-clockwise)
    turned = _sample(image, np.array([[0.0, 1.0, 0.0, -1.0, 0.0, 27.0]]), *NO_NOISE)
    assert_array_equal(turned[0], np.rot90(image[0]))
    assert_array_equal(_sample(image, IDENTITY, *NO_NOISE), image)


@pytest.mark.parametrize("settings", ["shift,rotate,scale,elastic", "shift=3", "elastic=20,sigma=6", "rotate=45"])
@pytest.mark.parametrize("shape", [(28, 28), (20, 24)])
def test_the_compiled_sampler_gives_the_references_bytes(settings, shape):
    pytest.importorskip("numba")
    from fcnet.sampler import sample_bilinear

    aug, images = parse(settings), digits(300, shape=shape)
    rng = np.random.default_rng(4)
    affine, noise = aug._affine(300, *shape, rng), aug._displacements(300, *shape, rng)
    compiled = np.empty_like(images)
    sample_bilinear(images, affine, noise, *aug._bases(*shape), compiled)
    reference = _sample_numpy(images, affine, noise, aug._bases(*shape))
    assert_array_equal(compiled, reference)
    assert (reference != images).mean() > 0.05  # something moved


def test_the_elastic_field_has_the_full_blurs_statistics():
    rng = np.random.default_rng(0)
    aug = Augment(elastic=34)
    drawn = _fields(aug._displacements(6000, 28, 28, rng), *aug._bases(28, 28))[:, :, 0::2].transpose(2, 0, 1)
    g = _gaussian_matrix(28, 4.0)
    full = 34 * (g @ rng.uniform(-1, 1, (6000, 28, 28)) @ g.T)  # Simard's recipe, literally
    for (i, j), (k, m) in (((14, 14), (14, 14)), ((14, 14), (14, 18)), ((0, 0), (0, 0)), ((3, 20), (9, 20))):
        ours = np.mean(drawn[:, i, j] * drawn[:, k, m])
        theirs = np.mean(full[:, i, j] * full[:, k, m])
        assert ours == pytest.approx(theirs, rel=0.08), (i, j, k, m)
    assert _blur_basis(28, 4.0).shape == (28, 10)


def test_no_strength_is_the_identity_and_a_seed_fixes_the_distortions():
    images = digits(50)
    assert_array_equal(Augment()(images, np.random.default_rng(0)), images)
    aug = parse("shift,rotate,elastic")
    a, b = aug(images, np.random.default_rng(7)), aug(images.reshape(50, -1), np.random.default_rng(7))
    assert_array_equal(a.reshape(50, -1), b) and b.shape == (50, 784)
    assert not np.array_equal(a, aug(images, np.random.default_rng(8)))


def test_parse_and_refusals():
    assert parse("shift, elastic=30,sigma=5").get_config() == {"shift": 2.0, "rotate": 0.0, "scale": 0.0,
                                                             "elastic": 30.0, "sigma": 5.0, "flip": 0.0,
                                                             "erase": 0.0}
    for text, message in (("twist", "unknown augmentation 'twist'"), ("shift=x", "not a number"),
                          ("", "name at least one"), ("sigma", "sigma needs a value"),
                          ("rotate=500", r"augment rotate must be a number in \[0, 180\]")):
        with pytest.raises(ValueError, match=message):
            parse(text)
    with pytest.raises(ValueError, match="uint8 images"):
        Augment(shift=1)(np.zeros((2, 784)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="not 5×5 images"):
        Augment(shift=1)(np.zeros((2, 30), np.uint8), np.random.default_rng(0))
    flat = digits(4, shape=(20, 24)).reshape(4, -1)  # fit's rows of a non-square data set
    assert_array_equal(parse("rotate", shape=(20, 24))(flat, np.random.default_rng(1)),
                       parse("rotate")(flat.reshape(4, 20, 24), np.random.default_rng(1)).reshape(4, -1))
    with pytest.raises(ValueError, match="augment distorts images"):
        TrainConfig(dataset="csv:t.csv", target="y", augment="shift")


@pytest.mark.slow
def test_fit_distorts_the_training_images_every_epoch_and_not_the_validation_ones():
    images, labels = digits(256).reshape(256, -1), np.arange(256) % 10
    seen = []

    def recording(x, rng):
        seen.append(x.copy())
        return parse("shift,rotate")(x, rng)

    model = fcnet.Sequential([fcnet.Dense(32, "relu", input_dim=784), fcnet.Dense(10, "softmax")], seed=0)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(images[:200], labels[:200], epochs=2, validation_data=(images[200:], labels[200:]),
                        verbose=0, augment=recording, engine="numpy")
    assert len(seen) == 2 and all(np.array_equal(s, images[:200]) for s in seen)  # the originals, each epoch
    assert len(history.history["augment_seconds"]) == 2
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(images[200:], labels[200:]).loss)
    with pytest.raises(ValueError, match="augment distorts uint8 images"):
        model.fit(images.astype(np.float32) / 255, labels, epochs=1, verbose=0, augment=recording)


@pytest.mark.slow
def test_augment_from_the_cli_is_the_same_on_both_engines_and_resumes_bit_identically(idx_dir, tmp_path):
    pytest.importorskip("numba")
    config = TrainConfig(dataset=f"idx:{idx_dir}", hidden=(16,), epochs=3, batch_size=50, threads=2, dtype="float64",
                         augment="shift,rotate,elastic,erase")
    runs = [train_run(config.replace(engine=engine), verbose=0) for engine in ("numpy", "numba")]
    for p, q in zip(runs[0].model.parameters, runs[1].model.parameters):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)
    plain = train_run(config.replace(augment=None, engine="numba"), verbose=0)
    assert not np.allclose(plain.model.parameters[0], runs[1].model.parameters[0])

    class Killed(fcnet.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(fcnet.errors.RunInterrupted):
        train_run(config.replace(engine="numba"), out=tmp_path / "part", callbacks=[Killed()], verbose=0, figures=False)
    resumed = train_run(config.replace(engine="numba"), out=tmp_path / "part", resume=True, verbose=0, figures=False)
    for p, q in zip(runs[1].model.parameters, resumed.model.parameters):
        assert_array_equal(p, q)
    assert augment.KINDS["elastic"] == 34.0


def test_flip_mirrors_left_to_right_with_its_probability_and_leaves_other_draws_alone():
    images = digits(400)
    assert_array_equal(Augment(flip=1.0)(images, np.random.default_rng(0)), images[:, :, ::-1])
    half = Augment(flip=0.5)(images, np.random.default_rng(1))
    mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(half, images)]
    unchanged = [np.array_equal(a, b) for a, b in zip(half, images)]
    assert all(m or u for m, u in zip(mirrored, unchanged)) and 160 < sum(mirrored) < 240
    shifted = Augment(shift=2)._affine(50, 28, 28, np.random.default_rng(2))
    both = Augment(shift=2, flip=0.5)._affine(50, 28, 28, np.random.default_rng(2))
    kept = both[:, 4] == shifted[:, 4]  # d = 1 unless mirrored
    assert kept.any() and not kept.all() and np.array_equal(both[kept], shifted[kept])
    assert parse("flip").flip == 0.5 and parse("flip=0.25,shift").flip == 0.25
    with pytest.raises(ValueError, match=r"augment flip must be a number in \[0, 1\]"):
        Augment(flip=1.5)


def test_erase_blanks_one_rectangle_of_torchvisions_size_with_its_probability_after_the_other_draws():
    images = np.full((2000, 28, 28), 200, dtype=np.uint8)
    erased = Augment(erase=0.5)(images, np.random.default_rng(3))
    hit = (erased == 0).any(axis=(1, 2))
    assert 900 < hit.sum() < 1100 and (erased[~hit] == 200).all()
    areas = []
    for image in erased[hit]:
        rows, cols = np.flatnonzero((image == 0).any(axis=1)), np.flatnonzero((image == 0).any(axis=0))
        assert (image[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] == 0).all()  # one rectangle, the rest kept
        assert (image == 0).sum() == len(rows) * len(cols) and np.ptp(rows) == len(rows) - 1
        areas.append(len(rows) * len(cols) / 784)
    assert 0.01 < min(areas) < 0.04 and 0.28 < max(areas) < 0.4 and 0.15 < np.mean(areas) < 0.2  # mostly ~U(.02, .33)
    corners = np.array([np.argwhere(image == 0)[0] for image in erased[hit]])
    assert corners[:, 0].min() == 0 and corners[:, 1].min() == 0 and corners.max() > 20  # placed all over
    assert_array_equal(Augment(erase=1.0)(images[:1], np.random.default_rng(0)).reshape(28, 28) == 0,
                       Augment(erase=1.0)(images[:1].reshape(1, 784), np.random.default_rng(0)).reshape(28, 28) == 0)
    shifted = Augment(shift=2)(digits(300), np.random.default_rng(4))
    both = Augment(shift=2, erase=0.5)(digits(300), np.random.default_rng(4))
    assert (both != shifted).any() and ((both == shifted) | (both == 0)).all()  # the shifts drawn as without erase
    assert parse("erase").erase == 0.5 and parse("erase=0.25").erase == 0.25
    with pytest.raises(ValueError, match=r"augment erase must be a number in \[0, 1\]"):
        Augment(erase=-0.1)
