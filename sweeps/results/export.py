"""The best setting of a sweep (or trial N) as a model: retrained, logged to MLflow as a pyfunc model and,
on request, registered in the Model Registry.

    sweeps export SPEC [--trial N] [--retrain train|train+val] [--register NAME]

Trials keep no weights, so the network is always trained again from the trial's logged setting and seed:

- ``--retrain train`` (default): the trial's own training split, seed and BLAS thread count — the very
  network the trial trained, to the last bit on the same machine (the export says whether its final
  validation cost equals the trial's).
- ``--retrain train+val``: the same setting and seed on the training *and* validation rows, with the
  preprocessing (scaling, one-hot encoders, target scaling) refitted on all of them. Nothing is held out,
  so no validation cost is reported.

The export is a run of its own in the sweep's experiment, nested under the sweep's parent run: run name
``export-trial-0007``, tags ``role = export``, ``exported_trial``, ``exported_run_id`` (the trial's run) and
``retrain``; params the setting, seed and retrain; the model logged to it (see :mod:`tracking.models`).
The network, data and epochs are those of the spec the sweep stored when it started, whatever ``--set``
the export is given (the spec given to export names the sweep and its stores).
Everything a user can get wrong (no completed trial, a trial that did not complete, a bad registry name,
changed data) is refused before anything is trained or written.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optcore
import tracking
from sweeps import blas_threads as threads
from sweeps.console import winner
from sweeps.errors import SweepError, UsageError
from sweeps.optcore_adapter import train_trial
from sweeps.spec import Spec, load_spec
from sweeps.study.runner import DATA_ATTR, PARENT_RUN_ATTR, SPEC_ATTR, load_result
from sweeps.study.tally import Tally, outcome_of, pruned_at
from sweeps.study.trial_lifecycle import PARAMS_ATTR, SEED_ATTR, setup_from_spec
from tracking.models import check_model_name, log_model, start_export_run
from tracking.store import sqlite_path

RETRAIN = ("train", "train+val")


@dataclass
class Export:
    """What ``export`` made: the trial it came from, the export run and the logged (and registered) model."""

    spec_name: str
    trial_number: int
    trial_run_id: str
    retrain: str
    run_id: str
    model_uri: str
    registered_name: str | None
    registered_version: int | None
    final_train_cost: float
    final_val_cost: float | None  # None with train+val: nothing was held out
    trial_val_cost: float | None  # the trial's own last validation cost, as Optuna recorded it

    @property
    def same_as_trial(self) -> bool | None:
        """Whether the retrained network ends where the trial did (None when not comparable)."""
        if self.final_val_cost is None or self.trial_val_cost is None:
            return None
        return math.isclose(self.final_val_cost, self.trial_val_cost, rel_tol=1e-9, abs_tol=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "same_as_trial": self.same_as_trial}

    def describe(self) -> str:
        lines = [f"exported trial {self.trial_number} of sweep {self.spec_name!r} (run {self.trial_run_id})"]
        if self.retrain == "train":
            same = {True: "the same as the trial's", False: f"the trial logged {self.trial_val_cost:.6g}"}
            note = same.get(self.same_as_trial, "the trial's is not recorded")
            lines.append(f"retrained on the training split: final val cost {self.final_val_cost:.6g} ({note})")
        else:
            lines.append(
                f"retrained on train+val with preprocessing refitted on both: final train cost "
                f"{self.final_train_cost:.6g} (nothing held out)"
            )
        lines.append(f"model: {self.model_uri}  (export run {self.run_id})")
        if self.registered_name is not None:
            lines.append(f"registered: models:/{self.registered_name}/{self.registered_version}")
        lines.append(f'load it: mlflow.pyfunc.load_model("{self.model_uri}").predict(frame)')
        return "\n".join(lines)


def export_model(
    spec: Spec | str | Path,
    *,
    trial: int | None = None,
    retrain: str = "train",
    register: str | None = None,
    workdir: str | Path | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> Export:
    """Retrain the best completed trial of ``spec``'s sweep (or trial ``trial``) and log it as an MLflow model.

    Raises :class:`UsageError` for an unknown ``retrain``, a bad ``register`` name, a trial that does not
    exist or did not complete, and :class:`SweepError` when there is no sweep, no completed trial or the data
    changed — all before anything is written.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if retrain not in RETRAIN:
        raise UsageError(f"--retrain must be one of {', '.join(RETRAIN)}; got {retrain!r}")
    if register is not None and (problem := check_model_name(register)):
        raise UsageError(f"--register: {problem}")
    result = load_result(spec, workdir=workdir, storage=storage, tracking_uri=tracking_uri)
    _check_tracking_store(result.stores.tracking_uri)
    chosen = choose_trial(spec.name, result, trial)
    # Trained as the sweep trained: with the spec it stored when it started (the one given names the sweep).
    stored = result.study.user_attrs.get(SPEC_ATTR)
    setup = setup_from_spec(load_spec(stored) if stored else spec)
    data = setup.load()
    logged = result.study.user_attrs.get(DATA_ATTR)
    if logged is not None and logged != data.fingerprint:
        raise SweepError(
            f"the data has changed since the sweep {spec.name!r} ran: dataset {data.name!r} has fingerprint "
            f"{data.fingerprint}, the sweep's was {logged}; the trial's setting was chosen on other data"
        )

    hp = chosen.user_attrs.get(PARAMS_ATTR) or chosen.params
    seed = int(chosen.user_attrs[SEED_ATTR])
    train_data = data if retrain == "train" else setup.load(train_on="train+val")
    logged_threads = chosen.user_attrs.get(threads.TAG)
    with threads.exactly(int(logged_threads)) if logged_threads else threads.limited():
        history = train_trial(setup, hp, seed, data=train_data)
    model = optcore.Model.from_training(train_data, setup.network(train_data), history.params)

    parent_id = result.study.user_attrs.get(PARENT_RUN_ATTR) or None
    trial_run_id = chosen.user_attrs.get("mlflow_run_id", "")
    run_id = start_export_run(
        tracking_uri=result.stores.tracking_uri,
        experiment=spec.name,
        parent_run_id=parent_id,
        trial_number=chosen.number,
        trial_run_id=trial_run_id,
        params={**hp, "seed": seed, "retrain": retrain, "epochs": setup.epochs},
        tags={
            "study_name": spec.name,
            "retrain": retrain,
            "dataset": data.name,
            "dataset_fingerprint": data.fingerprint,
            **({threads.TAG: str(logged_threads)} if logged_threads else {}),
        },
        metrics={
            "final_train_cost": history.final_train_cost,
            **({"final_val_cost": history.final_val_cost} if retrain == "train" else {}),
        },
    )
    logged_model = log_model(model, tracking_uri=result.stores.tracking_uri, run_id=run_id, register=register)
    return Export(
        spec.name,
        chosen.number,
        trial_run_id,
        retrain,
        run_id,
        logged_model.model_uri,
        logged_model.registered_name,
        logged_model.registered_version,
        float(history.final_train_cost),
        float(history.final_val_cost) if retrain == "train" else None,
        _trial_val_cost(result.stores.tracking_uri, trial_run_id),
    )


