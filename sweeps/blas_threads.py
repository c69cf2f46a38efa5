"""How many BLAS threads a training process uses: the cores, less one for tracking, shared by the workers.

A trainer's BLAS threads spin while they wait for each other; on a machine whose every core they hold, any
other busy process (the tracking writer loading MLflow, the loopback MLflow server) stalls them all. On
2 cores that made the quickstart's training 2.4× slower with tracking on. So a training process gets
``max(1, (cores - 1) // workers)`` threads, leaving one core for the stores' processes. A user's own
``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``/``BLIS_NUM_THREADS`` always wins.

The thread count changes the round-off: an OpenBLAS kernel may split a product's sums differently with
another count (1e-7 apart in float32 on AVX2 kernels). So each trial records the count it trained with
(:data:`TAG`, from :func:`current`) and ``sweeps reproduce`` retrains under :func:`exactly` that count.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

BLAS_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")
TAG = "blas_threads"  # the MLflow tag and Optuna user attribute holding a trial's thread count


def blas_threads(workers: int = 1, cores: int | None = None) -> int:
    """BLAS threads for each of ``workers`` training processes on ``cores`` cores (default: this machine's)."""
    cores = cores or os.cpu_count() or 1
    return max(1, (cores - 1) // max(1, workers))


def user_chose() -> bool:
    """True when the environment already sets a BLAS thread count."""
    return any(os.environ.get(v) for v in BLAS_THREAD_VARS)


@contextlib.contextmanager
def limited(workers: int = 1) -> Iterator[None]:
    """Limit this process's BLAS to :func:`blas_threads` for the duration, unless the user chose."""
    if user_chose():
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(blas_threads(workers), user_api="blas"):
        yield


def current() -> int | None:
    """The BLAS threads this process's matrix products use now (the fewest over the BLAS libraries it had
    loaded when first asked, normally one: NumPy's); None when no BLAS library is visible to threadpoolctl.

    The libraries are looked for once a process (threadpoolctl reads every loaded library: ~4 ms with MLflow
    loaded, paid at every trial before) and their counts read anew at every call, so a limit set later is
    seen. NumPy's BLAS, the one optcore's products use, is loaded by then; a library loaded afterwards (a
    sampler's PyTorch) is not counted."""
    counts = [lib.num_threads for lib in _blas_libraries()]
    return min(counts) if counts else None


@functools.cache
def _blas_libraries() -> tuple:
    import numpy  # noqa: F401 — its BLAS must be loaded to be seen
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@contextlib.contextmanager
def exactly(n: int) -> Iterator[None]:
    """Run with ``n`` BLAS threads whatever the environment says (to retrain as a trial was trained)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(int(n), user_api="blas"):
        yield
