"""BetaVAE score (Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts with a
Constrained Variational Framework"), as disentanglement_lib's ``beta_vae_sklearn``."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from .base import register
from .utils import (
    canonical_order,
    check_dataset,
    check_labels,
    check_random_state,
    encode_factors,
    positive_int,
    sample_factors,
    single_threaded_blas,
)

GROUPS_PER_CHUNK = 64  # groups sampled at once: bounds memory, not a statistical choice


@register("beta_vae")
def compute_beta_vae(dataset, representation_fn, random_state, *, batch_size: int = 64,
                     num_train: int = 10000, num_eval: int = 5000) -> dict:
    """BetaVAE score: accuracy of a linear classifier that names the factor held fixed in a pair batch.

    One point: draw a factor k, then ``batch_size`` pairs of factor vectors that agree on
    factor k only; its feature is the mean over the pairs of |r(x) - r(x')| (per latent) and its
    label is k. A scikit-learn ``LogisticRegression()`` (defaults) is fitted on ``num_train``
    points (10,000) and scored on ``num_eval`` fresh points (5,000); batch 64. Chance level is
    1 / num_factors. Returns ``train_accuracy`` and ``eval_accuracy``.
    """
    check_dataset(dataset)
    check_random_state(random_state)
    batch_size = positive_int("beta_vae.batch_size", batch_size)
    num_train = positive_int("beta_vae.num_train", num_train)
    num_eval = positive_int("beta_vae.num_eval", num_eval)

    train_x, train_y = _pair_features(dataset, representation_fn, random_state, batch_size, num_train)
    check_labels(train_y, "beta_vae.num_train", "factor indices")
    order = canonical_order(train_x)  # the latents' numbering must not change the rounding
    model = LogisticRegression()
    with warnings.catch_warnings(), single_threaded_blas():  # the recipe: sklearn's default max_iter
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_x[:, order], train_y)
        train_accuracy = float(np.mean(model.predict(train_x[:, order]) == train_y))
    eval_x, eval_y = _pair_features(dataset, representation_fn, random_state, batch_size, num_eval)
    with single_threaded_blas():
        eval_accuracy = float(np.mean(model.predict(eval_x[:, order]) == eval_y))
    return {"train_accuracy": train_accuracy, "eval_accuracy": eval_accuracy}


def _pair_features(dataset, representation_fn, random_state, batch_size: int, num_points: int):
    """(features (num_points, latent_dim), fixed-factor labels (num_points,))."""
    features, labels = [], []
    for start in range(0, num_points, GROUPS_PER_CHUNK):
        groups = min(GROUPS_PER_CHUNK, num_points - start)
        fixed = random_state.randint(dataset.num_factors, size=groups)
        first = sample_factors(dataset, groups * batch_size, random_state)
        second = sample_factors(dataset, groups * batch_size, random_state)
        rows = np.arange(groups * batch_size)
        column = np.repeat(fixed, batch_size)
        second[rows, column] = first[rows, column]
        r1 = encode_factors(dataset, representation_fn, first, random_state, batch_size)
        r2 = encode_factors(dataset, representation_fn, second, random_state, batch_size)
        features.append(np.abs(r1 - r2).reshape(groups, batch_size, -1).mean(axis=1))
        labels.append(fixed)
    return np.concatenate(features), np.concatenate(labels)
