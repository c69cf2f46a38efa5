"""What mattered: each searched parameter's importance, by two evaluators, with a bootstrap interval.

The evaluators are fANOVA (Hutter et al., 2014), fitted here on a small random forest of our own
(:mod:`sweeps.results.fanova`: the method of Optuna's ``FanovaImportanceEvaluator`` without its
scikit-learn forest), and Optuna's ``PedAnovaImportanceEvaluator``.

One sweep's trials give one importance per parameter; a slightly different set of trials would give
another. The interval says how much: the trials are resampled with replacement ``bootstrap`` times, the
importances are recomputed on each resample, and the 2.5 % and 97.5 % quantiles of those values bound the
interval (a percentile bootstrap). With few resamples those bounds enclose less than 95 % of the resampled
importances (:func:`coverage`: about 80 % with the default 12), and the report says so. A parameter whose
interval reaches down to the smallest importance (the point estimate of the least important parameter)
cannot be told apart from it: it is *within noise*, and fixing it would shrink the search without losing
what the sweep found.

Importances are normalised per evaluation (they sum to 1 over the parameters), as Optuna returns them.
Only parameters that every completed trial has are assessed (Optuna's rule); a conditional parameter that
some trials lack is left out.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Kept cheap: the report is drawn at the end of every run (its time is measured in bench/README.md). One
# fANOVA table (13 fits) of the quickstart's 13 trials takes ~50 ms with Optuna's forest size (64 trees,
# depth up to 64), all fits' trees grown as one batch (sweeps.results.fanova); through Optuna's own
# scikit-learn forest it took 1.2 s, and 0.16 s with the 8 trees of depth 8 used until then, whose point
# estimates varied 2-4x as much from one seed to the next (√8 ≈ 2.8 expected). A large study costs more:
# ~0.55 s for 100 trials, ~11 s for 2000. 12 resamples give rough intervals, `sweeps report --bootstrap B`
# finer ones.
DEFAULT_BOOTSTRAP = 12
FANOVA_TREES = 64
FANOVA_DEPTH = 64
MIN_TRIALS = 3  # fewer completed trials than this and no importance is computed
# The Optuna study's user attribute holding the last importances computed for it, with the key of what they
# were computed from: redrawing the report of an unchanged sweep reuses them instead of refitting.
CACHE_ATTR = "report_importances"
# Raise it when the computation changes, so older stored importances are not reused. 2: every evaluator
# on the same resamples, one point-estimate seed. 3: one random stream per target. 4: fANOVA on our forest.
CACHE_VERSION = 4

QUANTILES = (2.5, 97.5)  # the interval's bounds, as percentiles of the resampled importances
NOMINAL = (QUANTILES[1] - QUANTILES[0]) / 100

log = logging.getLogger(__name__)


def coverage(resamples: int) -> float:
    """The share of the resampling distribution that the interval's bounds enclose on average with
    ``resamples`` resamples: ``0.95 (B - 1) / (B + 1)``, 0 below two. NumPy's percentile q of B values (its
    linear method) sits at the order statistic 1 + q (B - 1), counted from 1, and the k-th smallest of B draws
    lies on average at k / (B + 1) of their distribution. So 12 resamples give bounds about 80 % apart, not
    95 %: the fewer the resamples, the narrower the interval; 200 give 94 %."""
    if resamples < 2:
        return 0.0
    return NOMINAL * (resamples - 1) / (resamples + 1)


@dataclass(frozen=True)
class Importance:
    """One parameter's importance on all trials (``value``) and its bootstrap interval ``[low, high]``."""

    param: str
    value: float
    low: float
    high: float
    within_noise: bool


@dataclass(frozen=True)
class ImportanceTable:
    """The importances of every assessed parameter for one target and one evaluator, most important first."""

    target: str  # what is explained: the objective's name, or "train_seconds"
    evaluator: str  # a key of EVALUATORS
    rows: tuple[Importance, ...]
    n_trials: int
    bootstrap: int

    @property
    def label(self) -> str:
        return EVALUATORS[self.evaluator].label

    def within_noise(self) -> list[str]:
        return [r.param for r in self.rows if r.within_noise]

    @property
    def coverage(self) -> float:
        """What its intervals enclose of the resampled importances, on average (:func:`coverage`)."""
        return coverage(self.bootstrap)


@dataclass(frozen=True)
class Observation:
    """A completed trial as the evaluators see it: its sampled params, their distributions, one value."""

    params: dict
    distributions: dict
    value: float


def observations(trials, value: Callable[[object], float | None]) -> list[Observation]:
    """Completed Optuna trials with a finite ``value(trial)``, as :class:`Observation`."""
    out = []
    for t in trials:
        v = value(t)
        if v is not None and np.isfinite(v):
            out.append(Observation(dict(t.params), dict(t.distributions), float(v)))
    return out


