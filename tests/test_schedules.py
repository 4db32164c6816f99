"""Learning-rate schedules (fcnet.schedules): Keras' formulas, torch's schedulers as the oracle, per step in the
optimizer (NumPy engine) and per epoch from the command line (every engine, resumable)."""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import fcnet
from fcnet import TrainConfig, optimizers, train_run
from fcnet import schedules as S


def test_keras_formulas_by_hand():
    e = S.ExponentialDecay(0.1, 10, 0.5)
    assert e(0) == 0.1 and e(10) == pytest.approx(0.05) and e(5) == pytest.approx(0.1 * 0.5**0.5)
    assert S.ExponentialDecay(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.05)
    p = S.PiecewiseConstantDecay([3, 6], [1.0, 0.5, 0.1])
    assert [p(t) for t in (0, 3, 4, 6, 7, 100)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]
    c = S.CosineDecay(0.0, 10, alpha=0.1, warmup_target=1.0, warmup_steps=4)
    assert [c(t) for t in (0, 2, 4)] == [0.0, 0.5, 1.0]
    assert c(9) == pytest.approx(0.9 * 0.5 * (1 + math.cos(math.pi / 2)) + 0.1) and c(100) == pytest.approx(0.1)


def test_cosine_exponential_and_one_cycle_follow_torch_schedulers():
    torch = pytest.importorskip("torch")
    w = torch.zeros(1, requires_grad=True)

    def torch_rates(make, steps):
        opt = torch.optim.SGD([w], lr=0.1)
        sched, rates = make(opt), []
        for _ in range(steps):
            rates.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return rates

    lr_sched = torch.optim.lr_scheduler
    for mine, theirs in (
            (S.CosineDecay(0.1, 40), lambda o: lr_sched.CosineAnnealingLR(o, T_max=40)),
            (S.ExponentialDecay(0.1, 1, 0.9), lambda o: lr_sched.ExponentialLR(o, gamma=0.9)),
            (S.OneCycle(0.1, 40), lambda o: lr_sched.OneCycleLR(o, max_lr=0.1, total_steps=40,
                                                               cycle_momentum=False)),
            (S.OneCycle(0.1, 37, pct_start=0.25, div_factor=10, final_div_factor=100),
             lambda o: lr_sched.OneCycleLR(o, max_lr=0.1, total_steps=37, pct_start=0.25, div_factor=10,
                                           final_div_factor=100, cycle_momentum=False))):
        assert_allclose([mine(t) for t in range(40 if mine.name != "one_cycle" else int(mine.total_steps))],
                        torch_rates(theirs, 40 if mine.name != "one_cycle" else int(mine.total_steps)),
                        rtol=1e-12)


