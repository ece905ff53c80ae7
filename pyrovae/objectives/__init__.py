"""Objectives: what SVI maximises, written with Pyro's own means.

An objective wraps ``vae.model``/``vae.guide`` in effect handlers (``poutine.scale``
on chosen sites, ``pyro.factor`` penalties, enumeration) and names the Pyro loss that
estimates it. ``objective.model``, ``objective.guide`` and ``objective.pyro_loss`` can
be handed to ``pyro.infer.SVI`` unchanged; ``objective.loss(x)`` is the same number as
a differentiable tensor for a torch optimizer. One module per family.
"""

from . import capacity, schedules  # noqa: F401
from .base import Objective, record_sites, register, registry, scale_sites
from .dip import DIPVAE
from .elbo import ELBO, ESTIMATORS
from .factor_vae import FactorVAE
from .iwae import IWAE
from .mmd import WAE, InfoVAE, imq, mmd2, rbf
from .sliced import SWAE, sliced_wasserstein
from .tc import BetaTCVAE, decompose_kl, log_qz_estimates

__all__ = [
    "DIPVAE", "ELBO", "ESTIMATORS", "IWAE", "SWAE", "WAE", "BetaTCVAE", "FactorVAE", "InfoVAE", "Objective",
    "decompose_kl", "imq", "log_qz_estimates", "mmd2", "rbf", "record_sites", "register", "registry",
    "scale_sites", "sliced_wasserstein",
]
