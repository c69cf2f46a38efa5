"""The sweep's parent run and its trials' child runs: creation, reuse on resume, and lookup by tags.

All calls go through an ``MlflowClient`` with explicit run ids (never MLflow's fluent active-run stack), so
trials may log from several threads or processes at once. What a trial logs goes through the process's
writer (:mod:`tracking.writer`) when there is one; only what the caller needs an answer to (the run id,
the run's end) waits for the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracking import run_reads, run_writes, schema
from tracking.datasets import DatasetRecord, log_dataset_inputs
from tracking.errors import TrackingError
from tracking.mlflow_requests import param_value, tag_value, with_retries
from tracking.provenance import provenance_tags
from tracking.redact import redact
from tracking.store import artifact_location_for, make_client, resolved_uri
from tracking.transport import WriterTransport
from tracking.trial import TrialRun
from tracking.writer.client import WriterGone, shared_writer
from tracking.writer.messages import Summary

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from tracking.plots import ParetoFront

log = logging.getLogger(__name__)


def _error_code(exc: Exception) -> str | None:
    return getattr(exc, "error_code", None)


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of the experiment ``name``, created (with ``artifact_location``) if missing.

    Raises TrackingError when the experiment exists but is deleted.
    """
    direct = run_writes.experiment_id(client, name, artifact_location)  # retried inside
    if direct is not None:  # an SQLite store written directly (tracking.run_writes)
        return direct
    experiment = with_retries(client.get_experiment_by_name, name, what=f"get experiment {name!r}")
    if experiment is None:
        try:
            return with_retries(
                client.create_experiment, name, artifact_location=artifact_location, what=f"create {name!r}"
            )
        except Exception as e:
            if _error_code(e) != "RESOURCE_ALREADY_EXISTS":
                raise
            # Another process created it first (or our first request landed and its answer was lost).
            experiment = client.get_experiment_by_name(name)
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted; restore it with "
            f"`mlflow experiments restore --experiment-id {experiment.experiment_id}` or rename the sweep"
        )
    return experiment.experiment_id


def find_trial_run(
    client: MlflowClient, experiment_id: str, parent_run_id: str, study_name: str, trial_number: int
) -> Run | None:
    """The child run of ``parent_run_id`` tagged with ``study_name`` and ``trial_number``, or None.

    Finds a run whose id the caller failed to save (a crash between creating the run and recording its id).
    If there are several, the earliest one is returned.
    """
    runs = with_retries(
        client.search_runs,
        [experiment_id],
        filter_string=(
            f"tags.`{schema.PARENT_RUN_ID}` = '{parent_run_id}' and tags.{schema.TRIAL_NUMBER} = '{int(trial_number)}'"
        ),
        order_by=["attributes.start_time ASC"],
        what=f"search trial {trial_number}",
    )
    # Compared here rather than in the filter so that any study name (quotes included) works.
    mine = [r for r in runs if r.data.tags.get(schema.STUDY_NAME) == study_name]
    if len(mine) > 1:
        log.warning(
            "trial %d has %d runs under %s; using the first, %s",
            trial_number,
            len(mine),
            parent_run_id,
            mine[0].info.run_id,
        )
    return mine[0] if mine else None


def _get_run(client: MlflowClient, run_id: str) -> Run | None:
    try:
        return with_retries(client.get_run, run_id, what=f"get run {run_id}")
    except Exception as e:
        if _error_code(e) == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def _last_step(client: MlflowClient, run: Run, key: str) -> int:
    if key not in run.data.metrics:
        return 0
    history = with_retries(client.get_metric_history, run.info.run_id, key, what=f"history of {key}")
    return max((m.step for m in history), default=0)


