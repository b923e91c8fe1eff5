"""The statistics a search-quality study reports: exact permutation tests, bootstrap intervals,
the between-genotype variance share, and Kendall's τ. Plain Python and numpy, deterministic.

The unit of every group test is the **genotype** (its score = the mean over its retraining
seeds), not the run: two seeds of one genotype are not independent draws of "a searched
genotype". The variance share is where the seeds enter.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

# Above this many relabellings the permutation test samples (seeded) instead of enumerating.
EXACT_LIMIT = 200_000
SAMPLES = 100_000


def permutation_pvalue(a: Sequence[float], b: Sequence[float], seed: int = 0) -> float:
    """One-sided p-value of mean(a) > mean(b): the share of the C(n, |a|) ways to split a ∪ b
    into groups of |a| and |b| whose mean difference is at least the observed one (the observed
    split counts, so p >= 1 / C(n, |a|)). Sampled with ``SAMPLES`` draws above ``EXACT_LIMIT``.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both groups need at least one value")
    pooled = np.concatenate([a, b])
    n, k = len(pooled), len(a)
    observed = a.mean() - b.mean()
    total = pooled.sum()
    # mean(A) − mean(B) from sum(A) alone; a tolerance so equal differences count as "at least"
    tol = 1e-12 * max(1.0, float(np.abs(pooled).max()))

    def diff(sum_a):
        return sum_a / k - (total - sum_a) / (n - k)

    if math.comb(n, k) <= EXACT_LIMIT:
        sums = np.array([pooled[list(c)].sum() for c in itertools.combinations(range(n), k)])
        return float(np.mean(diff(sums) >= observed - tol))
    rng = np.random.default_rng(seed)
    idx = np.argsort(rng.random((SAMPLES, n)), axis=1)[:, :k]
    hits = np.sum(diff(pooled[idx].sum(1)) >= observed - tol)
    return float((hits + 1) / (SAMPLES + 1))


def paired_pvalue(differences: Sequence[float]) -> float:
    """One-sided p-value of mean(differences) > 0 by exact sign flipping: the share of the 2^n
    sign assignments whose mean is at least the observed one (p >= 2^-n)."""
    d = np.asarray(differences, float)
    if len(d) == 0:
        raise ValueError("need at least one difference")
    if len(d) > 20:
        raise ValueError(f"{len(d)} differences: 2^n sign flips is too many to enumerate")
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    return float(np.mean(signs @ d >= d.sum() - tol))


def bootstrap_relative_gain(
    a: Sequence[float], b: Sequence[float], level: float = 0.95, draws: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """(estimate, low, high) of mean(a) / mean(b) − 1, with a percentile interval from
    resampling each group with replacement (independently)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        raise ValueError("both groups need at least one value")
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, len(a), (draws, len(a)))].mean(1)
    rb = b[rng.integers(0, len(b), (draws, len(b)))].mean(1)
    gains = ra / rb - 1
    tail = (1 - level) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    return float(a.mean() / b.mean() - 1), float(low), float(high)


def variance_share(scores: Sequence[Sequence[float]]) -> dict:
    """σ²_between / (σ²_between + σ²_within) of a one-way random-effects ANOVA.

    scores: one list per genotype of its runs' scores (different seeds), each with >= 2 runs.
    σ²_within is the mean square within genotypes (seed noise); σ²_between = (MSB − MSW) / n₀
    (n₀ the ANOVA's effective group size, = runs per genotype when balanced), clipped at 0.
    Returns the share and both components.
    """
    groups = [np.asarray(g, float) for g in scores]
    if len(groups) < 2 or any(len(g) < 2 for g in groups):
        raise ValueError("need >= 2 genotypes with >= 2 runs each")
    sizes = np.array([len(g) for g in groups], float)
    N, k = sizes.sum(), len(groups)
    grand = np.concatenate(groups).mean()
    msb = sum(n * (g.mean() - grand) ** 2 for n, g in zip(sizes, groups, strict=True)) / (k - 1)
    msw = sum(((g - g.mean()) ** 2).sum() for g in groups) / (N - k)
    n0 = (N - (sizes**2).sum() / N) / (k - 1)
    between = max(0.0, (msb - msw) / n0)
    total = between + msw
    return {
        "share": float(between / total) if total > 0 else 0.0,
        "between_var": float(between),
        "within_var": float(msw),
        "genotypes": k,
        "runs": int(N),
    }


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either ranking handled); nan if either has no spread."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    pairs_x = concordant + discordant + ties_y  # pairs untied in x
    pairs_y = concordant + discordant + ties_x
    if pairs_x == 0 or pairs_y == 0:
        return math.nan
    return (concordant - discordant) / math.sqrt(pairs_x * pairs_y)


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether point a = (cost, score) dominates b: no costlier, no worse, and better in one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, score) points no other point dominates, in order of cost."""
    front = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    return sorted(front, key=lambda i: points[i])
