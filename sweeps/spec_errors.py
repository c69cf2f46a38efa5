"""Spec errors written for people: :class:`SpecError`, and the helpers that name a field path and show a value."""

from __future__ import annotations

import json


class SpecError(ValueError):
    """A mistake in a spec. ``path`` is the dotted field path (``search.beta1.high``; ``""`` for the file).

    ``str(error)`` is ``"<path>: <message>"``, one line, ready to print for a person.
    """

    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}" if path else message)


def _join(*parts: object) -> str:
    """``("search", "lr", "choices", 1)`` → ``"search.lr.choices[1]"``."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p:
            out += p if not out or p.startswith("[") else f".{p}"
    return out


def _show(value: object) -> str:
    """A value as a person would write it in YAML (strings quoted), cut to one short line."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(map(_show, value)) + "]"
    else:
        text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