@dataclass
class SweepRun:
    """The parent run of one study; hands out child runs for its trials.

    ``tags`` are study-wide tags (dataset, spec hash, package versions, git commit) put on the parent and
    on every trial; ``inputs`` the data every trial trains on (see :mod:`tracking.datasets`), logged to the
    parent and to every trial; ``trial_params`` params every trial run carries besides its own (the sweep's
    fixed settings).
    """

    client: MlflowClient
    tracking_uri: str
    experiment_id: str
    experiment_name: str
    study_name: str
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)
    inputs: tuple[DatasetRecord, ...] = ()
    trial_params: dict[str, str] = field(default_factory=dict)

    def trial(
        self,
        number: int,
        params: Mapping[str, Any],
        *,
        seed: int | None = None,
        tags: Mapping[str, Any] | None = None,
        existing_run_id: str | None = None,
        metric_name: str = "val_accuracy",
        flush_every: int = 1,
        new: bool = False,
    ) -> TrialRun:
        """The child run of trial ``number``: ``existing_run_id`` if given, else one found by tags, else new.

        ``params`` are all the trial's hyperparameters (fixed ones included), logged with the sweep's
        ``trial_params``; ``seed`` is logged as param ``seed``; the sweep's ``inputs`` go with them. A
        reused run keeps what it holds; only missing params and inputs are added. Raises TrackingError when
        ``existing_run_id`` belongs to another trial or a param would change value. ``new=True`` says that
        the trial was just created (by Optuna's ``ask``), so no run of it can exist: the run is created
        without looking for one first — a store request fewer per trial — except when a first attempt
        failed, since its answer may have been lost after the run was made.
        """
        all_tags = {**self.tags, **(tags or {}), schema.TRIAL_STATE: schema.RUNNING}
        all_tags = {k: tag_value(v) for k, v in all_tags.items()}
        writer = shared_writer()
        if writer is not None and writer.unsettled and not new:
            try:  # what this process sent is in the store before the run is read
                writer.barrier()
            except WriterGone:
                writer = None
        run = self._own_run(existing_run_id, number) if existing_run_id else None
        if run is None:
            look = not new

            def find_or_create() -> Run:
                nonlocal look
                found = self.find_trial(number) if look else None
                look = True
                return found or self._create(number, all_tags)

            # Waited for, from this process: the run id is what Optuna's trial keeps to find its run, every
            # value sent later names it, and a store that cannot create runs should stop the sweep before a
            # trial trains rather than fail it afterwards. (Handing the creation to the writer would save the
            # trainer one store request per trial, ~10-40 ms on SQLite, at the price of a run id known only
            # later; a run found by its tags covers a process killed in between either way.)
            run = with_retries(find_or_create, what=f"create the run of trial {number}")
        run_id, reused = run.info.run_id, bool(run.data.params or run.data.metrics)
        values = {**self.trial_params, **{k: param_value(v) for k, v in params.items()}}
        if seed is not None:
            values[schema.SEED] = param_value(seed)
        _check_unchanged(run, values, f"trial {number}'s MLflow run {run_id}", "is this the same trial?")
        if run.info.status != "RUNNING":
            with_retries(self.client.update_run, run_id, status="RUNNING", what=f"reopen run {run_id}")
        logged_epochs = _last_step(self.client, run, "val_cost") if reused else 0
        logged_iterations = (
            max(_last_step(self.client, run, k) for k in (schema.MINIBATCH_COST, schema.MINIBATCH_COST_EWA))
            if reused
            else 0
        )
        trial = TrialRun(
            self.client,
            run_id,
            number,
            metric_name=metric_name,
            flush_every=flush_every,
            logged_epochs=logged_epochs,
            logged_iterations=logged_iterations,
            transport=WriterTransport(writer, self.tracking_uri) if writer is not None else None,
        )
        unset = {k: v for k, v in all_tags.items() if run.data.tags.get(k) != v}
        trial.log_now(
            params=[(k, v) for k, v in values.items() if k not in run.data.params],
            tags=list(unset.items()),
            inputs=_missing_inputs(run, self.inputs),
        )
        return trial

    def find_trial(self, number: int) -> Run | None:
        """The existing child run of trial ``number`` (see :func:`find_trial_run`), or None."""
        return find_trial_run(self.client, self.experiment_id, self.run_id, self.study_name, number)

    def running_trials(self) -> dict[int, str]:
        """{trial number: run id} of this sweep's trial runs whose status is RUNNING (one search)."""
        runs = with_retries(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{self.run_id}' and attributes.status = 'RUNNING'",
            max_results=50_000,
            what="search the running trial runs",
        )
        return {
            int(r.data.tags[schema.TRIAL_NUMBER]): r.info.run_id
            for r in runs
            if r.data.tags.get(schema.STUDY_NAME) == self.study_name and schema.TRIAL_NUMBER in r.data.tags
        }

    def update_summary(
        self,
        spec: Mapping[str, Any] | None = None,
        metric: str = "final_val_cost",
        direction: str = "minimize",
        *,
        table: bool = True,
        front: ParetoFront | None = None,
    ) -> pd.DataFrame | None:
        """Rewrite the parent's summary from its trials (see :func:`tracking.summary.update_sweep_summary`,
        also for ``front``); returns the trials table, or None when not ``table``.

        With this process's writer up, the writer does it, after everything sent before, through its drawer
        (:mod:`tracking.writer.drawer`), which has matplotlib and pandas loaded already (~0.7 s saved) and
        its own client for the store. Without ``table`` nothing comes back, and a process that has not
        loaded pandas is spared its import (~0.2 s) for a table it does not read."""
        request = self.summary_request(spec, metric, direction, table=table, front=front)
        writer = shared_writer(start=False)
        if writer is not None and writer.ready():
            try:
                return writer.call(request)
            except WriterGone:
                pass  # drawn here instead
        return draw_summary(request, self.client)

    def summary_request(
        self,
        spec: Mapping[str, Any] | None = None,
        metric: str = "final_val_cost",
        direction: str = "minimize",
        *,
        table: bool = False,
        front: ParetoFront | None = None,
    ) -> Summary:
        """The request to draw this sweep's summary in another process (:func:`draw_summary` there): the
        writer, or the CLI's report child, which has matplotlib and pandas loaded by the end of a sweep."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "client"}
        return Summary(values, spec, metric, direction, table, front)

    def log_record(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        metrics: Iterable[tuple[str, float | None, int]] = (),
        artifacts: Path | None = None,
        what: str = "the record",
    ) -> None:
        """Log a command's outcome to the parent run: ``params`` and ``tags`` (None values left out, the others
        made ``param_value``/``tag_value``), ``metrics`` as ``(key, value, step)`` (None values left out; all
        stamped now) in as few ``log_batch`` requests as MLflow allows, then the files of the folder
        ``artifacts`` (``what`` names them in errors). Raises TrackingError when the store fails after
        retries; params cannot change value (MLflow's rule)."""
        stamp = int(time.time() * 1000)
        run_writes.log_values(
            self.client,
            self.run_id,
            metrics=[(k, float(v), stamp, step) for k, v, step in metrics if v is not None],
            params=[(k, param_value(v)) for k, v in (params or {}).items() if v is not None],
            tags=[(k, tag_value(v)) for k, v in (tags or {}).items() if v is not None],
        )
        if artifacts is not None and not run_reads.log_artifacts(self.client, self.run_id, artifacts):
            with_retries(self.client.log_artifacts, self.run_id, str(artifacts), what=f"upload {what}")

    def set_tags(self, tags: Mapping[str, object]) -> None:
        """Set ``tags`` on the parent run (values as ``str``), in one request."""
        run_writes.log_values(self.client, self.run_id, tags=[(k, str(v)) for k, v in tags.items()])

    def delete_tags(self, names: Iterable[str]) -> None:
        """Take those of the tags ``names`` off the parent run that it has (read and deleted directly where
        :mod:`tracking.run_reads` and :mod:`tracking.run_writes` can)."""
        run = run_reads.get_run(self.client, self.run_id) or self.client.get_run(self.run_id)
        run_writes.delete_tags(self.client, self.run_id, [name for name in names if name in run.data.tags])

    def log_file(self, path: Path, folder: str | None = None) -> None:
        """Upload the file ``path`` to the parent run's artifacts, in ``folder``."""
        if not run_reads.log_artifact(self.client, self.run_id, path, folder):
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def finish(self, status: str = "FINISHED") -> None:
        """End the parent run with MLflow ``status`` (FINISHED, KILLED or FAILED)."""
        if status not in ("FINISHED", "KILLED", "FAILED"):
            raise ValueError(f"sweep status must be FINISHED, KILLED or FAILED, got {status!r}")
        run_writes.set_terminated(self.client, self.run_id, status)

    def _own_run(self, run_id: str, number: int) -> Run | None:
        run = _get_run(self.client, run_id)
        if run is None:
            log.warning("trial %d: run %s is not in %s; looking for it by tags", number, run_id, self.shown_uri)
            return None
        tags = run.data.tags
        if tags.get(schema.PARENT_RUN_ID) != self.run_id or tags.get(schema.TRIAL_NUMBER) != str(number):
            raise TrackingError(
                f"run {run_id} given for trial {number} is trial {tags.get(schema.TRIAL_NUMBER)!r} of parent "
                f"{tags.get(schema.PARENT_RUN_ID)!r}, not of this sweep's parent {self.run_id}"
            )
        return run

    def _create(self, number: int, tags: dict[str, str]) -> Run:
        # A caller's own run name (tag mlflow.runName, e.g. batch-size's bs-0128-seed-1) wins over trial-0007,
        # and its own role (confirm's retrainings) over trial.
        return run_writes.create_run(
            self.client,
            self.experiment_id,
            tags.get(schema.RUN_NAME, schema.trial_run_name(number)),
            {
                **tags,  # in the same request: one round trip fewer per trial
                schema.PARENT_RUN_ID: self.run_id,
                schema.ROLE: tags.get(schema.ROLE, schema.ROLE_TRIAL),
                schema.STUDY_NAME: self.study_name,
                schema.TRIAL_NUMBER: str(number),
            },
        )

    @property
    def shown_uri(self) -> str:
        """The tracking URI with any password masked."""
        return redact(self.tracking_uri)


def read_run(tracking_uri: str, run_id: str) -> Run:
    """The MLflow run ``run_id`` (its ``info`` and ``data``: params, tags, latest metrics); MLflow's error when
    there is none."""
    return make_client(tracking_uri).get_run(run_id)


def download_artifact(tracking_uri: str, run_id: str, path: str, dest: str | Path) -> str:
    """Download the artifact ``path`` of run ``run_id`` into the folder ``dest``; the local path of the copy."""
    return make_client(tracking_uri).download_artifacts(run_id, path, str(dest))


def metric_values(tracking_uri: str, run_id: str, key: str) -> list[float]:
    """Every value run ``run_id`` logged for metric ``key``, in step order (empty when it logged none)."""
    history = make_client(tracking_uri).get_metric_history(run_id, key)
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def fail_trial_run(tracking_uri: str, run_id: str, reason: str) -> None:
    """Mark the trial run ``run_id`` FAILED with ``reason`` (tags ``trial_state`` = fail and ``fail_reason``),
    unless it is FAILED already; a run that ended otherwise is overwritten too."""
    client = make_client(tracking_uri)
    run = client.get_run(run_id)
    if run.info.status != "FAILED":
        client.set_tag(run_id, schema.TRIAL_STATE, "fail")
        client.set_tag(run_id, schema.FAIL_REASON, reason)
        client.set_terminated(run_id, status="FAILED")


def sweep_runs(tracking_uri: str, experiment_name: str) -> list[Run]:
    """The parent runs (role ``sweep``) of the experiment ``experiment_name``; none when it does not exist."""
    client = make_client(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.{schema.ROLE} = '{schema.ROLE_SWEEP}'")


def _check_unchanged(run: Run, values: Mapping[str, str], which: str, hint: str) -> None:
    """TrackingError when ``run`` holds one of ``values``' params with another value (MLflow params are final)."""
    changed = sorted(k for k, v in values.items() if run.data.params.get(k, v) != v)
    if changed:
        raise TrackingError(
            f"{which} already has "
            + ", ".join(f"{k}={run.data.params[k]!r} (now {values[k]!r})" for k in changed)
            + f"; MLflow params cannot change: {hint}"
        )


def _missing_inputs(run: Run, records: Sequence[DatasetRecord]) -> list[DatasetRecord]:
    """The dataset inputs of ``records`` that ``run`` does not hold yet (a reused run keeps its own)."""
    held = {(i.dataset.name, i.dataset.digest) for i in getattr(run.inputs, "dataset_inputs", None) or ()}
    return [r for r in records if r.key not in held]


def draw_summary(
    request: Summary, client: MlflowClient | None = None, fork: bool | None = False
) -> pd.DataFrame | None:
    """Draw the summary ``request`` asks for (:meth:`SweepRun.summary_request`) in this process, through
    ``client`` or one made for the sweep's store (lazily: on an embedded store the summary reads and writes
    it directly, MLflow never loaded), its figures in forked copies where ``fork`` says so (as
    :func:`tracking.summary.update_sweep_summary`); returns the trials table if the request asks for it."""
    from tracking.summary import update_sweep_summary

    uri = request.sweep["tracking_uri"]
    sweep = SweepRun(client=client if client is not None else make_client(uri, lazy=True), **request.sweep)
    table = update_sweep_summary(
        sweep, request.spec, metric=request.metric, direction=request.direction, front=request.front, fork=fork
    )
    return table if request.table else None


def start_sweep(
    experiment: str,
    *,
    tracking_uri: str | None = None,
    study_name: str | None = None,
    existing_run_id: str | None = None,
    artifact_location: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    trial_params: Mapping[str, Any] | None = None,
    inputs: Sequence[DatasetRecord] = (),
    cwd: Path | None = None,
) -> SweepRun:
    """Open the parent run of a sweep: ``existing_run_id`` when resuming, else a new run named ``study_name``.

    The experiment ``experiment`` (the spec's ``name``) is created if missing, with ``artifact_location``
    (default: ``mlartifacts`` beside an SQLite database; the server's choice otherwise). ``tags`` (dataset,
    fingerprint, spec hash, storage URL, ...) and the package versions and git commit of ``cwd`` go on the
    parent and on every trial; every value is redacted. ``params`` (the sweep's fixed settings, already
    free of secrets) go on the parent, ``trial_params`` on every trial; a resumed run gets those it lacks.
    ``inputs`` (:func:`tracking.datasets.describe_dataset`) go on the parent and every trial. Raises
    TrackingError when ``existing_run_id`` is not a sweep run of this experiment, or holds one of ``params``
    with another value.
    """
    uri = resolved_uri(tracking_uri)
    client = make_client(uri, lazy=True)  # MLflow loaded only if a write below is not direct
    study = study_name or experiment
    location = artifact_location if artifact_location is not None else artifact_location_for(uri)
    experiment_id = get_or_create_experiment(client, experiment, location)
    run = _get_run(client, existing_run_id) if existing_run_id else None
    if existing_run_id and run is None:
        log.warning("sweep run %s is not in %s; starting a new parent run", existing_run_id, redact(uri))
    if run is not None and (
        run.info.experiment_id != experiment_id or run.data.tags.get(schema.ROLE) != schema.ROLE_SWEEP
    ):
        raise TrackingError(f"run {existing_run_id} is not the sweep run of experiment {experiment!r} in {redact(uri)}")
    if run is None:
        run = with_retries(
            run_writes.create_run,
            client,
            experiment_id,
            study,
            {schema.ROLE: schema.ROLE_SWEEP, schema.STUDY_NAME: study},
            what="create the sweep run",
        )
    elif run.info.status != "RUNNING":
        with_retries(client.update_run, run.info.run_id, status="RUNNING", what="reopen the sweep run")
    values = {k: param_value(v) for k, v in (params or {}).items()}
    _check_unchanged(run, values, f"sweep run {run.info.run_id}", "was the sweep started from another spec?")
    shared = {**provenance_tags(cwd), **{k: tag_value(v) for k, v in (tags or {}).items()}}
    sweep = SweepRun(
        client,
        uri,
        experiment_id,
        experiment,
        study,
        run.info.run_id,
        shared,
        inputs=tuple(inputs),
        trial_params={k: param_value(v) for k, v in (trial_params or {}).items()},
    )
    parent_tags = {**shared, schema.TRACKING_URI: tag_value(uri)}
    run_writes.log_values(
        client,
        sweep.run_id,
        params=[(k, v) for k, v in values.items() if k not in run.data.params],
        tags=list(parent_tags.items()),
    )
    log_dataset_inputs(client, sweep.run_id, _missing_inputs(run, sweep.inputs))
    return sweep
