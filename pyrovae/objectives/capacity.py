"""Capacity-annealed β-VAE (Burgess et al. 2018, "Understanding disentangling in β-VAE"):

    maximise  E_q[log p(x|z)] - γ · |KL(q(z|x) || p(z)) - C(t)|,

with the capacity C(t) rising linearly from ``capacity_start`` to ``capacity_max`` nats
over ``capacity_epochs`` epochs (:func:`pyrovae.objectives.schedules.ramp`). Written with
Pyro's own means: the ``z`` site is masked out of Pyro's ELBO (log q and log p both) and
the constraint enters the model as ``pyro.factor`` (:meth:`Objective.penalized`), so
``objective.model``/``objective.guide`` run under plain ``pyro.infer.SVI``.
"""

from __future__ import annotations

import pyro.infer
import torch

from ..options import check_int, check_nonnegative
from .base import Objective, register, scale_sites
from .elbo import kl_per_example
from .schedules import ramp


@register("capacity")
class Capacity(Objective):
    """E_q[log p(x|z)] - gamma·|KL(q(z|x) || p(z)) - C(t)|, C(t) rising linearly from
    capacity_start to capacity_max nats over capacity_epochs (Burgess et al. 2018).

    KL is the minibatch average of KL(q(z|x) || p(z)) per example: analytic where torch
    knows the (q, p) pair, else the Monte Carlo estimate log q(z|x) - log p(z), so any
    guide and prior work. C(t) = capacity_start + (capacity_max - capacity_start) ·
    min(1, t / capacity_epochs), t the progress in epochs (``capacity_epochs = 0``: C =
    capacity_max throughout).

    Defaults: ``gamma = 1000`` and ``capacity_max = 25`` nats are the paper's dSprites
    values; a γ this large makes the constraint dominate, so the KL tracks C(t) closely
    (lower it, e.g. to 100, to let reconstruction pull the KL away from C). The paper
    raised C over 100,000 steps; ``capacity_epochs = 100`` is a fifth of the default
    training length. ``num_particles`` samples of z per example.

    ``objective.capacity`` is C at the current progress; the epoch's metrics carry
    ``capacity`` (C at the epoch's last step, nats) and ``train_kl`` (the batch KL in nats
    per example, averaged over the epoch's steps).
    """

    def __init__(self, vae, *, gamma: float = 1000.0, capacity_max: float = 25.0,
                 capacity_epochs: float = 100.0, capacity_start: float = 0.0, num_particles: int = 1):
        super().__init__(vae)
        self.gamma = check_nonnegative("gamma", gamma)
        self.capacity_max = check_nonnegative("capacity_max", capacity_max)
        self.capacity_epochs = check_nonnegative("capacity_epochs", capacity_epochs)
        self.capacity_start = check_nonnegative("capacity_start", capacity_start)
        check_int("num_particles", num_particles)
        self.pyro_loss = pyro.infer.Trace_ELBO(num_particles=num_particles,
                                               vectorize_particles=num_particles > 1)
        self.model = scale_sites({"z": 0.0})(vae.model)
        self.guide = scale_sites({"z": 0.0})(vae.guide)
        self.model, self.guide = self.penalized(self._constraint, "capacity")
        self._reset_sums()

    @property
    def capacity(self) -> float:
        """C(t) in nats at the current progress t."""
        return ramp(self.progress, self.capacity_start, self.capacity_max, self.capacity_epochs)

    def _constraint(self, record, x):
        """γ |KL - C(t)|, KL the minibatch-average KL per example (and per particle)."""
        q, z = record["z"]["q"]
        p = record["z"]["p"][0]
        kl = kl_per_example(q, p, z)[0].mean()
        with torch.no_grad():
            self._sums["kl"] = self._sums["kl"] + kl
            self._sums["steps"] += 1
        return self.gamma * (kl - self.capacity).abs()

    def _reset_sums(self):
        self._sums = {"kl": 0.0, "steps": 0}

    def epoch_metrics(self) -> dict:
        out = {"capacity": self.capacity}
        if self._sums["steps"]:
            out["train_kl"] = float(self._sums["kl"]) / self._sums["steps"]
        self._reset_sums()
        return out
