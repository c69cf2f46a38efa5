"""Reading a spec: YAML/TOML files or text, ``--set key.path=value`` overrides, and pydantic's errors
turned into one :class:`~sweeps.spec_errors.SpecError` each.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import ValidationError

from sweeps.spec_errors import SpecError, _join, _show

# ---------------------------------------------------------------------------------------------------------
# Reading files and applying overrides.


class _Loader(yaml.SafeLoader):
    """YAML 1.1 plus ``1e-4`` read as a float (YAML 1.1 reads it as a string), and duplicate keys rejected."""

    yaml_implicit_resolvers: ClassVar[dict] = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = []
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.append(key)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def _parse_yaml(text: str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line
        why = f" ({e.context} on line {e.context_mark.line + 1})" if context else ""
        raise SpecError("", f"{origin}{where}: invalid YAML: {e.problem or e.context}{why}") from None
    except yaml.YAMLError as e:
        raise SpecError("", f"{origin}: invalid YAML: {e}") from None


def _parse_toml(text: str, origin: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError("", f"{origin}: invalid TOML: {e}") from None


_PARSERS: dict[str, Callable[[str, str], Any]] = {".yaml": _parse_yaml, ".yml": _parse_yaml, ".toml": _parse_toml}


def _read(source: str | os.PathLike | Mapping) -> dict:
    """The raw spec data from a file path, YAML text, or an already parsed mapping."""
    if isinstance(source, Mapping):
        data, origin = copy.deepcopy(dict(source)), "spec"
    elif isinstance(source, os.PathLike) or (
        "\n" not in source and (Path(source).suffix.lower() in _PARSERS or os.path.isfile(source))
    ):
        path = Path(source)
        origin = str(path)
        if path.suffix.lower() not in _PARSERS:
            raise SpecError("", f"{origin}: unsupported file type {path.suffix!r}; use .yaml, .yml or .toml")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError("", f"{origin}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError("", f"{origin}: cannot be read: {e}") from None
        data = _PARSERS[path.suffix.lower()](text, origin)
    else:
        data, origin = _parse_yaml(source, "spec text"), "spec text"
        if isinstance(data, str) and "\n" not in source:  # a path with a typo, most likely
            raise SpecError("", f"{source}: no such file (a spec file ends in .yaml, .yml or .toml)")
    if data is None or data == {}:
        raise SpecError("", f"{origin}: the spec is empty")
    if not isinstance(data, dict):
        raise SpecError(
            "", f"{origin}: a spec is a mapping of keys (name, seed, trials, …), not a {type(data).__name__}"
        )
    return data


_FORM_OF = {"choices": "choices", "value": "value", **dict.fromkeys(("low", "high", "log", "step"), "range")}


def _apply_override(data: dict, item: str) -> str:
    """Apply one ``key.path=value`` (value read as YAML) to the raw data; returns the key path.

    Setting one form of a search entry (``search.lr.value=0.01``) drops the entry's other forms, so an
    override can fix a searched parameter or search a fixed one; its ``when`` stays.
    """
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise SpecError("", f"--set {item!r}: expected key.path=value, e.g. --set training.epochs=2")
    value = _parse_yaml(raw, f"--set {item!r}")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part, {})
        if i == 0 and part in ("dataset", "sampler", "pruner") and isinstance(child, str):
            child = {"name": child}
        if i == 1 and parts[0] == "search" and not isinstance(child, dict | list):
            child = {"value": child}
        if not isinstance(child, dict):
            raise SpecError(_join(*parts[: i + 1]), f"is {_show(child)}, not a mapping (set by --set {item})")
        node[part] = child
        node = child
    last = parts[-1]
    if len(parts) == 3 and parts[0] == "search" and last in _FORM_OF:
        for k in [k for k in node if k in _FORM_OF and _FORM_OF[k] != _FORM_OF[last]]:
            del node[k]
    node[last] = value
    return ".".join(parts)


def _first_error(exc: ValidationError) -> SpecError:
    """Pydantic's first error as one SpecError: field path, bad value, and what is allowed."""
    err = exc.errors(include_url=False)[0]
    loc, kind, ctx = err["loc"], err["type"], err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, SpecError):
        return SpecError(_join(*loc, cause.path), cause.message)
    path = _join(*loc)
    name = next((p for p in reversed(loc) if isinstance(p, str)), "value")
    if kind == "missing":
        return SpecError(path, "missing; this key is required")
    if kind == "extra_forbidden":
        return SpecError(path, "unknown key")
    if kind == "literal_error":
        allowed = f"{name} must be {ctx['expected']}"
    elif kind == "string_pattern_mismatch":
        allowed = f"{name} must be letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit)"
    elif kind in _PYDANTIC_WORDS:
        allowed = f"{name} must be {_PYDANTIC_WORDS[kind]}"
    else:
        allowed = err["msg"]
    return SpecError(path, f"{_show(err['input'])} is not allowed: {allowed}")


_PYDANTIC_WORDS = {
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "an integer"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    "string_type": "a string",
    "list_type": "a list",
    **dict.fromkeys(("dict_type", "model_type", "model_attributes_type"), "a mapping"),
}


def _overlaps(path: str, key: str) -> bool:
    """Whether one dotted path lies within the other (``search.lr.low`` and ``search.lr``)."""
    a, b = sorted((path, key), key=len)
    return b == a or b.startswith((a + ".", a + "["))
