"""``sweeps proxy``: Optuna's gRPC storage proxy in front of PostgreSQL, for many workers with few connections.

Workers given ``--storage grpc://HOST:PORT`` open no database connection: they talk to this one process, which
holds a bounded pool (``--pool``) plus one connection per study for the trial lock. The server is Optuna's
own (the one ``optuna.storages.run_grpc_proxy_server`` starts, built with the same ``make_server`` so that
sweeps can add to it); next to Optuna's storage service it answers four calls of sweeps's own, so that the
guarantees of the direct path hold through it:

- ``Claim``: the next trial under the study-wide lock (:func:`sweeps.study.claims.claim`, run here next to the
  database), with its owner and first heartbeat recorded, and stale trials failed and queued again;
- ``Beat``: a running trial's heartbeat (Optuna's ``GrpcStorageProxy`` has none);
- ``Lock`` / ``Unlock``: the study-wide lock for the rare work that needs it across calls (creating the MLflow
  parent run once, the coordinator failing a dead worker's trial), as a lease that lapses after
  ``LEASE_SECONDS`` if its holder dies.

The calls carry JSON; the only secret, the database URL, stays in this process.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from sweeps.errors import SweepError

SERVICE = "optsweep.Sweeps"
LEASE_SECONDS = 120.0
# A call finding the lease taken answers "busy" at once and the client asks again after a random pause of up
# to BUSY_BACKOFF doubling to BUSY_BACKOFF_MAX. Calls that waited in the proxy (1 s each) held its threads:
# with 64 workers they held all 16, and the lease holder's own storage calls queued behind them (a claim
# rate near zero for minutes at the end of a 64-worker sweep in bench/scale_workers.py).
BUSY_WAIT = 0.0
BUSY_BACKOFF, BUSY_BACKOFF_MAX = 0.01, 0.25
DEFAULT_PORT = 13000


def _dump(obj) -> bytes:
    return json.dumps(obj).encode()


def _load(data: bytes):
    return json.loads(data.decode())


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``grpc://host:port`` -> (host, port); one clear message for anything else."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--storage {url!r}: a proxy is given as grpc://HOST:PORT, e.g. grpc://127.0.0.1:13000")
    return host, int(port)


# --- the worker's side -------------------------------------------------------------------------------------


def proxy_storage(url: str, timeout: float | None = None):
    """An Optuna storage talking to ``sweeps proxy`` at ``grpc://host:port``, with heartbeats and claims; waits
    for the proxy up to ``timeout`` seconds (default: ``SWEEPS_STORAGE_RETRY_SECONDS``, 120)."""
    import optuna

    from sweeps.study.claims import RETRY_SECONDS

    timeout = RETRY_SECONDS if timeout is None else timeout
    from optuna.storages._heartbeat import BaseHeartbeat

    try:
        import grpc
    except ImportError:
        raise SweepError("--storage grpc://… needs grpcio: pip install 'optsweep[grpc]'") from None

    class ProxyStorage(optuna.storages.GrpcStorageProxy, BaseHeartbeat):
        """Optuna's gRPC client plus sweeps's calls; heartbeats go to the proxy, which records them."""

        def __init__(self, host: str, port: int):
            super().__init__(host=host, port=port)
            self._calls = grpc.insecure_channel(f"{host}:{port}")
            self._info = self._call("Info", {})

        def _call(self, method: str, request: dict):
            fn = self._calls.unary_unary(f"/{SERVICE}/{method}", request_serializer=_dump, response_deserializer=_load)
            return fn(request, timeout=LEASE_SECONDS + 30)

        def _until_free(self, method: str, request: dict) -> dict:
            """Call ``method`` until the proxy does not answer "the lease is taken" (see BUSY_BACKOFF)."""
            pause = BUSY_BACKOFF
            while True:
                reply = self._call(method, request)
                if not reply.get("busy") and reply.get("token", "") is not None:
                    return reply
                time.sleep(random.uniform(0, pause))
                pause = min(2 * pause, BUSY_BACKOFF_MAX)

        def claim(self, study_name: str, total: int, owner: dict):
            from sweeps.study.claims import Claimed

            request = {"study": study_name, "total": total, "owner": owner}
            return Claimed.from_dict(self._until_free("Claim", request))

        @contextlib.contextmanager
        def locked(self, study_name: str) -> Iterator[None]:
            token = self._until_free("Lock", {"study": study_name})["token"]
            try:
                yield
            finally:
                self._call("Unlock", {"study": study_name, "token": token})

        def record_heartbeat(self, trial_id: int) -> None:
            self._call("Beat", {"trial_id": trial_id})

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            return []  # the proxy fails stale trials itself, in Claim

        def get_heartbeat_interval(self) -> int | None:
            return self._info["heartbeat_seconds"]

        def get_heartbeat_stale_trial_callback(self):
            return None

    host, port = parse_grpc_url(url)
    if not _ready(host, port, timeout):
        raise SweepError(
            f"no sweeps proxy answers at {host}:{port} (waited {timeout:.0f} s); start one with "
            f"`sweeps proxy --storage postgresql://… --port {port}`"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # Optuna >= 4.2, stable in use
        return ProxyStorage(host, port)


def _ready(host: str, port: int, timeout: float) -> bool:
    import grpc

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
    return True


# --- the proxy's side --------------------------------------------------------------------------------------


class _Lease:
    """The study-wide lock as a lease: PostgreSQL's advisory lock (shared with direct workers and other
    proxies), held on one connection of its own, and handed over when its holder's lease lapses."""

    def __init__(self, engine, key: int):
        self._engine, self._key = engine, key
        self._cond = threading.Condition()
        self._token: str | None = None
        self._expires = 0.0
        self._conn = None

    def acquire(self, ttl: float = LEASE_SECONDS, wait: float | None = None) -> str | None:
        """A token, or None if the lease stayed taken for ``wait`` seconds (None: wait as long as it takes).
        The proxy's calls do not wait (BUSY_WAIT): a call blocked here holds one of the server's threads, and
        with all of them blocked the holder's storage calls and Unlock could not be served."""
        import sqlalchemy

        give_up = None if wait is None else time.monotonic() + wait
        with self._cond:
            while self._token is not None and time.monotonic() < self._expires:
                if give_up is not None and time.monotonic() >= give_up:
                    return None
                until = self._expires if give_up is None else min(self._expires, give_up)
                self._cond.wait(max(0.01, until - time.monotonic()))
            if self._token is None:  # else a holder died: the database lock is still this connection's
                if self._conn is None:
                    self._conn = self._engine.connect()
                self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
                self._conn.commit()
            self._token, self._expires = uuid.uuid4().hex, time.monotonic() + ttl
            return self._token

    def release(self, token: str) -> None:
        import sqlalchemy

        with self._cond:
            if token != self._token:
                return  # lapsed and handed on
            try:
                self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                self._conn.commit()
            except Exception:
                self._conn.invalidate()  # the session (and its lock) is gone with the connection
                self._conn = None
            self._token = None
            self._cond.notify()


