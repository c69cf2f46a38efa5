"""Retrain one tracked trial from its logged params and seed, and compare the new curve with the logged one.

The trial's run holds every hyperparameter, the training seed and the BLAS thread count it trained with
(tag ``blas_threads``); its parent run holds the resolved spec (``spec.yaml``) with the data, model and
training length, and the search that types each hyperparameter's logged text. Training is deterministic
for a seed and a thread count, so retrained under the logged count on the same machine the curves agree to
the last bit, whichever way the sweep ran (one process or ``--workers K``); across machines BLAS round-off
may differ slightly, which ``rtol`` allows for. A run logged before the count was recorded is retrained
with the threads a one-process sweep uses here.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

import optcore
import tracking
from sweeps import blas_threads as threads
from sweeps.errors import SweepError, UsageError
from sweeps.optcore_adapter import train_trial
from sweeps.spec import load_spec
from sweeps.study.trial_lifecycle import setup_from_spec
from tracking.errors import TrackingError

CURVES = ("train_cost", "val_cost")


@dataclass
class Reproduction:
    """The comparison. A trial whose cost diverged matches when the retraining diverges at the same epoch and
    iteration (``logged_failure`` and ``failure``, the runs' reasons) after the same curve."""

    run_id: str
    trial_number: str
    epochs: int
    max_rel_diff: dict[str, float]
    rtol: float
    logged_failure: str | None = None
    failure: str | None = None
    blas_threads: int | None = None  # the BLAS threads of the retraining
    threads_logged: bool = True  # whether they are the trial's own, read from its run

    @property
    def matches(self) -> bool:
        same_end = _where(self.logged_failure) == _where(self.failure)
        return same_end and all(d <= self.rtol for d in self.max_rel_diff.values())

    def describe(self) -> str:
        diffs = ", ".join(f"{k} max relative difference {v:.3g}" for k, v in self.max_rel_diff.items())
        verdict = "matches" if self.matches else "DOES NOT match"
        what = f"retrained {self.epochs} epochs"
        if self.blas_threads is not None:
            source = "as logged" if self.threads_logged else "none logged; a one-process sweep's count here"
            what += f" with {self.blas_threads} BLAS thread{'s' if self.blas_threads != 1 else ''} ({source})"
        if self.logged_failure or self.failure:
            what += f"; logged: {self.logged_failure or 'no divergence'}; now: {self.failure or 'no divergence'}"
        return (
            f"trial {self.trial_number} (run {self.run_id}): {what}; the new curve "
            f"{verdict} the logged one (rtol {self.rtol:g}): {diffs}"
        )


def _where(reason: str | None) -> str | None:
    """'cost diverged at epoch 7, iteration 301' of a divergence reason (the cost printed after it may
    differ between NaN and inf with BLAS round-off); None for no divergence."""
    if not reason or not reason.startswith("cost diverged at"):
        return None
    return reason.split(" (", 1)[0]


def check_rtol(rtol: float) -> float:
    """``rtol`` if it is a usable relative tolerance (finite, ≥ 0), else a :class:`UsageError`."""
    if not (math.isfinite(rtol) and rtol >= 0):
        raise UsageError(f"--rtol {rtol:g} is not allowed: rtol must be a finite number ≥ 0, e.g. 1e-9")
    return rtol


def reproduce(run_id: str, *, tracking_uri: str, rtol: float = 1e-9) -> Reproduction:
    """Retrain the trial of MLflow run ``run_id`` under its logged BLAS thread count and compare curves.

    Raises :class:`UsageError` for a negative or non-finite ``rtol`` (before reading any store) and
    :class:`TrackingError` when the run is missing or is not a sweep trial.
    """
    check_rtol(rtol)
    try:
        run = tracking.read_run(tracking_uri, run_id)
    except Exception:
        raise TrackingError(f"no run {run_id!r} in {tracking.redact(tracking_uri)}") from None
    parent_id = run.data.tags.get("mlflow.parentRunId")
    if not parent_id or "seed" not in run.data.params:
        raise TrackingError(f"run {run_id} is not a sweep trial (it has no parent sweep run or no seed param)")
    with tempfile.TemporaryDirectory() as tmp:
        path = tracking.download_artifact(tracking_uri, parent_id, "spec.yaml", tmp)
        spec = load_spec(yaml.safe_load(Path(path).read_text()))
    data = setup_from_spec(spec).load()
    logged_data = tracking.read_run(tracking_uri, parent_id).data.tags.get("dataset_fingerprint")
    if logged_data is not None and logged_data != data.fingerprint:
        raise SweepError(
            f"the data has changed since run {run_id} was trained: dataset {data.name!r} has fingerprint "
            f"{data.fingerprint}, the sweep logged {logged_data}; there is nothing to compare against"
        )
    # The logged spec types the setting: each param is read as its hyperparameter's type, not guessed.
    hp = spec.setting_from_text(run.data.params)
    seed = int(run.data.params["seed"])
    logged = {k: tracking.metric_values(tracking_uri, run_id, k) for k in CURVES}
    epochs = len(logged["val_cost"])

    reason = run.data.tags.get("fail_reason") if run.info.status == "FAILED" else None
    logged_failure = reason if _where(reason) else None

    def stop_when_logged_length(record, history):
        return record.epoch >= epochs  # a pruned or interrupted trial stopped early: retrain as far as it went

    tag = run.data.tags.get(threads.TAG, "")
    logged_threads = int(tag) if tag.isdigit() and int(tag) >= 1 else None
    failure = None
    with threads.exactly(logged_threads) if logged_threads else threads.limited():
        used_threads = threads.current()
        try:  # a diverged trial's curve ends before the epoch that diverged: train on until it does again
            history = train_trial(
                setup_from_spec(spec), hp, seed, callback=None if logged_failure else stop_when_logged_length
            )
        except optcore.DivergenceError as e:
            history, failure = e.history, str(e)
    new = {"train_cost": history.train_cost, "val_cost": history.val_cost}
    diffs = {k: _max_rel_diff(logged[k], new[k]) for k in CURVES}
    number = run.data.tags.get("trial_number", "?")
    if "confirms_trial" in run.data.tags:  # a retraining by `sweeps confirm`: name the trial it confirms
        number = f"{run.data.tags['confirms_trial']}, confirm seed {run.data.tags.get('repeat', '?')}"
    return Reproduction(
        run_id, number, epochs, diffs, rtol, logged_failure, failure, used_threads, logged_threads is not None
    )


def _max_rel_diff(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        return math.inf
    return max((abs(x - y) / max(abs(x), abs(y), 1e-300) for x, y in zip(a, b, strict=True)), default=0.0)
