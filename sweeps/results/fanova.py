"""fANOVA importances on a small random forest grown here, in NumPy: no scikit-learn.

The method is Hutter, Hoos and Leyton-Brown's (*An Efficient Approach for Assessing Hyperparameter
Importance*, ICML 2014), as Optuna's ``FanovaImportanceEvaluator`` applies it: a random forest of regression
trees is fitted to the trials (each tree on a bootstrap sample, every column considered at every split); each
tree is a piecewise-constant function on the box of the search space, and a parameter's importance in it is
the share of the function's variance (uniform measure on the box) that its marginal explains; the
importance is the mean share over the trees whose variance is not zero. The search space is encoded as
Optuna encodes it there: a number as itself between its distribution's bounds (not on a log scale), a
categorical as one column per choice between 0 and 1 (one-hot), its columns assessed together.

Why not Optuna's own: its forest comes from scikit-learn, whose import alone (SciPy with it) costs ~1 s of
CPU in every process that draws a report, more than the report's fits; and fitting the point estimate and
every bootstrap resample as one batch of trees, level by level, costs a few NumPy calls per tree level
instead of a forest object per fit. ``tests/sweeps/test_fanova.py`` checks the variance decomposition
against Optuna's on the same trees, and the trees against scikit-learn's on the same samples.

Two formulas do the work. A tree with leaves *l* (boxes *B_l*, values *v_l*) has mean ``μ = Σ w_l v_l``
and variance ``V = Σ w_l (v_l − μ)²``, where ``w_l`` is the box's share of the search space's volume. The
marginal of a column group *U*, less μ, is ``f_U(x_U) − μ = Σ_l a_l · 1[x_U ∈ B_l|U]`` with ``a_l = (v_l
− μ) ·`` (the box's share of the other columns' volume), so its variance is ``V_U = aᵀ M a``, ``M[l, k]``
the share of *U*'s volume where the boxes *B_l|U* and *B_k|U* overlap (computed by a sweep along the
column for a single column, by merging equal boxes for a categorical's columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Bounds on the arrays handled at once: the samples × columns of the trees grown together, and the entries
# of the leaves' overlap matrices. A table of 13 fits peaked at 59 MB for 100 trials and 75 MB for 2000
# (8 parameters; 18 and 42 MB with a quarter of it, 15-25 % slower).
_SAMPLES = 1_000_000
_CHUNK = 2_000_000
# Splits whose reductions of a node's squared error differ by less than this share of it are ties.
_TIE = 1e-9


@dataclass(frozen=True)
class Encoded:
    """Observations as the forest sees them: ``X`` (rows × columns), the columns' ``bounds`` (columns × 2),
    and each parameter's ``groups`` of columns (one for a number, one per choice for a categorical)."""

    X: np.ndarray
    bounds: np.ndarray
    groups: list[np.ndarray]


def encode(params: list[dict], distributions: dict, names: list[str]) -> Encoded:
    """The ``names`` of every row of ``params`` (a dict per observation, external values), encoded with
    their ``distributions`` (name -> Optuna distribution)."""
    from optuna.distributions import CategoricalDistribution

    columns, bounds, groups = [], [], []
    for name in names:
        dist = distributions[name]
        internal = np.array([dist.to_internal_repr(p[name]) for p in params], dtype=np.float64)
        start = len(columns)
        if isinstance(dist, CategoricalDistribution):
            for choice in range(len(dist.choices)):
                columns.append((internal == choice).astype(np.float64))
                bounds.append((0.0, 1.0))
        else:
            columns.append(internal)
            bounds.append((float(dist.low), float(dist.high)))
        groups.append(np.arange(start, len(columns)))
    X = np.column_stack(columns) if columns else np.empty((len(params), 0))
    return Encoded(X, np.array(bounds, dtype=np.float64).reshape(-1, 2), groups)


@dataclass(frozen=True)
class Leaves:
    """The leaves of a batch of trees, padded to the largest tree: boxes ``lo``/``hi`` (trees × leaves ×
    columns) and ``value`` (trees × leaves). Padding leaves are empty boxes (``lo == hi``) of value 0."""

    lo: np.ndarray
    hi: np.ndarray
    value: np.ndarray


