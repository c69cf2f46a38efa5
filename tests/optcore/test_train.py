import math

import numpy as np
import pytest

from optcore import (
    OPTIMIZERS,
    DivergenceError,
    Network,
    OptcoreError,
    ewa,
    load_dataset,
    make_optimizer,
    make_schedule,
    minibatches,
    n_batches,
    seeded_generators,
    train,
)


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons", seed=0, n_samples=600, noise=0.2)


LRS = {"gd": 0.5, "momentum": 0.5, "rmsprop": 0.01, "adam": 0.01, "adamw": 0.01, "adagrad": 0.1}
SCHEDULES = {
    "constant": {},
    "step": {"step_size": 3, "gamma": 0.5},
    "exponential": {"decay_rate": 0.1},
    "inverse_time": {"decay_rate": 0.2},
    "polynomial": {"power": 1.0},
    "cosine": {},
    "cosine_restarts": {"t0": 4},
    "warmup_cosine": {"warmup_steps": 2},
}


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_convergence_table(moons, optimizer, schedule):
    """Every optimizer × schedule lowers the cost on moons."""
    net = Network.for_dataset(moons, hidden=[16], activation="tanh")
    lr = LRS[optimizer]
    h = train(
        moons,
        net,
        make_optimizer(optimizer, lr=lr),
        epochs=10,
        batch_size=32,
        seed=0,
        schedule=make_schedule(schedule, lr=lr, total_steps=10, **SCHEDULES[schedule]),
    )
    initial_cost, _ = net.evaluate(net.init(seeded_generators(0)[0]), moons.X_val, moons.Y_val)
    assert h.val_cost[-1] < 0.7 * initial_cost


def test_same_seed_gives_bit_identical_history(moons):
    def run(seed):
        net = Network.for_dataset(moons, hidden=[8, 8])
        return train(
            moons, net, make_optimizer("adam", lr=0.01), epochs=3, batch_size=50, seed=seed, record_minibatch=True
        )

    a, b, c = run(7), run(7), run(8)
    for field in ("train_cost", "val_cost", "val_metric", "lr", "minibatch_cost", "minibatch_cost_ewa"):
        assert getattr(a, field) == getattr(b, field), field
    assert a.val_cost != c.val_cost
    for p, q in zip(a.params, b.params, strict=True):
        assert np.array_equal(p, q)


def test_history_records_every_epoch_and_the_minibatch_curve(moons):
    net = Network.for_dataset(moons, hidden=[8])
    sched = make_schedule("step", lr=0.1, step_size=2, gamma=0.5)
    h = train(
        moons,
        net,
        make_optimizer("gd", lr=0.1),
        epochs=5,
        batch_size=64,
        schedule=sched,
        record_minibatch=True,
        ewa_beta=0.8,
    )
    assert h.epoch == [1, 2, 3, 4, 5]
    assert h.lr == [0.1, 0.1, 0.05, 0.05, 0.025]
    assert h.metric_name == "val_accuracy" and all(0 <= a <= 1 for a in h.val_metric)
    per_epoch = n_batches(moons.n_train, 64)
    assert len(h.minibatch_cost) == 5 * per_epoch
    assert h.minibatch_cost_ewa == ewa(h.minibatch_cost, 0.8)
    assert all(s > 0 for s in h.epoch_seconds)
    assert h.summary()["epochs_run"] == 5 and h.best_epoch == h.epoch[int(np.argmin(h.val_cost))]


def test_per_iteration_schedule_steps_every_batch(moons):
    net = Network.for_dataset(moons, hidden=[4])
    per_epoch = n_batches(moons.n_train, 100)
    sched = make_schedule("exponential", lr=0.1, gamma=0.9)
    h = train(
        moons, net, make_optimizer("gd", lr=0.1), epochs=3, batch_size=100, schedule=sched, schedule_unit="iteration"
    )
    assert h.lr == pytest.approx([0.1 * 0.9 ** (e * per_epoch) for e in range(3)])


