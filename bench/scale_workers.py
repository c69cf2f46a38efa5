"""Many `sweeps worker` processes on one study, on loopback PostgreSQL, directly and through `sweeps proxy`.

    OPTSWEEP_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        PYTHONPATH=$PWD .venv/bin/python bench/scale_workers.py --workers 8,32,64 [--modes direct,proxy]
        [--trials-per-worker 3] [--kill | --kill-only] [--mlflow-workers 2] [--mlflow-pool 4]

For each N and mode: fresh databases (Optuna's, MLflow's), a loopback `mlflow server` on PostgreSQL
(``--mlflow-workers`` processes, each with a pool of ``--mlflow-pool`` + as many overflow), for ``proxy`` a
`sweeps proxy` (pool 8), then N workers started together on a study of N * ``--trials-per-worker`` tiny
trials (moons, 1 epoch: orchestration dominates). With ``--kill`` a quarter of the workers are SIGKILLed while
each runs a trial; the others finish the study, retrying the killed trials once their heartbeat lapses
(heartbeat 2 s, grace 6 s here).

Reported per run:
- trials/s: counted trials / wall time from the first trial's start to the last trial's end (start-up of
  the processes excluded; ``wall s`` includes it);
- ask p50/p99: per worker, the gap from the end of one of its trials to the start of its next (from the
  trials' timestamps: the claim, waiting for the lock included, and the MLflow run of the next trial);
- peak connections to the Optuna database and to MLflow's (pg_stat_activity, sampled every 0.2 s);
- memory per worker: the median over workers of each worker's peak PSS (proportional set size: pages shared
  between processes, such as those a worker shares with the writer it forked, counted once, split among
  them), its MLflow writer process included;
- after the run, all of which must be 0: requested - counted, duplicate trial numbers (Optuna or MLflow),
  RUNNING/WAITING leftovers (Optuna) and RUNNING runs (MLflow), and trials whose MLflow run disagrees with
  Optuna (missing, or FINISHED/FAILED against COMPLETE/FAIL).
Exits 1 if any check is not 0.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = """\
name: scale
seed: 7
trials: 4
dataset: {name: moons, n_samples: 400, noise: 0.2, val_fraction: 0.25}
model: {hidden: [8], activation: tanh}
training: {epochs: 1}
search:
  batch_size: {choices: [32, 64]}
  optimizer: {choices: [momentum, adam]}
  lr: {low: 0.001, high: 0.1, log: true}
  schedule: {choices: [constant, cosine]}
sampler: {name: tpe}
pruner: {name: none}
"""
BEAT, GRACE = 2, 6


def admin(base: str):
    import psycopg

    return psycopg.connect(base, autocommit=True)


class Sampler(threading.Thread):
    """Samples pg_stat_activity every 0.2 s and the workers' memory every second."""

    def __init__(self, base: str, dbs: dict[str, str], procs: list[subprocess.Popen]):
        super().__init__(daemon=True)
        self.base, self.dbs, self.procs = base, dbs, procs
        self.peak = dict.fromkeys(dbs, 0)
        self.rss: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        with admin(self.base) as conn:
            for tick in itertools.count():
                if self.stop.wait(0.2):
                    break
                rows = dict(conn.execute("SELECT datname, count(*) FROM pg_stat_activity GROUP BY datname").fetchall())
                for key, db in self.dbs.items():
                    self.peak[key] = max(self.peak[key], rows.get(db, 0))
                for p in list(self.procs) if tick % 5 == 0 else ():
                    kb = sum(pss_kb(pid) for pid in [p.pid, *children(p.pid)])
                    self.rss[p.pid] = max(self.rss.get(p.pid, 0), kb)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (a worker's MLflow writer process)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pss_kb(pid: int) -> int:
    """``pid``'s proportional set size in kB (its resident size where the kernel gives no PSS)."""
    for path, field in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1])
        except OSError:
            continue
    return 0


