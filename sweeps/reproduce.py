"""Retrain one tracked trial from its logged params and seed, and compare the new curve with the logged one.

The trial's run holds every hyperparameter and the training seed; its parent run holds the resolved spec
(``spec.yaml``) with the data, model and training length. Training is deterministic for a seed, so on the
same machine the curves agree to the last bit; across machines BLAS round-off may differ slightly, which
``rtol`` allows for.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

CURVES = ("train_cost", "val_cost")


@dataclass
class Reproduction:
    run_id: str
    trial_number: str
    epochs: int
    max_rel_diff: dict[str, float]
    rtol: float

    @property
    def matches(self) -> bool:
        return all(d <= self.rtol for d in self.max_rel_diff.values())

    def describe(self) -> str:
        diffs = ", ".join(f"{k} max relative difference {v:.3g}" for k, v in self.max_rel_diff.items())
        verdict = "matches" if self.matches else "DOES NOT match"
        return (
            f"trial {self.trial_number} (run {self.run_id}): retrained {self.epochs} epochs; the new curve "
            f"{verdict} the logged one (rtol {self.rtol:g}): {diffs}"
        )


def parse_param(text: str) -> object:
    """An MLflow param string back to the value it was logged from (int, float, bool or str)."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def reproduce(run_id: str, *, tracking_uri: str, rtol: float = 1e-9) -> Reproduction:
    import tracking
    from sweeps.objective import setup_from_spec
    from sweeps.spec import load_spec
    from sweeps.trainer import train_trial
    from tracking.errors import TrackingError

    client = tracking.make_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except Exception as e:
        raise TrackingError(f"no run {run_id!r} in {tracking.redact(tracking_uri)}: {type(e).__name__}") from None
    parent_id = run.data.tags.get("mlflow.parentRunId")
    if not parent_id or "seed" not in run.data.params:
        raise TrackingError(f"run {run_id} is not a sweep trial (it has no parent sweep run or no seed param)")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(parent_id, "spec.yaml", tmp)
        spec = load_spec(yaml.safe_load(Path(path).read_text()))
    hp = {k: parse_param(v) for k, v in run.data.params.items() if k != "seed"}
    seed = int(run.data.params["seed"])
    logged = {k: [m.value for m in sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)] for k in CURVES}
    epochs = len(logged["val_cost"])

    def stop_when_logged_length(record, history):
        return record.epoch >= epochs  # a pruned trial stopped early: retrain as far as it went

    history = train_trial(setup_from_spec(spec), hp, seed, callback=stop_when_logged_length)
    new = {"train_cost": history.train_cost, "val_cost": history.val_cost}
    diffs = {k: _max_rel_diff(logged[k], new[k]) for k in CURVES}
    return Reproduction(run_id, run.data.tags.get("trial_number", "?"), epochs, diffs, rtol)


def _max_rel_diff(a: list[float], b: list[float]) -> float:
    if len(a) != len(b):
        return math.inf
    return max((abs(x - y) / max(abs(x), abs(y), 1e-300) for x, y in zip(a, b, strict=True)), default=0.0)
