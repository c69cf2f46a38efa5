"""The sweep report: one self-contained HTML file (plotly.js embedded once, nothing fetched when it is
opened) with the figures of :mod:`sweeps.results.report_figures`, the importances with their intervals and what is
within noise, the confirmed winner, and the sweep's provenance; logged to the sweep's MLflow parent run.

    sweeps report SPEC [--out FILE]      # also drawn at the end of `sweeps run` unless --no-report
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import html
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from sweeps.console import fmt_value, winner
from sweeps.results.confirm_report import _interval, _marks, _num, confirmed
from sweeps.results.importance import (
    CACHE_ATTR,
    CACHE_VERSION,
    DEFAULT_BOOTSTRAP,
    ImportanceTable,
    PendingImportances,
    begin_study_importances,
    importance_metrics,
    optuna_importance,
)
from sweeps.results.report_child import ChildGone, ReportChild
from sweeps.results.report_figures import Figure, ReportData, build_figures, figures_ahead
from sweeps.study.runner import DATA_ATTR, SUMMARISED_ATTR, SUMMARY_CLAIM_ATTR
from sweeps.study.stopping import CLOCK_ATTR
from sweeps.study.tally import Tally
from sweeps.study.trial_lifecycle import PARAMS_ATTR
from tracking.provenance import package_versions
from tracking.report import log_report, reads_directly, sweep_record

UNREPORTED_ATTRS = (CLOCK_ATTR, CACHE_ATTR, SUMMARISED_ATTR, SUMMARY_CLAIM_ATTR)  # study attributes not in report_key
NO_REPORT_ENV = "SWEEPS_NO_REPORT"  # set (to anything but "" or "0") and `sweeps run` draws no report
REPORT_FILE = "report.html"
KEY_META = "sweeps-report-key"  # the head's <meta> that holds report_key(): what the report was drawn from
VERSIONED = ("optsweep", "numpy", "scipy", "scikit-learn", "optuna", "mlflow", "plotly")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 0.2em 0.8em; text-align: left; }
th { border-bottom: 1px solid #999; } tr.noise td { color: #888; } .caption { color: #555; font-size: 0.9em; }
pre { background: #f5f5f5; padding: 0.8em; overflow-x: auto; } .missing { color: #888; font-style: italic; }
"""


def report_enabled(no_report_flag: bool) -> bool:
    """Whether `sweeps run` draws the report: not with ``--no-report`` nor with $SWEEPS_NO_REPORT set."""
    return not no_report_flag and os.environ.get(NO_REPORT_ENV, "") in ("", "0")


@dataclass
class Provenance:
    spec: dict[str, Any]
    versions: dict[str, str]
    git_commit: str
    dataset: str
    dataset_fingerprint: str


def read_records(result) -> tuple:
    """What the report reads from MLflow: the trials table, curves and tags of the sweep's parent run
    (:func:`tracking.report.sweep_record`), or nothing when the sweep has no parent run."""
    return sweep_record(result.stores.tracking_uri, result.parent_run_id) if result.parent_run_id else (None, None, {})


def records_for_child(result) -> tuple | None:
    """The records to hand the report child with its request: None where it reads them itself without
    MLflow (:func:`tracking.report.reads_directly`; ~0.25 s, most of it importing pandas, off this process's
    end of every run), and then draws the parent run's summary too; else read here, as the child is not to
    load MLflow."""
    if result.parent_run_id and reads_directly(result.stores.tracking_uri, result.parent_run_id):
        return None
    return read_records(result)


def gather(
    spec, result, *, bootstrap: int = DEFAULT_BOOTSTRAP, records: tuple | None = None
) -> tuple[ReportData, Provenance]:
    """Everything the report shows: trials from Optuna; curves, train_seconds and provenance tags from MLflow
    (``records`` from :func:`read_records`, read now when not given); the importances, computed."""
    data, provenance, importances = _begin_gather(spec, result, bootstrap, records)
    data.importances = importances.tables()
    return data, provenance