def grow(
    X: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
    bounds: np.ndarray,
    priority: np.ndarray,
    max_depth: int,
) -> Leaves:
    """Regression trees (squared error, every column considered at every split, a leaf may hold one row), one
    per line of ``rows``: the row indices of ``X``/``y`` that tree is fitted to (repeats count as weights,
    as a bootstrap sample's do). Grown level by level, all trees at once.

    A node splits at the threshold that most reduces its squared error, half-way between two consecutive
    distinct values of a column, left taking ``x <= threshold``; among splits as good to round-off, the
    column of highest ``priority`` (trees × columns) then the lowest threshold. A node stays a leaf at
    ``max_depth``, with fewer than two distinct rows, when all its values are equal or when no column varies
    in it. This is how scikit-learn's ``DecisionTreeRegressor`` grows a tree with ``max_features=None``
    (tested row for row), but for three edges: it takes column values within 1e-7 of each other as equal
    and stops at a variance below 2.2e-16 (so a column searched between 1e-9 and 1e-7 on a linear scale, or
    a target that varies by 1e-8, cannot be split there; here they can), and it breaks ties by a column
    order drawn at every node, here once per tree."""
    n_trees = len(rows)
    n_cols = X.shape[1]
    rank = np.empty(X.shape, dtype=np.int64)  # dense ranks: a split falls between two distinct values
    for d in range(n_cols):
        rank[:, d] = np.unique(X[:, d], return_inverse=True)[1]
    # Each tree's distinct rows, with how often its sample holds them as weights (a bootstrap sample of n
    # rows holds ~63 % of them): the samples of every tree, tree after tree.
    n_x = max(len(X), 1)
    distinct, weight = np.unique(np.arange(n_trees)[:, None] * n_x + rows, return_counts=True)
    src, node, weight = distinct % n_x, distinct // n_x, weight.astype(np.float64)
    # Per column, the samples ordered by node, then by value: the nodes' blocks lie at the same rows in every
    # column. Sorted once; each level's children keep it by a stable partition of their parent's block.
    order = np.argsort(node[:, None] * (rank.max(initial=0) + 1) + rank[src], axis=0, kind="stable")
    box_lo = np.repeat(bounds[None, :, 0], n_trees, axis=0)
    box_hi = np.repeat(bounds[None, :, 1], n_trees, axis=0)
    node_tree = np.arange(n_trees)
    leaves: list[tuple[np.ndarray, ...]] = []  # (tree, lo, hi, value) of the leaves found at each level

    for depth in range(max_depth + 1):
        k = len(node_tree)
        counts = np.bincount(node, minlength=k)  # distinct rows
        mass = np.bincount(node, weights=weight, minlength=k)
        mean = np.bincount(node, weights=weight * y[src], minlength=k) / np.where(mass > 0, mass, 1.0)
        split = np.zeros(k, dtype=bool)
        if depth < max_depth and n_cols:
            col, threshold, split = _best_splits(
                X, y, rank, src, weight, order, counts, mass, mean, priority[node_tree]
            )
        done = ~split & (counts > 0)
        leaves.append((node_tree[done], box_lo[done], box_hi[done], mean[done]))
        if not split.any():
            break
        # Children: the j-th splitting node's left child is 2j, its right 2j + 1.
        parent = np.flatnonzero(split)
        child_of = np.full(k, -1)
        child_of[parent] = 2 * np.arange(len(parent))
        right = np.zeros(len(src), dtype=bool)
        keep = split[node]
        right[keep] = X[src[keep], col[node[keep]]] > threshold[node[keep]]
        order = _partitioned(order, keep, right, counts, split)
        src, weight, node = src[keep], weight[keep], child_of[node[keep]] + right[keep]
        lo = np.repeat(box_lo[parent], 2, axis=0)
        hi = np.repeat(box_hi[parent], 2, axis=0)
        pairs = np.arange(len(parent))
        hi[2 * pairs, col[parent]] = threshold[parent]
        lo[2 * pairs + 1, col[parent]] = threshold[parent]
        box_lo, box_hi, node_tree = lo, hi, np.repeat(node_tree[parent], 2)
    return _padded(leaves, n_trees, n_cols)