class _Service:
    def __init__(self, storage, lock_url: str):
        import sqlalchemy

        from sweeps.study.storage import GRACE_SECONDS, HEARTBEAT_SECONDS

        self.storage = storage
        self.info = {"heartbeat_seconds": HEARTBEAT_SECONDS, "grace_seconds": GRACE_SECONDS}
        # One connection per study served, each kept by its lease (the advisory lock is the session's).
        self._engine = sqlalchemy.create_engine(lock_url, pool_size=1, max_overflow=-1, pool_pre_ping=True)
        self._leases: dict[str, _Lease] = {}
        self._studies: dict[str, object] = {}
        self._mutex = threading.Lock()

    def lease(self, name: str) -> _Lease:
        from sweeps.study.storage import trial_lock_key

        with self._mutex:
            if name not in self._leases:
                self._leases[name] = _Lease(self._engine, trial_lock_key(name))
            return self._leases[name]

    def study(self, name: str):
        import optuna

        with self._mutex:
            if name not in self._studies:
                self._studies[name] = optuna.load_study(study_name=name, storage=self.storage)
            return self._studies[name]

    def Info(self, request, context):
        return self.info

    def Claim(self, request, context):
        from sweeps.study.claims import claim, make_known

        study = self.study(request["study"])
        lease = self.lease(request["study"])
        token = lease.acquire(wait=BUSY_WAIT)
        if token is None:
            return {"busy": True}
        try:
            claimed = claim(study, int(request["total"]), request["owner"])
        finally:
            lease.release(token)
        if claimed.trial_id is not None:
            make_known(study, claimed.trial_id)  # the worker's calls on it go through this cache
        return claimed.to_dict()

    def Beat(self, request, context):
        self.storage.record_heartbeat(int(request["trial_id"]))
        return {}

    def Lock(self, request, context):
        return {"token": self.lease(request["study"]).acquire(wait=BUSY_WAIT)}

    def Unlock(self, request, context):
        self.lease(request["study"]).release(request["token"])
        return {}

    def handler(self):
        import grpc

        methods = {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(self, name), request_deserializer=_load, response_serializer=_dump
            )
            for name in ("Info", "Claim", "Beat", "Lock", "Unlock")
        }
        return grpc.method_handlers_generic_handler(SERVICE, methods)


def serve(storage_url: str, host: str = "127.0.0.1", port: int = DEFAULT_PORT, pool: int = 8, threads: int = 16):
    """Run the proxy until SIGINT/SIGTERM. ``pool`` database connections for the storage (no overflow), one
    more per study for its lock; ``threads`` concurrent calls (the rest wait in gRPC's queue)."""
    import optuna

    try:
        from optuna.storages._grpc.server import make_server
    except ImportError:
        raise SweepError("`sweeps proxy` needs grpcio: pip install 'optsweep[grpc]'") from None

    from sweeps.study.storage import Stores, open_storage, sqlalchemy_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = open_storage(Stores(None, storage_url, ""), pool_size=pool)  # type: ignore[arg-type]
    storage = optuna.storages.get_storage(rdb)  # Optuna's in-process cache, as its docs advise for the proxy
    service = _Service(storage, sqlalchemy_url(storage_url))
    server = make_server(storage, host, port, ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers((service.handler(),))
    server.start()
    return server
