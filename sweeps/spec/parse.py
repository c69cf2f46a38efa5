"""Reading a spec: YAML/TOML files or text, ``--set key.path=value`` overrides, and pydantic's errors
turned into one :class:`~sweeps.spec.errors.SpecError` each, all of them reported together.
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

from sweeps.spec.errors import SpecError, _join, _show

# ---------------------------------------------------------------------------------------------------------
# Reading files and applying overrides.


# A spec is a page of settings. These bounds keep a hostile or broken file from hanging the validator: the
# pure-Python YAML reader takes about a second for 64 KiB, and aliases (`*a`) can make a small file stand for a
# huge tree ("billion laughs") that every later walk would expand.
MAX_SPEC_BYTES = 64 * 1024
MAX_SPEC_VALUES = 100_000  # scalars, lists and mappings, counting each alias as the tree it stands for


class _Loader(yaml.SafeLoader):
    """YAML 1.1 plus ``1e-4`` read as a float (YAML 1.1 reads it as a string), and duplicate keys rejected."""

    yaml_implicit_resolvers: ClassVar[dict] = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()  # a set, not a list: a mapping of n keys costs O(n), not O(n²)
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeConstructor says so below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789.")
)


def _expanded_size(root: yaml.Node, origin: str) -> int:
    """How many values the document holds once every alias is expanded; a SpecError beyond MAX_SPEC_VALUES.

    Each node is sized once (aliases share their node), so this costs O(nodes) however large the expansion.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the current node's ancestors: meeting one again is an alias inside itself
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children = _children(node)
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = size = 1 + sum(sizes[id(c)] for c in children)
            if size > MAX_SPEC_VALUES:
                mark = node.start_mark
                raise SpecError(
                    "",
                    f"{origin}, line {mark.line + 1}: too large: this value expands to more than "
                    f"{MAX_SPEC_VALUES:,} values (YAML aliases repeat what they refer to); a spec holds far fewer",
                )
            continue
        if id(node) in sizes:
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                mark = child.start_mark
                where = f"{origin}, line {mark.line + 1}"
                raise SpecError("", f"{where}: invalid YAML: an alias refers to a value that contains it")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _parse_yaml(text: str, origin: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, origin)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line
        why = f" ({e.context} on line {e.context_mark.line + 1})" if context else ""
        raise SpecError("", f"{origin}{where}: invalid YAML: {e.problem or e.context}{why}") from None
    except yaml.YAMLError as e:
        raise SpecError("", f"{origin}: invalid YAML: {e}") from None
    finally:
        loader.dispose()


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
            with path.open("rb") as f:
                raw = f.read(MAX_SPEC_BYTES + 1)
            _check_length(len(raw), origin)
            text = raw.decode("utf-8")
        except FileNotFoundError:
            raise SpecError("", f"{origin}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError("", f"{origin}: cannot be read: {e}") from None
        data = _PARSERS[path.suffix.lower()](text, origin)
    else:
        _check_length(len(source.encode()), "spec text")
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


def _check_length(n_bytes: int, origin: str) -> None:
    if n_bytes > MAX_SPEC_BYTES:
        raise SpecError("", f"{origin}: too large: a spec is at most {MAX_SPEC_BYTES // 1024} KiB (a page of settings)")


_FORM_OF = {"choices": "choices", "value": "value", **dict.fromkeys(("low", "high", "log", "step"), "range")}
_NAMED_BLOCKS = ("dataset", "sampler", "pruner")  # a bare string is shorthand for {name: …}


def _apply_override(data: dict, item: str, shown: str) -> str:
    """Apply one override to the raw data and return its key path; ``shown`` is how the user gave it.

    ``key.path=value`` sets a key (the value read as YAML); ``~key.path`` deletes one (as in Hydra), so that
    a default applies again or a search entry goes away (``~search.beta1``). Setting one form of a search
    entry (``search.lr.value=0.01``) drops the entry's other forms, so an override can fix a searched
    parameter or search a fixed one; its ``when`` stays.
    """
    delete = item.startswith("~")
    key, sep, raw = item.removeprefix("~").partition("=")
    parts = key.strip().split(".")
    if delete and sep:
        raise SpecError("", f"{shown}: ~key.path deletes a key and takes no value, e.g. --set '~search.beta1'")
    if not (sep or delete) or not all(parts):
        raise SpecError(
            "", f"{shown}: expected key.path=value or ~key.path, e.g. --set training.epochs=2 or --set '~search.beta1'"
        )
    key, last = ".".join(parts), parts[-1]
    node = _parent(data, parts, shown, create=not delete)
    if delete:
        if node is None or last not in node:
            raise SpecError(key, f"not in the spec, so there is nothing to delete (set by {shown})")
        del node[last]
        return key
    _check_length(len(raw.encode()), shown)
    value = _parse_yaml(raw, shown)
    if len(parts) == 3 and parts[0] == "search" and last in _FORM_OF:
        for k in [k for k in node if k in _FORM_OF and _FORM_OF[k] != _FORM_OF[last]]:
            del node[k]
    node[last] = value
    return key


def _parent(data: dict, parts: list[str], shown: str, create: bool) -> dict | None:
    """The mapping that holds ``parts[-1]``, with shorthands spelled out on the way (``sampler: tpe`` becomes
    ``{name: tpe}``, ``search.lr: 0.01`` becomes ``{value: 0.01}``); missing mappings are made when
    ``create``, else the answer is None."""
    node = data
    for i, part in enumerate(parts[:-1]):
        if part not in node and not create:
            return None
        child = node.get(part, {})
        if i == 0 and part in _NAMED_BLOCKS and isinstance(child, str):
            child = {"name": child}
        if i == 1 and parts[0] == "search" and not isinstance(child, dict | list):
            child = {"value": child}
        if not isinstance(child, dict):
            raise SpecError(_join(*parts[: i + 1]), f"is {_show(child)}, not a mapping (set by {shown})")
        node[part] = child
        node = child
    return node


def _errors(exc: ValidationError) -> list[SpecError]:
    """Every one of pydantic's errors as SpecErrors: field path, bad value, and what is allowed."""
    return [e for err in exc.errors(include_url=False) for e in _from_pydantic(err).errors]


def _from_pydantic(err: Mapping[str, Any]) -> SpecError:
    loc, kind, ctx = err["loc"], err["type"], err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, SpecError):
        return cause.under(*loc)
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
