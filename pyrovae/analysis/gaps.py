"""Inference gaps of a VAE's guide, per example.

Gaps (Cremer, Li and Duvenaud 2018, "Inference suboptimality in variational autoencoders"),
nats per example, each with its Monte Carlo standard error:

    inference gap     = log p(x) - ELBO(q_φ)  = approximation gap + amortization gap
    approximation gap = log p(x) - ELBO(q*)   (the family cannot express p(z|x))
    amortization gap  = ELBO(q*) - ELBO(q_φ)  (the encoder does not reach the family's best)

q_φ is the amortized guide; q* the best member of the same family for that example alone,
found as Cremer et al. do: the guide's distribution parameters are copied per example and
optimised on that example's ELBO from the encoder's output (``local_steps`` Adam steps,
``local_particles`` reparameterised draws a step, learning rate ``local_lr`` decayed
geometrically to 1 % of it so the last iterates settle). For the Gaussian heads
(``diagonal_normal``, ``full_rank``) the parameters are the head's linear output (mean, raw
scales, Cholesky entries), all examples in one batch, and the gradient is the
"sticking the landing" one (Roeder et al. 2017: log q scored with the parameters held, its
zero-mean score term dropped), whose variance vanishes at the exact posterior, so q* lands
on it instead of jittering around it. Any other head (a flow) gets one copy of the whole head
per example, its encoder features held fixed, and the plain reparameterised gradient. The
optimisation is stochastic, so ELBO(q*) can only fall short of the family's best: the
amortization gap is, if anything, underestimated.

ELBO(q) = mean_k log w_k, w_k = p(x, z_k) / q(z_k | x), z_k ~ q, K = ``num_particles`` (s.e.
sd(log w)/√K). log p(x) = log mean_k w_k (delta-method s.e.), importance sampled with q* as
proposal (the amortized guide when ``local_steps=0``): a too-narrow amortized guide gives
heavy-tailed weights and a log p(x) biased low, which would push the approximation gap below
zero; the amortized-proposal estimate is kept as ``log_px_amortized``. The approximation gap
is paired on the same draws (log mean w - mean log w, s.e. sd(w/w̄ - log w)/√K by the delta
method); the other gaps combine independent estimates, s.e. in quadrature.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from pyro import poutine
from torch import nn

from ..errors import SpecError
from ..guides import DiagonalNormalGuide, FullRankGuide
from ..importance import log_mean_exp_se, log_weight_terms, particle_traces

LATENT = "z"
MAX_ELEMENTS = 2 ** 24  # particles x examples x example size in one pass
LOCAL_LR_DECAY = 0.01  # q*'s learning rate ends at this fraction of local_lr
WHO = "NUTS refinement"


# ---- gaps ---------------------------------------------------------------------------------------
def inference_gaps(vae, x, y, *, num_particles: int, seeds, local_steps: int, local_particles: int,
                   local_lr: float) -> dict:
    """ELBO(q_φ), log p(x), ELBO(q*) and the three gaps per example (nats, with s.e.), plus
    the guides' draws; keys as :class:`Refinement`'s fields. Call inside :func:`_frozen`."""
    torch.manual_seed(seeds[0])
    amortized, draws = _log_weights(vae, [(slice(None), vae.guide)], x, y, num_particles)
    elbo, elbo_se = _mean_se(amortized)
    log_px_amortized, log_px_amortized_se = log_mean_exp_se(amortized)
    out = {"elbo": elbo, "elbo_se": elbo_se, "log_px_amortized": log_px_amortized,
           "log_px_amortized_se": log_px_amortized_se, "guide_draws": draws}
    if local_steps == 0:
        gap, gap_se = paired_gap(amortized)
        out.update(log_px=log_px_amortized, log_px_se=log_px_amortized_se, inference_gap=gap,
                   inference_gap_se=gap_se, log_px_proposal="the amortized guide")
    else:
        torch.manual_seed(seeds[1])
        parts = fit_local_guide(vae, x, y, steps=local_steps, particles=local_particles, lr=local_lr)
        torch.manual_seed(seeds[2])
        local, local_draws = _log_weights(vae, parts, x, y, num_particles)
        out["elbo_local"], out["elbo_local_se"] = _mean_se(local)
        out.update(local_draws=local_draws, log_px_proposal="q*")
        out["log_px"], out["log_px_se"] = log_mean_exp_se(local)
        out["approximation_gap"], out["approximation_gap_se"] = paired_gap(local)
        out["amortization_gap"] = out["elbo_local"] - elbo
        out["amortization_gap_se"] = _quadrature(out["elbo_local_se"], elbo_se)
        out["inference_gap"] = out["log_px"] - elbo
        out["inference_gap_se"] = _quadrature(out["log_px_se"], elbo_se)
    return {k: v if isinstance(v, str) else numpy_array(v, np.float32 if k.endswith("draws") else np.float64)
            for k, v in out.items()}


@torch.no_grad()
def _log_weights(vae, parts, x, y, num_particles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log w (K, n) in float64, z draws (K, n, L)), K = ``num_particles``, for guide programs
    ``parts`` = [(rows of x, guide)], scored by ``vae.model``, in passes of bounded size."""
    lws, zs = [], []
    for rows, guide in parts:
        xr, yr = x[rows], None if y is None else y[rows]
        n = xr.shape[0]
        per_pass = max(1, min(num_particles, MAX_ELEMENTS // max(1, n * xr[0].numel())))
        lw, zz = [], []
        for start in range(0, num_particles, per_pass):
            k = min(per_pass, num_particles - start)
            model_tr, guide_tr = particle_traces(vae.model, guide, xr, yr, k)
            lp, lq, _ = log_weight_terms(model_tr, guide_tr, torch.Size((k, n)), who=WHO)
            lw.append((lp - lq).double())
            zz.append(guide_tr.nodes[LATENT]["value"].reshape(k, n, -1))
        lws.append(torch.cat(lw))
        zs.append(torch.cat(zz))
    return torch.cat(lws, 1), torch.cat(zs, 1)


def _mean_se(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO estimate mean_k log w_k and its standard error sd/√K, per example."""
    return log_w.mean(0), log_w.std(0) / math.sqrt(log_w.shape[0])


def paired_gap(log_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log mean_k w_k - mean_k log w_k on the same draws and its delta-method standard error
    sd_k(w_k / w̄ - log w_k) / √K, per example (nats)."""
    log_mean, _ = log_mean_exp_se(log_w)
    influence = (log_w - log_mean).exp() - log_w
    return log_mean - log_w.mean(0), influence.std(0) / math.sqrt(log_w.shape[0])


def _quadrature(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.pow(2) + b.pow(2)).sqrt()


# ---- q*: the guide's family fitted to one example at a time -------------------------------------
class LocalGuide:
    """q* as a Pyro guide program: ``vae.guide`` with the guide head's output replaced by
    ``head()`` (the examples' own distributions)."""

    def __init__(self, vae, head: nn.Module):
        self.vae, self.head = vae, head

    def __call__(self, x, y=None, **kwargs):
        handle = self.vae.guide_head.register_forward_hook(lambda module, args, output: self.head())
        try:
            return self.vae.guide(x, y, **kwargs)
        finally:
            handle.remove()


class _OwnParameters(nn.Module):
    """Each example's distribution parameters θ_i (initially linear(h(x_i))) fed through a
    copy of a Gaussian head whose linear layer is the identity."""

    def __init__(self, head, features):
        super().__init__()
        self.head = copy.deepcopy(head)
        self.head.linear = nn.Identity()
        with torch.no_grad():
            self.theta = nn.Parameter(head.linear(features).clone())

    def forward(self):
        return self.head(self.theta)

    def detached(self):
        """The same distributions with θ cut from the graph (the sticking-the-landing score)."""
        return self.head(self.theta.detach())


class _OwnHead(nn.Module):
    """A trainable copy of any guide head, on one example's fixed features."""

    def __init__(self, head, features):
        super().__init__()
        self.head = copy.deepcopy(head).requires_grad_(True)
        self.register_buffer("features", features.detach().clone())

    def forward(self):
        return self.head(self.features)


def fit_local_guide(vae, x, y, *, steps: int, particles: int, lr: float) -> list[tuple[slice, LocalGuide]]:
    """q* as [(rows of x, guide program)]: per-example copies of the guide's distribution
    parameters fitted by Adam on each example's ELBO (mean log weight of ``particles``
    reparameterised draws a step), the learning rate decayed geometrically from ``lr`` to
    ``lr`` x 0.01. One part for a Gaussian head, one per example otherwise. Call inside
    :func:`_frozen`."""
    features = _head_features(vae, x, y)
    head = vae.guide_head
    if type(head) in (DiagonalNormalGuide, FullRankGuide) and isinstance(head.linear, nn.Linear):
        parts = [(slice(None), LocalGuide(vae, _OwnParameters(head, features)))]
    else:
        parts = [(slice(i, i + 1), LocalGuide(vae, _OwnHead(head, features[i:i + 1])))
                 for i in range(x.shape[0])]
    for rows, guide in parts:
        _adam(vae, guide, x[rows], None if y is None else y[rows], steps, particles, lr)
    return parts


def _adam(vae, guide: LocalGuide, x, y, steps: int, particles: int, lr: float) -> None:
    params = list(guide.head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=LOCAL_LR_DECAY ** (1.0 / max(1, steps - 1)))
    stl = getattr(guide.head, "detached", None)
    for _ in range(steps):
        model_tr, guide_tr = particle_traces(vae.model, guide, x, y, particles)
        lp, lq, _ = log_weight_terms(model_tr, guide_tr, torch.Size((particles, x.shape[0])), who=WHO)
        if stl is not None:  # log q with θ held: the score term (zero mean) leaves the gradient
            lq = stl().log_prob(guide_tr.nodes[LATENT]["value"])
        loss = -(lp - lq).mean(0).sum()  # the examples' parameters are disjoint: the sum optimises each
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    guide.head.requires_grad_(False)


def _head_features(vae, x, y) -> torch.Tensor:
    """The guide head's input for x: encoder features (joined with labels where the model does)."""
    seen = []
    handle = vae.guide_head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            poutine.trace(vae.guide).get_trace(x, y)
    finally:
        handle.remove()
    if len(seen) != 1:
        raise SpecError("model.variant", f"q* needs vae.guide to call its guide head once, it called it "
                        f"{len(seen)} times; use local_steps=0")
    return seen[0].detach()


def numpy_array(t, dtype=np.float64) -> np.ndarray:
    return t.detach().cpu().numpy().astype(dtype)
