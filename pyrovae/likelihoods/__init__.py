"""Likelihoods p(x|z): decoder output -> a Pyro distribution over one example x.

The decoder emits ``num_params`` numbers per data feature, shaped
``(batch, num_params, *data_shape)``. A likelihood turns that into a distribution
whose event shape is the data shape (so ``log_prob`` is one number per example) and
gives its mean for reconstructions. ``check_data`` rejects data outside the support
before any training starts. Leading batch dimensions (particles) pass through:
decoder outputs ``(P, B, num_params, *data_shape)`` give batch shape ``(P, B)``.

By data type (one module each):

* [0, 1] intensities (:mod:`.unit`): ``bernoulli``, ``continuous_bernoulli``, ``beta``;
* real values (:mod:`.real`): ``normal``, ``laplace``, ``student_t``, with a fixed,
  learned, per-feature or decoder-predicted scale (:class:`PositiveParameter`);
* 8-bit intensities x = k/255 (:mod:`.pixels`): ``categorical``, ``discretized_logistic``;
* counts (:mod:`.counts`): ``poisson``, ``negative_binomial``, ``zinb``.
"""

from .base import (
    Likelihood,
    PositiveParameter,
    PositiveParamsLikelihood,
    positive,
    register,
    registry,
    softplus_inverse,
)
from .counts import (
    NegativeBinomialLikelihood,
    PoissonLikelihood,
    PoissonLogRate,
    ZeroInflatedNB,
    ZINBLikelihood,
)
from .pixels import (
    CategoricalLikelihood,
    DiscretizedLogistic,
    DiscretizedLogisticLikelihood,
    Grid,
    GridCategorical,
)
from .real import LaplaceLikelihood, LocationScaleLikelihood, NormalLikelihood, StudentTLikelihood
from .unit import (
    BernoulliLikelihood,
    BetaLikelihood,
    ClampedBeta,
    ContinuousBernoulli,
    ContinuousBernoulliLikelihood,
)

__all__ = [
    "BernoulliLikelihood", "BetaLikelihood", "CategoricalLikelihood", "ClampedBeta",
    "ContinuousBernoulli", "ContinuousBernoulliLikelihood", "DiscretizedLogistic",
    "DiscretizedLogisticLikelihood", "Grid", "GridCategorical", "LaplaceLikelihood", "Likelihood",
    "LocationScaleLikelihood", "NegativeBinomialLikelihood", "NormalLikelihood", "PoissonLikelihood",
    "PoissonLogRate", "PositiveParameter", "PositiveParamsLikelihood", "StudentTLikelihood",
    "ZINBLikelihood", "ZeroInflatedNB", "positive", "register", "registry", "softplus_inverse",
]
