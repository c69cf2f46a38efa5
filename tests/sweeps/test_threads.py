"""sweeps.blas_threads: one core left for tracking, shared by the workers; the user's own setting wins."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

from sweeps import blas_threads as threads


@pytest.mark.parametrize(
    ("cores", "workers", "expected"),
    [(1, 1, 1), (2, 1, 1), (2, 2, 1), (4, 1, 3), (4, 2, 1), (8, 2, 3), (8, 3, 2), (16, 4, 3), (2, 8, 1)],
)
def test_blas_threads_leave_one_core_and_never_fall_below_one(cores, workers, expected):
    assert threads.blas_threads(workers, cores) == expected


def _numpy_blas_threads() -> int:
    import numpy  # noqa: F401 — its BLAS must be loaded for threadpoolctl to see it

    return min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_limited_sets_this_process_blas_and_restores_it(monkeypatch):
    for var in threads.BLAS_THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    before = _numpy_blas_threads()  # OpenBLAS starts with one thread per core: 2 on these machines
    with threads.limited():
        assert _numpy_blas_threads() == 1
    assert _numpy_blas_threads() == before


def test_a_thread_count_set_by_the_user_is_left_alone(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 64)
    before = _numpy_blas_threads()
    with threads.limited():
        assert _numpy_blas_threads() == before


def test_current_reports_the_count_in_effect():
    with threads.exactly(1):
        assert threads.current() == _numpy_blas_threads() == 1


def test_exactly_overrides_the_users_setting_and_restores_it(monkeypatch):
    # reproduce retrains under the trial's own count, even where the environment limits BLAS otherwise
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    before = _numpy_blas_threads()
    with threads.exactly(2):
        assert threads.current() == 2
    assert _numpy_blas_threads() == before


def test_current_looks_for_the_libraries_once_and_reads_their_counts_every_time():
    threads.current()  # the libraries are known from here on
    scans = threads._blas_libraries.cache_info().misses
    with threads.exactly(1):
        assert threads.current() == _numpy_blas_threads() == 1
        with threads.exactly(2):
            assert threads.current() == _numpy_blas_threads() == 2
    assert threads.current() == _numpy_blas_threads()
    assert threads._blas_libraries.cache_info().misses == scans
