"""Encoders x -> features and decoders z -> likelihood parameters.

An encoder is built from the data shape and exposes ``out_features``; the guide puts
its head on those features. A decoder is built from ``latent_dim`` and the output
shape ``(num_params, *data_shape)`` that the likelihood asks for.
"""

from __future__ import annotations

import math

from torch import nn

from .registry import Registry

encoders = Registry("encoder")
decoders = Registry("decoder")

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh,
               "softplus": nn.Softplus, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU}


class Encoder(nn.Module):
    """Base class: maps a batch ``(B, *data_shape)`` to features ``(B, out_features)``."""

    out_features: int


class Decoder(nn.Module):
    """Base class: maps ``(B, latent_dim)`` to ``(B, *output_shape)``."""


def _check_hidden(hidden) -> list[int]:
    if not isinstance(hidden, (list, tuple)) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden
    ):
        raise ValueError(f"hidden must be a list of positive integers, got {hidden!r}")
    return list(hidden)


def _activation(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r} (valid choices: {', '.join(sorted(ACTIVATIONS))})"
        )
    return ACTIVATIONS[name]


def mlp(sizes: list[int], activation: str, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` between them (none after the last)."""
    act = _activation(activation)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _check_dropout(dropout) -> float:
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


@encoders.register("mlp")
class MLPEncoder(Encoder):
    """Fully connected: flatten x, then ``hidden`` layers; ``hidden: []`` passes x through."""

    def __init__(self, input_shape, *, hidden=(256, 128), activation: str = "relu",
                 dropout: float = 0.0):
        super().__init__()
        hidden = _check_hidden(hidden)
        d_in = math.prod(input_shape)
        self.net = nn.Sequential(
            nn.Flatten(), mlp([d_in, *hidden], activation, _check_dropout(dropout))
        )
        # The activation also follows the last hidden layer: features feed a linear head.
        if hidden:
            self.net.append(_activation(activation)())
        self.out_features = hidden[-1] if hidden else d_in

    def forward(self, x):
        return self.net(x)


@decoders.register("mlp")
class MLPDecoder(Decoder):
    """Fully connected: z through ``hidden`` layers to all likelihood parameters;
    ``hidden: []`` is a linear (affine) decoder."""

    def __init__(self, latent_dim: int, output_shape, *, hidden=(128, 256),
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        hidden = _check_hidden(hidden)
        self.output_shape = tuple(output_shape)
        self.net = mlp([latent_dim, *hidden, math.prod(output_shape)], activation,
                       _check_dropout(dropout))

    def forward(self, z):
        return self.net(z).reshape(*z.shape[:-1], *self.output_shape)


def _image_shape(shape, key_sizes=(28,)) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in key_sizes:
        raise ValueError(
            f"conv networks need square images shaped (channels, H, W) with H in "
            f"{list(key_sizes)}; the data has shape {tuple(shape)}. Use the mlp network for it"
        )
    return tuple(shape)


def _check_conv_sizes(channels, hidden) -> list[int]:
    channels = _check_hidden(channels)
    if len(channels) != 2 or isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
        raise ValueError(f"channels must be two positive integers and hidden a positive "
                         f"integer, got channels={channels!r}, hidden={hidden!r}")
    return channels


@encoders.register("conv")
class ConvEncoder(Encoder):
    """Two 4x4 stride-2 convolutions (28 -> 14 -> 7) then a dense layer of ``hidden`` units."""

    def __init__(self, input_shape, *, channels=(32, 64), hidden: int = 256,
                 activation: str = "relu"):
        super().__init__()
        c, h, _ = _image_shape(input_shape)
        channels = _check_conv_sizes(channels, hidden)
        act = _activation(activation)
        self.net = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, 2, 1), act(),
            nn.Conv2d(channels[0], channels[1], 4, 2, 1), act(),
            nn.Flatten(), nn.Linear(channels[1] * (h // 4) ** 2, hidden), act(),
        )
        self.out_features = hidden

    def forward(self, x):
        return self.net(x)


@decoders.register("conv")
class ConvDecoder(Decoder):
    """Mirror of the conv encoder: dense to 7x7 maps, two 4x4 stride-2 transposed convs."""

    def __init__(self, latent_dim: int, output_shape, *, channels=(64, 32), hidden: int = 256,
                 activation: str = "relu"):
        super().__init__()
        p, *data_shape = output_shape
        c, h, _ = _image_shape(data_shape)
        channels = _check_conv_sizes(channels, hidden)
        act = _activation(activation)
        self.output_shape = tuple(output_shape)
        s = h // 4
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), act(),
            nn.Linear(hidden, channels[0] * s * s), act(),
            nn.Unflatten(-1, (channels[0], s, s)),
            nn.ConvTranspose2d(channels[0], channels[1], 4, 2, 1), act(),
            nn.ConvTranspose2d(channels[1], p * c, 4, 2, 1),
        )

    def forward(self, z):
        batch = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*batch, *self.output_shape)
