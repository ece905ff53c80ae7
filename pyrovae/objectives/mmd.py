"""Objectives that match the aggregate posterior q(z) = E_data q(z|x) to the prior p(z)
with the maximum mean discrepancy (MMD) instead of (or as well as) the per-example KL.

    info_vae:  E_q log p(x|z) - (1-α) KL(q(z|x) || p(z)) - (α+λ-1) MMD²(q(z), p(z))
    wae:       -log p(x|z) - λ MMD²(q(z), p(z)),   z = mean of q(z|x) (or a draw)

MMD²(P, Q) = E k(x,x') + E k(y,y') - 2 E k(x,y) for x,x' ~ P, y,y' ~ Q (Gretton et al. 2012,
"A kernel two-sample test", JMLR 13). It is estimated on each batch from the batch's z ~ q(z|x),
recorded from the guide, against as many draws from p(z) (:func:`mmd2`, the unbiased
U-statistic). The penalty is a ``pyro.factor`` added to the model by
:meth:`Objective.penalized`, multiplied by ``num_data`` so that it is on the ELBO's scale (a sum
over the data set): loss = N [ -recon + (KL terms) + weight · MMD² ] per example on average.

The prior draws are reparameterised (``rsample``) where the prior allows it, so a learned prior
(``learned_normal``, ``flow``) is pulled toward q(z) as well; a prior without ``rsample``
(``mixture``, ``vamp``) gets no gradient from the penalty.

Kernels (``kernel``), with ``bandwidth`` h, a positive number or ``median``:

* ``rbf``: k(a, b) = exp(-‖a-b‖² / (2 h²)).
* ``imq``: k(a, b) = C / (C + ‖a-b‖²), C = 2 d h² (d = latent_dim); with h² the prior's variance
  per dimension this is the C = 2 d σ_z² of Tolstikhin et al. (2018), §4.
* ``median`` (the median heuristic, Gretton et al. 2012): h is set on each batch, without
  gradient, so that the kernel's constant equals the median squared distance m² between distinct
  points of the pooled sample (q draws and p draws together): 2h² = m² for rbf (k = e⁻¹ at the
  median distance), C = 2dh² = m² for imq (k = 1/2 there). For p(z) = N(0, I) and q(z) ≈ p(z),
  m² ≈ 2d. A data-dependent bandwidth makes the estimate slightly biased; a fixed number keeps
  it unbiased.
* ``scales``: the kernel is summed over multipliers s of its constant (2h²·s for rbf, C·s for
  imq); ``[1]`` is the single kernel, ``[0.1, 0.2, 0.5, 1, 2, 5, 10]`` a multi-scale imq as used
  with WAEs. k(a, a) = len(scales), so MMD² <= 2·len(scales).

The penalty adds about 3 B² d flops per step for a batch of B (three Gram matrices).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger

from ..options import check_choice, check_finite, check_nonnegative, check_positive, is_number
from .base import Objective, register, scale_sites

# ---- kernels and the MMD estimator ----------------------------------------------------------


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i - b_j‖² for rows of ``a`` (n, d) and ``b`` (m, d): an (n, m) matrix, clamped at 0
    (the expansion ‖a‖² + ‖b‖² - 2 a·b can round below zero)."""
    sq = a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1) - 2.0 * a @ b.transpose(-1, -2)
    return sq.clamp_min(0.0)


