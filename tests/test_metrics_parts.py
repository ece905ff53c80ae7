"""The metrics' building blocks against hand-computed values and independent code (scipy,
scikit-learn): discretisation, mutual information, entropies, the DCI, modularity, SAP and
MIG formulas, and the ROC AUC."""

import math

import numpy as np
import pytest
from scipy.stats import entropy
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

import pyrovae.metrics as M
from pyrovae.metrics import utils
from pyrovae.metrics.dci import completeness, disentanglement, gbt_importances
from pyrovae.metrics.mig import mutual_information_gap
from pyrovae.metrics.modularity import modularity, roc_auc
from pyrovae.metrics.sap import top_two_gap
from pyrovae.metrics.testing import FactorsAsObservations


class BalancedGrid(FactorsAsObservations):
    """Factors a in {0, 1}, b in {0, 1, 2, 3}: every sample of 8m points holds each pair m times."""

    def __init__(self):
        super().__init__((2, 4))

    def sample_factors(self, num, random_state):
        grid = np.array([(a, b) for a in range(2) for b in range(4)])
        assert num % len(grid) == 0
        return np.tile(grid, (num // len(grid), 1))


def test_mig_of_a_hand_computed_case():
    """Latents z0 = b, z1 = b // 2, z2 = a on a balanced grid: I(z0; b) = log 4, I(z1; b) = log 2,
    I(z2; a) = log 2 and every other I is 0, so MIG = ((log 4 - log 2) / log 4 + log 2 / log 2) / 2
    = (1/2 + 1) / 2 = 3/4."""
    def rep(x):
        a, b = x[:, 0], np.round(x[:, 1] * 3)
        return np.stack([b, b // 2, a], axis=1)

    out = M.compute_mig(BalancedGrid(), rep, np.random.RandomState(0), num_train=800)
    assert out["discrete_mig"] == pytest.approx(0.75, abs=1e-12)


def test_mutual_information_matches_scipy_entropies():
    """I(z; v) = H(z) + H(v) - H(z, v), each from scipy.stats.entropy of the counts."""
    rs = np.random.RandomState(0)
    v = rs.randint(3, size=(500, 2))
    z = np.stack([v[:, 0] + rs.randint(2, size=500), rs.randint(4, size=500)], axis=1)
    info = utils.discrete_mutual_info(z, v)

    def h(*columns):
        _, counts = np.unique(np.stack(columns, axis=1), axis=0, return_counts=True)
        return entropy(counts)

    expected = [[h(z[:, i]) + h(v[:, k]) - h(z[:, i], v[:, k]) for k in range(2)] for i in range(2)]
    np.testing.assert_allclose(info, expected, atol=1e-12)
    np.testing.assert_allclose(utils.discrete_entropy(v), [h(v[:, 0]), h(v[:, 1])], atol=1e-12)


def test_histogram_bins_are_equal_width_over_the_range():
    codes = np.array([[0.0, 5.0], [0.49, 5.0], [0.5, 5.0], [0.99, 5.0], [1.0, 5.0]])
    bins = utils.histogram_discretize(codes, 2)
    np.testing.assert_array_equal(bins[:, 0], [1, 1, 2, 2, 2])  # edges 0, 0.5, 1; the max in the last
    assert len(np.unique(bins[:, 1])) == 1                       # a constant latent: one bin
    x = np.random.RandomState(0).standard_normal((1000, 1))
    counts = np.bincount(utils.histogram_discretize(x, 20)[:, 0], minlength=21)[1:]
    np.testing.assert_array_equal(counts, np.histogram(x[:, 0], 20)[0])


def test_normalized_entropy_matches_scipy():
    w = np.random.RandomState(0).rand(4, 3)
    np.testing.assert_allclose(utils.normalized_entropy(w, axis=1), entropy(w.T + 1e-11, base=3), atol=1e-13)
    np.testing.assert_allclose(utils.normalized_entropy(w, axis=0), entropy(w + 1e-11, base=4), atol=1e-13)


def test_dci_on_hand_importance_matrices():
    assert disentanglement(np.eye(3)) == pytest.approx(1.0, abs=1e-9)
    assert completeness(np.eye(3)) == pytest.approx(1.0, abs=1e-9)
    assert disentanglement(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-12)
    one_latent_for_all = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert disentanglement(one_latent_for_all) == pytest.approx(0.0, abs=1e-9)  # latent 0: both factors
    assert completeness(one_latent_for_all) == pytest.approx(1.0, abs=1e-9)     # each factor: one latent
    # 2 latents, 2 factors: rows (3, 1) and (0, 2): D_0 = 1 - H2(3/4, 1/4), D_1 = 1, ρ = (4/6, 2/6).
    r = np.array([[3.0, 1.0], [0.0, 2.0]])
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert disentanglement(r) == pytest.approx((1 - h) * 4 / 6 + 2 / 6, abs=1e-9)
    # columns (3, 0) and (1, 2): C_0 = 1, C_1 = 1 - H2(1/3, 2/3), ρ = (3/6, 3/6).
    h1 = -(1 / 3 * math.log2(1 / 3) + 2 / 3 * math.log2(2 / 3))
    assert completeness(r) == pytest.approx(0.5 + 0.5 * (1 - h1), abs=1e-9)


def test_gbt_importances_are_sklearns():
    rs = np.random.RandomState(0)
    x = rs.standard_normal((200, 3))
    y = (x[:, 0] + 0.3 * x[:, 2] > 0).astype(int)
    model = GradientBoostingClassifier(n_estimators=10, random_state=0).fit(x, y)
    np.testing.assert_allclose(gbt_importances(model), model.feature_importances_, rtol=1e-12)


def test_modularity_on_hand_mutual_information():
    # latent 0 informs factor 0 only: 1; latent 1 informs both equally: δ = 1/(1·1), 0; mean 1/2.
    assert modularity(np.array([[1.0, 0.0], [1.0, 1.0]])) == pytest.approx(0.5)
    # latent with m = (2, 1, 0): δ = 1 / (4 · 2) -> 7/8; a latent with no information counts 0.
    assert modularity(np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])) == pytest.approx((7 / 8 + 0) / 2)


def test_top_two_gaps_of_sap_and_mig():
    s = np.array([[0.9, 0.2], [0.5, 0.6], [0.1, 0.1]])
    assert top_two_gap(s) == pytest.approx(((0.9 - 0.5) + (0.6 - 0.2)) / 2)
    assert top_two_gap(s[:1]) == pytest.approx((0.9 + 0.2) / 2)  # one latent: the second is 0
    info, h = np.array([[1.0, 0.1], [0.2, 0.5]]), np.array([2.0, 1.0])
    assert mutual_information_gap(info, h) == pytest.approx(((1.0 - 0.2) / 2 + (0.5 - 0.1) / 1) / 2)


def test_roc_auc_matches_sklearn_with_ties():
    rs = np.random.RandomState(0)
    y = rs.randint(4, size=300)
    scores = np.round(rs.rand(300, 4), 1)  # many ties
    positive = y[:, None] == np.arange(4)
    expected = [roc_auc_score(positive[:, j], scores[:, j]) for j in range(4)]
    np.testing.assert_allclose(roc_auc(positive, scores), expected, atol=1e-12)


def test_exact_sum_is_order_free():
    x = np.random.RandomState(0).standard_normal(1000) * 10.0 ** np.arange(-8, 8).repeat(63)[:1000]
    assert utils.exact_sum(x) == utils.exact_sum(x[::-1]) == math.fsum(x)


def test_canonical_order_follows_the_columns_not_their_positions():
    x = np.random.RandomState(0).rand(50, 4)
    perm = np.array([2, 0, 3, 1])
    y = x[:, perm]
    np.testing.assert_array_equal(x[:, utils.canonical_order(x)], y[:, utils.canonical_order(y)])
