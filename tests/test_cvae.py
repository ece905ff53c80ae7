"""The conditional VAE (model.variant cvae): y enters the decoder, the guide and, optionally,
the prior; checked against direct computations with the networks' own weights."""

import math

import numpy as np
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO

import pyrovae
from pyrovae import runs
from pyrovae.cli import main
from pyrovae.evaluate import elbo_parts

from .conftest import small_spec

K = 10


def cvae_spec(**variant):
    spec = small_spec(**{"model.latent_dim": 2, "model.encoder.hidden": "[16]",
                         "model.decoder.hidden": "[16]"})
    spec["model"]["variant"] = {"name": "cvae", **variant}
    return spec


@pytest.fixture
def cvae(small_data):
    return pyrovae.build(cvae_spec(), data=small_data)


def capture_input(module):
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    return seen, handle


def test_label_size_is_read_from_the_data_and_written_into_the_spec(cvae):
    opts = cvae.spec.model.variant.options
    assert opts["num_classes"] == K and opts["labels"] == "class"
    assert cvae.decoder.net[0].in_features == 2 + K  # [z, y]
    assert cvae.guide_head.linear.in_features == 16 + K  # [encoder(x), y]
    with pytest.raises(pyrovae.SpecError, match="num_classes is null") as e:
        pyrovae.build(cvae_spec(), data_shape=(1, 8, 8))
    assert e.value.key == "model.variant"


def test_decoder_and_guide_head_take_z_and_the_one_hot_label(cvae, small_data):
    x, y = small_data.train[:6], small_data.train_labels[:6]
    dec_in, h1 = capture_input(cvae.decoder)
    head_in, h2 = capture_input(cvae.guide_head)
    guide_tr = poutine.trace(cvae.guide).get_trace(x, y)
    poutine.trace(poutine.replay(cvae.model, trace=guide_tr)).get_trace(x, y)
    h1.remove(), h2.remove()
    onehot = torch.eye(K)[y]
    assert dec_in[0].shape == (6, 2 + K)
    torch.testing.assert_close(dec_in[0][:, :2], guide_tr.nodes["z"]["value"].detach())
    torch.testing.assert_close(dec_in[0][:, 2:], onehot)
    assert head_in[0].shape == (6, 16 + K)
    torch.testing.assert_close(head_in[0][:, 16:], onehot)


def test_log_likelihood_matches_a_direct_computation(cvae, small_data):
    x, y = small_data.train[:5], small_data.train_labels[:5]
    z = torch.randn(5, 2)
    tr = poutine.trace(poutine.condition(cvae.model, data={"z": z})).get_trace(x, y)
    # the two-layer MLP decoder by hand, then the Bernoulli log-likelihood of every pixel
    lin1, lin2 = cvae.decoder.net[0], cvae.decoder.net[2]
    h = torch.relu(torch.cat([z, torch.eye(K)[y]], 1) @ lin1.weight.T + lin1.bias)
    logits = (h @ lin2.weight.T + lin2.bias).reshape(5, 1, 8, 8)
    p = torch.sigmoid(logits)
    direct = (x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3))
    site = tr.nodes["x"]
    torch.testing.assert_close(site["fn"].log_prob(x), direct, rtol=1e-4, atol=1e-4)
    # another label changes p(x|z,y)
    other = poutine.trace(poutine.condition(cvae.model, data={"z": z})).get_trace(x, (y + 1) % K)
    assert not torch.allclose(other.nodes["x"]["fn"].log_prob(x), direct)


def test_conditional_prior_depends_on_y(small_data):
    vae = pyrovae.build(cvae_spec(conditional_prior=True, prior_hidden=[]), data=small_data)
    y = torch.tensor([0, 3, 3])
    tr = poutine.trace(vae.model).get_trace(small_data.train[:3], y)
    p = tr.nodes["z"]["fn"].base_dist
    torch.testing.assert_close(p.loc, torch.zeros(3, 2))  # starts at N(0, I) for every y
    torch.testing.assert_close(p.scale, torch.ones(3, 2))
    lin = vae.conditional_prior.net[0]
    with torch.no_grad():
        lin.weight.normal_()
        lin.bias.normal_()
    p = poutine.trace(vae.model).get_trace(small_data.train[:3], y).nodes["z"]["fn"].base_dist
    out = torch.eye(K)[y] @ lin.weight.T + lin.bias  # affine p(z|y) by hand
    torch.testing.assert_close(p.loc, out[:, :2])
    torch.testing.assert_close(p.scale, torch.nn.functional.softplus(out[:, 2:]) + 1e-4)
    assert not torch.allclose(p.loc[0], p.loc[1]) and torch.allclose(p.loc[1], p.loc[2])
    # without the conditional prior p(z) is model.prior whatever y is
    plain = pyrovae.build(cvae_spec(), data=small_data)
    q = poutine.trace(plain.model).get_trace(small_data.train[:3], y).nodes["z"]["fn"].base_dist
    torch.testing.assert_close(q.loc, torch.zeros(3, 2))
    with pytest.raises(pyrovae.SpecError, match="standard_normal"):
        spec = cvae_spec(conditional_prior=True)
        spec["model"]["prior"] = "laplace"
        pyrovae.build(spec, data=small_data)


