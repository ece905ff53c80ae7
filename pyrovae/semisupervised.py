"""The semi-supervised M2 model (Kingma, Rezende, Mohamed and Welling 2014, "Semi-supervised
learning with deep generative models"): a VAE whose class label y is observed for some
examples and a latent variable for the rest.

    model:  y ~ Cat(1/K),  z ~ p(z),  x ~ p(x | decoder([z, onehot(y)]))
    guide:  y ~ q(y|x) = Cat(softmax(classifier(x))),  z ~ q(z | guide_head([encoder(x), onehot(y)]))

Per example the ELBO is the paper's L(x, y) for a labelled example and, for an unlabelled one,

    U(x) = Σ_y q(y|x) L(x, y) + H(q(y|x)),

the exact expectation over y: the guide's y site is enumerated in parallel
(``infer={"enumerate": "parallel"}``) and ``TraceEnum_ELBO(max_plate_nesting=1)`` sums it
(:meth:`M2.pyro_loss` hands the objective that loss). The training objective adds the
classification term of the paper's eq. (9), α Σ_labelled log q(y|x), as a ``pyro.factor``.

Labelled and unlabelled examples share one batch and one ``data`` plate (so ``z`` and ``x``
are the usual sites, and β, warm-ups and evaluation work unchanged). Labels come as
integers with -1 for "not known". When a batch has hidden labels the model's y is a latent
site and the guide draws it from q(y|x) for unlabelled examples and from a point mass at
the label for labelled ones (logits 0 at the label, -10⁴ elsewhere: after the softmax the
label has log-probability exactly 0 and every other class weight exp(-10⁴) = 0 in floating
point). That guide makes the enumerated ELBO of a labelled example exactly L(x, y), with y
observed in effect, and leaves no gradient through the classifier for it. A batch whose
labels are all known observes y in the model and has no y site in the guide; the two
constructions give the same number (tested).
"""

from __future__ import annotations

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.infer
import torch
from torch import nn
from torch.distributions import kl_divergence

from .conditional import class_labels, join, one_hot
from .errors import DataError
from .model import VAE, variants
from .networks import mlp
from .options import check_int, check_int_list, check_nonnegative

