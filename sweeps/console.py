"""What the CLI shows people: the summary of a sweep, its best trial and tables of trials (as text that fits
the terminal, as CSV or as JSON). The live progress display is in :mod:`sweeps.cli.progress`."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from sweeps.study.tally import Tally, pruned_at, run_id_of
from sweeps.study.trial_lifecycle import PARAMS_ATTR

err = Console(stderr=True)
out = Console(soft_wrap=True)
# Tables are laid out for the terminal's width (80 columns when stdout is not a terminal).
tables = Console()


def fmt(value: Any, digits: int = 6) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def fmt_value(value: float | list[float] | None) -> str:
    """One objective value, or several joined by commas; ``—`` when there is none yet."""
    if value is None:
        return "—"
    return ", ".join(fmt(v) for v in value) if isinstance(value, list) else fmt(value)


def winner(result) -> tuple[int | None, str]:
    """(number, MLflow run id) of the trial behind ``result.best_params``: the completed trial with the lowest
    value, ties to the lowest number — for two objectives the Pareto member lowest in the first objective
    (the rule of :func:`sweeps.study.result.best_setting`)."""
    if result.best_params is None:
        return None, ""
    trials = {t.number: t for t in result.study.get_trials(deepcopy=False)}
    if result.pareto:
        number = min(result.pareto, key=lambda item: (item["values"][0], item["number"]))["number"]
    else:
        complete = [t for t in trials.values() if t.state.name == "COMPLETE"]
        number = min(complete, key=lambda t: (t.value, t.number)).number
    return number, run_id_of(trials[number])


def settings_table(params: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in params.items():
        table.add_row(k, fmt(v))
    return table


def print_summary(spec, result, workdir_hint: str) -> None:
    """The best setting with its trial number and run id, what became of every trial, and where the sweep
    lives and how to look at it in the MLflow UI."""
    from tracking import redact
    from tracking.server import runs_url

    objective = " & ".join(spec.objectives)
    tally = Tally.of(result.study)
    if result.best_params is None:
        out.print(f"no trial of {tally.total} completed; see `sweeps trials` for their states and reasons")
    elif result.pareto:
        out.print(f"Pareto set of {tally.completed} completed trials ({objective}):")
        for item in result.pareto:
            title = f"trial {item['number']}: " + ", ".join(fmt(v) for v in item["values"])
            out.print(settings_table(item["params"], title))
    else:
        number, run_id = winner(result)
        title = f"best of {tally.completed} completed trials: {objective} = {fmt(result.best_value)}"
        out.print(settings_table(result.best_params, title + f"\ntrial {number}, MLflow run {run_id or '—'}"))
    out.print(f"{tally.total} trials: {tally.describe()}")
    out.print(f"\nOptuna study '{spec.name}' in {result.stores.describe_storage()}")
    uri = result.stores.tracking_uri
    # Long URIs and ids on lines of their own: a terminal of 80 columns would cut them anywhere.
    out.print(f"MLflow experiment '{spec.name}' in {redact(uri)}\n  parent run {result.parent_run_id}")
    if uri.startswith("http"):
        experiment_id = _experiment_id(uri, spec.name)
        out.print(f"open the UI at\n  {runs_url(uri, experiment_id)}")
    else:
        out.print(f"open the UI: sweeps ui{workdir_hint}   (it prints where the runs are)")
    out.print(f"or Optuna's dashboard (pip install optuna-dashboard):\n  {result.stores.dashboard_command()}")


def _experiment_id(tracking_uri: str, name: str) -> str | None:
    """The experiment's id on a tracking server, or None when the server cannot say (the URL then falls back
    to the list of experiments)."""
    try:
        import tracking

        experiment = tracking.make_client(tracking_uri).get_experiment_by_name(name)
    except Exception:  # a summary line is not worth failing for
        return None
    return experiment.experiment_id if experiment is not None else None


# --- tables of trials -------------------------------------------------------------------------------------


def trial_columns(result) -> list[str]:
    """The columns of ``result.trials``, in its order (every key of its rows, as first seen)."""
    return list(dict.fromkeys(key for row in result.rows for key in row))


def trial_records(result) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, one record per trial) of ``result.trials`` plus ``pruned_at_epoch``, with each
    hyperparameter as it was sampled and ``None`` where a value is missing or NaN (as read from the
    DataFrame, without building it: pandas takes half a second to import)."""
    trials = {t.number: t for t in result.study.get_trials(deepcopy=False)}
    columns = trial_columns(result)
    records = []
    for row in result.rows:
        t = trials[int(row["number"])]
        record = {k: _plain(row.get(k)) for k in columns}
        record.update(t.user_attrs.get(PARAMS_ATTR) or t.params)
        record["pruned_at_epoch"] = pruned_at(t)
        records.append(record)
    return [*columns, "pruned_at_epoch"], records


