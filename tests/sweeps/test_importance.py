"""Importances with bootstrap intervals (sweeps.results.importance), on real Optuna trials
built from a known function."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from sweeps.results.importance import (
    ImportanceTable,
    coverage,
    importance_metrics,
    importance_table,
    importance_tables,
    importances,
    observations,
    study_importances,
)


def _trials(n: int = 30, seed: int = 0) -> list:
    """Trials whose value is 10·x² plus a little noise: x matters, y and the categorical c do not."""
    rng = np.random.default_rng(seed)
    dists = {
        "x": optuna.distributions.FloatDistribution(-1, 1),
        "y": optuna.distributions.FloatDistribution(-1, 1),
        "c": optuna.distributions.CategoricalDistribution(["a", "b"]),
    }
    out = []
    for _ in range(n):
        p = {"x": float(rng.uniform(-1, 1)), "y": float(rng.uniform(-1, 1)), "c": str(rng.choice(["a", "b"]))}
        value = 10 * p["x"] ** 2 + 0.01 * rng.normal()
        out.append(optuna.trial.create_trial(params=p, distributions=dists, value=value))
    return out


@pytest.mark.parametrize("evaluator", ["fanova", "ped_anova"])
def test_the_parameter_that_matters_leads_and_the_others_are_within_noise(evaluator):
    obs = observations(_trials(), lambda t: t.value)
    table = importance_table(obs, "value", evaluator, bootstrap=8, rng=np.random.default_rng(1))
    assert table.rows[0].param == "x" and not table.rows[0].within_noise
    smallest = min(r.value for r in table.rows)
    # the rule: within noise when the interval reaches the smallest importance
    for r in table.rows:
        assert r.within_noise == (r.low <= smallest)
        assert r.low <= r.high
    assert set(table.within_noise()) >= {min(table.rows, key=lambda r: r.value).param}
    assert sum(r.value for r in table.rows) == pytest.approx(1.0)  # normalised, as Optuna returns them
    assert table.n_trials == 30 and table.bootstrap == 8


def test_interval_is_the_percentiles_of_the_resampled_importances():
    """Recompute the interval by hand: the same resamples of the trials, Optuna's evaluator on each."""
    from sweeps.results.importance import common_params, evaluate

    obs = observations(_trials(12), lambda t: t.value)
    params = common_params(obs)
    rng = np.random.default_rng(5)
    table = importance_table(obs, "value", "ped_anova", bootstrap=6, rng=rng)
    replay = np.random.default_rng(5)
    replay.integers(2**31)  # the point estimate's seed
    samples = []
    for _ in range(6):
        pick = replay.integers(len(obs), size=len(obs))
        got = evaluate([obs[i] for i in pick], params, "ped_anova", int(replay.integers(2**31)), "minimize")
        samples.append([got[p] for p in params])
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    by_param = {r.param: r for r in table.rows}
    for p, lo, hi in zip(params, low, high, strict=True):
        assert by_param[p].low == pytest.approx(lo) and by_param[p].high == pytest.approx(hi)


@pytest.mark.parametrize("resamples", [2, 12, 40, 200])
def test_coverage_is_what_the_percentile_bounds_enclose_on_average(resamples):
    """The formula against simulation: for uniform draws the share of the distribution between two bounds is
    their difference, so the mean difference of NumPy's 2.5th and 97.5th percentiles over many sets of
    ``resamples`` uniform draws is what the interval encloses on average. 12 resamples give ~80 %, not 95 %."""
    rng = np.random.default_rng(resamples)
    reps = 40_000
    draws = rng.uniform(size=(reps, resamples))
    low, high = np.percentile(draws, [2.5, 97.5], axis=1)
    spread = high - low
    assert spread.mean() == pytest.approx(coverage(resamples), abs=4 * spread.std() / np.sqrt(reps))
    assert coverage(resamples) < 0.95


def test_coverage_grows_to_the_nominal_level_and_is_zero_without_an_interval():
    assert coverage(0) == coverage(1) == 0.0
    assert coverage(12) == pytest.approx(0.95 * 11 / 13)
    values = [coverage(b) for b in (2, 12, 100, 1000, 100_000)]
    assert values == sorted(values) and values[-1] == pytest.approx(0.95, abs=1e-4)


def test_a_table_reports_the_coverage_of_the_resamples_it_got():
    """``bootstrap`` on a table counts the resamples the evaluator succeeded on, so its coverage is theirs."""
    obs = observations(_trials(12), lambda t: t.value)
    table = importance_table(obs, "value", "ped_anova", bootstrap=12, rng=np.random.default_rng(2))
    assert table.coverage == coverage(table.bootstrap) == pytest.approx(0.8038, abs=1e-4)


def test_every_evaluator_sees_the_same_resamples():
    """Both evaluators are fitted on one study per resample: their tables are the ones each gives alone with
    the same draws (one seed for the point estimates, then per resample the trials picked and a seed)."""
    obs = observations(_trials(15), lambda t: t.value)
    both = importance_tables(obs, "value", ("fanova", "ped_anova"), bootstrap=5, rng=np.random.default_rng(7))
    alone = [
        importance_table(obs, "value", e, bootstrap=5, rng=np.random.default_rng(7)) for e in ("fanova", "ped_anova")
    ]
    assert both == alone and [t.evaluator for t in both] == ["fanova", "ped_anova"]


def test_too_few_trials_or_nothing_varying_gives_no_table():
    rng = np.random.default_rng(0)
    assert importance_table(observations(_trials(2), lambda t: t.value), "v", "fanova", rng=rng) is None
    assert importances(_trials(10), {"v": lambda t: None}, seed=0) == []


def test_metric_names():
    obs = observations(_trials(10), lambda t: t.value)
    table = importance_table(obs, "final_val_cost", "fanova", bootstrap=2, rng=np.random.default_rng(0))
    other = ImportanceTable("train_seconds", "ped_anova", table.rows, 10, 2)
    metrics = importance_metrics([table, other], "final_val_cost")
    assert metrics["importance.x"] == next(r.value for r in table.rows if r.param == "x")
    assert {"importance.x", "importance.x.low", "importance.x.high", "importance.train_seconds.ped_anova.x"} <= set(
        metrics
    )


def test_a_study_reuses_its_importances_until_its_trials_or_settings_change():
    from sweeps.results.importance import CACHE_ATTR

    study = optuna.create_study()
    study.add_trials(_trials(12))
    targets = {"value": lambda t: t.value}
    first = study_importances(study, study.trials, targets, seed=3, bootstrap=4)
    assert first == importances(study.trials, targets, seed=3, bootstrap=4)  # what is stored is what was computed
    stored = study.user_attrs[CACHE_ATTR]
    assert study_importances(study, study.trials, targets, seed=3, bootstrap=4) == first
    # reused, not recomputed: a stored value under the same key comes back as stored
    stored["tables"][0]["rows"][0][1] = 0.123
    study.set_user_attr(CACHE_ATTR, stored)
    assert study_importances(study, study.trials, targets, seed=3, bootstrap=4)[0].rows[0].value == 0.123
    # another seed, another resample count or one more trial: computed afresh
    assert study_importances(study, study.trials, targets, seed=4, bootstrap=4)[0].rows[0].value != 0.123
    assert study_importances(study, study.trials, targets, seed=3, bootstrap=5)[0].rows[0].value != 0.123
    study.add_trials(_trials(1, seed=9))
    again = study_importances(study, study.trials, targets, seed=3, bootstrap=4)
    assert again == importances(study.trials, targets, seed=3, bootstrap=4) and again[0].n_trials == 13
