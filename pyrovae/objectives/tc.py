"""β-TCVAE and the minibatch estimators of the aggregate posterior it needs.

The KL term of the ELBO, averaged over the data set, splits into three parts
(Chen, Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement in VAEs")::

    E_p(x) KL(q(z|x) || p(z)) = I_q(x; z)                      index-code MI
                              + KL(q(z) || Π_d q(z_d))          total correlation (TC)
                              + Σ_d KL(q(z_d) || p(z_d))         dimension-wise KL (DWKL)

with q(z) = (1/N) Σ_n q(z|x_n) the aggregate posterior of the N training examples. For
z_i ~ q(z|x_i) the per-example terms are::

    mi_i   = log q(z_i|x_i)       - log q(z_i)
    tc_i   = log q(z_i)           - Σ_d log q(z_id)
    dwkl_i = Σ_d log q(z_id)      - log p(z_i)

They telescope to log q(z_i|x_i) - log p(z_i), the Monte Carlo KL of the ELBO, whatever
estimate of log q(z_i) and log q(z_id) is plugged in: with α = β = γ = 1 the β-TCVAE
objective *is* the ELBO, sample by sample. q(z_i) and q(z_id) are estimated from the
minibatch of M examples (:func:`log_qz_estimates`); both estimators are exact when the
minibatch is the whole data set (M = N).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

from ..options import check_choice, check_nonnegative
from .base import Objective, probe, register, scale_sites

SAMPLING = ("mss", "mws")


# ---- factorised distributions -----------------------------------------------------------
def factorised_base(d, what: str = "distribution"):
    """The univariate base of ``d`` = Independent(base, 1): a distribution with event shape
    () and batch shape (..., D) whose log-density at z is Σ_d base.log_prob(z)_d.

    Raises ``ValueError`` naming ``what`` when ``d`` is not factorised per dimension that way.
    """
    base, ndims = d, 0
    while isinstance(base, torch.distributions.Independent):
        ndims += base.reinterpreted_batch_ndims
        base = base.base_dist
    if ndims != 1 or tuple(base.event_shape) != () or len(d.event_shape) != 1:
        raise ValueError(
            f"{what} must factorise over the latent dimensions (an Independent distribution of a "
            f"univariate family with event shape (latent_dim,), like Normal(...).to_event(1)); "
            f"got {type(d).__name__} with event shape {tuple(d.event_shape)}")
    return base


def _check_batch(z: torch.Tensor, q, what: str):
    if z.dim() < 2:
        raise ValueError(f"z must have shape (..., batch, latent_dim), got {tuple(z.shape)}")
    if tuple(q.batch_shape) != tuple(z.shape[:-1]) or tuple(q.event_shape) != (z.shape[-1],):
        raise ValueError(f"{what} must have batch shape {tuple(z.shape[:-1])} and event shape "
                         f"({z.shape[-1]},), got {tuple(q.batch_shape)} and {tuple(q.event_shape)}")


def pair_log_probs(z: torch.Tensor, q) -> tuple[torch.Tensor, torch.Tensor]:
    """``(joint, dims)``: joint[..., i, j] = log q(z_i | x_j), dims[..., i, j, d] = log q_d(z_id | x_j).

    ``z``: (..., M, D); ``q`` is the batch's q(z|x_j) (batch shape (..., M), event shape (D,)):
    a distribution factorised per dimension (:func:`factorised_base`) or a
    MultivariateNormal (its per-dimension marginals are normal with the diagonal
    variances). Leading dimensions (independent batches, particles) are kept.
    """
    _check_batch(z, q, "q(z|x)")
    # value[i, ..., 1, :] = z_i, broadcast against q's batch (..., M): [i, ..., j] scores z_i
    # under q(.|x_j); the i axis then moves back next to j
    zi = z.movedim(-2, 0).unsqueeze(-2)
    if isinstance(q, torch.distributions.MultivariateNormal):
        joint = q.log_prob(zi).movedim(0, -2)
        dims = dist.Normal(q.loc, q.variance.sqrt()).log_prob(zi).movedim(0, -3)
        return joint, dims
    dims = factorised_base(q, "q(z|x)").log_prob(zi).movedim(0, -3)
    return dims.sum(-1), dims


def log_importance_weights(batch_size: int, num_data: int | None, sampling: str, *,
                           dtype=torch.float32, device=None) -> torch.Tensor:
    """(M, M) matrix of log w_ij with log q(z_i) ≈ logsumexp_j [log q(z_i|x_j) + log w_ij].

    ``mss`` (minibatch-stratified sampling): z_i was drawn from q(z|x_i), which carries
    weight 1/N in q(z); the other M - 1 examples are a uniform sample of the other N - 1,
    each standing for (N - 1)/(M - 1) of them::

        w_ii = 1/N,   w_ij = (N - 1) / (N (M - 1))   (j != i)

    so the weighted sum is an unbiased estimate of q(z_i) (its log is biased low by about
    Var/2q², O(1/M)). These are Chen et al.'s MSS weights (which give one of the other
    examples the weight (N - M + 1)/(N (M - 1)) and the rest 1/(M - 1)) averaged over which
    example plays that role, i.e. conditioned on the unordered batch: the same expectation
    and, by Rao-Blackwell, no more variance.

    ``mws`` (minibatch-weighted sampling): every example, z_i's own included, weighs
    1/M, i.e. log q(z_i) ≈ logsumexp_j log q(z_i|x_j) - log M. Consistent, but it
    overweights q(z_i|x_i) (1/M instead of 1/N), so I(x; z) is estimated at most log M.
    Chen et al.'s code subtracts log(N·M) instead of log M: a constant -log N on every
    log-density, which leaves gradients alone but shifts the reported terms (TC by
    (D - 1) log N); the weights here sum to 1, so the estimates converge to the true values.

    ``num_data`` N (>= M; None: the batch is the whole data set). With M = N both are
    exact. With M = 1 the only weight is w_11 = 1 (no other example to learn q(z) from).
    """
    check_choice("sampling", sampling, SAMPLING)
    m = int(batch_size)
    n = m if num_data is None else int(num_data)
    if n < m:
        raise ValueError(f"num_data ({n}) must be at least the batch size ({m})")
    if m == 1:
        return torch.zeros(1, 1, dtype=dtype, device=device)
    if sampling == "mws":
        return torch.full((m, m), -math.log(m), dtype=dtype, device=device)
    off = math.log(n - 1) - math.log(n) - math.log(m - 1)
    w = torch.full((m, m), off, dtype=dtype, device=device)
    w.diagonal().fill_(-math.log(n))
    return w


def log_qz_estimates(z: torch.Tensor, q, num_data: int | None = None, sampling: str = "mss"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Minibatch estimates of ``(log q(z_i), Σ_d log q(z_id))`` for each row z_i of ``z``.

    ``z``: (..., M, D), row i drawn from q(z|x_i); ``q``: the batch's q(z|x) (batch shape
    (..., M)); leading dimensions are independent batches.
    q(z) = (1/N) Σ_n q(z|x_n) is the aggregate posterior of the N = ``num_data`` training
    examples and q(z_d) its marginals. Weights: :func:`log_importance_weights`. The joint is
    a logsumexp over j of Σ_d log q(z_id|x_j) (sum over dimensions *inside*); the product of
    marginals is Σ_d of a logsumexp over j per dimension (sum *outside*).
    """
    joint, dims = pair_log_probs(z, q)
    logw = log_importance_weights(z.shape[-2], num_data, sampling, dtype=joint.dtype, device=joint.device)
    log_qz = torch.logsumexp(joint + logw, dim=-1)
    log_prod_marginals = torch.logsumexp(dims + logw.unsqueeze(-1), dim=-2).sum(-1)
    return log_qz, log_prod_marginals


