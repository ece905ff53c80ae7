"""A tiny ground-truth data set for checking metrics: the observation *is* the factor vector.

Factors are independent and uniform over their values; an observation is the factor
indices scaled to [0, 1] (float32, shape (num_factors,)). The identity is then a perfect
representation, a permutation of it is as good, a rotation mixes the factors.
"""

from __future__ import annotations

import numpy as np


class FactorsAsObservations:
    """Ground-truth data with the disentanglement_lib interface; observation = factors / (values - 1).

    ``noise`` adds N(0, noise²) to each observation, drawn from the caller's random_state.
    """

    def __init__(self, factors_num_values=(4, 5, 6), noise: float = 0.0):
        self.factors_num_values = [int(v) for v in factors_num_values]
        if not self.factors_num_values or min(self.factors_num_values) < 1:
            raise ValueError(f"factors_num_values must be positive ints, got {factors_num_values!r}")
        self.num_factors = len(self.factors_num_values)
        self.observation_shape = (self.num_factors,)
        self.noise = float(noise)

    def sample_factors(self, num: int, random_state) -> np.ndarray:
        return np.stack([random_state.randint(v, size=num) for v in self.factors_num_values], axis=1)

    def sample_observations_from_factors(self, factors, random_state) -> np.ndarray:
        scale = np.maximum(np.array(self.factors_num_values) - 1, 1)
        x = np.asarray(factors, dtype=np.float64) / scale
        if self.noise:
            x = x + self.noise * random_state.standard_normal(x.shape)
        return x.astype(np.float32)

    def sample_observations(self, num: int, random_state) -> np.ndarray:
        return self.sample_observations_from_factors(self.sample_factors(num, random_state), random_state)

    def sample(self, num: int, random_state):
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)