def test_samples_for_a_given_label(cvae):
    torch.manual_seed(0)
    x = cvae.sample(4, y=3)
    torch.manual_seed(0)
    z = torch.randn(4, 2)
    lin1, lin2 = cvae.decoder.net[0], cvae.decoder.net[2]
    h = torch.relu(torch.cat([z, torch.eye(K)[[3] * 4]], 1) @ lin1.weight.T + lin1.bias)
    torch.testing.assert_close(x, torch.sigmoid(h @ lin2.weight.T + lin2.bias).reshape(4, 1, 8, 8))
    torch.manual_seed(0)
    assert not torch.allclose(cvae.sample(4, y=5), x)
    torch.manual_seed(0)
    torch.testing.assert_close(cvae.sample(4, y=torch.tensor([3, 3, 3, 3])), x)
    # generation through the Pyro model: one example per label
    tr = poutine.trace(cvae.model).get_trace(None, torch.tensor([1, 2]))
    assert tr.nodes["x"]["value"].shape == (2, 1, 8, 8)
    with pytest.raises(ValueError, match="needs labels y"):
        cvae.sample(4)
    with pytest.raises(ValueError, match=r"outside \[0, 10\)"):
        cvae.sample(4, y=10)


def test_a_plain_vae_rejects_labels(small_vae):
    with pytest.raises(ValueError, match="unconditional"):
        small_vae.sample(2, y=1)
    assert small_vae.spec.model.variant.name == "vae"


def test_evaluate_passes_the_test_labels(cvae, small_data):
    x, y = small_data.test, small_data.test_labels
    torch.manual_seed(1)
    parts = elbo_parts(cvae, x, y)
    # TraceMeanField_ELBO draws the same z (same seed) and uses the same analytic KL
    torch.manual_seed(1)
    loss = TraceMeanField_ELBO().differentiable_loss(cvae.model, cvae.guide, x, y)
    assert parts["kl_analytic"]
    assert parts["elbo"].sum().item() == pytest.approx(-loss.item(), rel=1e-5)
    res = pyrovae.evaluate(cvae, small_data, seed=1)
    assert res["elbo"] == pytest.approx(parts["elbo"].double().mean().item(), rel=1e-6)
    # the labels matter: the same model scored with shuffled labels gives another ELBO
    torch.manual_seed(1)
    wrong = elbo_parts(cvae, x, (y + 1) % K)["elbo"]
    assert not torch.allclose(wrong, parts["elbo"])


def test_trains_two_epochs_and_round_trips_through_load(tmp_path, small_data):
    vae = pyrovae.build(cvae_spec(conditional_prior=True), data=small_data)
    hist = pyrovae.fit(vae, small_data, epochs=2, progress=False)
    assert len(hist) == 2 and all(math.isfinite(h[k]) for h in hist
                                  for k in ("train_elbo", "test_elbo", "test_elbo_se", "test_kl"))
    runs.save_checkpoint(tmp_path, vae=vae, optimizer=None, epoch=2, history=hist)
    loaded = pyrovae.load(tmp_path)
    assert type(loaded) is type(vae) and loaded.spec.model.variant == vae.spec.model.variant
    assert loaded.spec.model.variant.options["num_classes"] == K
    vae.eval()
    for seed in (0, 1):
        torch.manual_seed(seed)
        a = vae.sample(3, y=7)
        torch.manual_seed(seed)
        torch.testing.assert_close(loaded.sample(3, y=7), a)
    ev = pyrovae.evaluate(loaded, small_data)
    assert ev["elbo"] == pytest.approx(pyrovae.evaluate(vae, small_data)["elbo"], rel=1e-6)


