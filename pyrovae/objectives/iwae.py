"""The importance-weighted bound (IWAE), per example, with K particles.

    L_K(x) = E[ log (1/K) Σ_k w_k ],   w_k = p(x, z_k) / q(z_k | x),   z_1..K ~ q(z | x)

(Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders"). L_1 is the ELBO,
L_K ≤ L_{K+1} ≤ log p(x), and L_K → log p(x) as K → ∞ when the weights are bounded.

Written with Pyro's own means: the guide and the model run inside one more plate,
``pyro.plate("particles", K, dim=-2)``, outside the model's ``data`` plate (dim -1); the
plate broadcasts q(z|x), p(z) and p(x|z) to batch shape (K, B). The guide is traced, the
model replayed on its z, and every sample site's log-density (summed over its event dims;
the site's own scale is not used) is added up per particle and example into log w, shaped
(K, B). Then L_K per example is logsumexp over k minus log K, summed over the batch and
scaled by num_data / B. Pyro's ``RenyiELBO(alpha=0)`` is the same bound taken over the
whole batch jointly (one weight per particle for all examples together), looser on average,
and has no ``differentiable_loss``.

Two gradient estimators (``estimator``), both needing a reparameterised guide:

* ``iwae``: the gradient of the estimate, Σ_k w̃_k ∇ log w_k with w̃ = softmax_k(log w).
* ``dreg``: doubly-reparameterised gradients (Tucker, Lawson, Gu & Maddison 2019,
  "Doubly Reparameterized Gradient Estimators for Monte Carlo Objectives", eq. 5). The
  score part of ∇_φ log q is replaced by its reparameterised twin, which gives
  Σ_k w̃_k² (∂ log w_k / ∂z_k)(∂z_k / ∂φ) for the guide's parameters: same expectation,
  and its signal-to-noise ratio grows with K instead of shrinking. Parameters of p get the
  IWAE gradient Σ_k w̃_k ∇_θ log p(x, z_k) (also parameters shared by p and q, as in the
  VampPrior). Costs one more pass of the model on the detached z (and, for a flow guide,
  one inversion of the flow).
"""

from __future__ import annotations

import math

import pyro.infer
import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

from ..importance import (
    log_weight_terms,
    particle_plate,
    particle_traces,
    per_particle_example,
    site_log_prob,
)
from ..options import check_choice, check_int
from .base import Objective, register

ESTIMATORS = ("iwae", "dreg")


