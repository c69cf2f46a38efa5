"""fANOVA on our own forest (sweeps.results.fanova): the trees checked against scikit-learn's, the variance
decomposition against Optuna's on the same trees, the importances against Optuna's evaluator."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.importance._fanova._tree import _FanovaTree  # Optuna's decomposition, to check ours against
from sklearn.tree import DecisionTreeRegressor

from sweeps.results import fanova
from sweeps.results.importance import Observation, common_params, evaluate


def _data(rng, n: int, n_cols: int, binary: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, bounds): columns in float32 values (scikit-learn fits in float32: the same thresholds), the
    first ``binary`` columns 0/1 as one-hot ones, y a smooth function of the columns plus noise."""
    X = rng.uniform(-1.0, 3.0, (n, n_cols)).astype(np.float32).astype(np.float64)
    X[:, :binary] = rng.integers(0, 2, (n, binary))
    y = np.sin(3 * X[:, 0]) + X[:, -1] ** 2 + 0.3 * X[:, 0] * X[:, -1] + 0.1 * rng.standard_normal(n)
    bounds = np.array([[0.0, 1.0]] * binary + [[-1.0, 3.0]] * (n_cols - binary))
    return X, y, bounds


def _leaves(tree: DecisionTreeRegressor, bounds: np.ndarray) -> fanova.Leaves:
    """The leaf boxes of a fitted scikit-learn tree, as :func:`fanova.grow` returns them."""
    t = tree.tree_
    found = []

    def walk(i: int, lo: np.ndarray, hi: np.ndarray) -> None:
        if t.children_left[i] == -1:
            found.append((lo, hi, t.value[i].ravel()[0]))
            return
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[t.feature[i]] = right_lo[t.feature[i]] = t.threshold[i]
        walk(t.children_left[i], lo, left_hi)
        walk(t.children_right[i], right_lo, hi)

    walk(0, bounds[:, 0].copy(), bounds[:, 1].copy())
    lo, hi, value = (np.array(a) for a in zip(*found, strict=True))
    return fanova.Leaves(lo[None], hi[None], value[None])