def _plain(value: Any) -> Any:
    """NaN -> None, NumPy scalars -> Python numbers (json and csv take them as they are)."""
    if hasattr(value, "item"):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def print_trials(result, form: str = "table") -> None:
    """All trials: ``table`` fits the terminal, ``csv`` and ``json`` hold every column (run id, reason)."""
    columns, records = trial_records(result)
    if form == "json":
        print(json.dumps(records))
    elif form == "csv":
        print_csv(columns, records)
    else:
        print_table(trials_table(result, records))
        for r in records:
            if r.get("fail_reason"):
                out.print(f"trial {r['number']} {outcome_of_record(r)}: {r['fail_reason']}")


def print_table(table: Table) -> None:
    """``table`` without the spaces rich pads its last column with (they end up in copied text and files)."""
    with tables.capture() as captured:
        tables.print(table)
    for line in captured.get().splitlines():
        print(_TRAILING_SPACES.sub(r"\1", line))


_TRAILING_SPACES = re.compile(r" +((?:\x1b\[[0-9;]*m)*)$")  # spaces before the line's closing style codes


def outcome_of_record(record: dict[str, Any]) -> str:
    if record.get("pruned_at_epoch") is not None:
        return f"pruned@{record['pruned_at_epoch']}"
    return record.get("outcome") or record.get("state", "").lower()


def trials_table(result, records: list[dict[str, Any]]) -> Table:
    """A column per hyperparameter when that fits the terminal, else one ``setting`` column that wraps
    (``batch_size=64 optimizer=adam …``, only the parameters that applied)."""
    columns = trial_columns(result)
    values = [c for c in columns if c == "value" or c.startswith("value_")]
    skip = {"number", "state", "outcome", "run_id", "fail_reason", *values}
    params = [c for c in columns if c not in skip]

    def head() -> Table:
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("#", justify="right")
        table.add_column("outcome")
        for v in values:
            table.add_column(v, justify="right")
        return table

    lead = [_lead(r, values) for r in records]
    cells = [[fmt(r[p], 4) if r.get(p) is not None else "" for p in params] for r in records]
    headers = ["#", "outcome", *values, *params]
    rows = [a + b for a, b in zip(lead, cells, strict=True)]
    widths = [max(len(text) for text in column) for column in zip(headers, *rows, strict=True)]
    if sum(widths) + 2 * (len(widths) - 1) <= tables.width:  # box=None: two spaces between columns
        wide = head()
        for p in params:  # numbers to the right, words to the left
            numeric = all(isinstance(r.get(p), int | float) for r in records if r.get(p) is not None)
            wide.add_column(p, justify="right" if numeric else "left")
        for row in rows:
            wide.add_row(*row)
        return wide
    compact = head()
    compact.add_column("setting", overflow="fold")
    for r in records:
        setting = " ".join(f"{p}={fmt(r[p], 4)}" for p in params if r.get(p) is not None)
        compact.add_row(*_lead(r, values), setting)
    return compact


def _lead(record: dict[str, Any], values: list[str]) -> list[str]:
    """Number, outcome and objective value(s): the columns both layouts start with."""
    shown = [fmt(record[v], 4) if record.get(v) is not None else "" for v in values]
    return [str(record["number"]), outcome_of_record(record), *shown]


def print_csv(columns: list[str], records: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in records)


# --- the best trial -------------------------------------------------------------------------------------


def _values(values: list[float]) -> dict[str, float]:
    """``value`` for one objective, ``value_0``, ``value_1`` … for several (the names of ``sweeps trials``)."""
    return {"value": values[0]} if len(values) == 1 else {f"value_{i}": v for i, v in enumerate(values)}


def best_records(result) -> list[dict[str, Any]]:
    """The best trial — for two objectives every Pareto member — as records: trial, run_id, value(s), params."""
    if result.best_params is None:
        return []
    run_ids = {t.number: run_id_of(t) for t in result.study.get_trials(deepcopy=False)}
    if result.pareto:
        members = [(item["number"], item["values"], item["params"]) for item in result.pareto]
    else:
        members = [(winner(result)[0], [result.best_value], result.best_params)]
    return [
        {"trial": number, "run_id": run_ids[number], **_values(values), **params} for number, values, params in members
    ]


def best_json(spec, result) -> dict[str, Any]:
    """What ``sweeps best --json`` prints: the best setting, the trial and MLflow run behind it (the input of
    ``sweeps reproduce``), the Pareto set with run ids, and the trials counted by outcome."""
    number, run_id = winner(result)
    run_ids = {t.number: run_id_of(t) for t in result.study.get_trials(deepcopy=False)}
    tally = Tally.of(result.study)
    return {
        "name": spec.name,
        "objectives": spec.objectives,
        "best_trial": number,
        "best_run_id": run_id or None,
        "best_params": result.best_params,
        "best_value": result.best_value,
        "pareto": result.pareto and [{**item, "run_id": run_ids[item["number"]]} for item in result.pareto],
        "parent_run_id": result.parent_run_id,
        "n_trials": tally.total,
        "counts": tally.to_dict(),
    }


def print_best_csv(result) -> None:
    records = best_records(result)
    columns: list[str] = []
    for r in records:
        columns += [k for k in r if k not in columns]
    print_csv(columns or ["trial", "run_id", "value"], records)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=float))
