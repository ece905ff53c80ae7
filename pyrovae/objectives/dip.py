"""DIP-VAE: the ELBO minus a penalty that moments of the aggregate posterior match N(0, I).

Kumar, Sattigeri & Balakrishnan (2018), "Variational Inference of Disentangled Latent
Concepts from Unlabeled Observations". With C a covariance of the aggregate posterior
estimated on the batch,

    penalty = λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii - 1)²

    DIP-VAE-I:   C = Cov_batch[μ(x)]                      (covariance of the encoder means)
    DIP-VAE-II:  C = Cov_q(z) = E_batch[Σ(x)] + Cov_batch[μ(x)]

where μ(x), Σ(x) are the mean and covariance of q(z|x). Batch covariances use the 1/M
normalisation (the moment of the batch's empirical distribution, as in the paper's
E[μ μᵀ] - E[μ] E[μ]ᵀ).
"""

from __future__ import annotations

import torch

from ..options import check_choice, check_nonnegative
from .base import Objective, probe, register
from .tc import BatchMeans, factorised_base

KINDS = ("i", "ii")


def expected_covariance(q) -> torch.Tensor:
    """E_batch[Σ(x)], (..., D, D), for q(z|x) with batch shape (..., M): the mean of the
    covariance matrices of a MultivariateNormal, or of diag(variance) for a distribution
    factorised per dimension. ``ValueError`` for other families (no closed-form Σ(x))."""
    if isinstance(q, torch.distributions.MultivariateNormal):
        return q.covariance_matrix.mean(-3)
    factorised_base(q, "q(z|x) for DIP-VAE-II")
    return torch.diag_embed(q.variance.mean(-2))


def dip_covariance(q, kind: str) -> torch.Tensor:
    """The batch covariance the DIP penalty acts on: Cov[μ(x)] (``i``) or
    E[Σ(x)] + Cov[μ(x)] (``ii``), (..., D, D), over the batch dimension of ``q``."""
    check_choice("kind", kind, KINDS)
    mu = q.mean
    if mu.dim() < 2:
        raise ValueError(f"q(z|x) must have a batch dimension, got mean of shape {tuple(mu.shape)}")
    centered = mu - mu.mean(-2, keepdim=True)
    cov = centered.transpose(-1, -2) @ centered / mu.shape[-2]
    if kind == "ii":
        cov = cov + expected_covariance(q)
    return cov


def dip_terms(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_{i≠j} C_ij², Σ_i (C_ii - 1)²)`` for C = ``cov`` (..., D, D)."""
    diag = cov.diagonal(dim1=-2, dim2=-1)
    off = (cov - torch.diag_embed(diag)).pow(2).sum((-2, -1))  # not Σ C² - Σ diag²: cancellation
    return off, (diag - 1).pow(2).sum(-1)


@register("dip_vae")
class DIPVAE(Objective):
    """DIP-VAE: ELBO - λ_od Σ_{i≠j} C_ij² - λ_d Σ_i (C_ii - 1)², C = Cov[μ(x)] (i) or Cov_q(z) (ii)
    over the batch (Kumar et al. 2018).

    ``kind``: ``i`` (C = covariance of the encoder means) or ``ii`` (C = E[Σ(x)] +
    Cov[μ(x)], the covariance of the aggregate posterior; needs a normal or factorised
    guide). ``lambda_od``: weight of the off-diagonal terms; default 10, the middle of
    the usual sweep (disentanglement_lib: 1 to 50). ``lambda_d``: weight of the diagonal
    terms; null follows the paper: 10 λ_od for DIP-VAE-I, λ_od for DIP-VAE-II.

    As Pyro programs: the model gets ``pyro.factor(-penalty · N)`` with the penalty of the
    batch's q(z|x) (the guide's distribution at z, recorded as it runs). ``epoch_metrics``:
    train_dip_offdiagonal (Σ_{i≠j} C_ij²) and train_dip_diagonal (Σ_i (C_ii - 1)²),
    unweighted, with standard errors.
    """

    def __init__(self, vae, *, kind: str = "i", lambda_od: float = 10.0, lambda_d: float | None = None):
        super().__init__(vae)
        self.kind = check_choice("kind", kind, KINDS)
        self.lambda_od = check_nonnegative("lambda_od", lambda_od)
        if lambda_d is None:
            lambda_d = 10.0 * self.lambda_od if self.kind == "i" else self.lambda_od
        self.lambda_d = check_nonnegative("lambda_d", lambda_d)
        self.is_elbo = self.lambda_od == 0.0 and self.lambda_d == 0.0
        if self.kind == "ii":
            probed = probe(vae)
            if probed is not None:
                expected_covariance(probed[0])  # ValueError now, not at the first step
        self.metrics = BatchMeans("dip_offdiagonal", "dip_diagonal")
        self.model, self.guide = self.penalized(self._penalty, "dip_penalty")

    def penalty(self, q) -> torch.Tensor:
        """λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii - 1)² for the batch's q(z|x) (mean over any
        leading dimensions)."""
        off, diag = dip_terms(dip_covariance(q, self.kind))
        return (self.lambda_od * off + self.lambda_d * diag).mean()

    def _penalty(self, record: dict, x: torch.Tensor) -> torch.Tensor:
        q, _ = record["z"]["q"]
        off, diag = dip_terms(dip_covariance(q, self.kind))
        self.metrics.add(x.shape[0], dip_offdiagonal=off.mean(), dip_diagonal=diag.mean())
        return self.lambda_od * off.mean() + self.lambda_d * diag.mean()

    def epoch_metrics(self) -> dict:
        return self.metrics.summary()