def decompose_kl(z: torch.Tensor, q, p, num_data: int | None = None, sampling: str = "mss"
                 ) -> dict[str, torch.Tensor]:
    """Per-example index-code MI, total correlation and dimension-wise KL (nats), shape (..., M).

    ``mi + tc + dwkl == log q(z|x) - log p(z)`` exactly (the ELBO's Monte Carlo KL); each
    term is a minibatch estimate whose mean over the batch estimates the matching term of
    Chen et al.'s decomposition. ``p`` is the prior p(z) and must factorise per dimension
    (otherwise the third term is not a sum of dimension-wise KLs): a ``ValueError`` if not.
    """
    factorised_base(p, "the prior p(z)")
    if tuple(p.event_shape) != (z.shape[-1],):
        raise ValueError(f"the prior p(z) has event shape {tuple(p.event_shape)}, "
                         f"z has {z.shape[-1]} dimensions")
    log_qz, log_prod = log_qz_estimates(z, q, num_data, sampling)
    log_qzx = q.log_prob(z)
    log_pz = p.log_prob(z)
    return {"mi": log_qzx - log_qz, "tc": log_qz - log_prod, "dwkl": log_prod - log_pz}


# ---- helpers shared by the aggregate-posterior objectives --------------------------------
class BatchMeans:
    """Running per-step batch means for ``epoch_metrics``: a weighted mean (weights =
    batch sizes) and its standard error from the spread of the step means,
    se² = K/(K-1) Σ_k w_k² (m_k - m̄)² / (Σ_k w_k)² (NaN with one step). Values stay on
    the device until read, so recording costs no GPU sync."""

    def __init__(self, *names: str):
        self.names = names
        self.reset()

    def reset(self):
        self.values: dict[str, list] = {k: [] for k in self.names}
        self.weights: list[float] = []

    def add(self, weight: int, **values: torch.Tensor):
        self.weights.append(float(weight))
        for k in self.names:
            self.values[k].append(values[k].detach().reshape(()))

    def summary(self, prefix: str = "train_") -> dict:
        out = {}
        if not self.weights:
            return out
        w = torch.tensor(self.weights, dtype=torch.float64)
        w = w / w.sum()
        k = w.numel()
        for name in self.names:
            m = torch.stack(self.values[name]).double().cpu()
            mean = (w * m).sum()
            se = ((w.pow(2) * (m - mean).pow(2)).sum() * k / (k - 1)).sqrt().item() if k > 1 else float("nan")
            out[prefix + name], out[prefix + name + "_se"] = mean.item(), se
        self.reset()
        return out