def _begin_gather(
    spec, result, bootstrap: int, records: tuple | None
) -> tuple[ReportData, Provenance, PendingImportances]:
    """:func:`gather`, its importances begun (:func:`~sweeps.results.importance.begin_study_importances`),
    not yet in the data."""
    table, curves, tags = records if records is not None else read_records(result)
    seconds = {}
    if table is not None:
        seconds = {int(n): s for n, s in zip(table["trial_number"], table["train_seconds"], strict=True)}
    trials = result.study.get_trials(deepcopy=False, states=_complete())
    targets = {
        spec.objectives[0]: lambda t: t.values[0],
        "train_seconds": lambda t: seconds.get(t.number),
    }
    if spec.objectives[0] == "train_seconds":
        del targets["train_seconds"]
    settings = {t.number: t.user_attrs.get(PARAMS_ATTR) or t.params for t in result.study.get_trials(deepcopy=False)}
    data = ReportData(result.study, spec.objectives[0], winner(result)[0], curves, settings)
    versions = {k.removeprefix("version."): v for k, v in tags.items() if k.startswith("version.")}
    now = {k.removeprefix("version."): v for k, v in package_versions(VERSIONED).items()}
    provenance = Provenance(
        spec=spec.resolved(),
        versions={
            name: versions.get(name) or now.get(name, "—") for name in VERSIONED if name in versions or name in now
        },
        git_commit=tags.get("git_commit", "— (the sweep was not run from a git checkout)")
        + (" (with uncommitted changes)" if tags.get("git_dirty") == "True" else ""),
        dataset=tags.get("dataset", spec.dataset.name),
        dataset_fingerprint=result.study.user_attrs.get(DATA_ATTR) or tags.get("dataset_fingerprint", "—"),
    )
    importances = begin_study_importances(result.study, trials, targets, seed=spec.seed, bootstrap=bootstrap)
    return data, provenance, importances


def _complete():
    from optuna.trial import TrialState  # here: `sweeps batch-size` imports this module and may not need Optuna

    return (TrialState.COMPLETE,)


# --- HTML ---------------------------------------------------------------------------------------------------


def figure_html(figure: Figure, first: bool) -> str:
    body = figure.figure.to_html(
        full_html=False,
        include_plotlyjs=first,  # plotly.js once, inline: the file opens without a network
        include_mathjax=False,
        config={"displaylogo": False, "responsive": True},
        default_width="100%",
    )
    caption = f'<p class="caption">{html.escape(figure.caption)}</p>' if figure.caption else ""
    head = f'<section class="figure" data-figure="{html.escape(figure.key)}"><h3>{html.escape(figure.title)}</h3>'
    return f"{head}{caption}{body}</section>"


def importance_html(tables: list[ImportanceTable]) -> str:
    """Tables of importances with intervals; the parameters within noise greyed and named as ones to fix."""
    if not tables:
        return '<p class="missing">Too few completed trials for importances (at least 3 are needed).</p>'
    parts = []
    for t in tables:
        rows = "".join(
            f'<tr class="{"noise" if r.within_noise else ""}"><td>{html.escape(r.param)}</td><td>{r.value:.3f}</td>'
            f"<td>[{r.low:.3f}, {r.high:.3f}]</td><td>{'within noise' if r.within_noise else ''}</td></tr>"
            for r in t.rows
        )
        noise = t.within_noise()
        smallest = min(r.value for r in t.rows)
        advice = (
            f"<p>Within noise (interval reaches the smallest importance, {smallest:.3f}): "
            f"{html.escape(', '.join(noise))} — consider fixing "
            f"{'it' if len(noise) == 1 else 'them'} at the best trial's value{'' if len(noise) == 1 else 's'}.</p>"
            if noise
            # The least important parameter's own resamples can all land above its value: none is marked.
            else f"<p>No interval reaches the smallest importance ({smallest:.3f}): none is marked within noise.</p>"
        )
        parts.append(
            f"<h3>{html.escape(t.target)} — {t.label}</h3>"
            f'<table class="importance" data-target="{html.escape(t.target)}" data-evaluator="{t.evaluator}">'
            f"<tr><th>parameter</th><th>importance</th><th>{_interval_heading(t)}</th><th></th></tr>"
            f'{rows}</table><p class="caption">{_interval_caption(t)}</p>' + advice
        )
    return "".join(parts)


def _percent(t: ImportanceTable) -> int:
    """What the table's intervals enclose of the resampled importances on average, in whole percent
    (:func:`~sweeps.results.importance.coverage`): 95 only from ~380 resamples on."""
    return math.floor(100 * t.coverage + 0.5)


def _interval_heading(t: ImportanceTable) -> str:
    return "interval" if t.bootstrap < 2 else f"{_percent(t)}% interval"


def _interval_caption(t: ImportanceTable) -> str:
    said = f"{t.n_trials} completed trials, {t.bootstrap} bootstrap resamples"
    if t.bootstrap < 2:
        return f"{said}: no interval (it needs at least 2, <code>--bootstrap</code>)."
    pct = _percent(t)
    span = f"{said}; each interval spans the 2.5th to 97.5th percentiles of the resampled importances"
    if pct >= 95:
        return f"{span}."
    return (
        f"{span}, which with {t.bootstrap} resamples enclose about {pct}% of what resampling gives, not 95%: "
        "a rough spread (<code>sweeps report --bootstrap 200</code>: 94%)."
    )


