"""Work split over forked copies of the process (tracking.forked), and the report's importances computed
so: the same tables as one after another. Run in a fresh interpreter, where a fork is safe (a pytest-xdist
worker has threads of its own, where the work is done in process, as tested last)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import cli_env

SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import optuna
    from tracking import forked
    from tracking.forked import Forked
    from sweeps.results.importance import begin_study_importances, importances

    here = os.getpid()
    out = {}
    out["pids"] = Forked(lambda x: (x * x, os.getpid()), [1, 2, 3]).results()

    def fails(x):
        if x == 2:
            raise ValueError(f"no {x}")
        return x
    try:
        Forked(fails, [1, 2]).results()
    except ValueError as e:
        out["raised"] = str(e)

    def dies(x):  # a copy killed before it answers: its item is computed here
        if os.getpid() != here:
            os._exit(3)
        return (x, os.getpid())
    out["died"] = Forked(dies, [1, 2]).results()

    slow = Forked(lambda x: time.sleep(60), [1, 2])
    started = time.monotonic()
    slow.close()  # given up: killed and reaped at once, not waited for
    out["closed_in"] = time.monotonic() - started

    import gc
    gc.freeze()  # as the report child freezes what it imported: a Forked keeps that freeze
    frozen = gc.get_freeze_count()
    Forked(lambda x: x, [1]).results()
    out["freeze_kept"] = gc.get_freeze_count() >= frozen > 0
    gc.unfreeze()

    pending = Forked(lambda x: x, [1, 2])
    pending.close()  # given up: reaped, nothing taken
    try:
        os.waitpid(-1, os.WNOHANG)
        out["children_left"] = True
    except ChildProcessError:
        out["children_left"] = False

    rng = np.random.default_rng(0)
    dists = {"x": optuna.distributions.FloatDistribution(-1, 1), "y": optuna.distributions.FloatDistribution(-1, 1)}
    trials = []
    for n in range(12):
        p = {"x": float(rng.uniform(-1, 1)), "y": float(rng.uniform(-1, 1))}
        t = optuna.trial.create_trial(params=p, distributions=dists, value=10 * p["x"] ** 2, user_attrs={"s": n})
        trials.append(t)
    targets = {"value": lambda t: t.value, "seconds": lambda t: t.user_attrs["s"] * 0.1 + t.params["y"] ** 2}
    side_by_side = importances(trials, targets, seed=7, bootstrap=3)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.add_trials(trials)
    begun = begin_study_importances(study, study.trials, targets, seed=7, bootstrap=3).tables()
    forked.fork_is_safe = lambda: False  # as in a process with threads: one after another, here
    in_turn = importances(trials, targets, seed=7, bootstrap=3)
    out["in_process"] = Forked(lambda x: os.getpid(), [1, 2]).results() == [here, here]
    out["same_tables"] = side_by_side == in_turn == begun and len(in_turn) == 4
    out["here"] = here
    print(json.dumps(out))
""")


def _run() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env=cli_env(), check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_work_is_split_over_forked_copies_and_importances_do_not_depend_on_it():
    got = _run()
    here = got["here"]
    (first, pid1), (second, pid2), (third, pid3) = got["pids"]
    assert [first, second, third] == [1, 4, 9]  # in order
    assert len({here, pid1, pid2, pid3}) == 4  # each in a copy of its own
    assert got["raised"] == "no 2"  # raised in a copy, raised here
    assert got["died"] == [[1, here], [2, here]]  # a copy that died: its item computed here
    assert got["children_left"] is False and got["freeze_kept"]
    assert got["closed_in"] < 5  # copies given up on are killed, not waited for (they would sleep 60 s)
    assert got["in_process"]  # where a fork is not safe, every item is computed here
    assert got["same_tables"]  # the importances: the same, side by side, begun, or one after another
