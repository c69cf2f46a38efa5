"""Errors the CLI turns into exit codes. Kept import-free so that reporting a mistake stays instant."""

from __future__ import annotations


class SweepError(RuntimeError):
    """A sweep cannot start or continue; the message says why and what to do (exit 2)."""


class UsageError(Exception):
    """A command-line mistake found after parsing (exit 2)."""


class Interrupted(BaseException):
    """Raised in the main thread by the SIGTERM handler; SIGINT raises KeyboardInterrupt."""

    def __init__(self, signal_name: str, exit_code: int):
        self.signal_name, self.exit_code = signal_name, exit_code
        super().__init__(signal_name)
