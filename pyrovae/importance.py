"""Importance weights of the guide, per example, vectorised over a particle plate.

    log w_k(x) = log p(x, z_k) - log q(z_k | x),    z_1..K ~ q(z | x)

The guide and the model run inside one more plate, ``pyro.plate("particles", K, dim=-2)``,
outside the model's ``data`` plate (dim -1), so q(z|x), p(z) and p(x|z) broadcast to batch
shape (K, B). The guide is traced, the model replayed on its draws, and every sample
site's log-density (summed over its event dims, masked, not scaled) is added up per
particle and example. These weights drive the IWAE objective, the importance-sampled
log-likelihood of :mod:`pyrovae.evaluate` and the PSIS diagnostics of the analysis.

The log-likelihood estimate is log p̂(x) = log (1/K) Σ_k w_k, unbiased for p(x) (so a lower
bound on log p(x) in expectation). Its Monte Carlo standard error by the delta method is
sd(w) / (√K mean(w)), i.e. SE² = (K Σ w² / (Σ w)² - 1) / (K - 1), computed in log space.
"""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.util import prune_subsample_sites

PARTICLES = "particles"  # name of the particle plate


def particle_plate(fn, num_particles: int):
    """``fn`` run inside ``pyro.plate("particles", K, dim=-2)``."""
    def plated(*args, **kwargs):
        with pyro.plate(PARTICLES, num_particles, dim=-2):
            return fn(*args, **kwargs)
    return plated


def site_log_prob(site) -> torch.Tensor:
    """Log-density of a sample site summed over its event dims, masked, not scaled."""
    lp = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(lp, mask=site["mask"])


def per_particle_example(lp: torch.Tensor, site, shape: torch.Size, *,
                         who: str = "importance") -> torch.Tensor:
    """A site's log-density as (K, B): plates nested inside the data plate (dims < -2) are
    summed; a site outside the data plate (dim -1) has no per-example weight and is refused."""
    in_data = any(f.vectorized and f.dim == -1 for f in site["cond_indep_stack"])
    if not in_data or lp.dim() < 1 or lp.shape[-1] != shape[-1]:
        raise ValueError(
            f"{who}: site {site['name']!r} (log-density shape {tuple(lp.shape)}) is not in the data plate "
            f"(dim -1, {shape[-1]} examples); the weights are per example, so every sample site must sit "
            "there (a global latent couples the examples' weights)")
    if lp.dim() > 2:
        lp = lp.reshape(-1, *lp.shape[-2:]).sum(0)
    return lp.expand(shape)


def particle_traces(model, guide, x, y, num_particles: int, **kwargs):
    """(model trace, guide trace): ``guide`` traced in the particle plate, ``model`` replayed
    on its draws; subsample sites pruned."""
    guide_tr = prune_subsample_sites(poutine.trace(
        particle_plate(guide, num_particles)).get_trace(x, y, **kwargs))
    model_tr = prune_subsample_sites(poutine.trace(poutine.replay(
        particle_plate(model, num_particles), trace=guide_tr)).get_trace(x, y, **kwargs))
    return model_tr, guide_tr


def log_weight_terms(model_trace, guide_trace, shape: torch.Size, *, who: str = "importance"):
    """(log p, log q, counted): log p and log q each (K, B), from every sample site of the
    model (observed x, latent z, the prior's own sites, factors) and of the guide, unscaled,
    summed per particle and example; ``counted`` is the scaled total Trace_ELBO counts."""
    lp = lq = 0.0
    counted = 0.0
    for sign, tr in ((1.0, model_trace), (-1.0, guide_trace)):
        for site in tr.nodes.values():
            if site["type"] != "sample":
                continue
            one = site_log_prob(site)
            counted = counted + sign * scale_and_mask(one, site["scale"]).sum()
            one = per_particle_example(one, site, shape, who=who)
            if sign > 0:
                lp = lp + one
            else:
                lq = lq + one
    return lp, lq, counted


def log_weights(vae, x, y=None, *, num_particles: int, joint: bool = False, **kwargs):
    """log w = log p(x, z) - log q(z|x), shaped (K, B), for z_1..K ~ q(z|x) from
    ``vae.guide`` and scored by ``vae.model``. With ``joint=True``: (log p(x, z), log q(z|x))."""
    model_tr, guide_tr = particle_traces(vae.model, vae.guide, x, y, num_particles, **kwargs)
    lp, lq, _ = log_weight_terms(model_tr, guide_tr, torch.Size((num_particles, x.shape[0])))
    return (lp, lq) if joint else lp - lq


def log_mean_exp_se(log_w: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(log mean_k w_k, its delta-method standard error sd(w)/(√K mean(w))) along ``dim``."""
    k = log_w.shape[dim]
    return _from_sums(torch.logsumexp(log_w, dim), torch.logsumexp(2 * log_w, dim), k)


def _from_sums(lse1: torch.Tensor, lse2: torch.Tensor, k: int):
    estimate = lse1 - math.log(k)
    if k < 2:
        return estimate, torch.full_like(estimate, float("nan"))
    # K Σw² / (Σw)² - 1 ≥ 0 (Cauchy-Schwarz); clamp the rounding error
    rel_var = (math.log(k) + lse2 - 2 * lse1).exp().sub(1).clamp_min(0.0)
    return estimate, (rel_var / (k - 1)).sqrt()


@torch.no_grad()
def log_marginal(vae, x, y=None, *, num_particles: int = 1000, particles_per_pass: int | None = None,
                 max_elements: int = 2 ** 25) -> tuple[torch.Tensor, torch.Tensor]:
    """Importance-sampled log p(x) per example with the guide as proposal, and its Monte
    Carlo standard error: log (1/K) Σ_k w_k over K = ``num_particles`` draws of q(z|x).

    The particles run in passes (``particles_per_pass``, by default as many as keep the
    K x B x example-size tensors under ``max_elements`` floats); the sums of w and w² are
    carried across passes in log space, so K is limited by time, not memory.
    Returns two float64 tensors of shape (B,), in nats.
    """
    if num_particles < 1:
        raise ValueError(f"num_particles must be a positive integer, got {num_particles!r}")
    b = x.shape[0]
    if particles_per_pass is None:
        per_particle = b * max(1, x[0].numel())
        particles_per_pass = max(1, min(num_particles, max_elements // per_particle))
    lse1 = lse2 = None
    with vae.unregistered():
        for start in range(0, num_particles, particles_per_pass):
            k = min(particles_per_pass, num_particles - start)
            lw = log_weights(vae, x, y, num_particles=k).double()
            one, two = torch.logsumexp(lw, 0), torch.logsumexp(2 * lw, 0)
            lse1 = one if lse1 is None else torch.logaddexp(lse1, one)
            lse2 = two if lse2 is None else torch.logaddexp(lse2, two)
    return _from_sums(lse1, lse2, num_particles)
