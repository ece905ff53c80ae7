"""Objectives: what SVI maximises, written with Pyro's own means.

An objective wraps ``vae.model``/``vae.guide`` in effect handlers (``poutine.scale``
on chosen sites, ``pyro.factor`` penalties, enumeration) and names the Pyro loss that
estimates it. ``objective.model``, ``objective.guide`` and ``objective.pyro_loss`` can
be handed to ``pyro.infer.SVI`` unchanged; ``objective.loss(x)`` is the same number as
a differentiable tensor for a torch optimizer.
"""

from __future__ import annotations

import pyro.infer
from pyro.poutine.messenger import Messenger

from .registry import Registry

registry = Registry("objective")
register = registry.register

ESTIMATORS = {
    "trace_elbo": pyro.infer.Trace_ELBO,  # Monte Carlo KL: log q(z|x) - log p(z)
    "trace_meanfield_elbo": pyro.infer.TraceMeanField_ELBO,  # analytic KL where known
}


class scale_sites(Messenger):
    """Multiply the log-density of the named sample sites by a factor (β for ``z``).

    Unlike ``poutine.scale`` it leaves other sites alone; applied to model *and*
    guide it scales a whole KL term. Scales must be > 0, as in ``poutine.scale``.
    """

    def __init__(self, scales: dict[str, float]):
        super().__init__()
        for name, s in scales.items():
            if not s > 0:
                raise ValueError(f"scale of site {name!r} must be > 0, got {s!r}")
        self.scales = dict(scales)

    def _pyro_sample(self, msg):
        s = self.scales.get(msg["name"])
        if s is not None:
            msg["scale"] = s * msg["scale"]


class Objective:
    """Base class: set ``self.model``, ``self.guide`` and ``self.pyro_loss``."""

    def __init__(self, vae):
        self.vae = vae
        self.model = vae.model
        self.guide = vae.guide
        self.pyro_loss: pyro.infer.ELBO = pyro.infer.Trace_ELBO()

    def loss(self, x, y=None, *, num_data=None):
        """Differentiable loss (negative objective) summed over the batch, scaled by
        num_data / batch when ``num_data`` is given."""
        return self.pyro_loss.differentiable_loss(self.model, self.guide, x, y, num_data=num_data)


@register("elbo")
class ELBO(Objective):
    """ELBO with KL weight β: E_q[log p(x|z)] - β KL(q(z|x) || p(z)).

    ``estimator``: ``trace_elbo`` (Monte Carlo KL) or ``trace_meanfield_elbo``
    (analytic KL where Pyro knows it). ``num_particles`` samples of z per example.
    """

    def __init__(self, vae, *, beta: float = 1.0, estimator: str = "trace_elbo",
                 num_particles: int = 1):
        super().__init__(vae)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0:
            raise ValueError(f"beta must be a number > 0 (Pyro cannot scale a site by 0), got {beta!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r} (valid choices: {', '.join(ESTIMATORS)})")
        if not isinstance(num_particles, int) or num_particles < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
        self.beta = float(beta)
        if self.beta != 1.0:
            self.model = scale_sites({"z": self.beta})(vae.model)
            self.guide = scale_sites({"z": self.beta})(vae.guide)
        self.pyro_loss = ESTIMATORS[estimator](
            num_particles=num_particles, vectorize_particles=num_particles > 1)
