"""Encoders and decoders: conv stacks by image size, the mlp, and option checks."""

import math

import pytest
import torch
from torch import nn

import pyrovae
from pyrovae.networks import decoders, encoders


def conv_pair(size, channels=1, num_params=1, latent_dim=4, **options):
    enc = encoders.build("conv", dict(options), "model.encoder", (channels, size, size))
    dec = decoders.build("conv", dict(options), "model.decoder", latent_dim,
                         (num_params, channels, size, size))
    return enc, dec


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_params", [1, 2])
def test_conv_output_shapes(size, channels, num_params):
    torch.manual_seed(0)
    enc, dec = conv_pair(size, channels, num_params)
    x = torch.rand(2, channels, size, size)
    assert enc(x).shape == (2, enc.out_features) and enc.out_features == 256
    z = torch.randn(3, 2, 4)  # 3 particles x 2 examples
    out = dec(z)
    assert out.shape == (3, 2, num_params, channels, size, size)
    assert torch.allclose(out[1], dec(z[1]), atol=1e-6)  # particles are independent rows


def _layers(module, kind):
    return [m for m in module.modules() if isinstance(m, kind)]


def test_64px_stack_is_the_disentanglement_architecture():
    enc, dec = conv_pair(64, channels=3, num_params=2, latent_dim=10)
    convs = _layers(enc, nn.Conv2d)
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    assert [(lin.in_features, lin.out_features) for lin in _layers(enc, nn.Linear)] == [(64 * 4 * 4, 256)]
    tconvs = _layers(dec, nn.ConvTranspose2d)
    assert [c.out_channels for c in tconvs] == [64, 32, 32, 3 * 2] and tconvs[0].in_channels == 64
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in tconvs)
    assert [(lin.in_features, lin.out_features) for lin in _layers(dec, nn.Linear)] == [
        (10, 256), (256, 64 * 4 * 4)]


def test_32px_stack():
    enc, dec = conv_pair(32)
    assert [c.out_channels for c in _layers(enc, nn.Conv2d)] == [32, 32, 64]
    assert [c.out_channels for c in _layers(dec, nn.ConvTranspose2d)] == [32, 32, 1]
    assert _layers(enc, nn.Linear)[0].in_features == 64 * 4 * 4


def test_28px_stack_is_unchanged():
    """Same layers and parameter names as before 32/64 px were added: old checkpoints load."""
    enc, dec = conv_pair(28, num_params=2)
    assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == {
        "net.0.weight": (32, 1, 4, 4), "net.0.bias": (32,),
        "net.2.weight": (64, 32, 4, 4), "net.2.bias": (64,),
        "net.5.weight": (256, 64 * 7 * 7), "net.5.bias": (256,)}
    assert {k: tuple(v.shape) for k, v in dec.state_dict().items()} == {
        "net.0.weight": (256, 4), "net.0.bias": (256,),
        "net.2.weight": (64 * 7 * 7, 256), "net.2.bias": (64 * 7 * 7,),
        "net.5.weight": (64, 32, 4, 4), "net.5.bias": (32,),
        "net.7.weight": (32, 2, 4, 4), "net.7.bias": (2,)}


def test_conv_channels_option():
    enc, dec = conv_pair(64, hidden=32)
    assert enc.out_features == 32 and _layers(dec, nn.Linear)[0].out_features == 32
    enc = encoders.build("conv", {"channels": [8, 8, 16, 16]}, "model.encoder", (1, 64, 64))
    assert [c.out_channels for c in _layers(enc, nn.Conv2d)] == [8, 8, 16, 16]
    assert enc(torch.rand(2, 1, 64, 64)).shape == (2, 256)
    with pytest.raises(pyrovae.SpecError, match=r"4 positive integers") as e:
        pyrovae.build({"model": {"encoder": {"name": "conv", "channels": [32, 64]},
                                 "decoder": "conv"}}, data_shape=(1, 64, 64))
    assert e.value.key == "model.encoder"


@pytest.mark.parametrize("which", ["encoder", "decoder"])
def test_mlp_without_hidden_layers_is_affine(which):
    torch.manual_seed(0)
    if which == "encoder":
        f = encoders.build("mlp", {"hidden": []}, "model.encoder", (5,))
        assert f.out_features == 5
        x, y = torch.randn(4, 5), torch.randn(4, 5)
    else:
        f = decoders.build("mlp", {"hidden": []}, "model.decoder", 3, (2, 5))
        x, y = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    a = 0.3
    assert torch.allclose(f(a * x + (1 - a) * y), a * f(x) + (1 - a) * f(y), atol=1e-6)
    assert not torch.allclose(f(x), f(y))


@pytest.mark.parametrize("model, data_shape, key, match", [
    ({"encoder": {"name": "mlp", "activation": "swish"}}, (5,), "model.encoder", "valid choices: elu"),
    ({"decoder": {"name": "mlp", "hidden": [16, -4]}}, (5,), "model.decoder", "positive integers"),
    ({"encoder": {"name": "mlp", "dropout": 1.5}}, (5,), "model.encoder", r"dropout must be in \[0, 1\)"),
    ({"encoder": "conv", "decoder": "mlp"}, (1, 8, 8), "model.encoder", r"\[28, 32, 64\].*mlp"),
    ({"encoder": "mlp", "decoder": "conv"}, (1, 8, 8), "model.decoder", r"\[28, 32, 64\].*mlp"),
    ({"encoder": {"name": "conv", "hidden": 0}}, (1, 32, 32), "model.encoder", "hidden"),
])
def test_bad_options_are_spec_errors(model, data_shape, key, match):
    with pytest.raises(pyrovae.SpecError, match=match) as e:
        pyrovae.build({"model": {"latent_dim": 2, **model}}, data_shape=data_shape)
    assert e.value.key == key and str(e.value).startswith(key)


@pytest.mark.parametrize("size", [32, 64])
def test_tiny_conv_vae_trains(size):
    spec = {"model": {"latent_dim": 2, "encoder": "conv", "decoder": "conv",
                      "likelihood": "bernoulli"}}
    vae = pyrovae.build(spec, data_shape=(1, size, size))
    torch.manual_seed(0)
    train = torch.bernoulli(torch.full((8, 1, size, size), 0.3))
    test = torch.bernoulli(torch.full((4, 1, size, size), 0.3))
    history = pyrovae.fit(vae, (train, test), epochs=1, batch_size=4, progress=False)
    assert math.isfinite(history[0]["train_objective"]) and math.isfinite(history[0]["test_elbo"])
    assert vae.sample(2).shape == (2, 1, size, size)
