"""The ELBO with a KL weight β(t): E_q[log p(x|z)] - β(t) KL(q(z|x) || p(z)), optional
KL warm-up schedules for β(t) and free bits.

* β-VAE (Higgins et al. 2017): the latent site ``z`` is scaled by β in model *and*
  guide (:class:`~pyrovae.objectives.base.scale_sites`), which scales exactly the KL term.
* KL warm-up: β(t) = β · w(t) with w a schedule of the training progress t in epochs
  (:mod:`pyrovae.objectives.schedules`: linear, Bowman et al. 2016 / Sønderby et al. 2016;
  cyclical, Fu et al. 2019). The scale is read from the schedule every time the wrapped
  model or guide runs, so ``objective.set_progress(t)`` is all a plain SVI loop needs.
* Free bits (Kingma et al. 2016, "Improved variational inference with inverse
  autoregressive flow", appendix C): the KL term becomes Σ_d max(λ, KL_d) with KL_d the
  minibatch-average KL of latent dimension d. The ``z`` site is masked out of Pyro's
  ELBO and the term enters as a ``pyro.factor`` (:meth:`Objective.penalized`).
"""

from __future__ import annotations

import functools

import pyro.infer
import torch
from torch.distributions import Distribution, Independent, kl_divergence

from ..options import check_choice, check_int, check_nonnegative
from .base import Objective, probe, register, scale_sites
from .schedules import warmup_schedule

ESTIMATORS = {
    "trace_elbo": pyro.infer.Trace_ELBO,  # Monte Carlo KL: log q(z|x) - log p(z)
    "trace_meanfield_elbo": pyro.infer.TraceMeanField_ELBO,  # analytic KL where known
}


# ---- KL terms from recorded q(z|x), p(z) and z ------------------------------------------------
def kl_per_example(q: Distribution, p: Distribution, z: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """KL(q || p) per example (shape: the batch shape) and whether it is analytic.

    Analytic where torch knows the pair (``kl_divergence``), else the one-sample Monte
    Carlo estimate log q(z) - log p(z) at the guide's draw ``z`` (unbiased for the KL).
    """
    try:
        return kl_divergence(q, p), True
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z), False


def factors(d: Distribution) -> Distribution | None:
    """The univariate per-dimension distributions of ``d`` when d factorises over the
    latent dimensions (an ``Independent`` over one batch dimension of univariate
    distributions: batch shape (..., D)), else None."""
    if (isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1
            and d.base_dist.event_shape == torch.Size()):
        return d.base_dist
    return None


def check_factorised(q: Distribution, p: Distribution, guide: str = "?", prior: str = "?",
                     what: str = "free_bits") -> None:
    """Raise a ``ValueError`` naming the guide or prior that does not factorise over
    the latent dimensions (per-dimension KL terms need both to)."""
    for role, name, d in (("guide", guide, q), ("prior", prior, p)):
        if factors(d) is None:
            raise ValueError(
                f"{what} needs a {role} that factorises over the latent dimensions (an Independent "
                f"of univariate distributions, e.g. guide 'diagonal_normal', prior 'standard_normal'); "
                f"{role} {name!r} gives {type(d).__name__} with event shape {tuple(d.event_shape)}")


def kl_per_dimension(q: Distribution, p: Distribution, z: torch.Tensor, guide: str = "?",
                     prior: str = "?") -> tuple[torch.Tensor, bool]:
    """KL_d per example and dimension (shape (..., D)) and whether it is analytic.

    For factorised q(z|x) = Π_d q_d(z_d|x) and p(z) = Π_d p_d(z_d) the KL is the sum of
    KL(q_d || p_d): analytic where torch knows the univariate pair (e.g. normal/normal,
    normal/laplace), else the Monte Carlo estimate log q_d(z_d) - log p_d(z_d).
    """
    check_factorised(q, p, guide, prior)
    qd, pd = factors(q), factors(p)
    try:
        return kl_divergence(qd, pd), True
    except NotImplementedError:
        return qd.log_prob(z) - pd.log_prob(z), False


def component_names(vae) -> tuple[str, str]:
    """The spec names of ``vae``'s guide and prior (for error messages)."""
    model = getattr(getattr(vae, "spec", None), "model", None)
    if model is None:
        return type(vae.guide_head).__name__, type(vae.prior).__name__
    return model.guide.name, model.prior.name