def choose_trial(name: str, result: Any, number: int | None) -> Any:
    """Trial ``number`` of the sweep (``result``, a :class:`~sweeps.study.result.SweepResult`), or its best trial
    when None (the one ``sweeps best`` shows); refused unless it completed."""
    study = result.study
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    completed = [n for n, t in sorted(trials.items()) if t.state.name == "COMPLETE"]
    if number is None:
        if not completed:
            counts = Tally.of(study).describe()
            raise SweepError(
                f"the sweep {name!r} has no completed trial to export ({counts}); run more trials with "
                "`sweeps run SPEC --trials N`"
            )
        return trials[winner(result)[0]]
    if number not in trials:
        span = f"0–{max(trials)}" if trials else "none"
        raise UsageError(f"--trial {number}: the sweep {name!r} has no trial {number} (its trials: {span})")
    trial = trials[number]
    if number not in completed:
        outcome = outcome_of(trial)
        where = f" at epoch {pruned_at(trial)}" if outcome == "pruned" and pruned_at(trial) else ""
        choices = ", ".join(map(str, completed[:20])) or "none yet"
        raise UsageError(
            f"--trial {number}: trial {number} was {outcome}{where}, not completed; "
            f"only a completed trial can be exported (completed: {choices})"
        )
    return trial


def _trial_val_cost(tracking_uri: str, run_id: str) -> float | None:
    """The final validation cost the trial's MLflow run logged, when there is one."""
    if not run_id:
        return None
    try:
        value = tracking.read_run(tracking_uri, run_id).data.metrics.get("final_val_cost")
    except Exception:  # a run deleted since: the export stands, only the comparison is missing
        return None
    return None if value is None else float(value)


def _check_tracking_store(uri: str) -> None:
    path = sqlite_path(uri)
    if path is not None and not path.exists():  # opening it would create an empty store
        raise UsageError(f"no MLflow store at {path}; run `sweeps run SPEC` first (or pass --workdir)")
