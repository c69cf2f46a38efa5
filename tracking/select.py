"""Selection API: trials of an experiment as pandas tables, the best trial, and metric curves.

Rows are the trial (child) runs of the layout (tag ``role = trial``), one per trial.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from tracking import schema
from tracking.errors import NoFinishedTrial, TrackingError
from tracking.mlflow_requests import with_retries
from tracking.redact import redact
from tracking.store import make_client, resolved_uri

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

# Columns every runs table starts with; params and summary metrics follow.
FIXED_COLUMNS = ("trial_number", "run_id", "state", "status", "study_name", "parent_run_id", "start_time")
DIRECTIONS = ("minimize", "maximize")


def experiment_id(client: MlflowClient, experiment: str) -> str:
    """The id of the experiment named ``experiment`` (or with that id); TrackingError listing names if none."""
    found = with_retries(client.get_experiment_by_name, experiment, what=f"get experiment {experiment!r}")
    if found is None and experiment.isdigit():
        try:
            found = client.get_experiment(experiment)
        except Exception:
            found = None
    if found is None:
        names = sorted(e.name for e in client.search_experiments(max_results=50))
        raise TrackingError(
            f"no MLflow experiment named {experiment!r} in {redact(client.tracking_uri)}; "
            f"experiments there: {', '.join(names) or '(none)'}"
        )
    return found.experiment_id


def trial_runs(client: MlflowClient, experiment_ids: Sequence[str], parent_run_id: str | None = None) -> list[Run]:
    """Every trial run of the experiments (of one parent when ``parent_run_id`` is given), all pages; read
    straight from an embedded store where :mod:`tracking.run_reads` can (the same runs, in MLflow's order)."""
    from tracking import run_reads

    direct = run_reads.trial_runs(client, experiment_ids, parent_run_id)
    if direct is not None:
        return direct
    filters = [f"tags.{schema.ROLE} = '{schema.ROLE_TRIAL}'"]
    if parent_run_id is not None:
        filters.append(f"tags.`{schema.PARENT_RUN_ID}` = '{parent_run_id}'")
    runs: list[Run] = []
    token = None
    while True:
        page = with_retries(
            client.search_runs,
            list(experiment_ids),
            filter_string=" and ".join(filters),
            max_results=1000,
            page_token=token,
            what="search trial runs",
        )
        runs += page
        token = page.token
        if not token:
            return runs


def _typed(column: pd.Series) -> pd.Series:
    """Params come back as strings: numbers become numbers and True/False booleans, the rest stays text."""
    import pandas as pd

    present = column.dropna()
    if len(present) and present.isin(["True", "False"]).all():
        return column.map({"True": True, "False": False})
    try:
        return pd.to_numeric(column)
    except (ValueError, TypeError):
        return column


def table_from_runs(runs: Iterable[Run]) -> pd.DataFrame:
    """One row per trial run: fixed columns, summary metrics, then params (a param whose name clashes with
    a fixed column or a metric gets the prefix ``param.``), sorted by trial number then start time."""
    import pandas as pd

    rows = []
    for run in runs:
        tags, info = run.data.tags, run.info
        row = {
            "trial_number": int(tags.get(schema.TRIAL_NUMBER, -1)),
            "run_id": info.run_id,
            "state": tags.get(schema.TRIAL_STATE, ""),
            "status": info.status,
            "study_name": tags.get(schema.STUDY_NAME, ""),
            "parent_run_id": tags.get(schema.PARENT_RUN_ID, ""),
            "start_time": pd.Timestamp(info.start_time, unit="ms", tz="UTC"),
        }
        for name in schema.SUMMARY_METRICS:
            row[name] = run.data.metrics.get(name, float("nan"))
        for name, value in run.data.params.items():
            row[f"param.{name}" if name in row else name] = value
        rows.append(row)
    fixed = [*FIXED_COLUMNS, *schema.SUMMARY_METRICS]
    table = pd.DataFrame(rows, columns=None if rows else fixed)
    for name in table.columns.difference(fixed):
        table[name] = _typed(table[name])
    params = sorted(table.columns.difference(fixed))
    table = table[[*fixed, *params]]
    return table.sort_values(["trial_number", "start_time", "run_id"], kind="mergesort", ignore_index=True)


def runs_table(experiment: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per trial run of ``experiment``: trial number, run id, trial state, MLflow status, summary
    metrics (``final_val_cost``, ``best_val_cost``, ...) and params as typed columns.

    Raises TrackingError when the experiment does not exist.
    """
    client = make_client(resolved_uri(tracking_uri))
    return table_from_runs(trial_runs(client, [experiment_id(client, experiment)]))


def pick_best(table: pd.DataFrame, metric: str = "final_val_cost", direction: str = "minimize") -> pd.Series:
    """The row of the best FINISHED trial by ``metric``; ties go to the lowest trial number, then run id.

    Raises ValueError for an unknown direction, TrackingError for a metric that is not a column and
    NoFinishedTrial when no finished trial has the metric.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if metric not in table.columns:
        known = [c for c in table.columns if c in schema.SUMMARY_METRICS]
        raise TrackingError(f"no trial has metric {metric!r}; metrics in the runs table: {', '.join(known)}")
    done = table[(table["status"] == "FINISHED") & table[metric].notna()]
    if done.empty:
        counts = table["status"].value_counts().to_dict()
        raise NoFinishedTrial(
            f"no FINISHED trial with metric {metric!r} among {len(table)} trial runs"
            + (f" ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})" if counts else "")
        )
    ordered = done.sort_values(
        [metric, "trial_number", "run_id"], ascending=[direction == "minimize", True, True], kind="mergesort"
    )
    return ordered.iloc[0]


def best_run(
    experiment: str, metric: str = "final_val_cost", tracking_uri: str | None = None, direction: str = "minimize"
) -> pd.Series:
    """The runs-table row of the lowest-``metric`` FINISHED trial (highest with ``direction="maximize"``).

    Ties are broken by trial number, then run id. Raises NoFinishedTrial when there is no such trial and
    TrackingError when the experiment does not exist.
    """
    return pick_best(runs_table(experiment, tracking_uri), metric, direction)


BULK_RUNS = 500  # run ids per bulk history query (well under SQLite's bound on query variables)


def _bulk_histories(client: MlflowClient, run_ids: Sequence[str], metric: str) -> dict[str, list] | None:
    """``metric``'s history of every run in ``run_ids`` in one query per BULK_RUNS runs, when the client's
    store is MLflow's SQL store (``get_metric_history_bulk``; not on MlflowClient, hence the lookup); None
    otherwise, and the caller asks run by run. Read straight from an embedded store where
    :mod:`tracking.run_reads` can."""
    from tracking import run_reads

    direct = run_reads.metric_histories(client, run_ids, metric)
    if direct is not None:
        return direct
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    if bulk is None:
        return None
    found: dict[str, list] = {run_id: [] for run_id in run_ids}
    unique = list(found)
    for start in range(0, len(unique), BULK_RUNS):
        chunk = unique[start : start + BULK_RUNS]
        limit = 2**62  # every point: the store applies one LIMIT to all the runs together
        for m in with_retries(bulk, chunk, metric, limit, what=f"histories of {metric}"):
            found[m.run_id].append(m)  # a Metric with its run_id
    return found


def metric_curves(
    client: MlflowClient, run_ids: Sequence[str], metric: str, numbers: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """Long-form histories (columns ``run_id, trial_number, step, value``) of ``metric`` for ``run_ids``.

    ``numbers`` maps run ids to trial numbers when the caller has them (saves one request per run). On an
    SQL store all histories come in one query per 500 runs; elsewhere one request per run.
    """
    import pandas as pd

    run_ids = list(run_ids)
    histories = _bulk_histories(client, run_ids, metric) if run_ids else None
    frames = []
    for run_id in run_ids:
        if numbers is not None and run_id in numbers:
            number = int(numbers[run_id])
        else:
            run = with_retries(client.get_run, run_id, what=f"get run {run_id}")
            number = int(run.data.tags.get(schema.TRIAL_NUMBER, -1))
        if histories is not None:
            history = histories[run_id]
        else:
            history = with_retries(client.get_metric_history, run_id, metric, what=f"history of {metric}")
        points = sorted((m.step, m.timestamp, m.value) for m in history)
        frames.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "trial_number": number,
                    "step": [p[0] for p in points],
                    "value": [p[2] for p in points],
                }
            )
        )
    columns = ["run_id", "trial_number", "step", "value"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)[columns]
    return out.astype({"trial_number": "int64", "step": "int64", "value": "float64"})


def curves(run_ids: Sequence[str], metric: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """Long-form DataFrame (``run_id, trial_number, step, value``) of ``metric``'s history in each run,
    in the order of ``run_ids`` and by step. A run without the metric contributes no rows."""
    return metric_curves(make_client(resolved_uri(tracking_uri)), list(run_ids), metric)