def rbf(a: torch.Tensor, b: torch.Tensor, *, bandwidth=1.0, scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """Gaussian kernel Gram matrix Σ_s exp(-‖a_i-b_j‖² / (2 h² s)), h = ``bandwidth``."""
    sq = squared_distances(a, b)
    two_h2 = 2.0 * torch.as_tensor(bandwidth, dtype=sq.dtype, device=sq.device) ** 2
    return sum(torch.exp(-sq / (two_h2 * s)) for s in scales)


def imq(a: torch.Tensor, b: torch.Tensor, *, bandwidth=1.0, scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """Inverse multiquadratic kernel Gram matrix Σ_s sC / (sC + ‖a_i-b_j‖²), C = 2 d h².

    Tolstikhin et al. (2018), "Wasserstein Auto-Encoders", ICLR: C = 2 d σ² for a prior
    N(0, σ² I_d); heavier tails than the rbf kernel, so it still has gradient far from the prior.
    """
    sq = squared_distances(a, b)
    d = a.shape[-1]
    c = 2.0 * d * torch.as_tensor(bandwidth, dtype=sq.dtype, device=sq.device) ** 2
    return sum((s * c) / (s * c + sq) for s in scales)


KERNELS: dict[str, Callable] = {"rbf": rbf, "imq": imq}


def median_bandwidth(x: torch.Tensor, y: torch.Tensor, kernel: str) -> torch.Tensor:
    """The median heuristic: h such that the kernel's constant is the median squared distance
    m² between distinct points of the pooled sample (2h² = m² for rbf; 2dh² = m² for imq).
    Computed without gradient; the lower median when the number of pairs is even."""
    check_choice("kernel", kernel, KERNELS)
    with torch.no_grad():
        z = torch.cat([x, y]).detach()
        sq = squared_distances(z, z)
        i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
        m2 = sq[i, j].median()
        m2 = m2.clamp_min(torch.finfo(m2.dtype).tiny)  # all points equal: any h gives k = 1
        h2 = m2 / 2.0 if kernel == "rbf" else m2 / (2.0 * z.shape[-1])
        return h2.sqrt()


def mmd2(x: torch.Tensor, y: torch.Tensor, kernel: str = "rbf", *, bandwidth="median",
         scales: Sequence[float] = (1.0,)) -> torch.Tensor:
    """Unbiased estimate of MMD²(P, Q) from x (n, d) ~ P and y (m, d) ~ Q (n, m >= 2).

    The U-statistic of Gretton et al. (2012), eq. 3, diagonal terms excluded:

        1/(n(n-1)) Σ_{i≠j} k(x_i,x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i,y_j) - 2/(nm) Σ_{i,j} k(x_i,y_j)

    Its expectation is exactly 0 when P = Q (for a fixed ``bandwidth``), so single estimates can be
    negative. ``kernel``: ``rbf``, ``imq`` or a callable ``k(a, b) -> Gram matrix``;
    ``bandwidth``: a positive number or ``median`` (see the module docstring); ``scales``:
    multipliers of the kernel's constant, summed over.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"mmd2 needs two (n, d) samples of equal d, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD² needs at least 2 points per sample, got {n} and {m}")
    if callable(kernel):
        k = kernel
    else:
        check_choice("kernel", kernel, KERNELS)
        if isinstance(bandwidth, torch.Tensor):
            h = bandwidth
        else:
            bandwidth = check_bandwidth("bandwidth", bandwidth)
            h = median_bandwidth(x, y, kernel) if bandwidth == "median" else bandwidth
        scales = check_scales("scales", scales)

        def k(a, b):
            return KERNELS[kernel](a, b, bandwidth=h, scales=scales)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = kxx.sum() - kxx.diagonal().sum()
    syy = kyy.sum() - kyy.diagonal().sum()
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2.0 * kxy.mean()


# ---- option checks shared by the objectives --------------------------------------------------
ENCODERS = ("deterministic", "stochastic")


def check_bandwidth(name: str, value):
    """A positive number or ``median``."""
    if value == "median":
        return value
    if not is_number(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number or 'median', got {value!r}")
    return float(value)


def check_scales(name: str, value) -> tuple[float, ...]:
    """A non-empty list of positive numbers."""
    if not isinstance(value, (list, tuple)) or not value or not all(is_number(v) and v > 0 for v in value):
        raise ValueError(f"{name} must be a non-empty list of positive numbers, got {value!r}")
    return tuple(float(v) for v in value)


def check_kernel(kernel, bandwidth, scales):
    """(kernel, bandwidth, scales) checked: the kernel options every MMD objective takes."""
    return (check_choice("kernel", kernel, KERNELS), check_bandwidth("bandwidth", bandwidth),
            check_scales("scales", scales))


# ---- pieces shared with the sliced-Wasserstein objective --------------------------------------
class mean_sites(Messenger):
    """Replace the named (latent) sample sites' distributions by a point mass at their mean:
    a deterministic encoder z = E_q[z|x] made from a stochastic guide.

    The site keeps its name, plate and event dimensions (``Delta(mean, event_dim)``), so the
    model replays it as usual; the value is differentiable in the mean. A distribution without
    a ``mean`` (e.g. a general ``TransformedDistribution``) raises ``ValueError``.
    """

    def __init__(self, names):
        super().__init__()
        self.names = set(names)

    def _pyro_sample(self, msg):
        if msg["name"] not in self.names or msg["is_observed"]:
            return
        fn = msg["fn"]
        try:
            mean = fn.mean
        except NotImplementedError as e:
            raise ValueError(
                f"a deterministic encoder needs the mean of q({msg['name']}|x), and "
                f"{type(fn).__name__} has no mean; use encoder: stochastic or a guide with a mean") from e
        msg["fn"] = dist.Delta(mean, event_dim=len(fn.event_shape))


def check_guide_has_mean(vae) -> None:
    """Refuse, at build time, a deterministic encoder for a guide family without ``mean``.

    Probes the guide head on two zero feature vectors (its ``in_features`` wide); a head that
    cannot be probed this way is checked when it runs (by :class:`mean_sites`)."""
    head = getattr(vae, "guide_head", None)
    features = getattr(head, "in_features", None)
    if head is None or not isinstance(features, int):
        return
    device = next(iter(head.parameters()), torch.empty(0)).device
    try:
        with torch.no_grad():
            q = head(torch.zeros(2, features, device=device))
    except Exception:  # a head that needs more than features: checked at run time instead
        return
    try:
        with torch.no_grad():
            q.mean  # noqa: B018 (probing the property)
    except NotImplementedError:
        raise ValueError(
            f"encoder: deterministic needs the mean of q(z|x), and the guide's {type(q).__name__} "
            f"has no mean; use encoder: stochastic") from None


def latent_samples(record: dict, site: str = "z") -> tuple[torch.Tensor, torch.Tensor]:
    """(z from q, as many draws from p(z)), both flattened to (n, latent_dim).

    z ~ q(z|x) is the value the guide recorded; the prior draws come from the model's p(z) at
    the same site (batch shape as the batch), reparameterised where the prior has ``rsample``.
    """
    _, zq = record[site]["q"]
    p_fn = record[site]["p"][0]
    extra = zq.shape[:zq.dim() - len(p_fn.batch_shape) - len(p_fn.event_shape)]  # particle dims
    zp = p_fn.rsample(extra) if p_fn.has_rsample else p_fn.sample(extra)
    d = zq.shape[-1]
    return zq.reshape(-1, d), zp.reshape(-1, d)


class BatchLog:
    """Per-step values of a penalty, reduced per epoch to mean and standard error over steps
    (kept as tensors until the epoch ends: no device sync per step)."""

    def __init__(self, name: str):
        self.name, self.values = name, []

    def add(self, value: torch.Tensor) -> None:
        self.values.append(value.detach())

    def pop(self) -> dict:
        if not self.values:
            return {}
        v = torch.stack(self.values).double().cpu()
        self.values = []
        se = v.std().item() / math.sqrt(v.numel()) if v.numel() > 1 else float("nan")
        return {self.name: v.mean().item(), f"{self.name}_se": se}


def autoencoder_programs(vae, encoder: str):
    """(model, guide) with the latent site masked out of both (no KL term) and, for a
    ``deterministic`` encoder, z = mean of q(z|x)."""
    check_choice("encoder", encoder, ENCODERS)
    guide = vae.guide
    if encoder == "deterministic":
        check_guide_has_mean(vae)
        guide = mean_sites({"z"})(guide)
    return scale_sites({"z": 0.0})(vae.model), scale_sites({"z": 0.0})(guide)


# ---- objectives ---------------------------------------------------------------------------------
@register("info_vae")
class InfoVAE(Objective):
    """InfoVAE: E_q log p(x|z) - (1-α) KL(q(z|x) || p(z)) - (α+λ-1) MMD²(q(z), p(z)).

    Zhao, Song & Ermon (2019), "InfoVAE: Balancing Learning and Inference in Variational
    Autoencoders", AAAI, with the divergence D between the aggregate posterior q(z) and p(z)
    taken to be the MMD (``alpha`` = α, ``lam`` = λ):

    * α = 0, λ = 1: the ELBO (KL weight 1, no MMD term; ``is_elbo``);
    * α = 1 - β, λ = β: β-VAE (KL weight β, no MMD term);
    * α = 1, λ > 0: MMD-VAE (no KL term, MMD weight λ); the default, with λ = 10.

    Requires α <= 1 (the KL weight 1-α is not negative), λ > 0 and α + λ - 1 >= 0 (the MMD is
    penalised, not rewarded). The KL part is the ELBO's z site scaled by 1-α (masked at α = 1);
    the MMD part compares the batch's z ~ q(z|x) with as many draws from p(z) (:func:`mmd2`) and
    is a ``pyro.factor`` "mmd" times ``num_data``. Scale: the MMD² is at most 2 per kernel scale
    while the reconstruction is a sum over pixels in nats, so useful λ are well above 1.
    Epoch metrics: ``train_mmd2`` ± ``train_mmd2_se`` (dimensionless; mean over the epoch's
    steps) when the MMD weight is positive.
    """

    def __init__(self, vae, *, alpha: float = 1.0, lam: float = 10.0, kernel: str = "rbf",
                 bandwidth: float | str = "median", scales: tuple[float, ...] = (1.0,)):
        super().__init__(vae)
        self.alpha = check_finite("alpha", alpha)
        self.lam = check_positive("lam", lam)
        if self.alpha > 1:
            raise ValueError(f"alpha must be <= 1 (the KL weight 1 - alpha would be negative), got {alpha!r}")
        self.kernel, self.bandwidth, self.scales = check_kernel(kernel, bandwidth, scales)
        self.kl_weight = 1.0 - self.alpha
        w = self.alpha + self.lam - 1.0
        if w < -1e-12:
            raise ValueError(f"alpha + lam - 1 must be >= 0 (it is the MMD's weight; a negative one would "
                             f"reward a mismatch of q(z) and p(z)), got alpha={alpha!r}, lam={lam!r}")
        self.mmd_weight = w if w > 1e-12 else 0.0
        self.is_elbo = self.kl_weight == 1.0 and self.mmd_weight == 0.0
        if self.kl_weight != 1.0:
            self.model = scale_sites({"z": self.kl_weight})(vae.model)
            self.guide = scale_sites({"z": self.kl_weight})(vae.guide)
        self._log = BatchLog("train_mmd2")
        if self.mmd_weight > 0:
            self.model, self.guide = self.penalized(self._penalty, "mmd")

    def _penalty(self, record, x):
        zq, zp = latent_samples(record)
        if zq.shape[0] < 2:  # the unbiased MMD² needs 2 points: a 1-example batch has no penalty
            return zq.new_zeros(())
        d = mmd2(zq, zp, self.kernel, bandwidth=self.bandwidth, scales=self.scales)
        self._log.add(d)
        return self.mmd_weight * d

    def epoch_metrics(self) -> dict:
        return self._log.pop()


@register("wae")
class WAE(Objective):
    """WAE-MMD: -log p(x|z) + λ MMD²(q(z), p(z)), z = E_q[z|x] (deterministic) or z ~ q(z|x).

    Tolstikhin, Bousquet, Gelly & Schölkopf (2018), "Wasserstein Auto-Encoders", ICLR,
    Algorithm 2. The reconstruction cost c(x, G(z)) is the likelihood's -log p(x|z): with a
    ``normal`` likelihood of fixed scale σ it is ‖x - G(z)‖² / (2σ²) + const, the paper's squared
    error up to a factor. There is no KL: the z site is masked out of model and guide.
    ``encoder: deterministic`` (the default) replaces q(z|x) by a point mass at its mean
    (:class:`mean_sites`; the guide's scale head is then untrained); ``stochastic`` uses z ~ q(z|x).
    ``lam`` = λ (the paper used 10 with a squared-error cost on MNIST); the MMD between the
    batch's z and as many draws from p(z) (:func:`mmd2`) is a ``pyro.factor`` "mmd" times
    ``num_data``. Epoch metrics: ``train_mmd2`` ± ``train_mmd2_se`` (dimensionless).
    """

    def __init__(self, vae, *, lam: float = 10.0, encoder: str = "deterministic", kernel: str = "imq",
                 bandwidth: float | str = "median", scales: tuple[float, ...] = (1.0,)):
        super().__init__(vae)
        self.lam = check_nonnegative("lam", lam)
        self.encoder = check_choice("encoder", encoder, ENCODERS)
        self.kernel, self.bandwidth, self.scales = check_kernel(kernel, bandwidth, scales)
        self.model, self.guide = autoencoder_programs(vae, encoder)
        self._log = BatchLog("train_mmd2")
        self.model, self.guide = self.penalized(self._penalty, "mmd")

    def _penalty(self, record, x):
        zq, zp = latent_samples(record)
        if zq.shape[0] < 2:  # the unbiased MMD² needs 2 points: a 1-example batch has no penalty
            return zq.new_zeros(())
        d = mmd2(zq, zp, self.kernel, bandwidth=self.bandwidth, scales=self.scales)
        self._log.add(d)
        return self.lam * d

    def epoch_metrics(self) -> dict:
        return self._log.pop()
