"""SAP score (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from
Unlabeled Observations", section 3), as disentanglement_lib's ``sap_score``."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from .base import register
from .utils import (
    check_dataset,
    check_labels,
    check_random_state,
    classifier_seed,
    positive_int,
    sample_codes,
)


@register("sap")
def compute_sap(dataset, representation_fn, random_state, *, num_train: int = 10000, num_test: int = 5000,
                batch_size: int = 64, continuous_factors: bool = False) -> dict:
    """SAP: mean over factors of the gap between the two best single-latent predictors of the factor.

    S[i, k] is how well latent i alone predicts factor k: for discrete factors (the default,
    as the study) the test accuracy of ``LinearSVC(C=0.01, class_weight="balanced")`` fitted on
    latent i of ``num_train`` (10,000) points and scored on ``num_test`` (5,000); for
    ``continuous_factors`` the squared correlation Cov(z_i, v_k)² / (Var z_i Var v_k) on the
    training points (0 for a constant latent). SAP = 1/K Σ_k (S_(1)k - S_(2)k), the two largest
    entries of column k (the second is 0 with one latent). Returns ``sap_score``.
    """
    check_dataset(dataset)
    check_random_state(random_state)
    num_train = positive_int("sap.num_train", num_train, minimum=2)
    num_test = positive_int("sap.num_test", num_test)
    batch_size = positive_int("sap.batch_size", batch_size)

    train_codes, train_factors = sample_codes(dataset, representation_fn, num_train, random_state, batch_size)
    test_codes, test_factors = sample_codes(dataset, representation_fn, num_test, random_state, batch_size)
    if continuous_factors:
        scores = _squared_correlations(train_codes, train_factors)
    else:
        scores = _svm_accuracies(train_codes, train_factors, test_codes, test_factors,
                                 classifier_seed(random_state))
    return {"sap_score": top_two_gap(scores)}


def top_two_gap(scores: np.ndarray) -> float:
    """Mean over columns of the largest minus the second-largest entry (latent_dim, num_factors)."""
    ordered = np.sort(scores, axis=0)[::-1]
    second = ordered[1] if len(ordered) > 1 else np.zeros(scores.shape[1])
    return float(np.mean(ordered[0] - second))


def _svm_accuracies(train_codes, train_factors, test_codes, test_factors, seed: int) -> np.ndarray:
    scores = np.zeros((train_codes.shape[1], train_factors.shape[1]))
    for k in range(train_factors.shape[1]):
        check_labels(train_factors[:, k], "sap.num_train", f"values of factor {k}")
        for i in range(train_codes.shape[1]):
            model = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
            with warnings.catch_warnings():  # the recipe is liblinear's default max_iter
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(train_codes[:, i:i + 1], train_factors[:, k])
                scores[i, k] = np.mean(model.predict(test_codes[:, i:i + 1]) == test_factors[:, k])
    return scores


def _squared_correlations(codes, factors) -> np.ndarray:
    zc = codes - codes.mean(axis=0)
    vc = factors - factors.mean(axis=0)
    n = len(codes) - 1
    cov = zc.T @ vc / n
    var_z, var_v = (zc**2).sum(axis=0) / n, (vc**2).sum(axis=0) / n
    denominator = var_z[:, None] * var_v[None, :]
    ok = (var_z[:, None] > 1e-12) & (denominator > 0)
    return np.where(ok, cov**2 / np.where(ok, denominator, 1.0), 0.0)
