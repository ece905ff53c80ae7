"""The VAE: a spec assembled into two Pyro programs, ``model`` and ``guide``.

    model:  z ~ p(z),  x ~ p(x | decoder(z))        (one ``data`` plate over examples)
    guide:  z ~ q(z | guide_head(encoder(x)))

Both are ordinary Pyro callables: SVI, Predictive, Importance, MCMC and poutine
handlers see every sample site and every parameter (registered with ``pyro.module``).

``model.variant`` in a spec picks the class from :data:`variants`: ``vae`` (this one),
``cvae`` (:mod:`pyrovae.conditional`) and ``m2`` (:mod:`pyrovae.semisupervised`), the
models that take labels y. A variant's keyword-only ``__init__`` parameters are its
options, as for every registered component.
"""

from __future__ import annotations

from contextlib import contextmanager

import pyro
import torch
from torch import nn

from . import guides, likelihoods, priors
from .networks import decoders, encoders
from .registry import Registry
from .spec import Spec

PYRO_NAME = "vae"

variants = Registry("model variant")
"""``model.variant``: the VAE classes (``vae``, ``cvae``, ``m2``), built as
``cls(spec, data_shape, **options)``."""


@variants.register("vae")
class VAE(nn.Module):
    """Unconditional VAE: z ~ p(z), x ~ p(x|z); guide q(z|x). Labels are not used.

    Built from ``spec`` for examples shaped ``data_shape``. ``label_dim`` (for subclasses,
    not a spec option) widens the decoder's input to [z, y] and the guide head's to
    [encoder(x), y] by that many label features.
    """

    uses_labels = False
    """True for models that take y (conditional, semi-supervised): ``fit`` then passes
    the batch's labels from :meth:`training_labels` to the objective."""

    extra_objective_terms = False
    """True when ``model`` adds terms that are not part of the ELBO (M2's classification
    factor): the training objective is then not the ELBO itself."""

    enumerates = False
    """True for models whose guide enumerates a discrete site (M2's y): only objectives
    that declare ``supports_enumeration`` can train them."""

    def __init__(self, spec: Spec, data_shape, label_dim: int = 0):
        super().__init__()
        self.spec = spec
        self.data_shape = tuple(int(s) for s in data_shape)
        m = spec.model
        self.latent_dim = m.latent_dim
        self.likelihood = likelihoods.registry.build(
            m.likelihood.name, m.likelihood.options, "model.likelihood", self.data_shape)
        self.encoder = encoders.build(
            m.encoder.name, m.encoder.options, "model.encoder", self.data_shape)
        self.guide_head = guides.registry.build(
            m.guide.name, m.guide.options, "model.guide", self.encoder.out_features + label_dim,
            m.latent_dim)
        self.decoder = decoders.build(
            m.decoder.name, m.decoder.options, "model.decoder", m.latent_dim + label_dim,
            (self.likelihood.num_params, *self.data_shape))
        self.prior = priors.registry.build(m.prior.name, m.prior.options, "model.prior", m.latent_dim)
        self.prior.bind(self)
        self._register_params = True

    # ---- the two Pyro programs ------------------------------------------------------
    def model(self, x=None, y=None, *, num_data: int | None = None, batch_size: int | None = None):
        """p(z) p(x|z) for a batch. ``x=None`` generates ``batch_size`` examples.

        ``num_data``: size of the full data set when ``x`` is a minibatch; the plate
        then scales log-densities by num_data / batch. ``y`` is for conditional models
        and is ignored by this unconditional VAE.
        """
        self._register()
        n = self._batch(x, batch_size)
        with self._plate(n, num_data, x):
            z = pyro.sample("z", self.prior(torch.Size((n,))))
            return pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x=None, y=None, *, num_data: int | None = None, batch_size: int | None = None):
        """q(z|x) for a batch: the encoder's features through the guide head."""
        if x is None:
            raise ValueError("the guide q(z|x) needs data x")
        self._register()
        with self._plate(x.shape[0], num_data, x):
            return pyro.sample("z", self.guide_head(self.encoder(x)))

    # ---- hooks for models that use labels (the plain VAE uses none) ---------------------
    @classmethod
    def options_from_data(cls, options: dict, data) -> dict:
        """The variant's options with the ones the data decide filled in (a conditional
        model's label size); ``build`` writes them back into the spec."""
        return options

    def training_labels(self, data):
        """The labels ``fit`` hands to the objective, aligned with ``data.train``."""
        return data.train_labels

    def evaluation_labels(self, data, split: str):
        """The labels ``evaluate`` gives ``model``/``guide`` on ``split`` (None: x only)."""
        return None

    def evaluation_metrics(self, x, labels) -> dict:
        """Extra numbers for ``evaluate`` (a classifier's accuracy); none here."""
        return {}

    def pyro_loss(self, loss_class, **kwargs):
        """The Pyro ELBO an objective should use, given the class it would pick
        (``Trace_ELBO``, ``TraceMeanField_ELBO``); models that enumerate swap it."""
        return loss_class(**kwargs)

    # ---- conveniences (plain torch, no Pyro effects) ----------------------------------
    def encode(self, x, y=None):
        """q(z|x) as a distribution (batch shape (B,), event shape (latent_dim,))."""
        self._no_labels(y)
        return self.guide_head(self.encoder(x))

    def decode(self, z, y=None):
        """p(x|z) as a distribution with event shape ``data_shape``."""
        self._no_labels(y)
        return self.likelihood(self.decoder(z))

    def decode_mean(self, z, y=None):
        """E[x|z]."""
        self._no_labels(y)
        return self.likelihood.mean(self.decoder(z))

    def reconstruct(self, x, y=None):
        """E[x | z = mean of q(z|x)]."""
        self._no_labels(y)
        return self.decode_mean(self.encode(x).mean)

    def sample(self, n: int, *, y=None, mean: bool = True):
        """n examples from the model: E[x|z] (``mean=True``) or a draw of x, z ~ p(z)."""
        self._no_labels(y)
        z = self.prior(torch.Size((n,))).sample()
        return self.decode_mean(z) if mean else self.decode(z).sample()

    def figure_samples(self, n: int, data=None):
        """(examples, title) for a run's ``samples.png``."""
        return self.sample(n), "prior samples: E[x|z], z ~ p(z)"

    def figure_reconstructions(self, x, labels=None):
        """Reconstructions of ``x`` for a run's ``reconstructions.png`` (``labels``: x's)."""
        return self.reconstruct(x)

    def _no_labels(self, y) -> None:
        if y is not None:
            name = getattr(getattr(self.spec, "model", None), "variant", None)
            raise ValueError(
                f"this VAE (model.variant {getattr(name, 'name', 'vae')!r}) is unconditional and "
                f"takes no labels y; use model.variant 'cvae' or 'm2' for a model of x given y")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- parameter registration -------------------------------------------------------
    @contextmanager
    def unregistered(self):
        """Skip ``pyro.module`` inside: for a torch optimizer that already holds
        ``vae.parameters()`` (the param store is not needed and costs ~1 ms a step)."""
        old, self._register_params = self._register_params, False
        try:
            yield self
        finally:
            self._register_params = old

    def _register(self):
        if not self._register_params:
            return
        # Pyro's global param store keeps the first tensor seen under a name. Make this
        # VAE's own parameters the ones registered, so two VAEs in one session never
        # share (or silently swap) parameters.
        store = pyro.get_param_store()
        for name, p in self.named_parameters():
            full = f"{PYRO_NAME}$$${name}"
            if full in store and store[full] is not p:
                del store[full]
        pyro.module(PYRO_NAME, self)

    def _batch(self, x, batch_size):
        if x is not None:
            if tuple(x.shape[1:]) != self.data_shape:
                raise ValueError(
                    f"x has example shape {tuple(x.shape[1:])}, this VAE expects {self.data_shape}")
            return x.shape[0]
        return 1 if batch_size is None else int(batch_size)

    def _plate(self, n: int, num_data: int | None, x):
        device = self.device if x is None else x.device
        if num_data is None or num_data == n:
            return pyro.plate("data", n, device=device)
        # A minibatch of a larger set: indices only fix the scale num_data / n.
        return pyro.plate("data", num_data, subsample=torch.arange(n, device=device), device=device)