def common_params(obs: list[Observation]) -> list[str]:
    """Parameters present in every observation whose values vary (a constant one has no importance)."""
    if not obs:
        return []
    names = set(obs[0].params).intersection(*(o.params for o in obs[1:]))
    return sorted(n for n in names if len({repr(o.params[n]) for o in obs}) > 1)


def _frozen(obs: list[Observation]) -> list:
    import optuna

    return [optuna.trial.create_trial(params=o.params, distributions=o.distributions, value=o.value) for o in obs]


def _study(trials: list, direction: str):
    """An in-memory Optuna study of ``trials`` (FrozenTrials; the study copies them, so one may appear twice)."""
    import optuna

    study = optuna.create_study(direction=direction, storage=optuna.storages.InMemoryStorage())
    study.add_trials(trials)
    return study


# A fit: the indices of the observations it sees (a resample repeats some) and its seed.
Fit = tuple[np.ndarray, int]


def _distributions(obs: list[Observation], params: list[str]) -> dict:
    """The distributions of ``params``, the same in every observation (else ValueError, as Optuna's)."""
    first = {p: obs[0].distributions[p] for p in params}
    if any(o.distributions[p] != d for o in obs[1:] for p, d in first.items()):
        raise ValueError(f"importances cannot be assessed when the distributions of {params} change between trials")
    return first


def _fanova_fits(obs: list[Observation], params: list[str], fits: list[Fit], direction: str) -> list:
    from sweeps.results import fanova

    encoded = fanova.encode([o.params for o in obs], _distributions(obs, params), params)
    y = np.array([o.value for o in obs], dtype=np.float64)
    found = fanova.importances(encoded, y, fits, n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH)
    if found[0] is None:  # the point estimate: as Optuna's fANOVA, an error
        raise RuntimeError(f"fANOVA: the values of the {len(obs)} trials do not vary: nothing to explain")
    return [None if f is None else dict(zip(params, map(float, f), strict=True)) for f in found]


def _ped_anova_fits(obs: list[Observation], params: list[str], fits: list[Fit], direction: str) -> list:
    """Optuna's PED-ANOVA on an in-memory study of each fit's trials (it is deterministic: no seed)."""
    import optuna

    importance = optuna_importance()
    evaluator = importance.PedAnovaImportanceEvaluator()
    frozen = _frozen(obs)
    out = []
    for i, (picked, _seed) in enumerate(fits):
        try:
            with warnings.catch_warnings():  # it warns on small studies; the interval shows the spread anyway
                warnings.simplefilter("ignore")
                found = importance.get_param_importances(
                    _study([frozen[j] for j in picked], direction), evaluator=evaluator, params=params, normalize=True
                )
        except (ValueError, RuntimeError, optuna.exceptions.OptunaError):
            if i == 0:  # the point estimate: the caller learns why
                raise
            found = None
        out.append(None if found is None else {p: float(found.get(p, 0.0)) for p in params})
    return out


@dataclass(frozen=True)
class Evaluator:
    """An importance evaluator: its ``label`` in the report, and ``fits(obs, params, fits, direction)``, the
    normalised importances of ``params`` on each fit's observations (None where a resample cannot be
    evaluated; the first fit, the point estimate, raises instead)."""

    label: str
    fits: Callable[[list[Observation], list[str], list[Fit], str], list[dict[str, float] | None]]


EVALUATORS: dict[str, Evaluator] = {
    "fanova": Evaluator("fANOVA", _fanova_fits),
    "ped_anova": Evaluator("PED-ANOVA", _ped_anova_fits),
}


def optuna_importance(without_scikit_learn: bool = False):
    """``optuna.importance``. Optuna's importance package imports scikit-learn (and SciPy) for its own fANOVA
    and mean-decrease-impurity evaluators, ~1 s of CPU, which nothing here uses. ``without_scikit_learn``,
    the first time, loads it with scikit-learn hidden: those two evaluators of Optuna's then say it is
    missing, in this process only, and nothing else changes. For processes of our own (the report child); a
    library caller's process keeps all of Optuna's evaluators."""
    if without_scikit_learn and "optuna.importance" not in sys.modules and "sklearn.ensemble" not in sys.modules:
        sys.modules["sklearn.ensemble"] = None  # type: ignore[assignment]  # an ImportError for Optuna's import
        try:
            import optuna.importance
        finally:
            sys.modules.pop("sklearn.ensemble", None)
    import optuna.importance

    return optuna.importance


def evaluate(obs: list[Observation], params: list[str], evaluator: str, seed: int, direction: str) -> dict[str, float]:
    """The normalised importances of ``params`` for ``obs`` by ``evaluator`` (one fit, all of ``obs``)."""
    return EVALUATORS[evaluator].fits(obs, params, [(np.arange(len(obs)), seed)], direction)[0]