def _partitioned(
    order: np.ndarray,
    keep: np.ndarray,
    right: np.ndarray,
    counts: np.ndarray,
    split: np.ndarray,
):
    """The next level's ``order`` (:func:`grow`): the blocks of the nodes that split, each partitioned into
    its left child's samples then its right child's, both in the order they had; sample indices renumbered
    to the samples kept. No sort: a row's new place is its block's start, plus the left child's size if it
    goes right, plus how many of its side come before it in the block."""
    new_index = np.cumsum(keep) - 1
    block = np.repeat(np.arange(len(counts)), counts)
    kept = order[split[block]]  # whole blocks are kept or dropped: the same rows in every column
    sizes = counts[split]
    start = np.repeat(np.cumsum(sizes) - sizes, sizes)[:, None]
    goes_right = right[kept]
    lefts = np.cumsum(~goes_right, axis=0)
    before = np.where(start > 0, lefts[np.maximum(start[:, 0] - 1, 0)], 0)
    left_upto = lefts - before  # the block's left samples up to this row, this one included
    n_left = left_upto[np.repeat(np.cumsum(sizes) - 1, sizes)][:, :1]  # per block, the same in every column
    row = np.arange(len(kept))[:, None]
    place = start + np.where(goes_right, n_left + (row - start) - left_upto, left_upto - 1)
    out = np.empty_like(kept)
    np.put_along_axis(out, place, new_index[kept], axis=0)
    return out


def _best_splits(X, y, rank, src, weight, order, counts, mass, mean, priority):
    """(column, threshold, splits) of every node of a level: the best split of each (:func:`grow`) and
    whether it has one."""
    k = len(counts)
    n_rows, n_cols = order.shape
    block = np.repeat(np.arange(k), counts)
    # Each node's values centred on its mean: the running sums below cross the nodes' blocks, and centred
    # they return to ~0 at the end of each, so no node's sums carry another's magnitude (nor its round-off).
    ws = weight[order]
    ys = (y[src[order]] - mean[block][:, None]) * ws
    rs = rank[src[order], np.arange(n_cols)]
    starts = np.cumsum(counts) - counts
    last = starts + counts - 1
    cum = np.cumsum(ys, axis=0)
    before = np.where((starts > 0)[:, None], cum[np.maximum(starts - 1, 0)], 0.0)
    cum_w = np.cumsum(ws, axis=0)
    before_w = np.where((starts > 0)[:, None], cum_w[np.maximum(starts - 1, 0)], 0.0)
    valid = np.zeros((n_rows, n_cols), dtype=bool)
    valid[:-1] = (np.arange(n_rows - 1) < last[block[:-1]])[:, None] & (rs[1:] > rs[:-1])
    # Scored only where a split can fall: between two distinct values of a column within a node (a one-hot
    # column has one such place a node, a number one per distinct value).
    r, c = np.nonzero(valid)  # row by row: their nodes in order
    b = block[r]
    left_sum = cum[r, c] - before[b, c]
    right_sum = cum[last[b], c] - before[b, c] - left_sum
    left_n = cum_w[r, c] - before_w[b, c]
    # How much the split lowers the node's squared error: the best split maximises it.
    score = left_sum**2 / left_n + right_sum**2 / (mass[b] - left_n)
    # A node whose values are all equal is pure: no split (scikit-learn stops at zero impurity too).
    nonempty = np.flatnonzero(counts)
    spread = np.zeros(k)
    yn = y[src[order[:, 0]]]
    spread[nonempty] = np.maximum.reduceat(yn, starts[nonempty]) - np.minimum.reduceat(yn, starts[nonempty])
    best = np.full(k, -np.inf)
    scored = np.bincount(b, minlength=k) > 0
    if len(b):
        best[scored] = np.maximum.reduceat(score, np.searchsorted(b, np.flatnonzero(scored)))
    splits = (counts >= 2) & (spread > 0) & np.isfinite(best)
    # Splits within round-off of the best are equally good (two columns that cut the rows alike give the
    # same reduction, summed in another order): the column of highest priority, then the lowest threshold.
    error = np.bincount(block, weights=ys[:, 0] ** 2 / ws[:, 0], minlength=k)
    near = best - _TIE * error
    pick = (score >= near[b]) & splits[b]
    r, c, b = r[pick], c[pick], b[pick]
    chosen = np.lexsort((r, -priority[b, c], b))
    first = chosen[np.unique(b[chosen], return_index=True)[1]]
    nodes, r, c = b[first], r[first], c[first]
    col = np.zeros(k, dtype=np.int64)
    threshold = np.zeros(k)
    low = X[src[order[r, c]], c]
    high = X[src[order[r + 1, c]], c]
    mid = low / 2.0 + high / 2.0  # as scikit-learn computes it, and never the upper value itself
    col[nodes] = c
    threshold[nodes] = np.where(mid == high, low, mid)
    return col, threshold, splits


