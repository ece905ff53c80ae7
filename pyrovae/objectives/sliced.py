"""The sliced-Wasserstein autoencoder: match the aggregate posterior q(z) to p(z) with the
sliced-Wasserstein distance, which needs only samples and sorting.

    swae:  -log p(x|z) - λ SW_p^p(q(z), p(z)),   z = mean of q(z|x) (or a draw)

SW_p^p(P, Q) = ∫_{S^{d-1}} W_p^p(θ#P, θ#Q) dθ, the p-th power of the Wasserstein distance
between the one-dimensional projections θ·z, averaged over directions θ uniform on the unit
sphere. In one dimension the optimal coupling of two equal-size samples pairs them in sorted
order, so W_p^p of the projections is (1/n) Σ_i |x_(i) - y_(i)|^p (Kolouri et al. 2019, eq. 11
and Algorithm 1; Bonneel et al. 2015, "Sliced and Radon Wasserstein barycenters of measures").
"""

from __future__ import annotations

import torch

from ..options import check_choice, check_int, check_nonnegative
from .base import Objective, register
from .mmd import ENCODERS, BatchLog, autoencoder_programs, latent_samples


def random_directions(d: int, projections: int, *, generator: torch.Generator | None = None,
                      device=None, dtype=None) -> torch.Tensor:
    """``projections`` directions uniform on the unit sphere S^{d-1}, as the columns of a
    (d, projections) matrix: normalised standard normal vectors."""
    g = torch.randn(d, projections, generator=generator, device=device, dtype=dtype)
    return g / g.norm(dim=0, keepdim=True)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, projections: int = 50, p: int = 2,
                       generator: torch.Generator | None = None, *,
                       directions: torch.Tensor | None = None) -> torch.Tensor:
    """Monte Carlo estimate of SW_p^p between the samples x (n, d) and y (n, d).

    (1/L) Σ_l (1/n) Σ_i |sort(x θ_l)_i - sort(y θ_l)_i|^p over L = ``projections`` random
    directions (from ``generator``, else torch's global RNG; or the columns of ``directions``).
    This is Kolouri et al.'s SW_c with c(a, b) = |a - b|^p, i.e. the p-th *power* of SW_p
    (SW_2² for p = 2; SW_1 itself for p = 1), in latent units to the p. In one dimension
    every direction is ±1 and the result is W_p^p of the two empirical distributions.
    Both samples must have the same size (the sorted coupling pairs them one to one).
    """
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein needs two (n, d) samples of equal shape, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    p = check_int("p", p, 1, 2)
    if directions is None:
        check_int("projections", projections)
        directions = random_directions(x.shape[1], projections, generator=generator,
                                       device=x.device, dtype=x.dtype)
    xs = (x @ directions).sort(dim=0).values
    ys = (y @ directions).sort(dim=0).values
    diff = (xs - ys).abs()
    return (diff if p == 1 else diff.pow(p)).mean()


@register("swae")
class SWAE(Objective):
    """SWAE: -log p(x|z) + λ SW_p^p(q(z), p(z)), sliced Wasserstein by sorting random projections.

    Kolouri, Pope, Martin & Rohde (2019), "Sliced-Wasserstein Autoencoder: An Embarrassingly
    Simple Generative Model", ICLR. The reconstruction cost is the likelihood's -log p(x|z)
    (with a ``normal`` likelihood of fixed scale σ, ‖x - G(z)‖² / (2σ²) + const); there is no
    KL (the z site is masked out of model and guide). ``encoder: deterministic`` (default, as
    in the paper) uses z = E_q[z|x]; ``stochastic`` uses z ~ q(z|x). The penalty projects the
    batch's z and as many draws from p(z) on ``projections`` random unit directions (fresh each
    step), sorts them and averages |difference|^p (:func:`sliced_wasserstein`, p in {1, 2});
    it is a ``pyro.factor`` "sliced_wasserstein" times λ = ``lam`` times ``num_data``.
    Epoch metrics: ``train_sliced_wasserstein`` ± ``train_sliced_wasserstein_se`` (SW_p^p in
    latent units to the p; mean over the epoch's steps).
    """

    def __init__(self, vae, *, lam: float = 10.0, projections: int = 50, p: int = 2,
                 encoder: str = "deterministic"):
        super().__init__(vae)
        self.lam = check_nonnegative("lam", lam)
        self.projections = check_int("projections", projections)
        self.p = check_int("p", p, 1, 2)
        self.encoder = check_choice("encoder", encoder, ENCODERS)
        self.model, self.guide = autoencoder_programs(vae, encoder)
        self._log = BatchLog("train_sliced_wasserstein")
        self.model, self.guide = self.penalized(self._penalty, "sliced_wasserstein")

    def _penalty(self, record, x):
        zq, zp = latent_samples(record)
        sw = sliced_wasserstein(zq, zp, self.projections, self.p)
        self._log.add(sw)
        return self.lam * sw

    def epoch_metrics(self) -> dict:
        return self._log.pop()
