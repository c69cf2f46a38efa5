"""Errors raised by tracking. Messages are written for people: they say what failed, where, and what to do."""

from __future__ import annotations


class TrackingError(RuntimeError):
    """Base class of tracking's user-facing errors."""


class TrackingUnavailable(TrackingError):
    """The MLflow tracking store cannot be reached or opened (raised before any training starts)."""


class NoFinishedTrial(TrackingError, LookupError):
    """A selection asked for the best trial of an experiment that has no finished trial with that metric."""
