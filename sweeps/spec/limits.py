"""How big a sweep may be: bounds checked with the spec, so that an absurd size (a trillion trials, ten
billion samples, a layer of 10⁸ units) is refused in one line before any store is written, instead of
failing later with a MemoryError half-way through creating them.

The memory a trial needs is estimated from the spec alone, in bytes, with ``s`` the bytes of one number in
the model's dtype (4 or 8)::

    data    = n_samples · (n_features + n_outputs) · 8 · 3        # scikit-learn's float64 arrays, the split,
                                                                  # and its standardised copy
    network = P · s · 4  +  rows · Σ widths[1:] · s · 2           # parameters, gradients and two moments;
                                                                  # activations and their gradients
    P = Σₗ (widthₗ₋₁ + 1) · widthₗ,  widths = [n_features, *hidden, n_outputs],  rows = max(batch, n_val)

Each is refused when it exceeds this machine's physical memory (``os.sysconf``), or 16 GiB where the
system does not say.
"""

from __future__ import annotations

import itertools
import os
from typing import TYPE_CHECKING

from sweeps.spec.errors import SpecError, _show
from sweeps.spec.search import _values

if TYPE_CHECKING:
    from sweeps.spec import Spec

MAX_TRIALS = 1_000_000  # far more than any sweep runs; Optuna's storages slow down long before
FALLBACK_MEMORY = 16 * 2**30
BUNDLED_WIDTH = 64  # features (and at most 10 classes) of the widest bundled dataset, digits


def machine_memory() -> tuple[int, str]:
    """(bytes, where the number comes from): physical memory from ``os.sysconf``, else a fixed 16 GiB."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine's memory"
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY, "the fixed cap used where the system does not report its memory"


def _gib(n_bytes: float) -> str:
    gib = n_bytes / 2**30
    return f"{gib:,.1f} GiB" if gib < 1e6 else f"{gib:.1e} GiB"


def _count(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"{n:.1e}"


def check_memory(spec: Spec) -> list[SpecError]:
    """The mistake of a spec whose data or network would not fit in memory (see the module's formulas)."""
    limit, source = machine_memory()
    beyond = f"more than {source} ({_gib(limit)})"
    dataset, params = spec.dataset, spec.dataset.params
    if dataset.size is None:  # a table: its size is known once it is read, and reading it is the check
        return []
    generated = "n_samples" in params
    n_features = params.get("n_features", 2) if generated else BUNDLED_WIDTH
    n_outputs = max(params.get("n_classes", 1), 1 if generated else 10)

    data = dataset.size * (n_features + n_outputs) * 8 * 3
    if data > limit:  # (and then the network would be blamed for the same rows again)
        sizes = {k: params[k] for k in ("n_samples", "n_features", "n_classes") if k in params}
        blame = max(sizes, key=sizes.__getitem__)  # the largest factor of the product
        return [
            SpecError(
                f"dataset.{blame}",
                f"{params[blame]} is not allowed: the {dataset.name} dataset would take ~{_gib(data)} as float64 "
                f"arrays (n_samples × (n_features + outputs) × 8 bytes, 3 copies), {beyond}",
            )
        ]

    widths = [n_features, *spec.model.hidden, n_outputs]
    size = 4 if spec.model.dtype == "float32" else 8
    n_params = sum((a + 1) * b for a, b in itertools.pairwise(widths))
    rows = max([dataset.size - dataset.n_train, *(v for _, v in _values(spec.search["batch_size"]))])
    network = n_params * size * 4 + rows * sum(widths[1:]) * size * 2
    if network > limit:
        return [
            SpecError(
                "model.hidden",
                f"{_show(spec.model.hidden)} is not allowed: the network would take ~{_gib(network)} "
                f"({_count(n_params)} parameters with their gradients and optimizer moments, and the activations "
                f"of {_count(rows)} rows), {beyond}",
            )
        ]
    return []
