"""Compare settings over seeds: which has the lowest mean objective, and which are statistically tied with it.

The input is a matrix ``values[setting][seed]`` of a lower-is-better objective (e.g. the final validation
cost), one row per setting. When every setting was trained with the same seeds (``paired=True``; column j
used seed j everywhere), a seed's luck — its initial weights, its shuffling — moves every setting alike, so
the comparison is made on per-seed differences, which that luck cancels from. Otherwise (``paired=False``,
e.g. different repeat counts) rows are independent samples and may differ in length.

    result = compare([[0.135, 0.149, 0.190], [0.157, 0.178, 0.206]], paired=True, labels=[64, 128])
    result.best, result.tied, result.verdict("batch size", "mean validation cost")

**The rule.** The *best* setting has the lowest mean. Every pair of eligible settings is tested (paired
t-test on per-seed differences, or Welch's t-test), and the p-values of all K(K−1)/2 pairs are corrected
together by Holm's method; a setting is *tied* with the best when its corrected p against the best is
≥ alpha. Why all pairs, not only the K−1 comparisons with the best: the best is chosen by looking at the
data, so "best vs j" is whichever pair the noise made look most different. Correcting for K−1 tests only
lets the error grow with K (simulated with no true difference and 0.98 seed correlation: wrongly
distinguishing a setting in 7–8% of draws with 4 settings, up to 12% with 8); over all pairs it stays
below alpha (about 3%), and when the other pairs differ clearly, Holm's step-down costs little power.

**Degenerate cases.** A NaN or infinite value is a run that diverged (or is missing): its setting is not
*eligible* — it cannot be the best, is not tested and is not tied — and its mean and interval are over its
finite values only, with ``n_failed`` saying how many were dropped. Differences without spread (every seed
differs by the same amount) leave no noise to hide behind: p = 0 if that amount is not 0, else 1. With a
single seed (or a Welch sample of one) nothing can be tested: the p-value is NaN, the pair is left out of
Holm's family and counts as tied, since the data cannot tell the two apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
CONFIDENCE = 0.95


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float]:
    """``(mean, s, low, high)``: the sample mean, its standard deviation (ddof 1) and the t-interval

        mean ± t_{(1+confidence)/2, n-1} · s / √n.

    One value has no spread: s and the interval are NaN. Zero spread gives the interval (mean, mean).
    """
    from scipy import special

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan, math.nan
    s = float(x.std(ddof=1))
    half = float(special.stdtrit(x.size - 1, (1 + confidence) / 2)) * s / math.sqrt(x.size)
    return mean, s, mean - half, mean + half


def _two_sided(t: float, df: float) -> float:
    """2 · P(T_df > |t|), Student's t tail (scipy.special: the same numbers as scipy.stats.t, without its overhead)."""
    from scipy import special

    return float(2 * special.stdtr(df, -abs(t)))


def paired_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test on the per-seed differences ``d = a − b`` (n pairs):

        t = d̄ / (s_d / √n),   p = 2 · P(T_{n−1} > |t|).

    Differences without spread (s_d = 0): p is 1.0 when d̄ = 0 and 0.0 otherwise. Raises ValueError when
    the samples differ in length or have fewer than 2 pairs.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size != y.size or x.size < 2:
        raise ValueError(f"a paired t-test needs two samples of the same length ≥ 2; got {x.size} and {y.size}")
    d = x - y
    mean, s = float(d.mean()), float(d.std(ddof=1))
    if s == 0:
        return 1.0 if mean == 0 else 0.0
    return _two_sided(mean / (s / math.sqrt(d.size)), d.size - 1)


def welch_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's two-sided p-value for equal means of ``a`` and ``b`` (variances not assumed equal):

        t = (ā − b̄) / √(s_a²/n_a + s_b²/n_b),
        ν = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)),
        p = 2 · P(T_ν > |t|).

    Both samples without spread: p is 1.0 when the means are equal and 0.0 otherwise (no noise to hide a
    difference). Raises ValueError when a sample has fewer than 2 values.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per sample; got {x.size} and {y.size}")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(x.mean() - y.mean())
    if va + vb == 0:
        return 1.0 if diff == 0 else 0.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return _two_sided(t, df)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order. With the m p-values sorted ascending,

        p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)),

    and rejecting every hypothesis with p̃ < alpha keeps the chance of any false rejection ≤ alpha, whatever
    the dependence between the tests.
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [math.nan] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Test:
    """A two-sample test: its name in reports, and its p-value function of two samples."""

    name: str
    p_value: Callable[[Sequence[float], Sequence[float]], float]
    min_values: int = 2

    def testable(self, a: Sequence[float], b: Sequence[float]) -> bool:
        return min(len(a), len(b)) >= self.min_values


# paired? -> the test
TESTS: dict[bool, Test] = {
    True: Test("paired t-test on per-seed differences", paired_p_value),
    False: Test("Welch's t-test", welch_p_value),
}


