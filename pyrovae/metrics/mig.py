"""Mutual Information Gap (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs"),
as disentanglement_lib's ``mig`` with its histogram discretizer."""

from __future__ import annotations

import numpy as np

from .base import register
from .utils import (
    check_dataset,
    check_random_state,
    discrete_entropy,
    discrete_mutual_info,
    histogram_discretize,
    positive_int,
    sample_codes,
)


@register("mig")
def compute_mig(dataset, representation_fn, random_state, *, num_train: int = 10000, batch_size: int = 64,
                num_bins: int = 20) -> dict:
    """MIG: mean over factors of the gap between the two largest I(z_i; v_k), divided by H(v_k).

    MIG = 1/K Σ_k (I(z_(1); v_k) - I(z_(2); v_k)) / H(v_k), with z_(1), z_(2) the latents of
    largest and second-largest mutual information with factor v_k. Each latent of ``num_train``
    (10,000) points is discretised into ``num_bins`` (20) equal-width histogram bins; I and H are
    the empirical discrete values in nats (sklearn ``mutual_info_score``). With one latent the
    second is 0; factors that take one value (H = 0) are left out. Returns ``discrete_mig``.
    """
    check_dataset(dataset)
    check_random_state(random_state)
    num_train = positive_int("mig.num_train", num_train)
    batch_size = positive_int("mig.batch_size", batch_size)
    num_bins = positive_int("mig.num_bins", num_bins)

    codes, factors = sample_codes(dataset, representation_fn, num_train, random_state, batch_size)
    info = discrete_mutual_info(histogram_discretize(codes, num_bins), factors)
    return {"discrete_mig": mutual_information_gap(info, discrete_entropy(factors))}


def mutual_information_gap(info: np.ndarray, entropy: np.ndarray) -> float:
    """MIG from I(z_i; v_k) (latent_dim, num_factors) and H(v_k) (num_factors,), both in nats."""
    top = np.sort(info, axis=0)[::-1]
    second = top[1] if len(top) > 1 else np.zeros(info.shape[1])
    varies = entropy > 0
    if not varies.any():
        return 0.0
    return float(np.mean((top[0] - second)[varies] / entropy[varies]))
