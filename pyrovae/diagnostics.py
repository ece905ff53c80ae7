"""Posterior-collapse diagnostics of the latent site ``z``, read off Pyro traces.

* KL per latent dimension: KL(q(z_j|x) || p(z_j)) between the 1-D marginals; analytic
  where torch knows the pair, else Monte Carlo. The dimensions sum to the total KL when
  q(z|x) and p(z) both factorise over dimensions.
* Active units (Burda et al. 2016): dimension j is active when Cov_x(E_q[z_j|x]) > 0.01.
* Mutual information I(x; z) under the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n):
  I = E_x E_q(z|x)[log q(z|x) - log q(z)], with one z_i ~ q(z|x_i) per example and q(z_i)
  the mixture over the N examples evaluated (Hoffman & Johnson 2016). The estimate is at
  most log N; it is biased low when I is near log N.

q and p come from tracing ``vae.guide`` and replaying ``vae.model`` on its draw, so the
prior a model really uses (a conditional p(z|y), a VampPrior) is the one compared.
"""

from __future__ import annotations

import math

import torch
import torch.distributions as td
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites

LATENT = "z"
"""The latent site the diagnostics describe (every pyrovae model names its code ``z``)."""

ACTIVE_THRESHOLD = 0.01


def latent_pairs(vae, x, y=None, *, batch_size: int = 1024):
    """Yield (q(z|x), p(z), z) for the ``z`` site, batch by batch: the guide's and the
    model's distributions (batch shape (B,), event (latent_dim,)) and the guide's draw."""
    ys = [None] * -(-x.shape[0] // batch_size) if y is None else y.to(x.device).split(batch_size)
    with torch.no_grad(), vae.unregistered():
        for xb, yb in zip(x.split(batch_size), ys, strict=True):
            guide_tr = prune_subsample_sites(poutine.trace(vae.guide).get_trace(xb, yb))
            model_tr = prune_subsample_sites(
                poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(xb, yb))
            q, p = guide_tr.nodes[LATENT], model_tr.nodes[LATENT]
            yield q["fn"], p["fn"], q["value"]


def marginals(d: td.Distribution) -> td.Distribution | None:
    """The 1-D marginals of a distribution over vectors, as one univariate distribution
    with batch shape (..., L); None when they have no closed form (a flow)."""
    if isinstance(d, td.Independent) and d.reinterpreted_batch_ndims == 1 and d.base_dist.event_shape == ():
        return d.base_dist
    if isinstance(d, td.MultivariateNormal):
        return td.Normal(d.loc, d.variance.sqrt())
    if isinstance(d, td.MixtureSameFamily):
        comp = marginals(d.component_distribution)  # batch (..., K, L)
        if comp is None:
            return None
        try:
            moved = type(comp)(**{k: getattr(comp, k).transpose(-1, -2) for k in comp.arg_constraints})
        except (TypeError, ValueError, RuntimeError):
            return None
        logits = d.mixture_distribution.logits.unsqueeze(-2).expand(*moved.batch_shape)
        return td.MixtureSameFamily(td.Categorical(logits=logits), moved)
    return None


def kl_per_dimension(q: td.Distribution, p: td.Distribution, *, num_samples: int = 64):
    """Per-example KL(q(z_j|x) || p(z_j)), shape (B, L), and whether it is analytic; None
    when either distribution's marginals are unknown."""
    qm, pm = marginals(q), marginals(p)
    if qm is None or pm is None:
        return None, False
    qm = qm.expand(torch.broadcast_shapes(qm.batch_shape, pm.batch_shape))
    try:
        return td.kl_divergence(qm, pm), True
    except NotImplementedError:
        z = qm.sample((num_samples,))
        return (qm.log_prob(z) - pm.log_prob(z)).mean(0), False


def active_units(means: torch.Tensor, threshold: float = ACTIVE_THRESHOLD):
    """(count, per-dimension variance across examples of E_q[z|x]) for means (N, L)."""
    var = means.double().var(0, unbiased=True)
    return int((var > threshold).sum()), var


def mutual_information(qs: list[td.Distribution], zs: list[torch.Tensor], *,
                       chunk: int = 512) -> torch.Tensor:
    """Per-example terms log q(z_i|x_i) - log (1/N) Σ_n q(z_i|x_n) of the aggregate-posterior
    MI estimate (their mean is the estimate), for guides ``qs`` (batches of examples) and
    one draw ``zs`` per example."""
    z = torch.cat(zs)
    n = z.shape[0]
    own = torch.cat([q.log_prob(zb) for q, zb in zip(qs, zs, strict=True)]).double()
    terms = []
    for zc in z.split(chunk):
        cols = [q.log_prob(zc[:, None, :].expand(zc.shape[0], q.batch_shape[0], zc.shape[-1])).double()
                for q in qs]  # each (M, B_n): log q(z_m | x_n)
        terms.append(torch.logsumexp(torch.cat(cols, dim=1), dim=1) - math.log(n))
    return own - torch.cat(terms)
