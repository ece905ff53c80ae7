"""Likelihoods for count data (non-negative integers, stored as floats): poisson,
negative_binomial, zinb. The decoder predicts the log of the mean per feature.

The negative binomials are parameterised by their mean μ and inverse dispersion θ
(Pyro's ``total_count``), as in scVI: Var = μ + μ²/θ, logits = log μ - log θ. θ is set
by the ``total_count`` option like a scale (see
:class:`~pyrovae.likelihoods.base.PositiveParameter`): ``feature`` (a learned θ per
feature, the default), ``learned`` (one θ), ``predicted`` (by the decoder) or a fixed
positive number; learned θ starts at ``init_total_count``.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.nn.functional import softplus

from .base import Likelihood, PositiveParameter, PositiveParamsLikelihood, register

TOTAL_COUNT_FLOOR = 1e-4


def is_count(x: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(x) & (x >= 0) & (x == x.round())


class PoissonLogRate(dist.Poisson):
    """Poisson scored from its log-rate η: log p(x) = x η - e^η - log x!, so the gradient
    x - e^η stays finite when e^η underflows to 0 (torch's rate-based form gives NaN)."""

    arg_constraints = {"log_rate": dist.constraints.real}

    def __init__(self, log_rate, validate_args=None):
        self.log_rate = log_rate
        super().__init__(log_rate.exp(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PoissonLogRate, _instance)
        new.log_rate = self.log_rate.expand(batch_shape)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return value * self.log_rate - self.rate - torch.lgamma(value + 1)


class ZeroInflatedNB(dist.ZeroInflatedDistribution):
    """Zero-inflated NB(total_count, logits) with gate logits. Unlike Pyro's
    ``ZeroInflatedNegativeBinomial`` its validation does not reject a success probability
    that rounds to 1 in float32 (large logits), and it can be expanded after sampling."""

    def __init__(self, total_count, logits, gate_logits, validate_args=None):
        base = dist.NegativeBinomial(total_count, logits=logits, validate_args=False)
        super().__init__(base, gate_logits=gate_logits, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(ZeroInflatedNB, _instance)
        batch_shape = torch.Size(batch_shape)
        dist.ZeroInflatedDistribution.__init__(
            new, self.base_dist.expand(batch_shape), gate_logits=self.gate_logits.expand(batch_shape),
            validate_args=False)
        new._validate_args = self._validate_args
        return new


class CountLikelihood(Likelihood):
    support_text = "non-negative integer counts"

    def in_support(self, x):
        return is_count(x)


@register("poisson")
class PoissonLikelihood(CountLikelihood):
    """Poisson(x; e^η(z)) per feature for counts; the decoder predicts the log-rate η.

    log p(x|z) = Σ_i x_i η_i - e^η_i - log x_i!. E[x|z] = e^η.
    """

    def forward(self, params):
        return PoissonLogRate(self.split(params)[0]).to_event(self.event_dim)

    def mean(self, params):
        return self.split(params)[0].exp()


class NBLikelihood(CountLikelihood, PositiveParamsLikelihood):
    """Decoder outputs: ``n_direct`` (log-mean[, gate logit]), then θ's raw value if predicted."""

    def __init__(self, data_shape, *, total_count, init_total_count):
        super().__init__(data_shape)
        self.setup_positives(PositiveParameter(
            self, "total_count", total_count, init=init_total_count, floor=TOTAL_COUNT_FLOOR,
            init_option="init_total_count"))

    @staticmethod
    def logits(log_mean, total_count):
        return log_mean - total_count.log()


@register("negative_binomial")
class NegativeBinomialLikelihood(NBLikelihood):
    """Negative binomial NB(x; mean μ = e^η(z), inverse dispersion θ) per feature for overdispersed counts.

    Var = μ + μ²/θ. The decoder predicts η = log μ; θ (Pyro's ``total_count``) is
    ``feature`` (learned per feature, default), ``learned`` (one θ), ``predicted`` (a
    second decoder output) or a fixed positive number; learned θ starts at
    ``init_total_count``. E[x|z] = μ.
    """

    def __init__(self, data_shape, *, total_count: float | str = "feature",
                 init_total_count: float = 1.0):
        super().__init__(data_shape, total_count=total_count, init_total_count=init_total_count)

    def forward(self, params):
        log_mean, total_count = self.unpack(params)
        return dist.NegativeBinomial(total_count, logits=self.logits(log_mean, total_count)).to_event(
            self.event_dim)

    def mean(self, params):
        return self.split(params)[0].exp()


@register("zinb")
class ZINBLikelihood(NBLikelihood):
    """Zero-inflated negative binomial: p(x) = π 1[x = 0] + (1 - π) NB(x; μ(z), θ), π = s(g(z)) the gate.

    The decoder predicts η = log μ and the gate logit g per feature (then θ's raw value
    with ``total_count: predicted``); θ is set as for ``negative_binomial`` (default:
    learned per feature). E[x|z] = (1 - π) μ.
    """

    n_direct = 2

    def __init__(self, data_shape, *, total_count: float | str = "feature",
                 init_total_count: float = 1.0):
        super().__init__(data_shape, total_count=total_count, init_total_count=init_total_count)

    def forward(self, params):
        log_mean, gate_logits, total_count = self.unpack(params)
        return ZeroInflatedNB(total_count, self.logits(log_mean, total_count), gate_logits).to_event(
            self.event_dim)

    def mean(self, params):
        log_mean, gate_logits = self.split(params)[:2]
        return torch.exp(log_mean - softplus(gate_logits))
