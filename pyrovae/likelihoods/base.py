"""The base class, the registry and the shared helper for positive parameters."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ..errors import DataError
from ..options import is_number, softplus_inverse
from ..registry import Registry

registry = Registry("likelihood")
register = registry.register


class Likelihood(nn.Module, metaclass=ABCMeta):
    """Base class: subclass, set ``num_params``, implement ``forward`` and ``mean``.

    Built with the data shape (one example); ``split(params)`` returns the
    ``num_params`` tensors, each shaped ``(*batch, *data_shape)``.
    """

    num_params: int = 1
    support_text: str = "finite real values"

    def __init__(self, data_shape):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.event_dim = len(self.data_shape)

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return params.unbind(-self.event_dim - 1)

    @abstractmethod
    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        """Distribution over x with ``event_shape == data_shape``."""

    @abstractmethod
    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x | decoder output], shaped like the data."""

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean tensor: which values this likelihood can score."""
        return torch.isfinite(x)

    def check_data(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise :class:`DataError` if any value of ``x`` is outside the support."""
        ok = self.in_support(x)
        if bool(ok.all()):
            return
        bad = x[~ok]
        finite = x[torch.isfinite(x)]
        rng = (
            f"[{finite.min().item():.4g}, {finite.max().item():.4g}]" if finite.numel() else "none"
        )
        raise DataError(
            f"{what}: likelihood {getattr(self, 'registry_name', type(self).__name__)!r} "
            f"needs {self.support_text}, but {bad.numel()} of {x.numel()} values are not "
            f"(e.g. {bad.flatten()[0].item():.4g}; finite range {rng}). Rescale the data or "
            f"choose another model.likelihood (valid choices: {', '.join(registry.names())})."
        )


def positive(raw: torch.Tensor, floor: float, offset: float = 0.0) -> torch.Tensor:
    """floor + softplus(raw + offset): an unconstrained number made positive, smoothly."""
    return softplus(raw + offset) + floor if offset else softplus(raw) + floor


class PositiveParameter:
    """One positive parameter of a likelihood (a scale, degrees of freedom, a count
    dispersion) as set by one option, whose value is either

    * a positive number: fixed, kept as a buffer named ``name`` on the likelihood;
    * ``"learned"``: one learned scalar;
    * ``"feature"``: one learned value per data feature (shape ``data_shape``);
    * ``"predicted"``: the decoder predicts it per example and feature, as one more
      decoder output (``num_params`` grows by one).

    Learned and predicted values are ``floor + softplus(u)``. A learned ``u`` is the
    parameter ``raw_<name>`` of the likelihood, initialised so the value starts at
    ``init``; a predicted one is the decoder's output shifted so that an output of 0
    gives ``init``. The likelihood registers the parameters, so the VAE trains them.
    """

    CHOICES = ("learned", "feature", "predicted")

    def __init__(self, owner: Likelihood, name: str, value, *, init, floor: float,
                 init_option: str):
        self.name, self.floor = name, floor
        if isinstance(value, str):
            if value not in self.CHOICES:
                raise ValueError(
                    f"{name} must be a positive number or one of {', '.join(map(repr, self.CHOICES))}, "
                    f"got {value!r}")
            self.mode = value
            if not is_number(init) or not init > floor:
                raise ValueError(f"{init_option} must be a number > {floor:g} (the floor of {name}), "
                                 f"got {init!r}")
            self.offset = softplus_inverse(float(init) - floor)
            shape = {"learned": (), "feature": owner.data_shape}.get(value)
            if shape is not None:
                owner.register_parameter(f"raw_{name}", nn.Parameter(torch.full(shape, self.offset)))
        else:
            if not is_number(value) or not value > 0:
                raise ValueError(
                    f"{name} must be a positive number or one of {', '.join(map(repr, self.CHOICES))}, "
                    f"got {value!r}")
            self.mode = "fixed"
            owner.register_buffer(name, torch.tensor(float(value)))

    @property
    def predicted(self) -> bool:
        return self.mode == "predicted"

    def __call__(self, owner: Likelihood, raw: torch.Tensor | None = None) -> torch.Tensor:
        """The value: a tensor that broadcasts against ``(*batch, *data_shape)``."""
        if self.mode == "fixed":
            return getattr(owner, self.name)
        if self.mode == "predicted":
            return positive(raw, self.floor, self.offset)
        return positive(getattr(owner, f"raw_{self.name}"), self.floor)


class PositiveParamsLikelihood(Likelihood):
    """A likelihood whose decoder outputs are ``n_direct`` unconstrained numbers per
    feature followed by one per *predicted* :class:`PositiveParameter` in ``positives``."""

    n_direct: int = 1

    def setup_positives(self, *positives: PositiveParameter) -> None:
        self.positives = positives
        self.num_params = self.n_direct + sum(p.predicted for p in positives)

    def unpack(self, out: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The ``n_direct`` decoder outputs, then each positive parameter's value."""
        parts = self.split(out)
        raw = iter(parts[self.n_direct:])
        return (*parts[:self.n_direct],
                *(p(self, next(raw) if p.predicted else None) for p in self.positives))