PIN_LOGIT = -1.0e4
"""Logit of every class but the known one in the guide's point mass for a labelled example."""


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask keeping round(fraction · n) of the examples with a label (>= 0), spread
    over the classes in proportion to their sizes (largest remainders get the leftover
    ones), chosen within each class by a permutation seeded with ``seed``."""
    labels = np.asarray(labels)
    keep = np.zeros(labels.shape[0], dtype=bool)
    known = labels >= 0
    total = int(round(fraction * known.sum()))
    classes, counts = np.unique(labels[known], return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(int)
    short = total - take.sum()
    if short > 0:  # the classes with the largest remainders get one more (ties: lower class)
        order = np.lexsort((classes, -(quota - take)))
        take[order[:short]] += 1
    rng = np.random.RandomState(seed)
    for c, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(labels == c)
        keep[rng.permutation(idx)[:k]] = True
    return keep


@variants.register("m2")
class M2(VAE):
    """Semi-supervised M2 (Kingma et al. 2014): y ~ Cat(1/K), z ~ p(z), x ~ p(x|z,y); guide q(y|x) q(z|x,y).

    ``num_classes``: K; null takes it from the data's labels (the spec records it).
    ``labelled_fraction``: the share of the training labels ``fit`` keeps (the rest become
    -1, unlabelled), chosen by ``label_seed``, stratified by class. ``alpha``: weight of
    log q(y|x) per labelled example in the training objective; 0 drops the term and leaves
    the ELBO. (Paper eq. 9 adds α_paper · E_labelled[log q(y|x)], α_paper = 0.1·N; read with
    N the training-set size that is alpha = 0.1 / labelled_fraction, 1 at 10 % labels. On
    digits with 10 % labels 10-30 did better than 1 on a validation split, see
    benchmarks/m2_digits.py.) ``classifier_hidden``: layers of the MLP classifier q(y|x) on x.

    The ELBO objective must use ``TraceEnum_ELBO`` (``vae.pyro_loss``). ``vae.classify(x)``
    gives q(y|x); ``evaluate`` reports the ELBO marginal over y and the classifier's accuracy.
    """

    uses_labels = True
    enumerates = True

    def __init__(self, spec, data_shape, *, num_classes: int | None = None,
                 labelled_fraction: float = 0.1, label_seed: int = 0, alpha: float = 10.0,
                 classifier_hidden=(256,)):
        if num_classes is None:
            raise ValueError("num_classes is null and no data were given to read it from: set "
                             "model.variant.num_classes or build with data that have labels")
        k = check_int("num_classes", num_classes, low=2)
        frac = check_nonnegative("labelled_fraction", labelled_fraction)
        if frac > 1:
            raise ValueError(f"labelled_fraction must be in [0, 1], got {labelled_fraction!r}")
        check_int("label_seed", label_seed, low=0)
        alpha = check_nonnegative("alpha", alpha)
        hidden = check_int_list("classifier_hidden", classifier_hidden)
        super().__init__(spec, data_shape, label_dim=k)
        self.num_classes, self.labelled_fraction, self.label_seed = k, frac, label_seed
        self.alpha = alpha
        self.classifier = nn.Sequential(
            nn.Flatten(-len(self.data_shape), -1),
            mlp([math.prod(self.data_shape), *hidden, k], "relu"))
        self.num_labelled: int | None = None  # set by training_labels

    @property
    def extra_objective_terms(self) -> bool:
        """The classification factor makes the training objective more than the ELBO."""
        return self.alpha > 0

    @classmethod
    def options_from_data(cls, options: dict, data) -> dict:
        """``num_classes`` = largest class label + 1 when null."""
        options = dict(options)
        if options.get("num_classes") is None:
            ys = [y for y in (data.train_labels, data.test_labels) if y is not None and y.numel()]
            if not ys:
                raise DataError(f"model.variant m2: data {data.name!r} has no labels to count the "
                                f"classes from; set model.variant.num_classes")
            options["num_classes"] = max(2, max(int(y.max()) for y in ys) + 1)
        return options

    # ---- labels ----------------------------------------------------------------------
    def training_labels(self, data):
        """The training labels with all but ``labelled_fraction`` of them hidden (-1).

        Labels already -1 in the data count as unlabelled; data without labels are all
        unlabelled. The kept ones are a class-stratified subset fixed by ``label_seed``.
        """
        n = data.train.shape[0]
        if data.train_labels is None:
            y = torch.full((n,), -1, dtype=torch.long, device=data.train.device)
        else:
            try:
                y = class_labels(data.train_labels, n, self.num_classes, data.train.device,
                                 allow_hidden=True)
            except ValueError as e:
                raise DataError(f"data {data.name!r} (train labels): {e}") from e
        keep = torch.as_tensor(stratified_subset(y.cpu().numpy(), self.labelled_fraction, self.label_seed),
                               device=y.device)
        self.num_labelled = int(keep.sum())
        return torch.where(keep, y, torch.full_like(y, -1))

    def _labels(self, y, n: int):
        return None if y is None else class_labels(y, n, self.num_classes, self.device, allow_hidden=True)

    # ---- the two Pyro programs -------------------------------------------------------
    def model(self, x=None, y=None, *, num_data: int | None = None, batch_size: int | None = None):
        """p(y) p(z) p(x|z,y) for a batch; y holds class labels, -1 where not known.

        All labels known: y is observed. Otherwise y is latent (the guide draws it). With
        known labels and ``alpha > 0`` the factor ``classification`` adds
        alpha · log q(y|x) per labelled example (the paper's eq. 9 term). ``x=None``
        generates: y from p(y), or the given labels.
        """
        self._register()
        if x is None and batch_size is None and y is not None:
            batch_size = torch.as_tensor(y).reshape(-1).shape[0]
        n = self._batch(x, batch_size)
        yk = self._labels(y, n)
        known = None if yk is None else yk >= 0
        if x is None and known is not None and not known.all():
            raise ValueError("to generate, give every label or none (-1 is only for data x)")
        observed = known is not None and bool(known.all())
        k = self.num_classes
        with self._plate(n, num_data, x):
            p_y = dist.Categorical(logits=torch.zeros(k, device=self.device)).expand([n])
            ys = pyro.sample("y", p_y, obs=yk if observed else None)
            z = pyro.sample("z", self.prior(torch.Size((n,))))
            out = pyro.sample("x", self.likelihood(self.decoder(join(z, one_hot(ys, k)))), obs=x)
            if x is not None and self.alpha > 0 and known is not None and bool(known.any()):
                pyro.factor("classification", self.alpha * self.log_q_known(x, yk))
        return out

    def guide(self, x=None, y=None, *, num_data: int | None = None, batch_size: int | None = None):
        """q(y|x) q(z|x,y): y enumerated where not known (a point mass where known)."""
        if x is None:
            raise ValueError("the guide q(y|x) q(z|x,y) needs data x")
        self._register()
        n = x.shape[0]
        yk = self._labels(y, n)
        with self._plate(n, num_data, x):
            if yk is not None and bool((yk >= 0).all()):
                ys = yk
            else:
                logits = self.classifier(x)
                if yk is not None:
                    pinned = torch.full_like(logits, PIN_LOGIT).scatter(-1, yk.clamp(min=0)[:, None], 0.0)
                    logits = torch.where((yk >= 0)[:, None], pinned, logits)
                ys = pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})
            return pyro.sample("z", self.guide_head(join(self.encoder(x), one_hot(ys, self.num_classes))))

    def log_q_known(self, x, yk):
        """log q(y|x) at the known labels, 0 where y is -1 (shape (n,))."""
        logq = self.classifier(x).log_softmax(-1).gather(-1, yk.clamp(min=0)[:, None])[:, 0]
        return torch.where(yk >= 0, logq, torch.zeros_like(logq))

    def pyro_loss(self, loss_class, **kwargs):
        """``TraceEnum_ELBO(max_plate_nesting=1)`` in place of ``Trace_ELBO`` or
        ``TraceMeanField_ELBO``: y is summed out exactly, z stays Monte Carlo."""
        allowed = (pyro.infer.Trace_ELBO, pyro.infer.TraceMeanField_ELBO, pyro.infer.TraceEnum_ELBO)
        if loss_class not in allowed:
            raise ValueError(f"model.variant m2 enumerates y and trains with TraceEnum_ELBO; it cannot use "
                             f"{loss_class.__name__}")
        kwargs.setdefault("max_plate_nesting", 1)
        kwargs.setdefault("strict_enumeration_warning", False)  # a fully labelled batch enumerates nothing
        return pyro.infer.TraceEnum_ELBO(**kwargs)

    # ---- evaluation --------------------------------------------------------------------
    def elbo_parts(self, x, y=None, *, batch_size: int = 1024) -> dict:
        """Per-example ELBO (nats) with y summed out exactly: U(x) where y is None or -1,
        L(x, y) where it is known.

        recon = Σ_y w_y E_q(z|x,y) log p(x|z,y) (one z per class), kl = Σ_y w_y KL(q(z|x,y) ||
        p(z)) + KL(w || p(y)), with w = q(y|x) (or the point mass at a known y); the z KL
        is analytic where torch knows it, else log q - log p at the drawn z.
        """
        k = self.num_classes
        recon, kl, analytic = [], [], True
        with torch.no_grad():
            eye = torch.eye(k, device=x.device)[:, None, :]  # (K, 1, K): every class, every example
            for i, xb in enumerate(x.split(batch_size)):
                n = xb.shape[0]
                w = self.classify(xb)
                if y is not None:
                    yb = class_labels(y[i * batch_size:i * batch_size + n], n, k, x.device, allow_hidden=True)
                    w = torch.where((yb >= 0)[:, None], one_hot(yb.clamp(min=0), k), w)
                qz = self.guide_head(join(self.encoder(xb), eye))  # batch (K, n)
                z = qz.rsample()
                r = self.likelihood(self.decoder(join(z, eye))).log_prob(xb)
                pz = self.prior(torch.Size((n,)))
                try:
                    kz = kl_divergence(qz, pz)
                except NotImplementedError:
                    analytic = False
                    kz = qz.log_prob(z) - pz.log_prob(z)
                ky = (torch.xlogy(w, w) + w * math.log(k)).sum(-1)
                recon.append((w.T * r).sum(0))
                kl.append((w.T * kz).sum(0) + ky)
        recon, kl = torch.cat(recon), torch.cat(kl)
        return {"recon": recon, "kl": kl, "elbo": recon - kl, "kl_analytic": analytic}

    def evaluation_metrics(self, x, labels) -> dict:
        """Accuracy of argmax q(y|x) on the examples with a label, with its binomial
        standard error sqrt(p(1-p)/n)."""
        if labels is None:
            return {}
        labels = labels.to(x.device)
        known = labels >= 0
        if not known.any():
            return {}
        with torch.no_grad():
            pred = torch.cat([self.classify(xb).argmax(-1) for xb in x.split(1024)])
        correct = (pred[known] == labels[known]).double()
        m = correct.numel()
        p = correct.mean().item()
        return {"accuracy": p, "accuracy_se": math.sqrt(p * (1 - p) / m), "accuracy_n": m}

    # ---- conveniences ----------------------------------------------------------------
    def classify(self, x):
        """q(y|x): class probabilities, shape (n, num_classes)."""
        return self.classifier(x).softmax(-1)

    def _given_or_predicted(self, x, y):
        return self.classify(x).argmax(-1) if y is None else class_labels(y, x.shape[0], self.num_classes,
                                                                          self.device)

    def encode(self, x, y=None):
        """q(z|x,y); y = argmax q(y|x) when not given."""
        y = self._given_or_predicted(x, y)
        return self.guide_head(join(self.encoder(x), one_hot(y, self.num_classes)))

    def decode(self, z, y=None):
        """p(x|z,y) for z shaped (n, latent_dim) and y (one class or n classes)."""
        if y is None:
            raise ValueError("m2 decodes x from z and a class y: vae.decode(z, y)")
        y = class_labels(y, z.shape[-2], self.num_classes, self.device)
        return self.likelihood(self.decoder(join(z, one_hot(y, self.num_classes))))

    def decode_mean(self, z, y=None):
        """E[x|z,y]."""
        if y is None:
            raise ValueError("m2 decodes x from z and a class y: vae.decode_mean(z, y)")
        y = class_labels(y, z.shape[-2], self.num_classes, self.device)
        return self.likelihood.mean(self.decoder(join(z, one_hot(y, self.num_classes))))

    def reconstruct(self, x, y=None):
        """E[x | z = mean of q(z|x,y), y], y = argmax q(y|x) when not given."""
        y = self._given_or_predicted(x, y)
        return self.decode_mean(self.encode(x, y).mean, y)

    def sample(self, n: int, *, y=None, mean: bool = True):
        """n examples: y given (one class or n classes) or y ~ Cat(1/K); z ~ p(z)."""
        if y is None:
            y = torch.randint(self.num_classes, (n,), device=self.device)
        y = class_labels(y, n, self.num_classes, self.device)
        z = self.prior(torch.Size((n,))).sample()
        return self.decode_mean(z, y) if mean else self.decode(z, y).sample()

    def figure_samples(self, n: int, data=None):
        y = torch.arange(n, device=self.device) % self.num_classes
        return self.sample(n, y=y), f"E[x|z,y], z ~ p(z); example i has class y = i mod {self.num_classes}"

    def figure_reconstructions(self, x, labels=None):
        return self.reconstruct(x)