def _predict(leaves: fanova.Leaves, X: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Tree 0's value at each row of ``X`` (a leaf takes lo < x <= hi, as the splits do, and its lower
    bound too where that is the space's)."""
    lo, hi = leaves.lo[0][None], leaves.hi[0][None]
    above = (X[:, None] > lo) | ((X[:, None] == lo) & (lo == bounds[:, 0]))
    inside = np.all(above & (X[:, None] <= hi), axis=2)
    assert (inside.sum(axis=1) == 1).all(), "every row falls in exactly one leaf"
    return inside.astype(float) @ leaves.value[0]


@pytest.mark.parametrize("seed", range(6))
def test_the_variance_decomposition_is_optunas_on_the_same_tree(seed):
    """Each column's (and a one-hot group's) share of a tree's variance, and the variance itself, equal what
    Optuna's fANOVA computes from the same scikit-learn tree, to round-off."""
    rng = np.random.default_rng(seed)
    X, y, bounds = _data(rng, n=int(rng.integers(8, 60)), n_cols=4, binary=2)
    tree = DecisionTreeRegressor(max_depth=int(rng.integers(1, 10)), random_state=seed).fit(X, y)
    groups = [np.array([0, 1]), np.array([2]), np.array([3]), np.array([0, 2])]
    shares, variance = fanova.variance_shares(_leaves(tree, bounds), bounds, groups)
    theirs = _FanovaTree(tree.tree_, bounds)
    assert variance[0] == pytest.approx(theirs.variance, rel=1e-12)
    expected = [theirs.get_marginal_variance(g) / theirs.variance for g in groups]
    np.testing.assert_allclose(shares[0], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("offset", [1e6, 1e9])
def test_a_large_mean_costs_no_precision(offset):
    """A target far from zero with a small spread (a cost around 1e9 that varies by ~1): the shares are those
    of the same tree without the offset, as Optuna computes them."""
    rng = np.random.default_rng(7)
    X, y, bounds = _data(rng, n=40, n_cols=3, binary=2)
    tree = DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, y)
    groups = [np.array([0, 1]), np.array([2])]
    leaves = _leaves(tree, bounds)
    shifted = fanova.Leaves(leaves.lo, leaves.hi, leaves.value + offset)
    theirs = _FanovaTree(tree.tree_, bounds)
    expected = [theirs.get_marginal_variance(g) / theirs.variance for g in groups]
    np.testing.assert_allclose(fanova.variance_shares(shifted, bounds, groups)[0][0], expected, rtol=1e-5)


@pytest.mark.parametrize(("seed", "depth", "bootstrap"), [(0, 3, False), (1, 6, False), (2, 40, False), (3, 6, True)])
def test_a_tree_partitions_its_rows_as_scikit_learns(seed, depth, bootstrap):
    """Grown on the same rows (a bootstrap sample's repeats as scikit-learn's sample weights), our tree gives
    every row the value scikit-learn's gives it: the same splits, up to which of several columns that cut the
    rows alike is named. On one column there is no such choice: the same tree everywhere."""
    rng = np.random.default_rng(seed)
    X, y, bounds = _data(rng, n=200, n_cols=4, binary=1)
    rows = rng.integers(200, size=200) if bootstrap else np.arange(200)
    weight = np.bincount(rows, minlength=200).astype(float)
    theirs = DecisionTreeRegressor(max_depth=depth, random_state=seed).fit(X, y, sample_weight=weight)
    ours = fanova.grow(X, y, rows[None], bounds, rng.random((1, 4)), depth)
    seen = weight > 0
    np.testing.assert_allclose(_predict(ours, X[seen], bounds), theirs.predict(X[seen]), rtol=0, atol=1e-12)

    one = X[:, 3:]
    theirs = DecisionTreeRegressor(max_depth=depth).fit(one, y, sample_weight=weight)
    ours = fanova.grow(one, y, rows[None], bounds[3:], np.zeros((1, 1)), depth)
    anywhere = rng.uniform(-1.0, 3.0, (500, 1))
    np.testing.assert_allclose(_predict(ours, anywhere, bounds[3:]), theirs.predict(anywhere), rtol=0, atol=1e-12)


def test_leaves_stop_at_the_depth_at_pure_values_and_at_rows_that_do_not_differ():
    X = np.array([[0.0], [1.0], [2.0], [3.0], [3.0], [3.0]])
    y = np.array([1.0, 1.0, 1.0, 5.0, 6.0, 7.0])  # x ≤ 2.5 is pure; x = 3 varies but cannot be split
    bounds = np.array([[0.0, 3.0]])
    leaves = fanova.grow(X, y, np.arange(6)[None], bounds, np.zeros((1, 1)), max_depth=10)
    got = sorted(zip(leaves.lo[0, :, 0], leaves.hi[0, :, 0], leaves.value[0], strict=True))
    assert got == [(0.0, 2.5, 1.0), (2.5, 3.0, 6.0)]
    stump = fanova.grow(X, y, np.arange(6)[None], bounds, np.zeros((1, 1)), max_depth=0)
    assert stump.value[0].tolist() == [pytest.approx(y.mean())]


def _study_obs(n: int, seed: int) -> list[Observation]:
    """Trials of a known function: x matters most, the categorical c somewhat, y and the log-scaled lr not."""
    rng = np.random.default_rng(seed)
    dists = {
        "x": optuna.distributions.FloatDistribution(-1, 1),
        "y": optuna.distributions.FloatDistribution(-1, 1),
        "lr": optuna.distributions.FloatDistribution(1e-4, 0.1, log=True),
        "c": optuna.distributions.CategoricalDistribution(["a", "b", "c"]),
    }
    out = []
    for _ in range(n):
        p = {
            "x": float(rng.uniform(-1, 1)),
            "y": float(rng.uniform(-1, 1)),
            "lr": float(np.exp(rng.uniform(np.log(1e-4), np.log(0.1)))),
            "c": str(rng.choice(["a", "b", "c"])),
        }
        out.append(Observation(p, dists, 10 * p["x"] ** 2 + 2.0 * (p["c"] == "a") + 0.05 * rng.normal()))
    return out


def test_the_encoding_is_optunas_for_its_fanova():
    """A number as itself between its bounds (a log-scaled one too), a categorical as one 0/1 column per
    choice, in [0, 1]."""
    obs = _study_obs(4, seed=0)
    encoded = fanova.encode([o.params for o in obs], obs[0].distributions, ["lr", "c"])
    assert [g.tolist() for g in encoded.groups] == [[0], [1, 2, 3]]
    assert encoded.bounds.tolist() == [[1e-4, 0.1], [0, 1], [0, 1], [0, 1]]
    for row, o in zip(encoded.X, obs, strict=True):
        assert row[0] == o.params["lr"]
        assert row[1:].tolist() == [float(o.params["c"] == ch) for ch in "abc"]


def test_the_importances_are_optunas_fanova_in_expectation():
    """Averaged over many trees, our forest's importances and Optuna's (scikit-learn's forest) agree: the
    same method, other random trees."""
    obs = _study_obs(40, seed=1)
    params = common_params(obs)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    study.add_trials(
        [optuna.trial.create_trial(params=o.params, distributions=o.distributions, value=o.value) for o in obs]
    )
    theirs = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=256, seed=0), params=params
    )
    encoded = fanova.encode([o.params for o in obs], obs[0].distributions, params)
    y = np.array([o.value for o in obs])
    ours = fanova.importances(encoded, y, [(np.arange(40), 0)], n_trees=256, max_depth=64)[0]
    assert dict(zip(params, ours, strict=True)) == pytest.approx(theirs, abs=0.03)
    assert max(theirs, key=theirs.get) == "x" and sorted(theirs, key=theirs.get)[-2] == "c"


