"""One trial lifecycle (sweeps.study.trial_lifecycle.train_and_record), shared by the sweep's trials and the
batch-size and confirm runs: each ending finishes the MLflow run as the layout says, on a real SQLite store."""

from __future__ import annotations

import mlflow
import pytest

import tracking
from sweeps.spec import load_spec
from sweeps.study.trial_lifecycle import setup_from_spec, train_and_record
from tests.sweeps.test_cli_failures import ALL_DIVERGE

GOOD = {"batch_size": 32, "optimizer": "adam", "lr": 0.01, "beta1": 0.9, "schedule": "constant"}
DIVERGES = {"batch_size": 32, "optimizer": "gd", "lr": 1e6, "schedule": "constant"}  # as in test_cli_failures
BROKEN = {**GOOD, "optimizer": "no-such-optimizer"}  # a bad combination: an error that is not a divergence


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One parent run; each case below trains its own child run under it (a new store takes seconds)."""
    uri = tracking.default_tracking_uri(tmp_path_factory.mktemp("life"))
    return tracking.start_sweep("life", tracking_uri=uri), mlflow.MlflowClient(uri)


class Epochs:
    """The smallest epoch callback: it keeps the history so far, which a failure records."""

    history = None

    def __call__(self, record, history) -> None:
        self.history = history


@pytest.mark.parametrize(
    ("number", "hp", "outcome", "status", "reason"),
    [
        (0, GOOD, "completed", "FINISHED", None),
        (1, DIVERGES, "failed", "FAILED", "cost diverged"),
        (2, BROKEN, "failed", "FAILED", "no-such-optimizer"),
    ],
)
def test_each_ending_finishes_the_run_between_the_two_hooks(sweep, number, hp, outcome, status, reason):
    parent, client = sweep
    run = parent.trial(number, hp, seed=1, metric_name="val_accuracy")
    seen = []

    def before(ending):
        seen.append(("before", ending.outcome, client.get_run(run.run_id).info.status))

    def after(ending):
        seen.append(("after", ending.outcome, client.get_run(run.run_id).info.status))

    setup = setup_from_spec(load_spec(ALL_DIVERGE))
    ending = train_and_record(setup, hp, 1, run, Epochs(), before_finish=before, after_finish=after)
    assert seen == [("before", outcome, "RUNNING"), ("after", outcome, status)]
    assert ending.outcome == outcome
    finished = client.get_run(run.run_id)
    assert finished.data.tags.get("trial_state") == ("complete" if outcome == "completed" else "fail")
    if reason is None:
        assert ending.reason is None and ending.error is None and len(ending.history.val_cost) == 2
    else:
        assert reason in ending.reason and reason in finished.data.tags["fail_reason"]
        # only an error that is not a diverged cost is handed back, for batch-size to raise
        assert (ending.error is not None) == (hp is BROKEN)