def test_a_schedule_as_learning_rate_follows_torch_step_by_step():
    torch = pytest.importorskip("torch")
    from conftest import follow_torch

    rng = np.random.default_rng(3)
    model = fcnet.Sequential([fcnet.Dense(8, "tanh", input_dim=5), fcnet.Dense(3, "softmax")], seed=1,
                             dtype="float64")
    model.compile(fcnet.Adam(learning_rate=S.OneCycle(0.05, 25), epsilon_form="torch"),
                  "sparse_categorical_crossentropy")
    params = [torch.tensor(p.copy(), requires_grad=True) for p in model.parameters]
    reference = torch.optim.Adam(params, lr=0.05, eps=1e-7)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.05, total_steps=25, cycle_momentum=False)
    follow_torch(model, params, reference, rng, scheduler=scheduler)
    for mine, theirs in zip(model.parameters, params):
        assert_allclose(mine, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_schedules_survive_config_and_saving_and_bad_ones_are_refused(tmp_path):
    opt = fcnet.SGD(learning_rate=S.CosineDecay(0.0, 50, warmup_target=0.2, warmup_steps=5), momentum=0.9)
    again = optimizers.get(opt.get_config())
    assert again.schedule.get_config() == opt.schedule.get_config()
    model = fcnet.Sequential([fcnet.Dense(4, "relu", input_dim=3), fcnet.Dense(2, "softmax")], seed=0)
    model.compile(opt, "sparse_categorical_crossentropy")
    model.fit(np.random.default_rng(0).random((40, 3)), np.arange(40) % 2, epochs=1, batch_size=8, verbose=0)
    assert model.optimizer.learning_rate == pytest.approx(0.2 * 4 / 5)  # step 4 of the warm-up
    model.save(tmp_path / "m.npz")
    loaded = fcnet.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.schedule(30) == opt.schedule(30) and loaded.optimizer.iterations == 5
    for make, message in ((lambda: S.ExponentialDecay(0.1, 0, 0.5), "decay_steps must be a finite number > 0"),
                          (lambda: S.PiecewiseConstantDecay([5, 2], [1, 2, 3]), "which must increase"),
                          (lambda: S.OneCycle(0.1, 10, pct_start=1.5), "pct_start must be below 1"),
                          (lambda: S.per_epoch("linear", 0.1, 10), "unknown schedule 'linear'"),
                          (lambda: S.per_epoch("step", 0.1, 10, warmup=2), "warmup goes with the cosine")):
        with pytest.raises(ValueError, match=message):
            make()


def test_per_epoch_schedules_of_the_command_line():
    assert [round(S.per_epoch("cosine", 0.3, 5, warmup=2)(e), 6) for e in range(5)] == [0.1, 0.2, 0.3, 0.225, 0.075]
    assert [S.per_epoch("step", 1.0, 8)(e) for e in range(8)] == [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01]
    assert S.per_epoch("exp", 1.0, 11)(10) == pytest.approx(0.01)
    onecycle = [S.per_epoch("onecycle", 1.0, 10)(e) for e in range(10)]
    assert max(onecycle) == pytest.approx(1.0) and onecycle[0] == pytest.approx(0.04) and onecycle[-1] < 1e-5


def test_a_per_step_schedule_is_compiled_on_the_cpu_and_not_on_the_gpu():
    pytest.importorskip("numba")
    from fcnet.engines import cuda

    def make():
        model = fcnet.Sequential([fcnet.Dense(8, "relu", input_dim=6), fcnet.Dense(3, "softmax")], seed=0,
                                 dtype="float64")
        model.compile(fcnet.SGD(S.ExponentialDecay(0.1, 10, 0.5)), "sparse_categorical_crossentropy")
        return model

    x, y = np.random.default_rng(0).random((64, 6)), np.arange(64) % 3
    runs = [make() for _ in range(2)]
    assert runs[0].fit(x, y, epochs=3, batch_size=8, verbose=0, engine="numpy").engine == "numpy"
    assert runs[1].fit(x, y, epochs=3, batch_size=8, verbose=0).engine == "numba"
    for p, q in zip(*(m.parameters for m in runs)):
        np.testing.assert_allclose(q, p, rtol=1e-12)
    assert runs[1].optimizer.learning_rate == runs[0].optimizer.learning_rate == 0.1 * 0.5 ** (23 / 10)
    assert "schedule read at every step" in cuda.unsupported(runs[0], y)


def test_lr_schedule_from_the_cli_runs_on_every_engine_alike_and_resumes(idx_dir, tmp_path):
    pytest.importorskip("numba")
    config = TrainConfig(dataset=f"idx:{idx_dir}", hidden=(16,), epochs=4, batch_size=50, threads=2, dtype="float64",
                         lr_schedule="cosine", warmup=1, lr=0.2)
    numpy_run, numba_run = (train_run(config.replace(engine=engine), verbose=0) for engine in ("numpy", "numba"))
    assert numba_run.metrics.engine == "numba"
    for p, q in zip(numpy_run.model.parameters, numba_run.model.parameters):
        assert_allclose(p, q, rtol=1e-10, atol=1e-12)
    assert numpy_run.model.optimizer.learning_rate == pytest.approx(S.per_epoch("cosine", 0.2, 4, 1)(3))

    class Killed(fcnet.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(fcnet.errors.RunInterrupted, match="epoch 2 is saved"):
        train_run(config, out=tmp_path / "part", callbacks=[Killed()], verbose=0, figures=False)
    resumed = train_run(config, out=tmp_path / "part", resume=True, verbose=0, figures=False)
    for p, q in zip(numpy_run.model.parameters if numpy_run.metrics.engine == resumed.metrics.engine
                    else numba_run.model.parameters, resumed.model.parameters):
        assert_array_equal(p, q)
