"""Spec errors written for people: :class:`SpecError`, :class:`Problems` (collect every mistake, then raise
them together), and the helpers that name a field path and show a value."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

MAX_LISTED = 20  # mistakes printed one per line; past that, a count


class SpecError(ValueError):
    """A mistake in a spec. ``path`` is the dotted field path (``search.beta1.high``; ``""`` for the file).

    ``str(error)`` is ``"<path>: <message>"``, one line, ready to print for a person. An error standing for
    several mistakes (:meth:`of`) keeps them in ``errors`` and prints one line each under a count; its
    ``path`` and ``message`` are the first one's. A single mistake's ``errors`` is ``[itself]``.
    """

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        self.errors: list[SpecError] = [self]
        super().__init__(f"{path}: {message}" if path else message)

    @classmethod
    def of(cls, errors: Sequence[SpecError]) -> SpecError:
        """One error for ``errors`` (not empty): the error itself when there is one, else a group of them."""
        flat = [e for error in errors for e in error.errors]
        if len(flat) == 1:
            return flat[0]
        group = cls(flat[0].path, flat[0].message)
        group.errors = flat
        lines = [f"  {e}" for e in flat[:MAX_LISTED]]
        if len(flat) > MAX_LISTED:
            lines.append(f"  … and {len(flat) - MAX_LISTED} more")
        group.args = (f"{len(flat)} mistakes in the spec:\n" + "\n".join(lines),)
        return group

    def under(self, *prefix: object) -> SpecError:
        """The same mistake(s) with ``prefix`` put in front of each path (``("search", "lr")`` + ``"low"``)."""
        return SpecError.of([SpecError(_join(*prefix, e.path), e.message) for e in self.errors])


class Problems:
    """Collects mistakes so that a check reports all of them, not only the first::

    problems = Problems()
    for name, entry in search.items():
        with problems.collect(name):  # a SpecError raised inside is kept, with `name` before its path
            check(name, entry)
    problems.raise_any()
    """

    def __init__(self) -> None:
        self.errors: list[SpecError] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append(SpecError(path, message))

    @contextmanager
    def collect(self, *prefix: object) -> Iterator[None]:
        try:
            yield
        except SpecError as e:
            self.errors += e.under(*prefix).errors

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_any(self) -> None:
        if self.errors:
            raise SpecError.of(self.errors)


def _join(*parts: object) -> str:
    """``("search", "lr", "choices", 1)`` → ``"search.lr.choices[1]"``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p:
            out += p if not out or p.startswith("[") else f".{p}"
    return out


SHOW_WIDTH = 60


def _show(value: object, width: int = SHOW_WIDTH) -> str:
    """A value as a person would write it in YAML (strings quoted), cut to one short line.

    The walk stops once ``width`` characters are written, so a huge or self-referencing value (a YAML alias
    bomb, ``a = [a]``) costs no more than a short one.
    """
    out: list[str] = []
    size = 0
    for token in _tokens(value, depth=0):
        out.append(token)
        size += len(token)
        if size > width:
            break
    text = "".join(out)
    return text if len(text) <= width else text[: width - 3] + "..."


def _tokens(value: object, depth: int) -> Iterator[str]:
    """The pieces of ``_show``'s text, lazily, so that the caller can stop early; nesting is cut at 20."""
    if depth > 20:
        yield "..."
    elif isinstance(value, str):
        yield repr(value[: SHOW_WIDTH + 1])  # enough to fill the line; the rest would be cut anyway
    elif isinstance(value, list | tuple):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _tokens(item, depth + 1)
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            if i:
                yield ", "
            yield from _tokens(k, depth + 1)
            yield ": "
            yield from _tokens(v, depth + 1)
        yield "}"
    else:
        yield json.dumps(value, default=str)
