"""FactorVAE: the ELBO minus γ times a discriminator's estimate of the total correlation.

Kim & Mnih (2018), "Disentangling by Factorising". With D(z) the probability a
discriminator gives to z having come from q(z) rather than from Π_d q(z_d), an optimal
discriminator has D/(1 - D) = q(z) / Π_d q(z_d) (the density-ratio trick), so

    TC(z) = KL(q(z) || Π_d q(z_d)) = E_q(z)[log q(z)/Π_d q(z_d)] ≈ E_q(z)[logit D(z)].

The VAE maximises ELBO - γ TC; the discriminator is trained, with its own Adam, to tell
z ~ q(z|x) from the same draws with each dimension permuted across the batch (samples of
Π_d q(z_d)). The two never share gradients: the VAE's TC term calls the discriminator
with detached weights (only z carries gradient), and the discriminator trains on
detached z.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..options import check_int_list, check_nonnegative, check_positive
from .base import Objective, register
from .tc import BatchMeans


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each column of ``z`` (batch, D) permuted independently across the batch: a sample
    from the product of the batch's marginals Π_d q(z_d) (Kim & Mnih 2018, Alg. 1)."""
    m, d = z.shape
    order = torch.rand(m, d, device=z.device, generator=generator).argsort(dim=0)
    return z.gather(0, order)


def discriminator_mlp(latent_dim: int, hidden: list[int]) -> nn.Sequential:
    """z -> logit D(z): linear layers with leaky ReLU (slope 0.2) between, as in Kim & Mnih."""
    layers: list[nn.Module] = []
    width = latent_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
        width = h
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


@register("factor_vae")
class FactorVAE(Objective):
    """FactorVAE: ELBO - γ TC(z), TC ≈ E_q(z)[log D(z)/(1 - D(z))] from a discriminator of z vs
    dimension-wise permuted z (Kim & Mnih 2018).

    ``gamma``: weight γ of the TC term. disentanglement_lib's reproduction of FactorVAE
    on dSprites sweeps γ over 10, 20, 30, 40, 50, 100; 6.4 is the value in the dSprites
    scripts of a popular PyTorch re-implementation (neither was checked against the
    paper's text here). Default 10, the low end of that sweep: tune it.

    ``discriminator_hidden``: hidden layer sizes of the MLP discriminator (leaky ReLU 0.2).
    The paper uses 6 layers of 1000 units; the default [256, 256] is enough for latent
    codes of tens of dimensions and cheap on a CPU. ``discriminator_lr``: its Adam
    learning rate, with β₁ = 0.5, β₂ = 0.9; lr 1e-4 and these betas are the usual
    FactorVAE discriminator settings.

    As Pyro programs: the model gets ``pyro.factor(-γ · mean_i logit D(z_i) · N)`` with z
    the guide's draw; the discriminator takes one Adam step in ``after_step`` on that draw
    (detached) against its dimension-wise permutation. (Kim & Mnih's Algorithm 1 permutes the
    draw of a second, independent batch; permuting the same batch is the common
    simplification: each column's permutation is a sample of Π_d q(z_d) either way, and it
    needs no second pass of the encoder.) Its parameters are not
    ``vae.parameters()``; ``state_dict`` carries them and the optimizer state into
    checkpoints. ``epoch_metrics``: train_tc (mean logit, nats per example) and
    train_discriminator_accuracy (fraction, on the batch before each discriminator step).
    """

    def __init__(self, vae, *, gamma: float = 10.0, discriminator_hidden: tuple[int, ...] = (256, 256),
                 discriminator_lr: float = 1.0e-4):
        super().__init__(vae)
        self.gamma = check_nonnegative("gamma", gamma)
        self.discriminator_hidden = check_int_list("discriminator_hidden", discriminator_hidden)
        self.discriminator_lr = check_positive("discriminator_lr", discriminator_lr)
        self.is_elbo = self.gamma == 0.0
        try:
            device = next(vae.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
        # initialised from the run's seed without touching the global RNG: the same spec
        # gives the same discriminator, and resuming rebuilds it identically
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(vae.spec.train.seed)
            self.discriminator = discriminator_mlp(vae.latent_dim, self.discriminator_hidden).to(device)
        self.discriminator_optimizer = torch.optim.Adam(
            self.discriminator.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.9))
        self.tc_metrics = BatchMeans("tc")
        self.accuracy_metrics = BatchMeans("discriminator_accuracy")
        self._last_z: torch.Tensor | None = None
        self.model, self.guide = self.penalized(self._penalty, "factor_vae_tc")

    # ---- the two sides ------------------------------------------------------------------
    def tc_logits(self, z: torch.Tensor) -> torch.Tensor:
        """logit D(z) per row of ``z``: the per-example TC estimate log q(z)/Π_d q(z_d).
        Gradient flows to ``z`` only, never to the discriminator's weights."""
        params = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return torch.func.functional_call(self.discriminator, params, (z,)).squeeze(-1)

    def discriminator_step(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step of the discriminator: z (batch, D) labelled 1, ``permute_dims(z)``
        labelled 0. Returns the loss (mean of the two cross-entropies, before the step) and
        the accuracy on those 2·batch samples, both detached."""
        z = z.detach()
        fake = permute_dims(z)
        real_logit = self.discriminator(z).squeeze(-1)
        fake_logit = self.discriminator(fake).squeeze(-1)
        loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                      + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.discriminator_optimizer.step()
        accuracy = 0.5 * ((real_logit > 0).float().mean() + (fake_logit < 0).float().mean())
        return loss.detach(), accuracy.detach()

    def _penalty(self, record: dict, x: torch.Tensor) -> torch.Tensor:
        _, z = record["z"]["q"]
        z2 = z.reshape(-1, z.shape[-1])
        logits = self.tc_logits(z2)
        self._last_z = z2.detach()
        tc = logits.mean()
        self.tc_metrics.add(x.shape[0], tc=tc)
        return self.gamma * tc

    # ---- trainer hooks ------------------------------------------------------------------
    def after_step(self, x, y=None, *, num_data=None) -> None:
        """Train the discriminator on this batch's draw of z (from the loss just taken;
        a fresh draw from q(z|x) if there is none)."""
        z = self._last_z
        self._last_z = None
        if z is None:
            with torch.no_grad():
                z = self.vae.encode(x).sample()
        _, accuracy = self.discriminator_step(z)
        self.accuracy_metrics.add(z.shape[0], discriminator_accuracy=accuracy)

    def epoch_metrics(self) -> dict:
        return {**self.tc_metrics.summary(), **self.accuracy_metrics.summary()}

    def state_dict(self) -> dict:
        return {"discriminator": self.discriminator.state_dict(),
                "discriminator_optimizer": self.discriminator_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.discriminator.load_state_dict(state["discriminator"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
