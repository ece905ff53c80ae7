"""What every objective shares: the registry, the base class and the effect handlers
that express an objective as a change to ``vae.model``/``vae.guide``.

An objective never replaces the model: it wraps it. β and warm-ups scale sites
(:class:`scale_sites`), penalties on the aggregate posterior are ``pyro.factor`` sites
added after the model runs (:meth:`Objective.penalized`), and the values they need
(q(z|x) and z from the guide, p(z) from the model) are recorded on the way by
:class:`record_sites`. ``objective.model``/``objective.guide`` therefore run under
plain Pyro SVI, and ``objective.loss`` is the same number as a differentiable tensor.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.infer
import torch
from pyro.poutine.messenger import Messenger

from ..registry import Registry

registry = Registry("objective")
register = registry.register


class scale_sites(Messenger):
    """Multiply the log-density of the named sample sites by a factor (β for ``z``).

    Unlike ``poutine.scale`` it leaves other sites alone and accepts 0: a site scaled by
    0 is masked out (``mask=False``), which is what a KL warm-up starting at 0 needs
    (``poutine.scale`` rejects 0). Applied to model *and* guide it scales a whole KL term.
    """

    def __init__(self, scales: dict[str, float]):
        super().__init__()
        for name, s in scales.items():
            if not s >= 0:
                raise ValueError(f"scale of site {name!r} must be >= 0, got {s!r}")
        self.scales = dict(scales)

    def _pyro_sample(self, msg):
        s = self.scales.get(msg["name"])
        if s is None:
            return
        if s == 0:
            msg["mask"] = False if msg["mask"] is None else msg["mask"] & False
        else:
            msg["scale"] = s * msg["scale"]


class record_sites(Messenger):
    """Keep the distribution and value of the named sample sites as they run:
    ``record[name] = (fn, value)``, read by penalties after the program returns."""

    def __init__(self, names, record: dict):
        super().__init__()
        self.names, self.record = set(names), record

    def _pyro_post_sample(self, msg):
        if msg["name"] in self.names:
            self.record[msg["name"]] = (msg["fn"], msg["value"])


class Objective:
    """Base class: set ``self.model``, ``self.guide`` and ``self.pyro_loss``.

    Hooks the trainer calls (all optional to override):

    * :meth:`set_progress` before every step, with the training progress in epochs
      (schedules read ``self.progress``);
    * :meth:`after_step` after the VAE's optimizer step (a second optimizer lives here,
      e.g. FactorVAE's discriminator);
    * :meth:`epoch_metrics` at the end of an epoch: extra numbers for ``metrics.jsonl``;
    * :meth:`state_dict` / :meth:`load_state_dict`: what a checkpoint must keep beyond
      the VAE (an auxiliary network and its optimizer).
    """

    is_elbo = False
    """True when ``loss`` is exactly the negative ELBO (then ``fit`` also records it as
    ``train_elbo``)."""
    supports_enumeration = False
    """True for objectives whose loss sums out enumerated guide sites (TraceEnum_ELBO);
    the others refuse models that enumerate (M2), which their penalties do not handle."""

    def __init__(self, vae):
        if vae.enumerates and not self.supports_enumeration:
            variant = vae.spec.model.variant.name
            raise ValueError(f"model.variant {variant!r} enumerates a discrete latent and trains only "
                             f"with objectives that sum it out (elbo); choose objective: elbo")
        self.vae = vae
        self.model = vae.model
        self.guide = vae.guide
        self.pyro_loss: pyro.infer.ELBO = vae.pyro_loss(pyro.infer.Trace_ELBO)
        self.progress = 0.0  # epochs done, fractional

    def loss(self, x, y=None, *, num_data=None):
        """Differentiable loss (negative objective) summed over the batch, scaled by
        num_data / batch when ``num_data`` is given."""
        return self.pyro_loss.differentiable_loss(self.model, self.guide, x, y, num_data=num_data)

    # ---- trainer hooks -------------------------------------------------------------
    def set_progress(self, epochs: float) -> None:
        self.progress = float(epochs)

    def after_step(self, x, y=None, *, num_data=None) -> None:
        """Called after each optimizer step of the VAE; nothing by default."""

    def epoch_metrics(self) -> dict:
        """Extra numbers for this epoch's metrics record (then reset); none by default."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    # ---- building blocks for subclasses ----------------------------------------------
    def penalized(self, penalty: Callable[[dict, torch.Tensor], torch.Tensor], name: str = "penalty",
                  sites=("z",)):
        """(model, guide) that add ``pyro.factor(name, -penalty(record, x) * n)`` to the model.

        ``record[site] = {"q": (fn, value) from the guide, "p": (fn, value) from the
        model}`` for each of ``sites``; ``penalty`` returns a per-example quantity (a batch
        estimate of an expectation) and ``n`` is ``num_data`` (or the batch size), so the
        penalty is on the same scale as the ELBO, a sum over the data set.
        """
        from_guide: dict = {}
        from_model: dict = {}
        guide, model = self.guide, self.model

        def wrapped_guide(x=None, y=None, **kw):
            from_guide.clear()
            with record_sites(sites, from_guide):
                return guide(x, y, **kw)

        def wrapped_model(x=None, y=None, **kw):
            from_model.clear()
            with record_sites(sites, from_model):
                out = model(x, y, **kw)
            if x is not None and from_guide:
                record = {s: {"q": from_guide.get(s), "p": from_model.get(s)} for s in sites}
                n = kw.get("num_data") or x.shape[0]
                pyro.factor(name, -penalty(record, x) * n)
                from_guide.clear()  # used once: a later model-only run must not reuse it
            return out

        return wrapped_model, wrapped_guide


def probe(vae, n: int = 2):
    """``(q, p)``: the guide head's q(z|·) on ``n`` all-zero feature vectors and p(z) for ``n``
    draws, to check their families when an objective is built (no gradients, the RNG state
    left as it was). Probing the head, not ``vae.encode``, works for every model variant
    (label features are part of the head's input). ``None`` when the VAE has no such head."""
    head = getattr(vae, "guide_head", None)
    features = getattr(head, "in_features", None)
    if head is None or not isinstance(features, int):
        return None
    like = next(head.parameters(), torch.empty(0))
    was_training = vae.training
    vae.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[like.device] if like.is_cuda else []):
            zeros = torch.zeros(n, features, device=like.device, dtype=like.dtype)
            return head(zeros), vae.prior(torch.Size((n,)))
    finally:
        vae.train(was_training)