def importance_tables(
    obs: list[Observation],
    target: str,
    evaluators: tuple[str, ...] = tuple(EVALUATORS),
    *,
    direction: str = "minimize",
    bootstrap: int = DEFAULT_BOOTSTRAP,
    rng: np.random.Generator,
) -> list[ImportanceTable]:
    """Importances of the parameters of ``obs`` for ``target`` by each of ``evaluators``, with
    percentile-bootstrap intervals over ``bootstrap`` resamples of the trials (drawn with ``rng``); no table
    with fewer than MIN_TRIALS observations or nothing that varies. Every evaluator sees the same fits (the
    trials picked and a seed); a resample on which an evaluator fails (too few distinct values) is skipped
    for that evaluator.

    The draws from ``rng``: one seed for the point estimates, then per resample the picked trials and a seed."""
    params = common_params(obs)
    if len(obs) < MIN_TRIALS or not params or not evaluators:
        return []
    fits: list[Fit] = [(np.arange(len(obs)), int(rng.integers(2**31)))]
    for _ in range(bootstrap):
        pick = rng.integers(len(obs), size=len(obs))
        fits.append((pick, int(rng.integers(2**31))))
    tables = []
    for e in evaluators:
        found = EVALUATORS[e].fits(obs, params, fits, direction)
        samples = [[got[p] for p in params] for got in found[1:] if got is not None]
        tables.append(_table(target, e, params, found[0], samples, len(obs)))
    return tables


def _table(target: str, evaluator: str, params: list[str], point: dict, samples: list, n: int) -> ImportanceTable:
    if samples:
        low, high = np.percentile(np.asarray(samples), QUANTILES, axis=0, method="linear")
    else:
        low = high = np.array([point[p] for p in params])
    smallest = min(point.values())
    rows = [
        Importance(p, point[p], float(lo), float(hi), within_noise=bool(lo <= smallest))
        for p, lo, hi in zip(params, low, high, strict=True)
    ]
    rows.sort(key=lambda r: (-r.value, r.param))
    return ImportanceTable(target, evaluator, tuple(rows), n, len(samples))


def importance_table(
    obs: list[Observation],
    target: str,
    evaluator: str,
    *,
    direction: str = "minimize",
    bootstrap: int = DEFAULT_BOOTSTRAP,
    rng: np.random.Generator,
) -> ImportanceTable | None:
    """:func:`importance_tables` for one evaluator: its table, or None with fewer than MIN_TRIALS observations
    or nothing that varies."""
    tables = importance_tables(obs, target, (evaluator,), direction=direction, bootstrap=bootstrap, rng=rng)
    return tables[0] if tables else None


def _per_target(
    trials, targets: dict[str, Callable[[object], float | None]], seed: int, bootstrap: int, evaluators: tuple[str, ...]
) -> tuple[Callable[[tuple], list[ImportanceTable]], list[tuple]]:
    """(the function computing one target's tables, one job per target): each target's observations and its
    own random stream of ``seed`` (numpy's ``SeedSequence.spawn``), so that a target's intervals are the same
    whether the targets are computed one after another or side by side. Optuna's importance package is
    loaded here, before the targets' copies are forked, so that they do not each load it."""
    if "ped_anova" in evaluators:
        optuna_importance()
    streams = np.random.SeedSequence(seed).spawn(len(targets))
    jobs = [
        (observations(trials, value), target, stream)
        for (target, value), stream in zip(targets.items(), streams, strict=True)
    ]

    def tables(job: tuple) -> list[ImportanceTable]:
        obs, target, stream = job
        return importance_tables(obs, target, evaluators, bootstrap=bootstrap, rng=np.random.default_rng(stream))

    return tables, jobs


def importances(
    trials,
    targets: dict[str, Callable[[object], float | None]],
    *,
    seed: int,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    evaluators: tuple[str, ...] = tuple(EVALUATORS),
) -> list[ImportanceTable]:
    """Every (target, evaluator) table for the completed ``trials``; ``targets`` maps a target's name to the
    function reading its value from a trial (None where a trial lacks it). Seeded: the same trials and seed
    give the same intervals. The targets are computed side by side where this process may fork
    (:class:`tracking.forked.Forked`), one copy each: on two cores the report's two take half the time."""
    from tracking.forked import Forked

    tables, jobs = _per_target(trials, targets, seed, bootstrap, evaluators)
    return [table for found in Forked(tables, jobs).results() for table in found]


