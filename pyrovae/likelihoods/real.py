"""Location-scale likelihoods for real-valued data: normal, laplace, student_t.

The decoder predicts the location per feature. The scale σ is set by the ``scale``
option (see :class:`~pyrovae.likelihoods.base.PositiveParameter`): a positive number
(fixed), ``learned`` (one learned σ, the σ-VAE), ``feature`` (a learned σ per data
feature) or ``predicted`` (heteroscedastic: the decoder predicts σ per example and
feature, a second decoder output). Learned and predicted scales are
``min_scale + softplus(u)`` and start at ``init_scale``.
"""

from __future__ import annotations

import pyro.distributions as dist

from ..options import check_positive
from .base import PositiveParameter, PositiveParamsLikelihood, register


class LocationScaleLikelihood(PositiveParamsLikelihood):
    """Decoder outputs: the location, then σ's raw value when ``scale: predicted``.
    Subclasses give ``family``; these options are theirs unless they add more."""

    def __init__(self, data_shape, *, scale: float | str = 0.1, init_scale: float = 1.0,
                 min_scale: float = 1e-3):
        super().__init__(data_shape)
        self.setup_scale(scale, init_scale, min_scale)

    def setup_scale(self, scale, init_scale, min_scale, *extra: PositiveParameter) -> None:
        min_scale = check_positive("min_scale", min_scale)
        self.setup_positives(
            PositiveParameter(self, "scale", scale, init=init_scale, floor=min_scale,
                              init_option="init_scale"),
            *extra)

    def family(self, loc, scale, *extra) -> dist.TorchDistribution:
        raise NotImplementedError

    def forward(self, params):
        return self.family(*self.unpack(params)).to_event(self.event_dim)

    def mean(self, params):
        return self.split(params)[0]


@register("normal")
class NormalLikelihood(LocationScaleLikelihood):
    """Normal log N(x; μ(z), σ²) per feature; σ fixed (a number), learned, per feature or predicted.

    ``scale``: a positive number (fixed σ, the default 0.1), ``learned`` (one σ for all
    features: the σ-VAE), ``feature`` (a learned σ per feature) or ``predicted`` (the
    decoder predicts σ per example and feature). Learned/predicted σ = min_scale +
    softplus(u), starting at ``init_scale``. E[x|z] = μ(z).
    """

    def family(self, loc, scale):
        return dist.Normal(loc, scale)


@register("laplace")
class LaplaceLikelihood(LocationScaleLikelihood):
    """Laplace log p = -|x - μ(z)|/b - log 2b per feature; b fixed, learned, per feature or predicted.

    ``scale`` (b) takes the same values as the normal's: a positive number (default
    0.1), ``learned``, ``feature`` or ``predicted``; learned/predicted b starts at
    ``init_scale``. E[x|z] = μ(z).
    """

    def family(self, loc, scale):
        return dist.Laplace(loc, scale)


@register("student_t")
class StudentTLikelihood(LocationScaleLikelihood):
    """Student's t(x; ν, μ(z), σ) per feature, heavy-tailed; ν and σ learned by default.

    ``df`` (ν) and ``scale`` (σ) each take a positive number (fixed), ``learned`` (one
    value, the default), ``feature`` (one per feature) or ``predicted`` (by the
    decoder); they start at ``init_df`` (5) and ``init_scale`` (1). ν >= 0.1 and
    σ >= min_scale. The decoder outputs μ, then σ's and ν's raw values if predicted.
    ``mean`` returns μ(z): the mean when ν > 1, the median always.
    """

    DF_FLOOR = 0.1

    def __init__(self, data_shape, *, df: float | str = "learned", init_df: float = 5.0,
                 scale: float | str = "learned", init_scale: float = 1.0, min_scale: float = 1e-3):
        PositiveParamsLikelihood.__init__(self, data_shape)
        self.setup_scale(scale, init_scale, min_scale, PositiveParameter(
            self, "df", df, init=init_df, floor=self.DF_FLOOR, init_option="init_df"))

    def family(self, loc, scale, df):
        return dist.StudentT(df, loc, scale)
