"""FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising"), as disentanglement_lib's
``factor_vae_score`` with the study's ``prune_dims.threshold = 0.05``."""

from __future__ import annotations

import numpy as np

from .base import register
from .utils import (
    canonical_order,
    check_dataset,
    check_random_state,
    encode_factors,
    positive_float,
    positive_int,
    sample_codes,
    sample_factors,
)

GROUPS_PER_CHUNK = 64  # groups sampled at once: bounds memory, not a statistical choice


@register("factor_vae")
def compute_factor_vae(dataset, representation_fn, random_state, *, batch_size: int = 64,
                       num_train: int = 10000, num_eval: int = 5000, num_variance_estimate: int = 10000,
                       prune_threshold: float = 0.05) -> dict:
    """FactorVAE score: accuracy of a majority-vote classifier on the argmin of normalised variances.

    The global variance of each latent comes from ``num_variance_estimate`` points (10,000;
    unbiased, ddof=1); latents with standard deviation below ``prune_threshold`` (0.05, on the
    std as disentanglement_lib) are pruned. One point: draw a factor k and ``batch_size`` (64)
    factor vectors that share factor k; its vote is argmin_d Var_batch[r_d] / Var_global[r_d]
    over the active latents. The classifier maps each latent to the factor it got most training
    votes from (``num_train``, 10,000); accuracy is the share of votes it gets right, on the
    training votes and on ``num_eval`` (5,000) fresh ones. Chance is 1 / num_factors. Returns
    ``train_accuracy``, ``eval_accuracy`` and ``num_active_dims`` (all 0 when none is active).
    """
    check_dataset(dataset)
    check_random_state(random_state)
    batch_size = positive_int("factor_vae.batch_size", batch_size, minimum=2)
    num_train = positive_int("factor_vae.num_train", num_train)
    num_eval = positive_int("factor_vae.num_eval", num_eval)
    num_variance_estimate = positive_int("factor_vae.num_variance_estimate", num_variance_estimate, 2)
    threshold = positive_float("factor_vae.prune_threshold", prune_threshold, allow_zero=True)

    codes, _ = sample_codes(dataset, representation_fn, num_variance_estimate, random_state, batch_size)
    global_var = np.var(codes, axis=0, ddof=1)
    active = (np.sqrt(global_var) >= threshold) & (global_var > 0)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}

    # Active latents in canonical order: an exact tie in the argmin goes to the same latent
    # however the latents are numbered.
    active_index = canonical_order(codes)
    active_index = active_index[active[active_index]]
    args = (dataset, representation_fn, random_state, batch_size)
    train_votes = _votes(*args, num_train, global_var, active_index)
    classifier = np.argmax(train_votes, axis=0)  # latent d -> the factor it votes for most
    eval_votes = _votes(*args, num_eval, global_var, active_index)
    latents = np.arange(train_votes.shape[1])
    return {"train_accuracy": float(train_votes[classifier, latents].sum() / train_votes.sum()),
            "eval_accuracy": float(eval_votes[classifier, latents].sum() / eval_votes.sum()),
            "num_active_dims": int(active.sum())}


def _votes(dataset, representation_fn, random_state, batch_size, num_points, global_var, active_index):
    """Vote counts, shape (num_factors, latent_dim): [k, d] = points with factor k fixed voting d."""
    votes = np.zeros((dataset.num_factors, len(global_var)), dtype=np.int64)
    for start in range(0, num_points, GROUPS_PER_CHUNK):
        groups = min(GROUPS_PER_CHUNK, num_points - start)
        fixed = random_state.randint(dataset.num_factors, size=groups)
        factors = sample_factors(dataset, groups * batch_size, random_state)
        factors = factors.reshape(groups, batch_size, -1)
        factors[np.arange(groups), :, fixed] = factors[np.arange(groups), 0, fixed][:, None]
        codes = encode_factors(dataset, representation_fn, factors.reshape(groups * batch_size, -1),
                               random_state, batch_size).reshape(groups, batch_size, -1)
        local_var = np.var(codes[:, :, active_index], axis=1, ddof=1)
        argmin = active_index[np.argmin(local_var / global_var[active_index], axis=1)]
        np.add.at(votes, (fixed, argmin), 1)
    return votes