def _padded(leaves: list[tuple[np.ndarray, ...]], n_trees: int, n_cols: int) -> Leaves:
    tree = np.concatenate([t for t, *_ in leaves])
    lo = np.concatenate([lo for _, lo, _, _ in leaves])
    hi = np.concatenate([hi for _, _, hi, _ in leaves])
    value = np.concatenate([v for *_, v in leaves])
    order = np.argsort(tree, kind="stable")
    tree, lo, hi, value = tree[order], lo[order], hi[order], value[order]
    per_tree = np.bincount(tree, minlength=n_trees)
    slot = np.arange(len(tree)) - (np.cumsum(per_tree) - per_tree)[tree]
    width = max(int(per_tree.max(initial=0)), 1)
    out_lo = np.zeros((n_trees, width, n_cols))
    out_hi = np.zeros((n_trees, width, n_cols))
    out_value = np.zeros((n_trees, width))
    out_lo[tree, slot], out_hi[tree, slot], out_value[tree, slot] = lo, hi, value
    return Leaves(out_lo, out_hi, out_value)


def variance_shares(leaves: Leaves, bounds: np.ndarray, groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(shares, variances): each group's marginal variance over each tree's variance (trees × groups; NaN
    for a tree of zero variance) and the trees' variances, on the uniform measure of the ``bounds`` box."""
    width = bounds[:, 1] - bounds[:, 0]
    frac = np.clip(leaves.hi - leaves.lo, 0.0, None) / width  # each leaf's share of each column's range
    weight = frac.prod(axis=2)
    mean = (weight * leaves.value).sum(axis=1)
    # Centred on the tree's mean first (padding leaves at 0): the marginal variances are then integrals of
    # squares, with no mean² to subtract; a target of large mean and small spread keeps its precision.
    centred = np.where((leaves.hi > leaves.lo).all(axis=2), leaves.value - mean[:, None], 0.0)
    variance = (weight * centred**2).sum(axis=1)
    shares = np.empty((len(mean), len(groups)))
    for g, cols in enumerate(groups):
        others = np.setdiff1d(np.arange(leaves.lo.shape[2]), cols)
        a = centred * frac[:, :, others].prod(axis=2)
        lo, hi = leaves.lo[:, :, cols], leaves.hi[:, :, cols]
        square = _square_1d(lo[:, :, 0], hi[:, :, 0], a) if len(cols) == 1 else _square_boxes(lo, hi, a)
        shares[:, g] = np.clip(square / width[cols].prod(), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(variance[:, None] > 0, shares / variance[:, None], np.nan), variance


def _square_1d(lo: np.ndarray, hi: np.ndarray, a: np.ndarray) -> np.ndarray:
    """∫ (Σ_l a_l · 1[lo_l < x <= hi_l])² dx of each tree (trees × leaves): the marginal of one column is a
    step function; swept along the column, O(leaves · log leaves)."""
    pos = np.concatenate([lo, hi], axis=1)
    step = np.concatenate([a, -a], axis=1)
    order = np.argsort(pos, axis=1, kind="stable")
    pos, step = (
        np.take_along_axis(pos, order, axis=1),
        np.take_along_axis(step, order, axis=1),
    )
    level = np.cumsum(step, axis=1)[:, :-1]
    return (level**2 * np.diff(pos, axis=1)).sum(axis=1)


def _square_boxes(lo: np.ndarray, hi: np.ndarray, a: np.ndarray) -> np.ndarray:
    """∫ (Σ_l a_l · 1[x ∈ box_l])² dx of each tree (trees × leaves × columns): Σ_lk a_l a_k |box_l ∩ box_k|,
    the leaves with the same box merged first (a categorical's one-hot columns give few distinct boxes)."""
    n_trees, n_leaves, n_cols = lo.shape
    key, first, which = _box_keys(
        lo.reshape(-1, n_cols),
        hi.reshape(-1, n_cols),
        np.repeat(np.arange(n_trees), n_leaves),
    )
    weight = np.bincount(which, weights=a.ravel(), minlength=len(key))
    tree = first // n_leaves
    per_tree = np.bincount(tree, minlength=n_trees)
    slot = np.arange(len(tree)) - (np.cumsum(per_tree) - per_tree)[tree]
    k = int(per_tree.max(initial=1))
    box_lo, box_hi, w = (
        np.zeros((n_trees, k, n_cols)),
        np.zeros((n_trees, k, n_cols)),
        np.zeros((n_trees, k)),
    )
    box_lo[tree, slot] = lo.reshape(-1, n_cols)[first]
    box_hi[tree, slot] = hi.reshape(-1, n_cols)[first]
    w[tree, slot] = weight
    out = np.empty(n_trees)
    step = max(1, _CHUNK // (k * k * n_cols))
    for s in range(0, n_trees, step):
        t = slice(s, s + step)
        overlap = np.minimum(box_hi[t][:, :, None], box_hi[t][:, None]) - np.maximum(
            box_lo[t][:, :, None], box_lo[t][:, None]
        )
        m = np.clip(overlap, 0.0, None).prod(axis=3)
        out[t] = np.einsum("tl,tlk,tk->t", w[t], m, w[t])
    return out


def _box_keys(lo: np.ndarray, hi: np.ndarray, tree: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the distinct (tree, box) pairs' keys, sorted, by tree first; the index of each one's first row; each
    row's place among them). A row's key numbers its tree and each column's lower and upper bound in one
    integer (mixed radix), when that fits in 63 bits; else the rows themselves are compared."""
    codes = [tree]
    for bound in (lo, hi):
        codes += [np.unique(bound[:, d], return_inverse=True)[1] for d in range(bound.shape[1])]
    radix = [int(c.max(initial=0)) + 1 for c in codes]
    if sum(np.log2(radix)) < 62:
        key = np.zeros(len(tree), dtype=np.int64)
        for c, r in zip(codes, radix, strict=True):
            key = key * r + c
        distinct, first, which = np.unique(key, return_index=True, return_inverse=True)
    else:
        distinct, first, which = np.unique(np.column_stack(codes), axis=0, return_index=True, return_inverse=True)
    return distinct, first, which.ravel()


def importances(
    encoded: Encoded,
    y: np.ndarray,
    fits: list[tuple[np.ndarray, int]],
    *,
    n_trees: int,
    max_depth: int,
) -> list[np.ndarray | None]:
    """Each fit's importances of the parameters (``encoded.groups``), normalised to sum to 1 as Optuna's
    ``get_param_importances`` returns them (equal shares when all are 0); None for a fit whose trees all have
    zero variance (nothing to explain). A fit is (the rows of ``encoded.X``/``y`` it sees, its seed), every
    fit as many rows: the seed draws its trees' bootstrap samples and split tie-breaks, so a fit gives the
    same values (to round-off) alone or in a batch. The fits' trees are grown together, as many at a time as
    :data:`_SAMPLES` allows."""
    if len({len(picked) for picked, _ in fits}) > 1:
        raise ValueError("the fits of one batch must see as many rows each")
    rows, priority = [], []
    for picked, seed in fits:
        rng = np.random.default_rng(seed)
        rows.append(picked[rng.integers(len(picked), size=(n_trees, len(picked)))])
        priority.append(rng.random((n_trees, encoded.X.shape[1])))
    all_rows, all_priority = np.concatenate(rows), np.concatenate(priority)
    step = max(1, _SAMPLES // max(all_rows.shape[1] * max(encoded.X.shape[1], 1), 1))
    parts = [
        variance_shares(
            grow(
                encoded.X,
                y,
                all_rows[s : s + step],
                encoded.bounds,
                all_priority[s : s + step],
                max_depth,
            ),
            encoded.bounds,
            encoded.groups,
        )
        for s in range(0, len(all_rows), step)
    ]
    shares, variance = (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
    )
    out: list[np.ndarray | None] = []
    for f in range(len(fits)):
        t = slice(f * n_trees, (f + 1) * n_trees)
        if not (variance[t] > 0).any():
            out.append(None)
            continue
        mean = np.nanmean(shares[t], axis=0)
        total = mean.sum()
        out.append(mean / total if total > 0 else np.full(len(mean), 1.0 / len(mean)))
    return out
