"""The conditional VAE (Sohn, Lee and Yan 2015, "Learning structured output representation
using deep conditional generative models"): a VAE of x given a label y.

    model:  z ~ p(z)  or  p(z|y) = N(μ(y), diag σ(y)²),   x ~ p(x | decoder([z, y]))
    guide:  z ~ q(z | guide_head([encoder(x), y]))

y is an input of both programs, not a sample site: the model is p(x, z | y). It is a class
label (``labels: class``; an integer in [0, num_classes), one-hot encoded) or a vector of
attributes (``labels: attributes``; y_dim floats). The label size is an option that the
data fill in when it is null, and the filled-in value is saved in the run's spec, so
``pyrovae.load`` rebuilds the model without the data.

The helpers :func:`join` and :func:`one_hot` are shared with the semi-supervised M2
(:mod:`pyrovae.semisupervised`).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from .errors import DataError
from .model import VAE, variants
from .networks import mlp
from .options import check_choice, check_flag, check_int, check_int_list, softplus_inverse
from .priors import MIN_SCALE

LABEL_KINDS = ("class", "attributes")


def join(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenate features along the last dimension after broadcasting the leading ones
    (z may carry particle or enumeration dimensions that y lacks, and the other way round)."""
    batch = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return torch.cat([a.expand(*batch, a.shape[-1]), b.expand(*batch, b.shape[-1])], dim=-1)