def importance_metrics(tables: list[ImportanceTable], objective: str) -> dict[str, float]:
    """MLflow metrics of the parent run: ``importance.<param>`` is fANOVA's importance for the objective (with
    ``importance.<param>.low``/``.high``); every other table as ``importance.<target>.<evaluator>.<param>``."""
    metrics: dict[str, float] = {}
    for table in tables:
        primary = table.target == objective and table.evaluator == "fanova"
        for r in table.rows:
            key = f"importance.{r.param}" if primary else f"importance.{table.target}.{table.evaluator}.{r.param}"
            metrics[key] = r.value
            if primary:
                metrics[f"{key}.low"], metrics[f"{key}.high"] = r.low, r.high
    return metrics


def cache_key(trials, targets: dict[str, Callable[[object], float | None]], *, seed: int, bootstrap: int) -> str:
    """What a set of importances depends on, hashed: each completed trial's number, params and target values,
    the seed, the resamples and the evaluators' settings. Any change to one of them gives another key."""
    rows = [[t.number, dict(t.params), [value(t) for value in targets.values()]] for t in trials]
    what = {
        "version": CACHE_VERSION,
        "targets": list(targets),
        "trials": rows,
        "seed": seed,
        "bootstrap": bootstrap,
        "evaluators": list(EVALUATORS),
        "fanova": [FANOVA_TREES, FANOVA_DEPTH],
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=repr).encode()).hexdigest()


def tables_to_json(tables: list[ImportanceTable]) -> list[dict]:
    return [
        {
            "target": t.target,
            "evaluator": t.evaluator,
            "n_trials": t.n_trials,
            "bootstrap": t.bootstrap,
            "rows": [[r.param, r.value, r.low, r.high, r.within_noise] for r in t.rows],
        }
        for t in tables
    ]


def tables_from_json(stored: list[dict]) -> list[ImportanceTable]:
    return [
        ImportanceTable(
            t["target"],
            t["evaluator"],
            tuple(Importance(p, float(v), float(lo), float(hi), bool(noise)) for p, v, lo, hi, noise in t["rows"]),
            int(t["n_trials"]),
            int(t["bootstrap"]),
        )
        for t in stored
    ]


class PendingImportances:
    """A study's importances, stored or being computed (:func:`begin_study_importances`)."""

    def __init__(self, stored: list[ImportanceTable] | None = None, forked=None, store=None) -> None:
        self._stored, self._forked, self._store = stored, forked, store

    def tables(self) -> list[ImportanceTable]:
        """The tables, once computed (and stored in the study)."""
        if self._stored is None:
            self._stored = [table for found in self._forked.results() for table in found]
            self._store(self._stored)
        return self._stored

    def close(self) -> None:
        """Give up on them: the copies computing them are killed and reaped."""
        if self._forked is not None:
            self._forked.close()


def begin_study_importances(
    study,
    trials,
    targets: dict[str, Callable[[object], float | None]],
    *,
    seed: int,
    bootstrap: int = DEFAULT_BOOTSTRAP,
) -> PendingImportances:
    """The importances of ``study``'s completed ``trials`` (:func:`importances`), begun: the tables stored in the
    study's ``CACHE_ATTR`` when they were computed from the same trials, values, seed and resamples; else every
    target computed in a forked copy of this process (:class:`tracking.forked.Forked`) while the caller
    goes on (the report child draws the summary and the other figures meanwhile), then stored there (a storage
    that refuses the write costs only the reuse). :meth:`PendingImportances.tables` waits for them."""
    from tracking.forked import Forked

    key = cache_key(trials, targets, seed=seed, bootstrap=bootstrap)
    stored = study.user_attrs.get(CACHE_ATTR)
    if isinstance(stored, dict) and stored.get("key") == key:
        try:
            return PendingImportances(tables_from_json(stored["tables"]))
        except (KeyError, TypeError, ValueError):
            log.debug("stored importances of study %s unreadable; computing them again", study.study_name)

    def store(tables: list[ImportanceTable]) -> None:
        try:
            study.set_user_attr(CACHE_ATTR, {"key": key, "tables": tables_to_json(tables)})
        except Exception as e:  # a read-only storage: the report is still drawn, only not reused next time
            log.debug("importances not stored in study %s: %s: %s", study.study_name, type(e).__name__, e)

    tables, jobs = _per_target(trials, targets, seed, bootstrap, tuple(EVALUATORS))
    return PendingImportances(forked=Forked(tables, jobs), store=store)


def study_importances(
    study,
    trials,
    targets: dict[str, Callable[[object], float | None]],
    *,
    seed: int,
    bootstrap: int = DEFAULT_BOOTSTRAP,
) -> list[ImportanceTable]:
    """:func:`begin_study_importances`, waited for."""
    return begin_study_importances(study, trials, targets, seed=seed, bootstrap=bootstrap).tables()
