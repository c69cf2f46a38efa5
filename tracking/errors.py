"""Errors raised by tracking. Messages are written for people: they say what failed, where, and what to do."""

from __future__ import annotations


class TrackingError(RuntimeError):
    """Base class of tracking's user-facing errors."""


class TrackingUnavailable(TrackingError):
    """The MLflow tracking store cannot be reached or opened (raised before any training starts)."""


class BadStoreUrl(TrackingError):
    """A store URL that cannot work as given: not a URL, an unknown kind of database, no driver for it, no
    such database or user. The CLI treats it as a usage error (exit 2)."""


class NoFinishedTrial(TrackingError, LookupError):
    """A selection asked for the best trial of an experiment that has no finished trial with that metric."""