def confirmed_winner_html(spec, result) -> str:
    """The latest `sweeps confirm` result of the sweep: per confirmed trial its one-seed value, the mean ± std
    and 95% interval over the confirm seeds, the Holm-corrected p against the winner and the winner/tied marks;
    or that nothing was confirmed yet."""
    record = confirmed(result.study) if getattr(result, "study", None) is not None else None
    if record is None:
        return (
            '<p class="missing" data-confirmed="none">No setting confirmed yet: the best trial above ran with one '
            f"seed. Run <code>sweeps confirm {html.escape(spec.name)}.yaml</code> to retrain the best settings over "
            "seeds.</p>"
        )
    head = "".join(
        f"<th>{h}</th>" for h in ("trial", "sweep", "mean ± std", "95% interval", "p vs winner", "s/run", "")
    )
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(c)}</td>"
            for c in (
                str(row["trial"]),
                _num(row["sweep_value"]),
                f"{_num(row['mean'])} ± {_num(row['std'], 2)}",
                _interval(row["ci95"]),
                _num(row["p_vs_winner_holm"], 2),
                _num(row["mean_train_seconds"], 2),
                _marks(record, row["trial"]),
            )
        )
        + "</tr>"
        for row in record["rows"]
    )
    winner = record["winner"]
    verdict = "no setting finished all its runs" if winner is None else f"confirmed winner: trial {winner}"
    return (
        f'<p data-confirmed="{html.escape(str(winner))}">{html.escape(verdict)}; tied with it: '
        f"{html.escape(', '.join(map(str, record['tied'])) or '—')}.</p><table><tr>{head}</tr>{rows}</table>"
    )


def best_html(spec, result) -> str:
    if result.best_params is None:
        return '<p class="missing">No trial completed.</p>'
    number, run_id = winner(result)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in result.best_params.items()
    )
    run = html.escape(run_id or "—")
    value = html.escape(f"{' & '.join(spec.objectives)} = {fmt_value(result.best_value)}")
    return f"<p>Trial {number} (MLflow run <code>{run}</code>): {value}.</p><table>{rows}</table>"


def provenance_html(p: Provenance) -> str:
    versions = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in p.versions.items())
    return (
        f"<table><tr><td>git commit</td><td><code>{html.escape(p.git_commit)}</code></td></tr>"
        f"<tr><td>dataset</td><td>{html.escape(p.dataset)}</td></tr>"
        f"<tr><td>dataset fingerprint</td><td><code>{html.escape(p.dataset_fingerprint)}</code></td></tr>"
        f"{versions}</table>"
        f"<h3>Spec (resolved)</h3><pre>{html.escape(yaml.safe_dump(p.spec, sort_keys=False))}</pre>"
    )


def render(spec, result, data: ReportData, provenance: Provenance, figures: list[Figure]) -> str:
    drawn = "".join(figure_html(f, i == 0) for i, f in enumerate(figures))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = html.escape(f"Sweep report: {spec.name}")
    objective = html.escape(" & ".join(spec.objectives))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="{KEY_META}" content="{report_key(spec, result)}"><title>{title}</title><style>{STYLE}</style></head>
