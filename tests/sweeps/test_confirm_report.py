"""The confirm record and its printing, from known numbers: a diverged run, the fastest tied, 80 columns."""

from __future__ import annotations

import math

import pytest

from sweeps.batchsize.budget import Budget
from sweeps.batchsize.stats import RunResult
from sweeps.results.comparison import compare
from sweeps.results.confirm_report import ConfirmReport, Setting, print_confirm, print_confirmed_summary

# trial -> its objective per seed (NaN: that run diverged) and seconds per run
VALUES = {4: [0.30, 0.31, 0.32], 9: [0.33, 0.30, 0.335], 2: [0.29, math.nan, 0.28]}
SECONDS = {4: 2.0, 9: 1.0, 2: 0.5}


def report() -> ConfirmReport:
    labels = list(VALUES)
    runs = [
        (n, RunResult(64, r, 100 + r, f"run-{n}-{r}", 10, (v,), (SECONDS[n],), None if v == v else "cost diverged"))
        for r in (1, 2, 3)
        for n, v in ((n, VALUES[n][r - 1]) for n in labels)
    ]
    settings = [Setting(n, f"trial-run-{n}", 0.25 + n / 100, {"lr": 0.01 * n}, VALUES[n], SECONDS[n]) for n in labels]
    return ConfirmReport(
        name="tiny",
        objective="final_val_cost",
        budget=Budget("epochs", 4),
        repeats=3,
        top=3,
        seeds=[101, 102, 103],
        settings=settings,
        comparison=compare([VALUES[n] for n in labels], paired=True, labels=labels),
        runs=runs,
        n_completed=12,
        experiment="tiny",
        parent_run_id="parent",
        tracking_uri="sqlite:///x.db",
    )


def test_a_diverged_setting_cannot_win_and_the_fastest_tied_is_named():
    record = report().to_dict()
    assert record["winner"] == 4 and record["runner_up"] == 9  # trial 2 is lower but lost a run
    row2 = next(r for r in record["rows"] if r["trial"] == 2)
    assert row2["failed"] == 1 and not row2["tied"] and row2["mean"] == pytest.approx(0.285)
    assert row2["values"] == [0.29, None, 0.28]
    assert record["tied"] == [4, 9] and record["fastest_tied"] == 9  # 1.0 s against 2.0 s per run
    assert record["verdict"].endswith("the fastest of those is trial 9, 1 s per run")
    assert [(r["trial"], r["repeat"], r["value"]) for r in record["runs"][:3]] == [
        (4, 1, 0.3),
        (9, 1, 0.33),
        (2, 1, 0.29),
    ]


def test_printed_at_80_columns_with_the_marks(capsys):
    record = report().to_dict()
    print_confirm(record)
    print_confirmed_summary(record, since=2)
    print_confirmed_summary(None)
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 80 and " \n" not in text
    assert "tied, fastest" in text and "winner" in text and "(2/3 ran)" in text
    assert "95% interval of its mean: [" in text and "2 trials completed since" in text
    assert "not confirmed over seeds yet" in text