def test_train_cost_is_batch_weighted_mean_of_minibatch_costs(moons):
    net = Network.for_dataset(moons, hidden=[4])
    h = train(moons, net, make_optimizer("gd", lr=0.1), epochs=1, batch_size=100, record_minibatch=True)
    sizes = [100] * (moons.n_train // 100) + ([moons.n_train % 100] if moons.n_train % 100 else [])
    assert h.train_cost[0] == pytest.approx(np.dot(h.minibatch_cost, sizes) / moons.n_train)


@pytest.mark.parametrize("batch_size", [1, 7, 480])
def test_minibatches_cover_every_row_once(batch_size):
    X = np.arange(480.0)[:, None]
    batches = list(minibatches(X, X, batch_size, np.random.default_rng(0)))
    assert len(batches) == n_batches(480, batch_size)
    assert all(len(b[0]) == batch_size for b in batches[:-1])
    assert sorted(np.concatenate([b[0][:, 0] for b in batches])) == list(range(480))


def test_reshuffled_each_epoch():
    X = np.arange(50.0)[:, None]
    rng = np.random.default_rng(0)
    first = np.concatenate([b for b, _ in minibatches(X, X, 10, rng)])
    second = np.concatenate([b for b, _ in minibatches(X, X, 10, rng)])
    assert not np.array_equal(first, second)


def test_divergence_raises_with_epoch_and_partial_history(moons):
    net = Network.for_dataset(moons, hidden=[16], activation="relu")
    with pytest.raises(DivergenceError) as err:
        train(moons, net, make_optimizer("gd", lr=1e6), epochs=20, batch_size=16)
    e = err.value
    assert e.epoch >= 1 and e.iteration >= 1 and not math.isfinite(e.cost)
    assert f"cost diverged at epoch {e.epoch}, iteration {e.iteration}" in str(e)
    assert e.history.epochs_run == e.epoch - 1


def test_callback_stops_training(moons):
    net = Network.for_dataset(moons, hidden=[4])
    seen = []

    def stop_at_three(record, history):
        seen.append(record.epoch)
        return record.epoch == 3

    h = train(moons, net, make_optimizer("gd", lr=0.1), epochs=10, batch_size=64, callback=stop_at_three)
    assert seen == [1, 2, 3] and h.epochs_run == 3 and h.stopped_early


def test_a_time_budget_stops_after_the_step_that_spends_it(moons):
    net = Network.for_dataset(moons, hidden=[4])
    # Any step takes longer than a microsecond: training stops after the first one, mid-epoch.
    h = train(moons, net, make_optimizer("gd", lr=0.1), epochs=50, batch_size=32, max_seconds=1e-6)
    assert h.epochs_run == 1 and h.samples_seen == 32 and not h.stopped_early
    # The partial epoch's train cost is that one batch's cost: J at the initial parameters on the first batch.
    init_rng, shuffle_rng = seeded_generators(0)
    X, Y = next(minibatches(moons.X_train, moons.Y_train, 32, shuffle_rng))
    assert h.train_cost[0] == pytest.approx(net.cost(net.init(init_rng), X, Y), rel=1e-6)
    assert h.val_cost[0] == pytest.approx(net.evaluate(h.params, moons.X_val, moons.Y_val)[0])


def test_a_time_budget_spans_epochs_and_is_spent(moons):
    net = Network.for_dataset(moons, hidden=[4])
    h = train(moons, net, make_optimizer("gd", lr=0.1), epochs=100_000, batch_size=32, max_seconds=0.05)
    assert h.train_seconds >= 0.05 and h.epochs_run < 100_000
    assert (h.epochs_run - 1) * moons.n_train < h.samples_seen <= h.epochs_run * moons.n_train
    full = train(moons, net, make_optimizer("gd", lr=0.1), epochs=3, batch_size=32)
    assert full.samples_seen == 3 * moons.n_train


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be a whole number ≥ 1; got 0"),
        ({"max_seconds": 0}, "max_seconds must be a number of seconds > 0; got 0"),
        ({"max_seconds": math.inf}, "max_seconds must be a number of seconds > 0; got inf"),
        ({"batch_size": 0}, "batch_size must be in [1, 480] (the training set size); got 0"),
        ({"batch_size": 481}, "batch_size must be in [1, 480]"),
        ({"schedule_unit": "batch"}, "schedule_unit must be one of epoch, iteration; got 'batch'"),
    ],
)
def test_bad_training_arguments(moons, kwargs, message):
    args = {"epochs": 1, "batch_size": 10, **kwargs}
    with pytest.raises(OptcoreError) as err:
        train(moons, Network.for_dataset(moons), make_optimizer("gd", lr=0.1), **args)
    assert message in str(err.value)


def test_regression_reports_r2():
    ds = load_dataset("regression", seed=0, n_samples=300, n_features=5)
    net = Network.for_dataset(ds, hidden=[16], activation="tanh")
    h = train(ds, net, make_optimizer("adam", lr=0.01), epochs=30, batch_size=32)
    assert h.metric_name == "val_r2" and h.val_metric[-1] > 0.9


def test_multiclass_digits_learns():
    ds = load_dataset("digits", seed=0)
    net = Network.for_dataset(ds, hidden=[32])
    h = train(ds, net, make_optimizer("adam", lr=0.01), epochs=5, batch_size=64)
    assert h.val_metric[-1] > 0.85


@pytest.mark.parametrize("batch_size", [1, 16, 450])
def test_train_cost_with_l2_is_on_the_full_batch_scale_for_any_batch_size(moons, batch_size):
    # A step too small to move the parameters: every batch size must then report J(θ₀) on the training set,
    # the L2 term (λ/2m)·Σ‖W‖² counted once (not ⌈m/b⌉ times, as a per-batch (λ/2b) penalty would).
    data = moons.astype(np.float64)
    net = Network.for_dataset(data, hidden=[8], l2=2.0, dtype=np.float64)
    start = net.init(np.random.default_rng(0))
    full = net.cost(start, data.X_train, data.Y_train)
    assert net.penalty(start, data.n_train) > 0.01 * full  # the L2 term matters in this comparison
    h = train(data, net, make_optimizer("gd", lr=1e-12), epochs=1, batch_size=batch_size, params=start)
    assert h.train_cost[0] == pytest.approx(full, rel=1e-6)
