"""The held-setting policy of ``sweeps batch-size``: every hyperparameter but the batch size held fixed, at the
spec's fixed values or at the best setting of the spec's sweep."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from sweeps.errors import SweepError
from sweeps.spec import Entry, Spec, SpecError
from sweeps.study.runner import load_result


def held_setting(
    spec: Spec, batch_size: int, best: Mapping[str, object] | None = None, free: Collection[str] = ()
) -> dict[str, object]:
    """Every hyperparameter of a run with ``batch_size``; the others held fixed.

    With ``best`` (the best setting of the spec's sweep) those values are used. Otherwise each entry active
    for this batch size must be fixed in the spec; a searched one is a :class:`SpecError` that names it and
    suggests a value, since any default here would quietly decide the comparison. ``free`` names entries
    left out, to be set per size by the caller (``lr`` under ``--lr-rule tuned``); what depends on them
    counts as searched.
    """
    if best is not None:
        return {"batch_size": batch_size, **{k: v for k, v in best.items() if k not in ("batch_size", *free)}}
    hp: dict[str, object] = {"batch_size": batch_size}
    searched: list[str] = []
    for name in spec.search_order():
        entry = spec.search[name]
        if name == "batch_size" or name in free:
            continue
        if any(dependency in searched or dependency in free for dependency in entry.when or {}):
            searched.append(name)  # might exist once its condition's parameter is fixed: say so now
        elif entry.is_active(hp):
            if entry.kind == "fixed":
                hp[name] = entry.value
            else:
                searched.append(name)
    if searched:
        first = searched[0]
        raise SpecError(
            "search",
            f"{', '.join(searched)} {'is' if len(searched) == 1 else 'are'} searched, but batch-size holds every "
            f"hyperparameter except batch_size fixed; fix {'it' if len(searched) == 1 else 'them'} "
            f"(e.g. --set search.{first}.value={_example_value(spec.search[first])}) "
            "or pass --from-best to use the best setting of the spec's sweep",
        )
    return hp


def _example_value(entry: Entry) -> object:
    """A value to suggest for a searched entry: its first choice, or the middle of its range."""
    if entry.kind == "categorical":
        return entry.choices[0]
    if entry.kind == "int":
        return (entry.low + entry.high) // 2
    middle = math.sqrt(entry.low * entry.high) if entry.log else (entry.low + entry.high) / 2
    return float(f"{middle:.2g}")


def best_setting(spec: Spec, workdir, storage, tracking_uri) -> dict[str, object]:
    result = load_result(spec, workdir=workdir, storage=storage, tracking_uri=tracking_uri)
    if result.best_params is None:
        raise SweepError(f"the sweep {spec.name!r} has no completed trial yet, so --from-best has nothing to use")
    return dict(result.best_params)
