"""Send metrics, params and tags in request-sized batches, retrying transient failures with backoff.

One ``log_metric`` call per value is ~100x slower than ``log_batch`` on SQLite; MLflow caps one
``log_batch`` request at 1000 metrics, 100 params + tags and 1000 entities in all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tracking.redact import redact

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_METRICS = 1000
MAX_PARAMS_TAGS = 100
MAX_ENTITIES = 1000
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000

# MlflowException error codes worth another try: the store was busy or the network hiccuped. Anything else
# (a bad value, a missing run) fails the same way every time.
_TRANSIENT_CODES = frozenset(
    {
        "TEMPORARILY_UNAVAILABLE",  # SQLite 'database is locked', a server restarting
        "INTERNAL_ERROR",  # what MLflow raises for connection errors after its own HTTP retries
        "REQUEST_LIMIT_EXCEEDED",
        "DEADLINE_EXCEEDED",
        "ABORTED",
        "IO_ERROR",
        "SERVICE_UNDER_MAINTENANCE",
    }
)


def is_transient(exc: BaseException) -> bool:
    """True for failures that may go away on retry: connection and timeout errors, busy stores; never a
    full disk."""
    from tracking.disk_full import disk_full

    if disk_full(exc):
        return False
    error_code = getattr(exc, "error_code", None)
    if error_code is not None:  # MlflowException and its REST subclass
        return error_code in _TRANSIENT_CODES or _busy_database(str(exc))
    return isinstance(exc, OSError | TimeoutError)  # requests' errors are OSErrors


# What a tracking server's database says when it is only busy: the server answers BAD_REQUEST for these
# (MLflow does not classify its SQLAlchemy errors), though asking again later succeeds. Seen with 64 workers
# on a server with a pool of 2 x (4 + 4): "QueuePool limit of size 4 overflow 4 reached, connection timed out".
_BUSY_DATABASE = (
    "QueuePool limit of size",  # SQLAlchemy: every pooled connection in use for pool_timeout seconds
    "too many clients already",  # PostgreSQL: max_connections reached
    "remaining connection slots are reserved",  # PostgreSQL: the same, for ordinary roles
    "database is locked",  # SQLite: another writer held the lock past the busy timeout
)


def _busy_database(message: str) -> bool:
    return any(phrase in message for phrase in _BUSY_DATABASE)


def with_retries(
    fn: Callable[..., T], *args: Any, what: str, attempts: int = 4, first_delay: float = 0.25, **kwargs: Any
) -> T:
    """``fn(*args, **kwargs)``, retried on transient failures after ``first_delay * 2**k`` seconds.

    Raises the last exception when ``attempts`` tries all failed, or at once when a failure is not transient.
    ``what`` names the operation in the warning logged for each retry.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if attempt == attempts or not is_transient(e):
                raise
            delay = first_delay * 2 ** (attempt - 1)
            log.warning(
                "%s failed (%s: %s); retry %d of %d in %.2f s",
                what,
                type(e).__name__,
                redact(str(e))[:300],
                attempt,
                attempts - 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def batches(
    metrics: Sequence[Metric] = (), params: Sequence[Param] = (), tags: Sequence[RunTag] = ()
) -> list[tuple[list[Metric], list[Param], list[RunTag]]]:
    """Split entities into ``log_batch`` requests within MLflow's per-request limits.

    Params and tags go first (at most 100 a request); metrics fill each request up to 1000 entities.
    """
    out: list[tuple[list[Metric], list[Param], list[RunTag]]] = []
    params_tags, n_params, metrics = [*params, *tags], len(params), list(metrics)
    i = j = 0
    while i < len(params_tags) or j < len(metrics):
        chunk = params_tags[i : i + MAX_PARAMS_TAGS]
        room = min(MAX_METRICS, MAX_ENTITIES - len(chunk))
        split = max(0, min(len(chunk), n_params - i))
        out.append((metrics[j : j + room], chunk[:split], chunk[split:]))
        i, j = i + len(chunk), j + room
    return out


def log_batched(
    client: MlflowClient,
    run_id: str,
    metrics: Sequence[Metric] = (),
    params: Sequence[Param] = (),
    tags: Sequence[RunTag] = (),
) -> None:
    """Log everything in as few ``log_batch`` requests as the limits allow, each retried on transient errors.

    Re-sending a metric with the same key, step, timestamp and value does not duplicate it, so a retry after
    a request that did land on the server is harmless.
    """
    for m, p, t in batches(metrics, params, tags):
        with_retries(
            client.log_batch, run_id, metrics=m, params=p, tags=t, synchronous=True, what=f"log_batch({run_id})"
        )


def param_value(value: object) -> str:
    """A param value as MLflow stores it: ``str()``, redacted, cut to MLflow's 6000 characters."""
    return redact(str(value))[:MAX_PARAM_VALUE]


def tag_value(value: object) -> str:
    """A tag value as MLflow stores it: ``str()``, redacted, cut to MLflow's 8000 characters."""
    return redact(str(value))[:MAX_TAG_VALUE]
