"""Encoders x -> features and decoders z -> likelihood parameters.

An encoder is built from the data shape and exposes ``out_features``; the guide puts
its head on those features. A decoder is built from ``latent_dim`` and the output
shape ``(num_params, *data_shape)`` that the likelihood asks for.
"""

from __future__ import annotations

import math

from torch import nn

from .options import check_int, check_int_list, check_nonnegative
from .registry import Registry

encoders = Registry("encoder")
decoders = Registry("decoder")

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "tanh": nn.Tanh,
               "softplus": nn.Softplus, "leaky_relu": nn.LeakyReLU, "silu": nn.SiLU}


class Encoder(nn.Module):
    """Base class: maps a batch ``(B, *data_shape)`` to features ``(B, out_features)``."""

    out_features: int


class Decoder(nn.Module):
    """Base class: maps ``(*batch, latent_dim)`` to ``(*batch, *output_shape)``; ``batch``
    may hold leading particle dimensions."""


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
    if check_nonnegative("dropout", dropout) >= 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    return float(dropout)


@encoders.register("mlp")
class MLPEncoder(Encoder):
    """Fully connected: flatten x, then ``hidden`` layers; ``hidden: []`` passes x through."""

    def __init__(self, input_shape, *, hidden=(256, 128), activation: str = "relu",
                 dropout: float = 0.0):
        super().__init__()
        hidden = check_int_list("hidden", hidden)
        d_in = math.prod(input_shape)
        self.net = nn.Sequential(  # flatten the example dims only: leading dims may be particles
            nn.Flatten(-len(input_shape), -1), mlp([d_in, *hidden], activation, _check_dropout(dropout))
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
        hidden = check_int_list("hidden", hidden)
        self.output_shape = tuple(output_shape)
        self.net = mlp([latent_dim, *hidden, math.prod(output_shape)], activation,
                       _check_dropout(dropout))

    def forward(self, z):
        return self.net(z).reshape(*z.shape[:-1], *self.output_shape)


# The conv stacks, by image size: 4x4 stride-2 convolutions halve the maps down to
# ``final`` x ``final``; CONV_CHANNELS are the encoder's standard channel counts (the
# decoder mirrors them).
CONV_DEPTH = {28: 2, 32: 3, 64: 4}
CONV_FINAL = {28: 7, 32: 4, 64: 4}
CONV_CHANNELS = {28: (32, 64), 32: (32, 32, 64), 64: (32, 32, 64, 64)}


def _image_shape(shape) -> tuple[int, int, int]:
    sizes = sorted(CONV_DEPTH)
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] not in CONV_DEPTH:
        raise ValueError(
            f"conv networks need square images shaped (channels, H, W) with H in "
            f"{sizes}; the data has shape {tuple(shape)}. Use the mlp network for it"
        )
    return tuple(shape)


def _conv_sizes(size: int, channels, hidden, default) -> list[int]:
    """Validated channel counts for ``size``-pixel images (``default`` when null) and hidden."""
    check_int("hidden", hidden)
    if channels is None:
        return list(default)
    n = CONV_DEPTH[size]
    if not isinstance(channels, (list, tuple)) or len(channels) != n or not all(
        isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels
    ):
        raise ValueError(
            f"channels for {size}x{size} images must be null (the standard stack "
            f"{list(default)}) or {n} positive integers, one per 4x4 stride-2 layer; "
            f"got {channels!r}"
        )
    return list(channels)


@encoders.register("conv")
class ConvEncoder(Encoder):
    """Convolutional for 28x28, 32x32 and 64x64 images: 4x4 stride-2 convolutions, then ``hidden`` units.

    Channels by image size: 28x28: 32, 64 (28 -> 14 -> 7); 32x32: 32, 32, 64 (-> 4);
    64x64: 32, 32, 64, 64 (-> 4), the usual disentanglement encoder.

    Images are (channels, H, W) with any number of channels and H = W in {28, 32, 64}.
    ``channels: null`` is the standard stack for the image size; a list must give one
    count per convolution (2 for 28x28, 3 for 32x32, 4 for 64x64).
    """

    def __init__(self, input_shape, *, channels: list[int] | None = None, hidden: int = 256,
                 activation: str = "relu"):
        super().__init__()
        c, h, _ = _image_shape(input_shape)
        channels = _conv_sizes(h, channels, hidden, CONV_CHANNELS[h])
        act = _activation(activation)
        self.input_shape = (c, h, h)
        layers: list[nn.Module] = []
        for a, b in zip([c, *channels[:-1]], channels, strict=True):
            layers += [nn.Conv2d(a, b, 4, 2, 1), act()]
        s = CONV_FINAL[h]
        layers += [nn.Flatten(), nn.Linear(channels[-1] * s * s, hidden), act()]
        self.net = nn.Sequential(*layers)
        self.out_features = hidden

    def forward(self, x):
        batch = x.shape[:-3]
        out = self.net(x.reshape(-1, *self.input_shape))
        return out.reshape(*batch, self.out_features)


@decoders.register("conv")
class ConvDecoder(Decoder):
    """Mirror of the conv encoder: dense layers, then 4x4 stride-2 transposed convolutions.

    Dense ``hidden`` units, dense to ``channels[0]`` maps of the smallest size, then the
    transposed convolutions through ``channels[1:]`` to image channels x likelihood
    parameters: 28x28: 64, 32 (7 -> 14 -> 28); 32x32: 64, 32, 32 (4 -> 8 -> 16 -> 32);
    64x64: 64, 64, 32, 32 (4 -> ... -> 64).

    ``channels: null`` is the standard stack for the image size (the encoder's, reversed);
    a list must have one entry per transposed convolution (2 for 28x28, 3 for 32x32, 4
    for 64x64): the first is the depth of the dense layer's maps.
    """

    def __init__(self, latent_dim: int, output_shape, *, channels: list[int] | None = None,
                 hidden: int = 256, activation: str = "relu"):
        super().__init__()
        p, *data_shape = output_shape
        c, h, _ = _image_shape(data_shape)
        channels = _conv_sizes(h, channels, hidden, CONV_CHANNELS[h][::-1])
        act = _activation(activation)
        self.output_shape = tuple(output_shape)
        s = CONV_FINAL[h]
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden), act(),
            nn.Linear(hidden, channels[0] * s * s), act(),
            nn.Unflatten(-1, (channels[0], s, s)),
        ]
        outs = [*channels[1:], p * c]
        for i, (a, b) in enumerate(zip(channels, outs, strict=True)):
            layers.append(nn.ConvTranspose2d(a, b, 4, 2, 1))
            if i < len(outs) - 1:
                layers.append(act())
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        batch = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1]))
        return out.reshape(*batch, *self.output_shape)