@dataclass(frozen=True)
class SettingRow:
    """One setting over its seeds. ``mean``, ``std`` (ddof 1) and the t-interval ``[ci_low, ci_high]`` are
    over the ``n`` finite values; ``n_failed`` values were NaN/infinite. ``p_value`` is the raw p against
    the best and ``p_holm`` the Holm-corrected one (NaN for the best itself, an ineligible setting, or a
    pair that cannot be tested)."""

    label: Hashable
    n: int
    n_failed: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    tied: bool

    @property
    def eligible(self) -> bool:
        """Whether the setting may be chosen: every seed finished, so its mean and spread are honest."""
        return self.n_failed == 0 and self.n > 0


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`: one row per setting in input order, the best, and the tied set.

    ``runner_up`` has the second-lowest mean among eligible settings; ``tied`` lists the settings tied with
    the best (itself first, then by mean); ``n_pairs`` is the size of Holm's family (testable pairs).
    """

    rows: tuple[SettingRow, ...]
    best: Hashable | None
    runner_up: Hashable | None
    paired: bool
    n_pairs: int
    tied: tuple[Hashable, ...]
    alpha: float = ALPHA

    @property
    def test(self) -> str:
        return TESTS[self.paired].name

    @property
    def method(self) -> str:
        """Which test and correction were used, as one phrase for reports."""
        pairs = "pair" if self.n_pairs == 1 else "pairs"
        return f"{self.test}, Holm-corrected over {self.n_pairs} {pairs}, alpha {self.alpha:g}"

    def row(self, label: Hashable) -> SettingRow:
        return next(r for r in self.rows if r.label == label)

    @property
    def tested(self) -> bool:
        """Whether any pair with the best could be tested (False with one seed or one eligible setting)."""
        return any(math.isfinite(r.p_holm) for r in self.rows)

    @property
    def distinguishable(self) -> bool | None:
        """Whether the best is distinguishable from the runner-up; None when that cannot be tested."""
        if self.runner_up is None or not math.isfinite(p := self.row(self.runner_up).p_holm):
            return None
        return p < self.alpha

    def verdict(self, noun: str = "setting", measure: str = "mean objective") -> str:
        """One sentence: the best, whether the runner-up and the others are distinguishable from it, and
        which are tied (the runner-up can be distinguishable while a noisier setting further away is not)."""
        if self.best is None:
            return f"no {noun} finished all its runs (each had a run that diverged or is missing)"
        if self.runner_up is None:
            return f"{noun} {self.best} is the only {noun} that finished all its runs; nothing to compare it with"
        lead = f"{noun} {self.best} has the lowest {measure}"
        tied = ", ".join(map(str, self.tied))
        if not self.tested:
            return (
                f"{lead}, but one seed per {noun} gives no estimate of the noise, so no {noun} can be told apart "
                f"from it; tied with it: {tied}"
            )
        runner = self.row(self.runner_up)
        p = f"p = {runner.p_holm:.3g}" if math.isfinite(runner.p_holm) else "too few values to test"
        others = [label for label in self.tied if label not in (self.best, self.runner_up)]
        method = f"({self.method})"
        if not self.distinguishable:
            if math.isfinite(runner.p_holm):
                p += f" ≥ {self.alpha:g}"
            within = f"within noise of the runner-up {runner.label} ({p}; {self.method})"
            return f"{lead}, but is {within}; tied with it: {tied}"
        if not others:
            rest = f" and from every other {noun}" if sum(r.eligible for r in self.rows) > 2 else ""
            return f"{lead}, distinguishable from the runner-up {runner.label} ({p} < {self.alpha:g}){rest} {method}"
        not_from = ", ".join(f"{label} (p = {self.row(label).p_holm:.3g})" for label in others)
        return (
            f"{lead}, distinguishable from the runner-up {runner.label} ({p} < {self.alpha:g}) but NOT from "
            f"{not_from}, whose difference from it varies more from seed to seed {method}; tied with it: {tied}"
        )


def compare(
    values: Sequence[Sequence[float]],
    *,
    paired: bool,
    labels: Sequence[Hashable] | None = None,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Summarise each setting over its seeds and find the best and the settings tied with it (module docstring).

    ``values`` has one row per setting (shape ``(n_settings, n_seeds)`` when ``paired``; rows may differ in
    length otherwise); ``labels`` name the rows (default 0, 1, …). The best has the lowest mean among
    eligible settings (ties: the earlier row). Raises ValueError when ``paired`` rows differ in length or
    the labels do not match the rows.
    """
    rows = [np.asarray(v, dtype=float) for v in values]
    labels = list(range(len(rows))) if labels is None else list(labels)
    if len(labels) != len(rows):
        raise ValueError(f"{len(labels)} labels for {len(rows)} settings")
    if paired and len({r.size for r in rows}) > 1:
        lengths = ", ".join(str(r.size) for r in rows)
        raise ValueError(f"paired settings need the same seeds, so rows of one length; got lengths {lengths}")
    finite = [r[np.isfinite(r)] for r in rows]
    eligible = [i for i, (r, f) in enumerate(zip(rows, finite, strict=True)) if f.size and f.size == r.size]
    ranked = sorted(eligible, key=lambda i: (float(finite[i].mean()), i))

    test = TESTS[paired]
    pairs = [(i, j) for n, i in enumerate(eligible) for j in eligible[n + 1 :]]
    pairs = [(i, j) for i, j in pairs if test.testable(rows[i], rows[j])]
    raw = {pair: test.p_value(rows[pair[0]], rows[pair[1]]) for pair in pairs}
    corrected = dict(zip(pairs, holm(list(raw.values())), strict=True))

    best = ranked[0] if ranked else None

    def against_best(i: int, table: dict[tuple[int, int], float]) -> float:
        return math.nan if best is None or i == best else table.get((min(i, best), max(i, best)), math.nan)

    summaries = []
    for i, (r, f) in enumerate(zip(rows, finite, strict=True)):
        p, p_holm = against_best(i, raw), against_best(i, corrected)
        tied = i == best or (i in eligible and not p_holm < alpha)  # an untestable pair (NaN) counts as tied
        summaries.append(SettingRow(labels[i], f.size, r.size - f.size, *mean_interval(f, confidence), p, p_holm, tied))
    return Comparison(
        rows=tuple(summaries),
        best=None if best is None else labels[best],
        runner_up=labels[ranked[1]] if len(ranked) > 1 else None,
        paired=paired,
        n_pairs=len(pairs),
        tied=tuple(labels[i] for i in ranked if summaries[i].tied),
        alpha=alpha,
    )