@register("iwae")
class IWAE(Objective):
    """Importance-weighted bound: E log (1/K) Σ_k p(x, z_k)/q(z_k|x), z_k ~ q(z|x), per example.

    Burda, Grosse & Salakhutdinov (2016). ``num_particles``: K (K = 1 is the ELBO with a
    Monte Carlo KL). ``estimator``: ``iwae`` (the estimate's own gradient) or ``dreg``
    (doubly-reparameterised gradients for the guide, Tucker et al. 2019). Needs a
    reparameterised guide and every sample site in the data plate. ``bound(x)`` gives the
    K-sample bound per example; each epoch records ``train_iwae_bound`` (nats per example).
    """

    def __init__(self, vae, *, num_particles: int = 5, estimator: str = "iwae"):
        super().__init__(vae)
        self.num_particles = check_int("num_particles", num_particles)
        self.estimator = check_choice("estimator", estimator, ESTIMATORS)
        self.is_elbo = self.num_particles == 1  # the value is the ELBO (Monte Carlo KL)
        self._inner_model, self._inner_guide = vae.model, vae.guide
        self.model, self.guide = self._svi_programs()
        # On self.model/self.guide, Trace_ELBO (one particle, not vectorised: K is ours)
        # estimates -L_K summed over the data set, with the gradient of ``estimator``.
        self.pyro_loss = pyro.infer.Trace_ELBO()
        self._reset_metrics()

    # ---- the bound ------------------------------------------------------------------------
    def _traces(self, x, y, kwargs, num_particles: int):
        return particle_traces(self._inner_model, self._inner_guide, x, y, num_particles, **kwargs)

    def _terms(self, model_tr, guide_tr, x, y, kwargs, num_particles: int):
        """(surrogate, bound, counted): per-example surrogate whose value is the bound and
        whose gradient is the chosen estimator's; the bound (detached); what Trace_ELBO
        counts on these two traces."""
        shape = torch.Size((num_particles, x.shape[0]))
        lp, lq, counted = log_weight_terms(model_tr, guide_tr, shape, who="iwae")
        log_w = lp - lq
        bound = torch.logsumexp(log_w, 0) - math.log(num_particles)
        for name, site in guide_tr.nodes.items():
            if site["type"] == "sample" and not site["is_observed"] and not site["fn"].has_rsample:
                raise ValueError(f"objective iwae needs a reparameterised guide; site {name!r} "
                                 f"({type(site['fn']).__name__}) has no rsample")
        if self.estimator == "iwae":
            return bound, bound.detach(), counted
        # log p and log q at the same z with the path through z cut: their gradients are
        # the "direct" ones (parameters only).
        lq_direct = 0.0
        for site in guide_tr.nodes.values():
            if site["type"] == "sample" and not site["is_observed"]:
                detached = dict(site, value=site["value"].detach())
                lq_direct = lq_direct + per_particle_example(site_log_prob(detached), site, shape, who="iwae")
        latents = {name: site["value"].detach() for name, site in model_tr.nodes.items()
                   if site["type"] == "sample" and not site["is_observed"]}
        with poutine.block():
            model_direct = prune_subsample_sites(poutine.trace(poutine.condition(
                particle_plate(self._inner_model, num_particles), data=latents)).get_trace(x, y, **kwargs))
        lp_direct = 0.0
        for site in model_direct.nodes.values():
            if site["type"] == "sample":
                lp_direct = lp_direct + per_particle_example(site_log_prob(site), site, shape, who="iwae")
        w = torch.softmax(log_w.detach(), 0)
        path = (lp - lp_direct) - (lq - lq_direct)  # value 0; gradient: only through z
        surrogate = (w.pow(2) * path).sum(0) + (w * lp_direct).sum(0)
        surrogate = surrogate + (bound - surrogate).detach()
        return surrogate, bound.detach(), counted

    def log_weights(self, x, y=None, *, num_particles: int | None = None, **kwargs) -> torch.Tensor:
        """log w_k = log p(x, z_k) - log q(z_k|x), z_k ~ q(z|x), shaped (K, B), differentiable."""
        k = self.num_particles if num_particles is None else check_int("num_particles", num_particles)
        model_tr, guide_tr = self._traces(x, y, kwargs, k)
        lp, lq, _ = log_weight_terms(model_tr, guide_tr, torch.Size((k, x.shape[0])), who="iwae")
        return lp - lq

    @torch.no_grad()
    def bound(self, x, y=None, *, num_particles: int | None = None,
              particles_per_pass: int = 1000) -> torch.Tensor:
        """The K-sample bound per example (nats), shape (B,): one draw of the estimator
        log (1/K) Σ_k w_k. Large K runs in passes of ``particles_per_pass`` particles.
        The VAE's train/eval mode is left as it is."""
        k = self.num_particles if num_particles is None else check_int("num_particles", num_particles)
        chunk = check_int("particles_per_pass", particles_per_pass)
        with self.vae.unregistered():
            log_w = torch.cat([self.log_weights(x, y, num_particles=min(chunk, k - start))
                               for start in range(0, k, chunk)])
        return torch.logsumexp(log_w, 0) - math.log(k)

    def loss(self, x, y=None, *, num_data=None):
        """-L_K summed over the batch and scaled by num_data / B: the negative bound over the
        data set; its gradient is the ``estimator``'s."""
        kwargs = {"num_data": num_data}
        model_tr, guide_tr = self._traces(x, y, kwargs, self.num_particles)
        surrogate, bound, _ = self._terms(model_tr, guide_tr, x, y, kwargs, self.num_particles)
        self._accumulate(bound)
        return -surrogate.sum() * self._scale(x, num_data)

    @staticmethod
    def _scale(x, num_data) -> float:
        return 1.0 if num_data is None else num_data / x.shape[0]

    # ---- the same objective as a model/guide pair for plain Pyro SVI ------------------------
    def _svi_programs(self):
        """(model, guide) such that Trace_ELBO on them is -``loss``: both run in the particle
        plate, and the model ends with ``pyro.factor("iwae", ...)`` that turns Trace_ELBO's
        Σ log p - Σ log q into the K-sample bound (value and gradient). Use Trace_ELBO with
        one particle, not vectorised (K is this objective's own); the guide must run first,
        as it does under every Pyro ELBO."""
        guide_record: dict = {}

        def guide(x=None, y=None, **kwargs):
            guide_record.clear()
            tracer = poutine.trace(particle_plate(self._inner_guide, self.num_particles))
            out = tracer(x, y, **kwargs)
            guide_record["trace"] = prune_subsample_sites(tracer.trace)
            return out

        def model(x=None, y=None, **kwargs):
            if x is None or "trace" not in guide_record:  # generating: the plain model
                return self._inner_model(x, y, **kwargs)
            tracer = poutine.trace(particle_plate(self._inner_model, self.num_particles))
            out = tracer(x, y, **kwargs)
            model_tr = prune_subsample_sites(tracer.trace)
            surrogate, _, counted = self._terms(model_tr, guide_record.pop("trace"), x, y, kwargs,
                                                self.num_particles)
            pyro.factor("iwae", surrogate.sum() * self._scale(x, kwargs.get("num_data")) - counted)
            return out

        return model, guide

    # ---- trainer hooks ---------------------------------------------------------------------
    def _reset_metrics(self):
        self._sum = self._sum_sq = None
        self._count = 0

    def _accumulate(self, bound: torch.Tensor):
        b = bound.detach().double()
        if self._sum is None:
            self._sum, self._sum_sq = b.sum(), b.pow(2).sum()
        else:
            self._sum, self._sum_sq = self._sum + b.sum(), self._sum_sq + b.pow(2).sum()
        self._count += b.numel()

    def epoch_metrics(self) -> dict:
        """``train_iwae_bound``: mean K-sample bound over the examples seen since the last
        call (nats per example, parameters moving during the epoch), with its standard
        error over examples ``train_iwae_bound_se``, and K."""
        if not self._count:
            return {}
        n = self._count
        mean = (self._sum / n).item()
        var = max((self._sum_sq.item() - n * mean ** 2) / (n - 1), 0.0) if n > 1 else float("nan")
        self._reset_metrics()
        return {"train_iwae_bound": mean, "train_iwae_bound_se": math.sqrt(var / n),
                "iwae_num_particles": self.num_particles}