@register("beta_tcvae")
class BetaTCVAE(Objective):
    """β-TCVAE: E_q[log p(x|z)] - α I_q(x;z) - β TC(z) - γ Σ_d KL(q(z_d) || p(z_d)) (Chen et al. 2018).

    The KL term of the ELBO split into index-code mutual information, total correlation
    and dimension-wise KL of the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) (Chen,
    Li, Grosse & Duvenaud 2018, "Isolating Sources of Disentanglement in VAEs").
    Defaults α = γ = 1 as in the paper (which fixes them and varies β); β = 6 is the middle
    of the usual sweep β ∈ {1, 2, 4, 6, 8, 10} (the paper gives no single value): tune it.
    With α = β = γ = 1 the objective equals the ELBO, sample by sample.

    ``sampling``: the minibatch estimator of log q(z) and log q(z_d): ``mss``
    (minibatch-stratified, unbiased for q(z)) or ``mws`` (minibatch-weighted); see
    :func:`log_importance_weights`. N is the ``num_data`` of the training step.

    As Pyro programs: the z site is masked out of the ELBO (``scale_sites({"z": 0})``) and
    the model gets ``pyro.factor(-(α MI + β TC + γ DWKL) · N)`` with the batch means of the
    per-example terms of :func:`decompose_kl`. The guide must factorise per dimension (or
    be a full-covariance normal) and so must the prior. ``epoch_metrics``: train_mi,
    train_tc, train_dwkl (nats per example, with standard errors).
    """

    def __init__(self, vae, *, alpha: float = 1.0, beta: float = 6.0, gamma: float = 1.0,
                 sampling: str = "mss"):
        super().__init__(vae)
        self.alpha = check_nonnegative("alpha", alpha)
        self.beta = check_nonnegative("beta", beta)
        self.gamma = check_nonnegative("gamma", gamma)
        self.sampling = check_choice("sampling", sampling, SAMPLING)
        self.is_elbo = self.alpha == self.beta == self.gamma == 1.0
        probed = probe(vae)
        if probed is not None:
            q, p = probed
            pair_log_probs(q.sample(), q)  # raises ValueError for a guide we cannot score pairwise
            factorised_base(p, "the prior p(z) (model.prior)")
        self.metrics = BatchMeans("mi", "tc", "dwkl")
        self._num_data: int | None = None
        masked_model = scale_sites({"z": 0.0})(vae.model)
        masked_guide = scale_sites({"z": 0.0})(vae.guide)
        self.model, self.guide = masked_model, masked_guide
        model, self.guide = self.penalized(self._penalty, "tcvae_penalty")

        def model_with_num_data(x=None, y=None, **kw):
            # the penalty needs N for the importance weights; Objective.penalized passes
            # only (record, x), so N is kept here for the duration of the call
            self._num_data = kw.get("num_data")
            return model(x, y, **kw)

        self.model = model_with_num_data

    def _penalty(self, record: dict, x: torch.Tensor) -> torch.Tensor:
        q, z = record["z"]["q"]
        p, _ = record["z"]["p"]
        terms = decompose_kl(z, q, p, self._num_data, self.sampling)
        # batch means (averaged over any particle dimension too): per-example estimates
        mi, tc, dwkl = terms["mi"].mean(), terms["tc"].mean(), terms["dwkl"].mean()
        self.metrics.add(x.shape[0], mi=mi, tc=tc, dwkl=dwkl)
        return self.alpha * mi + self.beta * tc + self.gamma * dwkl

    def epoch_metrics(self) -> dict:
        return self.metrics.summary()
