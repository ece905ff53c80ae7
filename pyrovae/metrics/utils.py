"""What the metrics share: checking inputs, sampling (factors, code) pairs in batches,
histogram discretisation, discrete mutual information, and order-free sums.

Sums over latent dimensions use :func:`exact_sum` (``math.fsum``, correctly rounded), so a
permutation of the latent dimensions changes no score, not even in the last bit.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
from sklearn.metrics import mutual_info_score
from threadpoolctl import threadpool_limits

from ..errors import DataError, SpecError

DATASET_API = ("num_factors", "factors_num_values", "observation_shape", "sample_factors",
               "sample_observations_from_factors")


def check_dataset(dataset) -> None:
    """A :class:`DataError` naming what ``dataset`` lacks of the ground-truth interface."""
    missing = [a for a in DATASET_API if not hasattr(dataset, a)]
    if missing:
        raise DataError(f"a metric needs a ground-truth data set with {', '.join(DATASET_API)}; "
                        f"{type(dataset).__name__} lacks {', '.join(missing)}")


def check_random_state(random_state) -> np.random.RandomState:
    if not isinstance(random_state, np.random.RandomState):
        raise SpecError("random_state", "must be a numpy.random.RandomState, e.g. "
                        "numpy.random.RandomState(0)", value=random_state)
    return random_state


def positive_int(key: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, or a :class:`SpecError` naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise SpecError(key, f"must be an integer >= {minimum}", value=value)
    return int(value)


def positive_float(key: str, value, *, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (v >= 0 if allow_zero else v > 0) or not math.isfinite(v):
        raise SpecError(key, f"must be a finite number {'>=' if allow_zero else '>'} 0", value=value)
    return v


def represent(representation_fn, observations) -> np.ndarray:
    """``representation_fn(observations)`` as a finite float64 array (batch, latent_dim)."""
    codes = np.asarray(representation_fn(observations), dtype=np.float64)
    n = len(observations)
    if codes.ndim != 2 or codes.shape[0] != n:
        raise DataError(f"representation_fn must map {n} observations to an array (batch, latent_dim) "
                        f"= ({n}, D); it returned shape {codes.shape}")
    if not np.isfinite(codes).all():
        raise DataError("representation_fn returned NaN or infinite values")
    return codes


ENCODE_ROWS = 2048
"""Observations per ``representation_fn`` call at least: a metric's ``batch_size`` is a statistical
choice (points per group), not an encoding one, and one call of 2048 images runs a conv encoder
about 4x faster on a CPU than 32 calls of 64."""


def encode_factors(dataset, representation_fn, factors, random_state, batch_size: int) -> np.ndarray:
    """Codes of observations drawn for each row of ``factors``, max(``batch_size``,
    :data:`ENCODE_ROWS`) rows a call."""
    parts = []
    step = max(batch_size, ENCODE_ROWS)
    for start in range(0, len(factors), step):
        batch = factors[start:start + step]
        observations = dataset.sample_observations_from_factors(batch, random_state)
        parts.append(represent(representation_fn, observations))
    return np.concatenate(parts)


def sample_factors(dataset, num: int, random_state) -> np.ndarray:
    """``num`` factor index vectors, checked: int array (num, num_factors)."""
    factors = np.asarray(dataset.sample_factors(num, random_state))
    if factors.shape != (num, dataset.num_factors) or not np.issubdtype(factors.dtype, np.integer):
        raise DataError(f"dataset.sample_factors({num}) must return an int array of shape "
                        f"({num}, {dataset.num_factors}); got {factors.dtype} {factors.shape}")
    return factors


def sample_codes(dataset, representation_fn, num_points: int, random_state, batch_size: int):
    """``num_points`` i.i.d. ground-truth points: (codes (n, latent_dim), factors (n, num_factors))."""
    factors = sample_factors(dataset, num_points, random_state)
    return encode_factors(dataset, representation_fn, factors, random_state, batch_size), factors


def histogram_discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Each column of ``codes`` into ``num_bins`` equal-width bins over its range (labels 1..num_bins).

    The bin of x is the number of left edges of ``numpy.histogram(column, num_bins)`` at or
    below x, as disentanglement_lib's histogram discretizer.
    """
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], num_bins)
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def discrete_mutual_info(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(code_i; factor_j) in nats from the empirical joint counts, shape (latent_dim, num_factors)."""
    return np.array([[mutual_info_score(factors[:, j], discrete_codes[:, i])
                      for j in range(factors.shape[1])] for i in range(discrete_codes.shape[1])])


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """H(factor_j) in nats from the empirical counts (= I(factor_j; factor_j)), shape (num_factors,)."""
    return np.array([mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


def exact_sum(values, axis: int | None = None):
    """Correctly rounded sum (``math.fsum``): the same bits in any order of the terms."""
    values = np.asarray(values, dtype=np.float64)
    if axis is None:
        return math.fsum(values.ravel())
    return np.apply_along_axis(math.fsum, axis, values)


def exact_mean(values) -> float:
    values = np.asarray(values, dtype=np.float64).ravel()
    return exact_sum(values) / len(values)


def normalized_entropy(weights: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of ``weights + 1e-11`` normalised along ``axis``, in units of log(len along axis).

    H = -Σ p log p / log K with p = w / Σ w (scipy.stats.entropy with ``base=K``); 0 for one
    outcome (also when K = 1), 1 for a uniform ``p``. The 1e-11 is disentanglement_lib's guard
    for all-zero rows.
    """
    w = np.asarray(weights, dtype=np.float64) + 1e-11
    if w.shape[axis] == 1:  # one outcome: no uncertainty
        return np.zeros(np.delete(w.shape, axis))
    p = w / np.expand_dims(exact_sum(w, axis), axis)
    return -exact_sum(p * np.log(p), axis) / math.log(w.shape[axis])


def check_labels(labels: np.ndarray, key: str, what: str) -> None:
    """A :class:`SpecError` when a classifier's training labels hold fewer than two classes."""
    if len(np.unique(labels)) < 2:
        raise SpecError(key, f"too few points: the training {what} take a single value, so no classifier "
                        "can be fitted; raise it", value=len(labels))


def canonical_order(x: np.ndarray) -> np.ndarray:
    """Column indices of ``x`` sorted by the columns' bytes: a column order that does not depend
    on how the latents were numbered. Classifiers fitted on ``x[:, canonical_order(x)]`` break
    ties between features (trees) and round sums (linear models) the same for any permutation."""
    return np.array(sorted(range(x.shape[1]), key=lambda j: np.ascontiguousarray(x[:, j]).tobytes()),
                    dtype=np.int64)


def classifier_seed(random_state) -> int:
    """One seed for every classifier a metric fits, drawn from the metric's ``random_state``."""
    return int(random_state.randint(2**31 - 1))


def single_threaded_blas():
    """Context with one BLAS thread: the classifiers' matrices are small (points x latents), where
    extra BLAS threads only spin (3-6x slower on a loaded 2-core machine), and one thread gives
    the same bits on any machine."""
    return threadpool_limits(limits=1, user_api="blas")
