"""The ELBO with a KL weight β: E_q[log p(x|z)] - β KL(q(z|x) || p(z))."""

from __future__ import annotations

import pyro.infer

from ..options import check_choice, check_int, check_nonnegative
from .base import Objective, register, scale_sites

ESTIMATORS = {
    "trace_elbo": pyro.infer.Trace_ELBO,  # Monte Carlo KL: log q(z|x) - log p(z)
    "trace_meanfield_elbo": pyro.infer.TraceMeanField_ELBO,  # analytic KL where known
}


@register("elbo")
class ELBO(Objective):
    """ELBO with KL weight β: E_q[log p(x|z)] - β KL(q(z|x) || p(z)).

    ``estimator``: ``trace_elbo`` (Monte Carlo KL) or ``trace_meanfield_elbo``
    (analytic KL where Pyro knows it). ``num_particles`` samples of z per example.
    """

    def __init__(self, vae, *, beta: float = 1.0, estimator: str = "trace_elbo",
                 num_particles: int = 1):
        super().__init__(vae)
        self.beta = check_nonnegative("beta", beta)
        check_choice("estimator", estimator, ESTIMATORS)
        check_int("num_particles", num_particles)
        self.is_elbo = self.beta == 1.0
        if self.beta != 1.0:
            self.model = scale_sites({"z": self.beta})(vae.model)
            self.guide = scale_sites({"z": self.beta})(vae.guide)
        self.pyro_loss = ESTIMATORS[estimator](
            num_particles=num_particles, vectorize_particles=num_particles > 1)
