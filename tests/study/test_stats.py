"""fastadl.study.stats against scipy's implementations and hand-worked cases."""

import math

import numpy as np
import pytest
from scipy import stats as sp

from fastadl.study.stats import (
    bootstrap_relative_gain,
    dominates,
    kendall_tau,
    paired_pvalue,
    pareto_front,
    permutation_pvalue,
    variance_share,
)


def test_exact_permutation_counts_the_observed_split():
    # a holds the 3 largest of 9 distinct values: only 1 of C(9, 3) = 84 splits is as extreme.
    a, b = [9.0, 8.0, 7.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert permutation_pvalue(a, b) == pytest.approx(1 / 84)
    assert permutation_pvalue(b, a) == pytest.approx(1.0)  # every split is at least as extreme
    # Ties count as "at least": identical groups give p = 1.
    assert permutation_pvalue([1.0, 1.0], [1.0, 1.0]) == 1.0


@pytest.mark.parametrize("sizes", [(3, 6), (4, 5), (2, 7)])
def test_permutation_matches_scipy(sizes):
    rng = np.random.default_rng(sum(sizes) * sizes[0])
    a = rng.normal(0.3, 0.05, sizes[0])
    b = rng.normal(0.25, 0.05, sizes[1])
    ref = sp.permutation_test(
        (a, b),
        lambda x, y: np.mean(x) - np.mean(y),
        permutation_type="independent",
        alternative="greater",
        n_resamples=math.inf,
    ).pvalue
    assert permutation_pvalue(a, b) == pytest.approx(ref, abs=1e-12)


def test_sampled_permutation_close_to_exact(monkeypatch):
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.1, 1, 8), rng.normal(0, 1, 9)
    exact = permutation_pvalue(a, b)
    monkeypatch.setattr("fastadl.study.stats.EXACT_LIMIT", 10)
    assert permutation_pvalue(a, b) == pytest.approx(exact, abs=0.01)


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_data():
    rng = np.random.default_rng(2)
    small = bootstrap_relative_gain(rng.normal(1.1, 0.1, 4), rng.normal(1.0, 0.1, 4))
    large = bootstrap_relative_gain(rng.normal(1.1, 0.1, 400), rng.normal(1.0, 0.1, 400))
    for est, low, high in (small, large):
        assert low <= est <= high
    assert large[2] - large[1] < (small[2] - small[1]) / 3
    assert large[1] > 0.05 and large[2] < 0.15  # true gain 0.10
    assert bootstrap_relative_gain([2.0, 2.0], [1.0, 1.0]) == (1.0, 1.0, 1.0)


def test_variance_share_recovers_components():
    # 40 genotypes × 3 seeds: between-genotype sd 2, seed sd 1 → share 4 / 5.
    rng = np.random.default_rng(3)
    means = rng.normal(0, 2, 400)
    scores = [m + rng.normal(0, 1, 3) for m in means]
    out = variance_share(scores)
    assert out["share"] == pytest.approx(0.8, abs=0.04)
    assert out["within_var"] == pytest.approx(1.0, rel=0.1)
    assert (out["genotypes"], out["runs"]) == (400, 1200)
    # Genotypes that do not differ: the between component is clipped at 0.
    assert variance_share([[1.0, 2.0], [1.0, 2.0]])["share"] == 0.0
    with pytest.raises(ValueError, match=">= 2 runs"):
        variance_share([[1.0], [2.0, 3.0]])


def test_variance_share_matches_anova_by_hand():
    scores = [[1.0, 3.0], [4.0, 6.0], [8.0, 9.0]]  # means 2, 5, 8.5; grand 31/6
    msw = (2 + 2 + 0.5) / 3
    msb = 2 * ((2 - 31 / 6) ** 2 + (5 - 31 / 6) ** 2 + (8.5 - 31 / 6) ** 2) / 2
    between = (msb - msw) / 2
    assert variance_share(scores)["share"] == pytest.approx(between / (between + msw))


def test_kendall_tau_matches_scipy_with_ties():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, 12).astype(float)
    y = x + rng.normal(0, 1.5, 12)
    y[3] = y[5]
    assert kendall_tau(x, y) == pytest.approx(sp.kendalltau(x, y).statistic)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_paired_sign_flip_test():
    assert paired_pvalue([0.1, 0.2, 0.3]) == pytest.approx(1 / 8)  # all positive: 1 of 8
    assert paired_pvalue([-0.1, 0.2, 0.3]) == pytest.approx(2 / 8)  # flipping the -0.1 too
    rng = np.random.default_rng(5)
    d = rng.normal(0.02, 0.05, 9)
    ref = sp.permutation_test(
        (d,), np.mean, permutation_type="samples", alternative="greater", n_resamples=math.inf
    ).pvalue
    assert paired_pvalue(d) == pytest.approx(ref, abs=1e-12)


def test_pareto_front_keeps_exactly_the_undominated_points():
    # (latency, mIoU): b is slower and worse than a; d ties a on cost and loses on score
    points = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (1.0, 0.3), (0.5, 0.2), (3.0, 0.7)]
    assert pareto_front(points) == [4, 0, 2]
    assert dominates(points[0], points[1]) and not dominates(points[1], points[0])
    assert not dominates(points[0], points[0])  # a point never dominates itself
    assert dominates(points[2], points[5])  # equal score, cheaper