@register("elbo")
class ELBO(Objective):
    """E_q[log p(x|z)] - β(t)·KL(q(z|x) || p(z)), β(t) = beta·w(t) with a warm-up w
    (none | linear | cyclical); free_bits λ > 0 replaces the KL by Σ_d max(λ, KL_d).

    ``beta``: the KL weight β (β-VAE, Higgins et al. 2017); 1 with no warm-up and no free
    bits is the ELBO itself.

    ``warmup``: the schedule w(t) of the progress t (epochs, fractional, starting at
    exactly 0); see :mod:`pyrovae.objectives.schedules`.

    * ``none``: w = 1.
    * ``linear``: w(t) = min(1, t / warmup_epochs).
    * ``cyclical`` (Fu et al. 2019): ``cycles`` cycles of length L = warmup_epochs / cycles;
      w rises linearly from 0 to 1 over the first ``cycle_ratio`` of each cycle and stays
      at 1 for the rest; w = 1 from t = warmup_epochs on.

    ``free_bits``: λ in nats per latent dimension (Kingma et al. 2016); 0 is off. The KL
    term becomes Σ_d max(λ, KL_d), KL_d the minibatch average of KL(q(z_d|x) || p(z_d)),
    analytic where torch knows the univariate pair, else Monte Carlo log q_d - log p_d.
    Needs a factorised guide and prior (diagonal_normal with standard_normal, laplace,
    student_t, learned_normal); it is computed that way whatever the ``estimator``.

    ``estimator``: ``trace_elbo`` (Monte Carlo KL) or ``trace_meanfield_elbo`` (analytic KL
    where Pyro knows it). ``num_particles`` samples of z per example.

    The current β(t) is ``objective.current_beta``; the epoch's metrics carry ``beta`` (the
    value at the epoch's last step) and, with free bits, ``train_kl`` (Σ_d KL_d, nats per
    example, averaged over the epoch's steps) and ``free_bits_floor_dims`` (how many
    dimensions had KL_d < λ, averaged over the steps).
    """

    supports_enumeration = True  # β and warm-ups scale sites, which TraceEnum_ELBO respects

    def __init__(self, vae, *, beta: float = 1.0, estimator: str = "trace_elbo",
                 num_particles: int = 1, warmup: str = "none", warmup_epochs: float = 10.0,
                 cycles: int = 4, cycle_ratio: float = 0.5, free_bits: float = 0.0):
        super().__init__(vae)
        self.beta = check_nonnegative("beta", beta)
        check_choice("estimator", estimator, ESTIMATORS)
        check_int("num_particles", num_particles)
        self.warmup = warmup
        self.schedule = warmup_schedule(warmup, epochs=warmup_epochs, cycles=cycles, ratio=cycle_ratio)
        self.free_bits = check_nonnegative("free_bits", free_bits)
        if self.free_bits > 0 and vae.enumerates:
            raise ValueError("free_bits is not available for a model that enumerates a discrete latent (m2)")
        self.is_elbo = (self.beta == 1.0 and warmup == "none" and self.free_bits == 0
                        and not vae.extra_objective_terms)
        self.pyro_loss = vae.pyro_loss(  # a model that enumerates (m2) swaps in TraceEnum_ELBO
            ESTIMATORS[estimator], num_particles=num_particles, vectorize_particles=num_particles > 1)
        self._names = component_names(vae)
        self._reset_sums()
        if self.free_bits > 0:
            dists = probe(vae)
            if dists is not None:
                check_factorised(*dists, *self._names)
            # z leaves Pyro's ELBO (log q and log p both masked); the KL term comes back as a factor
            self.model = scale_sites({"z": 0.0})(vae.model)
            self.guide = scale_sites({"z": 0.0})(vae.guide)
            self.model, self.guide = self.penalized(self._free_bits_term, "free_bits_kl")
        elif not self.is_elbo:
            self.model, self.guide = self._scaled(vae.model), self._scaled(vae.guide)

    @property
    def current_beta(self) -> float:
        """β(t) = beta · w(t) at the current progress t."""
        return self.beta * self.schedule(self.progress)

    def _scaled(self, fn):
        """``fn`` with the ``z`` site scaled by β(t), read when it runs."""

        @functools.wraps(fn)
        def scaled(*args, **kwargs):
            with scale_sites({"z": self.current_beta}):
                return fn(*args, **kwargs)

        return scaled

    def _free_bits_term(self, record, x):
        """β(t) Σ_d max(λ, KL_d), KL_d averaged over the minibatch (and particles)."""
        q, z = record["z"]["q"]
        p = record["z"]["p"][0]
        kl = kl_per_dimension(q, p, z, *self._names)[0]
        kl_d = kl.reshape(-1, kl.shape[-1]).mean(0)
        with torch.no_grad():
            self._sums["kl"] = self._sums["kl"] + kl_d.sum()
            self._sums["floor"] = self._sums["floor"] + (kl_d < self.free_bits).sum()
            self._sums["steps"] += 1
        return self.current_beta * kl_d.clamp(min=self.free_bits).sum()

    def _reset_sums(self):
        self._sums = {"kl": 0.0, "floor": 0.0, "steps": 0}

    def epoch_metrics(self) -> dict:
        out = {}
        if not self.is_elbo:
            out["beta"] = self.current_beta
        steps = self._sums["steps"]
        if steps:
            out["train_kl"] = float(self._sums["kl"]) / steps
            out["free_bits_floor_dims"] = float(self._sums["floor"]) / steps
        self._reset_sums()
        return out
