"""The spec's view of the hyperparameters is optcore's: every name an optimizer or schedule declares, with
the same domain, and the spec accepts a value exactly when optcore does."""

from __future__ import annotations

import math

import pytest

import optcore
from sweeps.spec.domains import GIVEN_BY_TRAINER, HYPERPARAMETERS, SEARCH_NAME, TAKEN_BY, spec_domain
from sweeps.spec.errors import SpecError

DECLARED = [("optimizer", n, h) for n in optcore.OPTIMIZERS for h in optcore.optimizer_hyperparameters(n)] + [
    ("schedule", n, h) for n in optcore.schedule_names() for h in optcore.schedule_hyperparameters(n)
]
SEARCHED = [(kind, n, h) for kind, n, h in DECLARED if h.name not in GIVEN_BY_TRAINER]


def _probes(h: optcore.Hyperparameter) -> list[object]:
    """Values on and around the declared bounds, and the default."""
    if h.kind is bool:
        return [True, False]
    points = [x for x in (h.low, h.high) if math.isfinite(x)]
    probes = {p + d for p in points for d in (-1e-9, 0.0, 1e-9)} | {0.5, 2.0, 1e6, -1.0}
    if h.kind is int:
        probes = {p + d for p in points for d in (-1, 0, 1)} | {2, 1000, -1}
    if h.default not in (None, optcore.hyperparameters.REQUIRED):
        probes.add(h.default)
    return sorted(probes)


def _optcore_accepts(h: optcore.Hyperparameter, value: object) -> bool:
    try:
        h.check(value)
    except optcore.OptcoreError:
        return False
    return True


def _spec_accepts(name: str, value: object) -> bool:
    try:
        HYPERPARAMETERS[name].check(name, value)
    except SpecError:
        return False
    return True


@pytest.mark.parametrize(("kind", "owner", "h"), SEARCHED, ids=[f"{n}.{h.name}" for _, n, h in SEARCHED])
def test_every_declared_hyperparameter_has_optcores_domain_in_the_spec(kind, owner, h):
    name = SEARCH_NAME.get(h.name, h.name)
    assert HYPERPARAMETERS[name] == spec_domain(h)
    for value in _probes(h):
        if h.at_most and isinstance(value, float) and value > 0:
            continue  # bounded by another hyperparameter (min_lr ≤ lr): optcore's check, with both values
        assert _spec_accepts(name, value) == _optcore_accepts(h, value), (name, value)
    selector, takers = TAKEN_BY.get(name, (kind, ()))
    assert selector == kind and (owner in takers or name not in TAKEN_BY)


def test_the_spec_names_nothing_optcore_does_not_declare():
    declared = {SEARCH_NAME.get(h.name, h.name) for _, _, h in SEARCHED}
    assert set(HYPERPARAMETERS) - declared == {"batch_size", "optimizer", "schedule"}
    assert not set(HYPERPARAMETERS) & set(GIVEN_BY_TRAINER)
    assert TAKEN_BY["beta1"] == ("optimizer", ("momentum", "adam", "adamw"))
    assert "lr" not in TAKEN_BY  # every optimizer and schedule takes it


def test_each_objective_is_one_row_whose_value_is_its_logged_summary_metric():
    from sweeps.spec.domains import OBJECTIVES
    from tracking import schema

    data = optcore.load_dataset("moons", seed=0, n_samples=200)
    net = optcore.Network.for_dataset(data, hidden=[4], dtype="float64")
    history = optcore.train(data, net, optcore.make_optimizer("adam", lr=0.05), epochs=3, batch_size=32, seed=0)
    summary = history.summary()
    for name, objective in OBJECTIVES.items():
        assert objective.name == name and objective.direction in ("minimize", "maximize")
        assert objective.metric in schema.SUMMARY_METRICS  # the trial runs log it; the parent ranks by it
        assert objective.value(history) == summary[objective.metric]
    assert OBJECTIVES["min_val_cost"].value(history) == min(history.val_cost)
