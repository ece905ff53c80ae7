"""Modularity and explicitness (Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings
With the F-Statistic Loss", section 3), as disentanglement_lib's ``modularity_explicitness``."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from .base import register
from .utils import (
    canonical_order,
    check_dataset,
    check_labels,
    check_random_state,
    discrete_mutual_info,
    exact_mean,
    exact_sum,
    histogram_discretize,
    positive_int,
    sample_codes,
    single_threaded_blas,
)


@register("modularity")
def compute_modularity_explicitness(dataset, representation_fn, random_state, *,
                                    num_train: int = 10000, num_test: int = 5000, batch_size: int = 64,
                                    num_bins: int = 20) -> dict:
    """Modularity (each latent depends on one factor) and explicitness (factors are linearly decodable).

    Modularity: with m_ik = I(z_i; v_k) (latents of ``num_train`` = 10,000 points in ``num_bins``
    = 20 histogram bins, nats), θ_i = max_k m_ik and δ_i = Σ_{k ≠ argmax} m_ik² / (θ_i² (K - 1)),
    modularity = mean_i (1 - δ_i), a latent with θ_i = 0 counting 0. Explicitness: per factor a
    ``LogisticRegression()`` on the latents standardised with the training mean and std, scored
    by the one-vs-rest ROC AUC averaged over the factor's values (macro), on the training points
    and on ``num_test`` (5,000) fresh ones, then averaged over factors (chance 0.5). Returns
    ``modularity_score``, ``explicitness_score_train`` and ``explicitness_score_test``.
    """
    check_dataset(dataset)
    check_random_state(random_state)
    num_train = positive_int("modularity.num_train", num_train)
    num_test = positive_int("modularity.num_test", num_test)
    batch_size = positive_int("modularity.batch_size", batch_size)
    num_bins = positive_int("modularity.num_bins", num_bins)

    train_codes, train_factors = sample_codes(dataset, representation_fn, num_train, random_state, batch_size)
    test_codes, test_factors = sample_codes(dataset, representation_fn, num_test, random_state, batch_size)
    info = discrete_mutual_info(histogram_discretize(train_codes, num_bins), train_factors)

    mean, std = train_codes.mean(axis=0), train_codes.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant latent stays 0 rather than NaN
    order = canonical_order(train_codes)  # the latents' numbering must not change the rounding
    train_x, test_x = ((train_codes - mean) / std)[:, order], ((test_codes - mean) / std)[:, order]
    auc_train, auc_test = [], []
    for k in range(train_factors.shape[1]):
        check_labels(train_factors[:, k], "modularity.num_train", f"values of factor {k}")
        a_train, a_test = explicitness(train_x, train_factors[:, k], test_x, test_factors[:, k])
        auc_train.append(a_train)
        auc_test.append(a_test)
    return {"modularity_score": modularity(info),
            "explicitness_score_train": float(np.mean(auc_train)),
            "explicitness_score_test": float(np.mean(auc_test))}


def modularity(info: np.ndarray) -> float:
    """mean_i (1 - δ_i) from the mutual information matrix m (latent_dim, num_factors)."""
    squared = np.square(info)
    peak = squared.max(axis=1)
    num_factors = info.shape[1]
    if num_factors == 1:  # each latent trivially depends on at most one factor
        return exact_mean(np.where(peak > 0, 1.0, 0.0))
    rest = exact_sum(squared, axis=1) - peak
    with np.errstate(divide="ignore", invalid="ignore"):
        per_latent = np.where(peak > 0, 1.0 - rest / (peak * (num_factors - 1)), 0.0)
    return exact_mean(per_latent)


def explicitness(train_x, train_y, test_x, test_y) -> tuple[float, float]:
    """Macro one-vs-rest ROC AUC of a logistic regression, on the training and the test points.

    The average runs over the classes the classifier knows that have both positive and
    negative points in the scored set (disentanglement_lib binarises the labels it sees).
    """
    model = LogisticRegression()
    with warnings.catch_warnings(), single_threaded_blas():  # the recipe: sklearn's default max_iter
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_x, train_y)
    return _macro_auc(model, train_x, train_y), _macro_auc(model, test_x, test_y)


def _macro_auc(model, x, y) -> float:
    with single_threaded_blas():
        proba = model.predict_proba(x)
    positive = y[:, None] == model.classes_[None, :]
    auc = roc_auc(positive, proba)
    return float(np.mean(auc[np.isfinite(auc)])) if np.isfinite(auc).any() else 0.5


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each column of ``scores`` for the labels in the same column of ``positive``.

    Mann-Whitney form: AUC = (Σ midrank of positives - P (P + 1) / 2) / (P N), ties counting
    half; NaN for a column without positives or without negatives. Equal to
    ``sklearn.metrics.roc_auc_score`` column by column, at one call for all columns.
    """
    ranks = rankdata(scores, axis=0)  # midranks for ties
    num_pos = positive.sum(axis=0).astype(np.float64)
    num_neg = len(positive) - num_pos
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg)
    return np.where((num_pos > 0) & (num_neg > 0), auc, np.nan)