def run_once(base: str, n: int, mode: str, per_worker: int, kill: bool, mlflow_workers: int, mlflow_pool: int):
    import mlflow
    import optuna

    from sweeps.study.storage import sqlalchemy_url
    from tracking.server import MlflowServer, free_port

    tag = uuid.uuid4().hex[:8]
    dbs = {"optuna": f"optsweep_scale_o_{tag}", "mlflow": f"optsweep_scale_m_{tag}"}
    with admin(base) as conn:
        for db in dbs.values():
            conn.execute(f'CREATE DATABASE "{db}"')
    url = {k: f"{base.rsplit('/', 1)[0]}/{db}" for k, db in dbs.items()}
    tmp = Path(tempfile.mkdtemp(prefix="scale-"))
    (tmp / "spec.yaml").write_text(SPEC)
    total = n * per_worker
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "SWEEPS_NO_REPORT": "1",
        "SWEEPS_HEARTBEAT_SECONDS": str(BEAT),
        "SWEEPS_GRACE_SECONDS": str(GRACE),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    proxy = None
    procs: list[subprocess.Popen] = []
    server = MlflowServer(
        sqlalchemy_url(url["mlflow"]),
        tmp / "artifacts",
        log_file=tmp / "mlflow.log",
        workers=mlflow_workers,
        pool_size=mlflow_pool,
    )
    try:
        server.start()
        storage = url["optuna"]
        if mode == "proxy":
            port = free_port()
            proxy = subprocess.Popen(
                [sys.executable, "-m", "sweeps.cli", "proxy", "--port", str(port), "--pool", "8"],
                env={**env, "SWEEPS_STORAGE": url["optuna"]},
                stdout=open(tmp / "proxy.log", "w"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
            storage = f"grpc://127.0.0.1:{port}"
        wenv = {**env, "SWEEPS_STORAGE": storage, "SWEEPS_TRACKING_URI": server.url}
        cmd = [sys.executable, "-m", "sweeps.cli", "worker", str(tmp / "spec.yaml"), "--trials", str(total)]
        cmd += ["--quiet", "--workdir", str(tmp / "wd")]
        sampler = Sampler(base, dbs, procs)
        sampler.start()
        t0 = time.time()
        for i in range(n):
            log = open(tmp / f"w{i}.log", "w")  # noqa: SIM115
            procs.append(subprocess.Popen(cmd, env=wenv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp))
        killed = []
        if kill:
            killed = kill_quarter(url["optuna"], procs, n // 4)
        codes = [p.wait(3600) for p in procs]
        wall = time.time() - t0
        sampler.stop.set()
        sampler.join()
        bad_exits = [c for p, c in zip(procs, codes, strict=True) if c != 0 and p.pid not in killed]
        study = optuna.load_study(study_name="scale", storage=sqlalchemy_url(url["optuna"]))
        trials = study.trials
        client = mlflow.MlflowClient(server.url)
        exp = client.get_experiment_by_name("scale")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.role = 'trial'", max_results=10000)
        return measure(trials, runs, total, wall, sampler, killed, bad_exits, tmp)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if proxy is not None:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(30)
        server.stop()
        with admin(base) as conn:
            for db in dbs.values():
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def kill_quarter(optuna_url: str, procs: list[subprocess.Popen], k: int) -> list[int]:
    """SIGKILL ``k`` workers, each while one of its trials is RUNNING; their PIDs."""
    import optuna

    from sweeps.study.storage import sqlalchemy_url

    storage = optuna.storages.RDBStorage(sqlalchemy_url(optuna_url))
    killed: list[int] = []
    deadline = time.time() + 600
    while len(killed) < k and time.time() < deadline:
        time.sleep(0.3)
        try:
            study = optuna.load_study(study_name="scale", storage=storage)
        except KeyError:
            continue
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        pids = {t.system_attrs.get("owner", {}).get("pid") for t in running if t.user_attrs.get("mlflow_run_id")}
        for p in procs:
            if p.pid in pids and p.pid not in killed and len(killed) < k:
                os.kill(p.pid, signal.SIGKILL)
                killed.append(p.pid)
    storage.engine.dispose()
    return killed


def measure(trials, runs, total, wall, sampler, killed, bad_exits, tmp) -> dict:
    from optuna.trial import TrialState

    counted = [t for t in trials if t.user_attrs.get("outcome") in ("completed", "pruned", "failed")]
    numbers = [t.number for t in trials]
    run_numbers = [r.data.tags.get("trial_number") for r in runs]
    by_id = {r.info.run_id: r for r in runs}
    disagree = 0
    for t in trials:
        run = by_id.get(t.user_attrs.get("mlflow_run_id", ""))
        if t.state == TrialState.COMPLETE:
            disagree += run is None or run.info.status != "FINISHED"
        elif t.state == TrialState.FAIL and run is not None and run.info.status != "FAILED":
            disagree += 1
    gaps = []
    by_worker: dict[object, list] = {}
    for t in trials:
        if t.datetime_start and t.datetime_complete:
            by_worker.setdefault(t.system_attrs.get("owner", {}).get("pid"), []).append(t)
    for ts in by_worker.values():
        ts.sort(key=lambda t: t.datetime_start)
        gaps += [(b.datetime_start - a.datetime_complete).total_seconds() for a, b in itertools.pairwise(ts)]
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    gaps.sort()
    rss = sorted(sampler.rss.values())
    return {
        "trials/s": len(counted) / span,
        "wall s": wall,
        "ask p50 ms": 1000 * gaps[len(gaps) // 2] if gaps else float("nan"),
        "ask p99 ms": 1000 * gaps[min(len(gaps) - 1, round(0.99 * (len(gaps) - 1)))] if gaps else float("nan"),
        "peak conn optuna": sampler.peak["optuna"],
        "peak conn mlflow": sampler.peak["mlflow"],
        "MB/worker": statistics.median(rss) / 1024 if rss else float("nan"),
        "killed": len(killed),
        "retried": sum(1 for t in trials if "failed_trial" in t.system_attrs),
        "missing": total - len(counted),
        "duplicates": (len(numbers) - len(set(numbers))) + (len(run_numbers) - len(set(run_numbers))),
        "running left": sum(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)
        + sum(r.info.status == "RUNNING" for r in runs),
        "disagree": disagree,
        "bad exits": len(bad_exits),
        "logs": str(tmp),
    }


CHECKS = ("missing", "duplicates", "running left", "disagree", "bad exits")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="8")
    parser.add_argument("--modes", default="direct,proxy")
    parser.add_argument("--trials-per-worker", type=int, default=3)
    parser.add_argument("--kill", action="store_true", help="also one run per N with a quarter SIGKILLed")
    parser.add_argument("--kill-only", action="store_true", help="only the runs with a quarter SIGKILLed")
    parser.add_argument("--mlflow-workers", type=int, default=2)
    parser.add_argument("--mlflow-pool", type=int, default=4)
    args = parser.parse_args()
    base = os.environ.get("OPTSWEEP_TEST_POSTGRES_URL")
    if not base:
        print("set OPTSWEEP_TEST_POSTGRES_URL (postgresql://postgres@127.0.0.1:5432/test)", file=sys.stderr)
        return 2
    random.seed(0)
    failed = False
    for n in map(int, args.workers.split(",")):
        for mode in args.modes.split(","):
            for kill in (True,) if args.kill_only else (False, True) if args.kill else (False,):
                r = run_once(base, n, mode, args.trials_per_worker, kill, args.mlflow_workers, args.mlflow_pool)
                label = f"N={n} {mode}{' kill 1/4' if kill else ''}"
                print(
                    label
                    + ": "
                    + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()),
                    flush=True,
                )
                failed |= any(r[c] for c in CHECKS)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
