"""Likelihoods for intensities in [0, 1]: bernoulli, continuous_bernoulli, beta."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.distributions import constraints
from torch.nn.functional import binary_cross_entropy_with_logits

from ..options import check_positive, is_number
from .base import Likelihood, positive, register


def in_unit_interval(x: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(x) & (x >= 0) & (x <= 1)


@register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Bernoulli on logits; scores binary data or [0,1] intensities as cross-entropy.

    log p(x|z) = sum_i x_i log s(l_i) + (1 - x_i) log(1 - s(l_i)), s the sigmoid.
    For non-binary x in [0,1] this is the usual (unnormalised) cross-entropy.
    """

    support_text = "values in [0, 1]"

    def forward(self, params):
        (logits,) = self.split(params)
        # validate_args=False: [0,1] intensities are scored by the same formula.
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(self.event_dim)

    def mean(self, params):
        return torch.sigmoid(self.split(params)[0])

    def in_support(self, x):
        return in_unit_interval(x)


# ---- continuous Bernoulli ------------------------------------------------------------------------
_SMALL = 0.5  # |logit| below which the normaliser and the mean use their Taylor series


def _cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(l) with C = l / tanh(l/2) = 2 atanh(1 - 2λ) / (1 - 2λ), λ = sigmoid(l); even in l."""
    a = logits.abs()
    small = a < _SMALL
    y2 = (torch.where(small, a, torch.zeros_like(a)) / 2) ** 2
    series = math.log(2) + y2 / 3 - 7 * y2**2 / 90 + 62 * y2**3 / 2835
    big = torch.where(small, torch.ones_like(a), a)
    exact = big.log() - torch.log(-torch.expm1(-big)) + torch.log1p(torch.exp(-big))
    return torch.where(small, series, exact)


def _cb_mean(logits: torch.Tensor) -> torch.Tensor:
    """E[x] = 1/2 + (coth(l/2) - 2/l) / 2."""
    small = logits.abs() < _SMALL
    y = torch.where(small, logits, torch.zeros_like(logits)) / 2
    series = y / 3 - y**3 / 45 + 2 * y**5 / 945
    big = torch.where(small, torch.ones_like(logits), logits)
    exact = 1 / torch.tanh(big / 2) - 2 / big
    return 0.5 + torch.where(small, series, exact) / 2


class ContinuousBernoulli(dist.ContinuousBernoulli):
    """Pyro's ContinuousBernoulli with the normaliser, mean and inverse CDF computed from
    the logits, accurate at any logit (torch clamps λ, so beyond |l| ~ 16 its log-density
    is off by up to log|l| and its gradient vanishes)."""

    def _cont_bern_log_norm(self):
        return _cb_log_norm(self.logits)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, value = torch.broadcast_tensors(self.logits, value)
        return -binary_cross_entropy_with_logits(logits, value, reduction="none") + _cb_log_norm(logits)

    @property
    def mean(self):
        return _cb_mean(self.logits)

    def icdf(self, value):
        """x = log1p(u (e^l - 1)) / l, written so that neither branch overflows."""
        logits = self.logits
        small = logits.abs() < 1e-4
        safe = torch.where(small, torch.ones_like(logits), logits)
        pos = 1 + torch.log1p((1 - value) * torch.expm1(-safe)) / safe
        neg = torch.log1p(value * torch.expm1(safe)) / safe
        series = value + logits * value * (1 - value) / 2
        return torch.where(small, series, torch.where(logits > 0, pos, neg)).clamp(0, 1)


@register("continuous_bernoulli")
class ContinuousBernoulliLikelihood(Likelihood):
    """Continuous Bernoulli on logits l(z) for [0,1] intensities:
    p(x) = C(λ) λ^x (1-λ)^(1-x), λ = s(l), normalised on [0, 1].

    The normalised version of the Bernoulli cross-entropy (Loaiza-Ganem & Cunningham,
    2019): C(λ) = 2 atanh(1-2λ)/(1-2λ) makes it a density on [0, 1]. E[x|z] is the
    distribution's mean λ/(2λ-1) + 1/(2 atanh(1-2λ)), not λ.
    """

    support_text = "values in [0, 1]"

    def forward(self, params):
        return ContinuousBernoulli(logits=self.split(params)[0]).to_event(self.event_dim)

    def mean(self, params):
        return _cb_mean(self.split(params)[0])

    def in_support(self, x):
        return in_unit_interval(x)


# ---- beta ----------------------------------------------------------------------------------------
class _OpenInterval(constraints.Constraint):
    def __init__(self, low, high):
        self.lower_bound, self.upper_bound = low, high
        super().__init__()

    def check(self, value):
        return (value > self.lower_bound) & (value < self.upper_bound)

    def __repr__(self):
        return f"OpenInterval(lower_bound={self.lower_bound}, upper_bound={self.upper_bound})"


class ClampedBeta(dist.Beta):
    """Beta that scores x clamped to [eps, 1 - eps], so exact 0s and 1s get a finite score.

    With eps = 0 it is the plain Beta and its support is the open interval (0, 1).
    """

    def __init__(self, concentration1, concentration0, *, eps: float = 0.0, validate_args=None):
        self.eps = float(eps)
        super().__init__(concentration1, concentration0, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ClampedBeta, _instance)
        new.eps = self.eps
        return super().expand(batch_shape, _instance=new)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.unit_interval if self.eps > 0 else _OpenInterval(0.0, 1.0)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        if self.eps > 0:
            value = value.clamp(self.eps, 1 - self.eps)
        return super().log_prob(value)


@register("beta")
class BetaLikelihood(Likelihood):
    """Beta(x; α(z), β(z)) per feature for intensities in (0, 1);
    α, β = min_concentration + softplus(decoder outputs).

    The decoder predicts both concentrations (two outputs per feature: α, then β).
    Exact 0s and 1s, common in image data, are scored as ``eps`` and ``1 - eps``
    (default 1e-3, below half an 8-bit step, so values k/255 are unchanged); with
    ``eps: 0`` the data must lie strictly inside (0, 1) and 0s or 1s are rejected
    before training. E[x|z] = α / (α + β).
    """

    num_params = 2

    def __init__(self, data_shape, *, eps: float = 1e-3, min_concentration: float = 1e-3):
        super().__init__(data_shape)
        if not is_number(eps) or not 0 <= eps < 0.5:
            raise ValueError(f"eps must be a number in [0, 0.5): 0 (reject data equal to 0 or 1) "
                             f"or the clamp margin, got {eps!r}")
        self.eps = float(eps)
        self.min_concentration = check_positive("min_concentration", min_concentration)
        self.support_text = (f"values in [0, 1] (0 and 1 are scored as {eps:g} and 1 - {eps:g})" if eps > 0
                             else "values strictly inside (0, 1) (with eps = 0, no 0s or 1s)")

    def concentrations(self, params):
        a, b = self.split(params)
        return positive(a, self.min_concentration), positive(b, self.min_concentration)

    def forward(self, params):
        return ClampedBeta(*self.concentrations(params), eps=self.eps).to_event(self.event_dim)

    def mean(self, params):
        a, b = self.concentrations(params)
        return a / (a + b)

    def in_support(self, x):
        if self.eps > 0:
            return in_unit_interval(x)
        return torch.isfinite(x) & (x > 0) & (x < 1)