def test_figure_hooks_give_one_class_per_column(cvae, small_data):
    x, title = cvae.figure_samples(20)
    assert x.shape == (20, 1, 8, 8) and "i mod 10" in title
    torch.manual_seed(0)
    a = cvae.figure_samples(20)[0]
    torch.manual_seed(0)
    torch.testing.assert_close(a, cvae.sample(20, y=torch.arange(20) % K))
    r = cvae.figure_reconstructions(small_data.test[:4], small_data.test_labels[:4])
    torch.testing.assert_close(r, cvae.reconstruct(small_data.test[:4], small_data.test_labels[:4]))


def test_attribute_labels(small_data):
    # two float attributes per digit: its mean intensity and its class / 9
    def attrs(x, y):
        return torch.stack([x.mean((1, 2, 3)), y.float() / 9], 1)

    data = pyrovae.data.Data("digits", small_data.train, small_data.test,
                             attrs(small_data.train, small_data.train_labels),
                             attrs(small_data.test, small_data.test_labels))
    vae = pyrovae.build(cvae_spec(labels="attributes", conditional_prior=True), data=data)
    assert vae.spec.model.variant.options["y_dim"] == 2
    assert vae.decoder.net[0].in_features == 2 + 2
    hist = pyrovae.fit(vae, data, epochs=2, progress=False)
    assert all(math.isfinite(h["test_elbo"]) for h in hist)
    y = torch.tensor([0.3, 0.5])
    torch.manual_seed(0)
    a = vae.sample(3, y=y)
    torch.manual_seed(0)
    p = vae.conditional_prior(y.expand(3, 2))
    z = p.sample()
    torch.testing.assert_close(a, vae.decode_mean(z, y))
    dec_in, h = capture_input(vae.decoder)
    vae.decode_mean(z, y)
    h.remove()
    torch.testing.assert_close(dec_in[0][:, 2:], y.expand(3, 2))
    with pytest.raises(ValueError, match="attribute labels must have shape"):
        vae.sample(3, y=torch.zeros(3))
    with pytest.raises(pyrovae.SpecError, match="num_classes is for class labels"):
        pyrovae.build(cvae_spec(labels="attributes", num_classes=3), data=data)


def test_cli_sample_with_a_label(tmp_path, small_data, small_vae, capsys):
    vae = pyrovae.build(cvae_spec(), data=small_data)
    (tmp_path / "c").mkdir()
    runs.save_checkpoint(tmp_path / "c", vae=vae, optimizer=None, epoch=0, history=[])
    out = tmp_path / "s.npy"
    assert main(["sample", str(tmp_path / "c"), "-n", "4", "--label", "3", "--out", str(out)]) == 0
    torch.manual_seed(0)
    with torch.no_grad():
        expected = vae.eval().sample(4, y=3).numpy()
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6)
    assert main(["sample", str(tmp_path / "c"), "-n", "4", "--out", str(out)]) == 2
    assert "needs labels y" in capsys.readouterr().err
    (tmp_path / "v").mkdir()
    runs.save_checkpoint(tmp_path / "v", vae=small_vae, optimizer=None, epoch=0, history=[])
    assert main(["sample", str(tmp_path / "v"), "-n", "2", "-y", "1", "--out", str(out)]) == 2
    assert "unconditional" in capsys.readouterr().err


def test_spec_lists_the_variants(capsys):
    assert main(["list", "variant"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model.variant")
    for name in ("vae", "cvae", "m2", "conditional_prior", "labelled_fraction"):
        assert name in out


def test_trained_samples_are_of_the_class_asked_for(digits):
    """An independent classifier (logistic regression on the real training digits) reads the
    class of samples drawn for each y."""
    from sklearn.linear_model import LogisticRegression

    spec = {"model": {"latent_dim": 4, "encoder": {"name": "mlp", "hidden": [128]},
                      "decoder": {"name": "mlp", "hidden": [128]},
                      "variant": {"name": "cvae", "conditional_prior": True}},
            "train": {"epochs": 20, "batch_size": 64, "lr": 3e-3}}
    vae = pyrovae.build(spec, data=digits)
    pyrovae.fit(vae, digits, progress=False)
    clf = LogisticRegression(max_iter=2000).fit(digits.train.flatten(1).numpy(), digits.train_labels.numpy())
    torch.manual_seed(0)
    y = torch.arange(500) % K
    with torch.no_grad():
        x = vae.eval().sample(500, y=y)
    acc = (clf.predict(x.flatten(1).numpy()) == y.numpy()).mean()
    assert acc > 0.9  # 1.0 when written; chance is 0.1