def one_hot(y: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """Class indices (any shape) -> one-hot vectors (that shape + (num_classes,))."""
    return F.one_hot(y.long(), num_classes).to(dtype)


def class_labels(y, n: int, num_classes: int, device, *, allow_hidden: bool = False) -> torch.Tensor:
    """Class indices shaped (n,) on ``device`` from an int, a sequence or a tensor of
    shape () or (n,); ``allow_hidden`` admits -1 (label not known)."""
    y = torch.as_tensor(y, device=device)
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise ValueError(f"class labels must be integers, got {y.flatten()[:5].tolist()}...")
    y = y.long()
    if y.dim() == 0:
        y = y.expand(n)
    if y.shape != (n,):
        raise ValueError(f"class labels must have shape () or ({n},) for {n} examples, "
                         f"got {tuple(y.shape)}")
    low = -1 if allow_hidden else 0
    if y.numel() and (y.min() < low or y.max() >= num_classes):
        bad = y[(y < low) | (y >= num_classes)][0].item()
        hidden = " or -1 (not known)" if allow_hidden else ""
        raise ValueError(f"class label {bad} is outside [0, {num_classes}){hidden}")
    return y


class ConditionalNormalPrior(nn.Module):
    """p(z|y) = N(μ(y), diag σ(y)²), σ = softplus(·) + MIN_SCALE, from an MLP on y
    (``hidden: []`` is affine). It starts as N(0, I) for every y."""

    def __init__(self, label_dim: int, latent_dim: int, hidden=()):
        super().__init__()
        self.latent_dim = latent_dim
        self.net = mlp([label_dim, *hidden, 2 * latent_dim], "relu")
        last = self.net[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias[:latent_dim].zero_()
            last.bias[latent_dim:].fill_(softplus_inverse(1.0 - MIN_SCALE))

    def forward(self, y: torch.Tensor) -> dist.TorchDistribution:
        loc, raw = self.net(y).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + MIN_SCALE).to_event(1)


@variants.register("cvae")
class ConditionalVAE(VAE):
    """Conditional VAE (Sohn et al. 2015): z ~ p(z) or p(z|y), x ~ p(x|z,y); guide q(z|x,y).

    ``labels``: ``class`` (y an integer class in [0, num_classes), one-hot encoded) or
    ``attributes`` (y a vector of ``y_dim`` floats). ``num_classes``/``y_dim``: the label
    size; null takes it from the data's labels when the model is built with data (and the
    spec records the value). The decoder sees [z, y] and the guide head [encoder(x), y].

    ``conditional_prior``: false keeps ``model.prior`` (p(z), the same for every y); true
    uses p(z|y) = N(μ(y), diag σ(y)²) from an MLP on y with ``prior_hidden`` layers
    (``[]``: affine), starting at N(0, I); it replaces ``model.prior``, which must then
    stay ``standard_normal``.
    """

    uses_labels = True

    def __init__(self, spec, data_shape, *, labels: str = "class", num_classes: int | None = None,
                 y_dim: int | None = None, conditional_prior: bool = False, prior_hidden=()):
        check_choice("labels", labels, LABEL_KINDS)
        if labels == "class":
            if y_dim is not None:
                raise ValueError("y_dim is the size of attribute vectors (labels: attributes); "
                                 "class labels take num_classes")
            if num_classes is None:
                raise ValueError("num_classes is null and no data were given to read it from: set "
                                 "model.variant.num_classes or build with data that have labels")
            size = check_int("num_classes", num_classes, low=2)
        else:
            if num_classes is not None:
                raise ValueError("num_classes is for class labels; attribute vectors take y_dim")
            if y_dim is None:
                raise ValueError("y_dim is null and no data were given to read it from: set "
                                 "model.variant.y_dim or build with data that have labels")
            size = check_int("y_dim", y_dim)
        check_flag("conditional_prior", conditional_prior)
        prior_hidden = check_int_list("prior_hidden", prior_hidden)
        if conditional_prior and spec.model.prior.name != "standard_normal":
            raise ValueError(f"conditional_prior: true replaces model.prior by p(z|y); leave model.prior "
                             f"at standard_normal (it is {spec.model.prior.name!r})")
        super().__init__(spec, data_shape, label_dim=size)
        self.labels, self.num_classes, self.y_dim = labels, num_classes, size
        self.conditional_prior = (ConditionalNormalPrior(size, self.latent_dim, prior_hidden)
                                  if conditional_prior else None)

    @classmethod
    def options_from_data(cls, options: dict, data) -> dict:
        """``num_classes`` (largest class + 1) or ``y_dim`` (attribute vector length) when null."""
        options = dict(options)
        y = data.train_labels
        if y is None:
            raise DataError(f"model.variant cvae models x given labels y, but data {data.name!r} has no "
                            f"labels (an .npz array data set reads them from its label_key)")
        if options.get("labels", "class") == "class" and options.get("num_classes") is None:
            top = y.max() if data.test_labels is None or not data.test_labels.numel() \
                else torch.maximum(y.max(), data.test_labels.max())
            options["num_classes"] = max(2, int(top) + 1)
        elif options.get("labels") == "attributes" and options.get("y_dim") is None:
            options["y_dim"] = int(y.shape[1]) if y.dim() == 2 else 1
        return options

    # ---- labels ----------------------------------------------------------------------
    def label_features(self, y, n: int) -> torch.Tensor:
        """y as the (n, y_dim) float features the networks take: one-hot classes or attributes.

        Accepts one label for all n examples (an int, a vector of attributes) or n labels.
        """
        if y is None:
            what = (f"a class in [0, {self.num_classes})" if self.labels == "class"
                    else f"a vector of {self.y_dim} attributes")
            raise ValueError(f"this conditional VAE (model.variant cvae) needs labels y ({what}); "
                             f"e.g. vae.sample(n, y=...), vae.model(x, y), pyrovae sample --label")
        if self.labels == "class":
            return one_hot(class_labels(y, n, self.num_classes, self.device), self.num_classes)
        y = torch.as_tensor(y, dtype=torch.float32, device=self.device)
        if y.dim() == 0 and self.y_dim == 1:
            y = y.reshape(1)
        if y.dim() == 1 and y.shape[0] == n and self.y_dim == 1 and n != 1:
            y = y[:, None]
        if y.dim() == 1 and y.shape[0] == self.y_dim:
            y = y.expand(n, self.y_dim)
        if y.shape != (n, self.y_dim):
            raise ValueError(f"attribute labels must have shape ({self.y_dim},) or ({n}, {self.y_dim}) "
                             f"for {n} examples, got {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError("attribute labels must be finite")
        return y

    def training_labels(self, data):
        y = data.train_labels
        if y is None:
            raise DataError(f"model.variant cvae needs labels; data {data.name!r} has none")
        try:
            self.label_features(y, data.train.shape[0])
        except ValueError as e:
            raise DataError(f"data {data.name!r} (train labels): {e}") from e
        return y

    def evaluation_labels(self, data, split: str):
        y = getattr(data, f"{split}_labels")
        if y is None:
            raise DataError(f"model.variant cvae evaluates log p(x|y): data {data.name!r} has no "
                            f"{split} labels")
        return y

    # ---- the two Pyro programs -------------------------------------------------------
    def model(self, x=None, y=None, *, num_data: int | None = None, batch_size: int | None = None):
        """p(z|y) p(x|z,y) for a batch; ``x=None`` generates one example per label (or
        ``batch_size`` examples of one label)."""
        self._register()
        if x is None and batch_size is None and y is not None:
            batch_size = _count(y, self.labels, self.y_dim)
        n = self._batch(x, batch_size)
        yf = self.label_features(y, n)
        with self._plate(n, num_data, x):
            z = pyro.sample("z", self.conditional_prior_of(yf))
            return pyro.sample("x", self.likelihood(self.decoder(join(z, yf))), obs=x)

    def guide(self, x=None, y=None, *, num_data: int | None = None, batch_size: int | None = None):
        """q(z|x,y) for a batch: the guide head on [encoder(x), y]."""
        if x is None:
            raise ValueError("the guide q(z|x,y) needs data x")
        self._register()
        n = x.shape[0]
        yf = self.label_features(y, n)
        with self._plate(n, num_data, x):
            return pyro.sample("z", self.guide_head(join(self.encoder(x), yf)))

    def conditional_prior_of(self, yf: torch.Tensor) -> dist.TorchDistribution:
        """p(z|y) for label features (n, y_dim): the conditional prior, or ``model.prior``."""
        if self.conditional_prior is not None:
            return self.conditional_prior(yf)
        return self.prior(torch.Size(yf.shape[:-1]))

    # ---- conveniences ----------------------------------------------------------------
    def encode(self, x, y=None):
        """q(z|x,y)."""
        return self.guide_head(join(self.encoder(x), self.label_features(y, x.shape[0])))

    def decode(self, z, y=None):
        """p(x|z,y); ``z`` shaped (n, latent_dim)."""
        return self.likelihood(self.decoder(join(z, self.label_features(y, z.shape[-2]))))

    def decode_mean(self, z, y=None):
        """E[x|z,y]."""
        return self.likelihood.mean(self.decoder(join(z, self.label_features(y, z.shape[-2]))))

    def reconstruct(self, x, y=None):
        """E[x | z = mean of q(z|x,y), y]."""
        return self.decode_mean(self.encode(x, y).mean, y)

    def sample(self, n: int, *, y=None, mean: bool = True):
        """n examples given y (one label for all, or n labels): z ~ p(z|y), then E[x|z,y]
        (``mean=True``) or a draw of x."""
        yf = self.label_features(y, n)
        z = self.conditional_prior_of(yf).sample()
        params = self.decoder(join(z, yf))
        return self.likelihood.mean(params) if mean else self.likelihood(params).sample()

    def figure_samples(self, n: int, data=None):
        if self.labels == "class":
            y = torch.arange(n, device=self.device) % self.num_classes
            return (self.sample(n, y=y),
                    f"E[x|z,y], z ~ p(z|y); example i has class y = i mod {self.num_classes}")
        labels = None if data is None else (data.test_labels if data.test_labels is not None
                                             and data.test_labels.numel() else data.train_labels)
        if labels is None:
            raise ValueError("samples of an attribute-conditional VAE need attribute vectors y")
        idx = torch.arange(n) % labels.shape[0]
        return self.sample(n, y=labels[idx]), "E[x|z,y], z ~ p(z|y); y = the data's first label vectors"

    def figure_reconstructions(self, x, labels=None):
        return self.reconstruct(x, labels)


def _count(y, kind: str, y_dim: int) -> int:
    """How many examples a batch of labels describes (for generation with x=None)."""
    t = torch.as_tensor(y)
    if kind == "class":
        return 1 if t.dim() == 0 else t.shape[0]
    return t.shape[0] if t.dim() == 2 or (t.dim() == 1 and y_dim == 1) else 1