<body data-figures="{len(figures)}">
<h1>{title}</h1>
<p>{html.escape(Tally.of(result.study).describe())} · objective {objective} · drawn {when}</p>
<h2>Best trial</h2>{best_html(spec, result)}
<h2 id="confirmed">Confirmed winner</h2>{confirmed_winner_html(spec, result)}
<h2>What mattered</h2>{importance_html(data.importances)}
<h2>Figures</h2>{drawn}
<h2>Provenance</h2>{provenance_html(provenance)}
<script type="application/json" id="report-data">{json.dumps({"figures": [f.key for f in figures]})}</script>
</body></html>
"""


def write_report(
    spec,
    result,
    out: Path | None = None,
    *,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    log: bool = True,
    child: ReportChild | None = None,
) -> Path:
    """Draw the report of ``result``'s sweep to ``out`` (default: ``<name>-report.html`` in the sweep's
    workdir) and log it, with the ``importance.*`` metrics, to the parent run. Returns the file's path.

    With ``child`` (see :mod:`sweeps.results.report_child`), the page is composed there, where its libraries
    were loaded while the sweep trained, or taken from it when it was asked already (as the trials ended);
    here when the child is gone or composed it from other trials. The stores are read and written here."""
    with collector_paused():
        records, composed = None, None
        if child is not None:
            with contextlib.suppress(ChildGone):  # then drawn here
                if child.asked is None:
                    records = records_for_child(result)
                    child.begin(spec, result, records, bootstrap)
                key, page, tables = child.collect()
                if child.asked == (result.study.study_name, bootstrap) and key == report_key(spec, result):
                    composed = page, tables
        page, tables = composed or compose(spec, result, records, bootstrap)
        path = Path(out) if out is not None else result.stores.workdir / f"{spec.name}-{REPORT_FILE}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        if log and result.parent_run_id:
            log_report(
                result.stores.tracking_uri, result.parent_run_id, path, importance_metrics(tables, spec.objectives[0])
            )
    return path


def compose(
    spec,
    result,
    records: tuple | None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    *,
    meanwhile: Callable[[], None] | None = None,
) -> tuple[str, list[ImportanceTable]]:
    """The report's page and its importance tables, from the study and ``records`` (:func:`read_records`;
    read now when None): given them, no MLflow here, so that a process without it (the report child) can
    draw it. ``meanwhile()`` is called once the importances are begun and the figures that do not show them
    are drawn (the report child answers for the parent run's summary there, drawn in a copy meanwhile)."""
    data, provenance, importances = _begin_gather(spec, result, bootstrap, records)
    try:
        ahead = figures_ahead(data)  # drawn while forked copies of this process compute the importances
        if meanwhile is not None:
            meanwhile()
    except BaseException:
        importances.close()
        raise
    data.importances = importances.tables()
    return render(spec, result, data, provenance, build_figures(data, ahead)), data.importances


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector paused while a report is drawn. `sweeps report` imports MLflow,
    SQLAlchemy, pandas, plotly and scikit-learn on the way (thousands of modules), and each collection that
    this triggers walks every object loaded so far: ~0.5 s of a 3 s report. What the report allocates is freed
    by reference counting as usual. At the end, what it left is moved to the oldest generation without being
    walked (a freeze and unfreeze; not when the caller froze objects of its own): else the first allocation
    after the pause would walk every module imported during it (~0.1 s). Its few reference cycles are freed
    by the next full collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def report_key(spec, result) -> str:
    """What the report is drawn from, hashed: the spec, the study's trials (states, values, settings,
    attributes) and its attributes, the parent run, and the version of the importances' computation (a
    report of older code is drawn again). The same key means the same report but for the time it was drawn
    (the importances' bootstrap is seeded)."""
    study = result.study
    trials = [(t.number, t.state.name, t.values, t.params, t.user_attrs) for t in study.get_trials(deepcopy=False)]
    # the clock is reset by every run; the importances' cache is written by drawing the report itself; the
    # summary's bookkeeping is written while the report child composes it (sweeps.results.report_child)
    attrs = {k: v for k, v in study.user_attrs.items() if k not in UNREPORTED_ATTRS}
    content = json.dumps(
        [spec.spec_hash(), trials, attrs, result.parent_run_id, CACHE_VERSION], sort_keys=True, default=str
    )
    return hashlib.sha256(content.encode()).hexdigest()[:24]


def _drawn_key(path: Path) -> str | None:
    """The key in the head of the report at ``path``, or None (no file, or one drawn without a key)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    marker = f'<meta name="{KEY_META}" content="'
    start = head.find(marker)
    return head[start + len(marker) :].split('"', 1)[0] if start >= 0 else None


def draw_after_command(spec, result, spec_arg, say, warn, child: ReportChild | None = None) -> None:
    """The report at the end of a command (``run``, ``confirm``, ``batch-size``), unless $SWEEPS_NO_REPORT:
    its path through ``say``; a failure to draw it through ``warn``, not fatal, since the command's work is
    recorded. A report already drawn from the same trials (a rerun that trained nothing) is kept: drawing it
    again takes seconds and would change only its date. The command's process is ours: Optuna's importance
    package is loaded without scikit-learn (:func:`~sweeps.results.importance.optuna_importance`)."""
    if not report_enabled(False):
        return
    try:
        result = result() if callable(result) else result
        path = result.stores.workdir / f"{spec.name}-{REPORT_FILE}"
        if _drawn_key(path) == report_key(spec, result):
            say(f"report: {path}")
            return
        optuna_importance(without_scikit_learn=True)
        path = write_report(spec, result, child=child)
    except Exception as e:
        warn(f"the report was not drawn ({type(e).__name__}: {e}); try `sweeps report {spec_arg}`")
        return
    say(f"report: {path}")