def test_a_fit_gives_the_same_importances_alone_or_in_a_batch():
    obs = _study_obs(25, seed=2)
    params = common_params(obs)
    encoded = fanova.encode([o.params for o in obs], obs[0].distributions, params)
    y = np.array([o.value for o in obs])
    rng = np.random.default_rng(0)
    fits = [(np.arange(25), 11)] + [(rng.integers(25, size=25), s) for s in (12, 13, 14)]
    together = fanova.importances(encoded, y, fits, n_trees=16, max_depth=64)
    alone = [fanova.importances(encoded, y, [fit], n_trees=16, max_depth=64)[0] for fit in fits]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)  # the same trees; sums in another order
        assert a.sum() == pytest.approx(1.0)
    assert not np.array_equal(together[0], together[1])  # the resamples differ
    # grown a few trees at a time (as a large study is), the same again
    small = fanova._SAMPLES
    try:
        fanova._SAMPLES = 25 * encoded.X.shape[1] * 3
        chunked = fanova.importances(encoded, y, fits, n_trees=16, max_depth=64)[2]
        np.testing.assert_allclose(chunked, together[2], rtol=1e-12, atol=1e-15)
    finally:
        fanova._SAMPLES = small


def test_nothing_to_explain_gives_no_importances():
    obs = _study_obs(10, seed=3)
    params = common_params(obs)
    encoded = fanova.encode([o.params for o in obs], obs[0].distributions, params)
    assert fanova.importances(encoded, np.ones(10), [(np.arange(10), 0)], n_trees=4, max_depth=8) == [None]
    constant = [Observation(o.params, o.distributions, 1.0) for o in obs]
    with pytest.raises(RuntimeError, match="do not vary"):
        from sweeps.results.importance import importance_table

        importance_table(constant, "value", "fanova", bootstrap=2, rng=np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="do not vary"):  # one fit: the point estimate
        evaluate(constant, params, "fanova", 0, "minimize")
    assert evaluate(obs, params, "fanova", 0, "minimize").keys() == set(params)


def test_distributions_that_change_between_trials_are_refused():
    obs = _study_obs(5, seed=4)
    wider = dict(obs[0].distributions, x=optuna.distributions.FloatDistribution(-2, 2))
    obs[1] = Observation(obs[1].params, wider, obs[1].value)
    with pytest.raises(ValueError, match="distributions of"):
        evaluate(obs, common_params(obs), "fanova", 0, "minimize")
