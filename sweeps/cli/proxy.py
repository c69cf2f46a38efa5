"""``sweeps proxy``: serve a PostgreSQL storage to many workers over gRPC (:mod:`sweeps.study.proxy`) until
SIGINT or SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading

from sweeps.errors import UsageError
from sweeps.study.proxy import serve
from tracking import redact


def cmd_proxy(args) -> int:
    """``sweeps proxy``: serve until SIGINT or SIGTERM."""
    if not args.storage or not args.storage.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise UsageError("sweeps proxy needs --storage postgresql://USER@HOST/DB (or $SWEEPS_STORAGE)")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be a TCP port from 1 to 65535; got {args.port}")
    if args.pool < 1 or args.threads < 1:
        raise UsageError("--pool and --threads must be at least 1")
    server = serve(args.storage, args.host, args.port, pool=args.pool, threads=args.threads)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(
        f"sweeps proxy for {redact(args.storage)} on grpc://{args.host}:{args.port} "
        f"({args.pool} database connections, 1 more for a moment, and 1 per study for its lock)",
        flush=True,
    )
    stop.wait()
    server.stop(grace=5).wait()
    # Calls still waiting for a lease of a killed worker would hold the exit for up to LEASE_SECONDS; the
    # database ends this process's sessions (and their advisory locks) when it exits.
    sys.stdout.flush()
    os._exit(0)
