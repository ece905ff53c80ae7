"""Posterior-analysis figures (pyrovae.analysis.figures): every figure writes a PNG that
matplotlib reads back, for the plain VAE, cvae, M2 and vector data; the numbers behind the
figures (traversal grid, interpolation ends, PCA) against direct computations."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import pyrovae
from pyrovae.analysis import figures
from pyrovae.errors import DataError, SpecError

from .conftest import small_spec


def _variant(name):
    spec = small_spec()
    if name != "vae":
        spec["model"]["variant"] = {"name": name}
    return spec


@pytest.fixture
def vector_model():
    """A 6-feature vector data set with 3 classes and its VAE (latent_dim 3)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 6, generator=g)
    y = torch.arange(60) % 3
    data = pyrovae.data.Data("vectors", x[:40], x[40:], y[:40], y[40:])
    spec = small_spec(**{"model.likelihood": "normal"})
    return pyrovae.build(spec, data=data), data


def read_png(path):
    assert path.exists() and path.stat().st_size > 0
    img = plt.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 50
    assert img[..., :3].std() > 0.01  # something was drawn
    return img


KL = [0.5, 0.01, 2.0]


def model_figures(vae, data, tmp_path, y=None):
    """The figures that run the VAE: traversal, interpolation, prior samples."""
    x = data.split("test")
    return [read_png(p) for p in (
        figures.traversal_figure(vae, x[:1], tmp_path / "trav.png", y=y, steps=5, kl_per_dim=KL),
        figures.interpolation_figure(vae, x[0], x[1], tmp_path / "interp.png", y=y, steps=4),
        figures.sample_grid_figure(vae, tmp_path / "samples.png", n=12))]


@pytest.mark.parametrize("variant", ["vae", "cvae", "m2"])
def test_model_figures_of_each_variant(variant, small_data, tmp_path):
    vae = pyrovae.build(_variant(variant), data=small_data)
    vae.train()
    # cvae needs y; m2 decodes with argmax q(y|x) when y is not given
    model_figures(vae, small_data, tmp_path, y=small_data.test_labels[:1] if variant == "cvae" else None)
    assert vae.training  # the mode is restored


def test_figures_of_data(small_data, tmp_path):
    """Scatter (PCA of 3 dimensions, integer classes), KL bars and captioned images."""
    means = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    read_png(figures.latent_scatter_figure(means, tmp_path / "s.png", labels=small_data.test_labels))
    read_png(figures.kl_bars_figure(KL, tmp_path / "kl.png", kl_se=[0.1, 0.01, 0.2],
                                    active=[True, False, True]))
    captions = [f"k̂ = {k:.2f}" for k in np.linspace(0.9, 0.5, 5)]
    read_png(figures.examples_figure(small_data.test[:5], tmp_path / "e.png", captions=captions,
                                     title="worst PSIS k̂"))
    rgb = torch.rand(3, 3, 4, 4)
    read_png(figures.examples_figure(rgb, tmp_path / "rgb.png", captions="abc", title="RGB"))


def test_figures_of_vector_data(vector_model, tmp_path):
    vae, data = vector_model
    model_figures(vae, data, tmp_path)
    # (vector examples are drawn as the vector prior samples are, by the same heat-map code)
    # L = 1: the means against their class; L = 2 as they are, coloured by a continuous label
    read_png(figures.latent_scatter_figure(torch.randn(40, 1), tmp_path / "s1.png", labels=data.train_labels))
    read_png(figures.latent_scatter_figure(np.random.default_rng(0).normal(size=(40, 2)), tmp_path / "s2.png",
                                           labels=np.linspace(0, 1, 40)))


def test_traversal_grid(small_vae, small_data):
    x = small_data.test[:1]
    kl = [0.1, 3.0, 1.0]
    t = figures.traverse(small_vae, x, steps=7, span=2.0, kl_per_dim=kl)
    assert t["dims"] == [1, 2, 0]  # sorted by KL, descending
    with torch.no_grad():
        mu = small_vae.encode(x).mean[0]
        expected = small_vae.decode_mean(mu[None])[0]
    np.testing.assert_allclose(t["offsets"].numpy(), np.linspace(-2, 2, 7), atol=1e-6)
    assert t["offsets"][3] == 0
    for r, j in enumerate(t["dims"]):
        assert torch.equal(t["z"][r, 3], mu)  # the middle column is the encoder mean exactly
        torch.testing.assert_close(t["x"][r, 3], expected, atol=1e-6, rtol=1e-6)
        others = [i for i in range(3) if i != j]
        assert torch.equal(t["z"][r][:, others], mu[others].expand(7, 2))
        np.testing.assert_allclose(t["z"][r, :, j].numpy(), (mu[j] + t["offsets"] * t["scale"][j]).numpy())
    # standard-normal prior: the scale is 1 up to the IQR estimate's error (~2% for 4096 draws)
    np.testing.assert_allclose(t["scale"].numpy(), 1.0, atol=0.08)
    # the same seed gives the same grid
    assert torch.equal(figures.traverse(small_vae, x, steps=7, span=2.0, kl_per_dim=kl)["x"], t["x"])


@pytest.mark.parametrize("variant", ["cvae", "m2"])
def test_traversal_of_a_labelled_model_keeps_its_label(variant, small_data):
    """The middle column is E[x | μ(x, y), y] with the given y (cvae) or y = argmax q(y|x) (m2)."""
    vae = pyrovae.build(_variant(variant), data=small_data)
    x = small_data.test[:1]
    with torch.no_grad():
        y = torch.tensor(3) if variant == "cvae" else vae.classify(x).argmax(-1)[0]
        expected = vae.decode_mean(vae.encode(x, y).mean, y)[0]
    t = figures.traverse(vae, x, y=3 if variant == "cvae" else None, steps=3)
    assert int(t["y"]) == int(y)
    for r in range(3):
        torch.testing.assert_close(t["x"][r, 1], expected, atol=1e-6, rtol=1e-6)


def test_prior_scale_of_a_laplace_prior():
    """Laplace(0, b): IQR = 2 b ln 2, so s = 2 b ln 2 / 1.349 (estimate's error ~1.5% at 20000 draws)."""
    spec = small_spec()
    spec["model"]["prior"] = {"name": "laplace", "scale": 2.0}
    vae = pyrovae.build(spec, data_shape=(5,))
    torch.manual_seed(0)
    s = figures.prior_scale(vae, num_samples=20000)
    np.testing.assert_allclose(s.numpy(), 2 * 2.0 * np.log(2) / figures.NORMAL_IQR, rtol=0.05)


def test_pca_of_points_on_a_line():
    rng = np.random.default_rng(1)
    direction = np.array([1.0, 2.0, -2.0]) / 3.0
    t = rng.normal(size=200)
    pts = 5.0 + t[:, None] * direction
    proj, ratio = figures.pca(pts)
    assert ratio[0] == pytest.approx(1.0, abs=1e-12)
    assert ratio[1] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(np.abs(proj[:, 0]), np.abs(t - t.mean()), atol=1e-10)
    # a general cloud: ratios are the covariance eigenvalues over their sum
    pts = rng.normal(size=(300, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    ev = np.sort(np.linalg.eigvalsh(np.cov(pts.T)))[::-1]
    np.testing.assert_allclose(figures.pca(pts)[1], ev[:2] / ev.sum(), rtol=1e-10)


def test_interpolation_ends_are_the_encoder_means(small_vae, small_data, tmp_path, monkeypatch):
    x = small_data.test[:2]
    seen = []
    decode = small_vae.decode_mean
    monkeypatch.setattr(small_vae, "decode_mean", lambda z, y=None: seen.append(z) or decode(z, y))
    figures.interpolation_figure(small_vae, x[0], x[1], tmp_path / "i.png", steps=5)
    with torch.no_grad():
        mu = small_vae.encode(x).mean
    z = seen[0]
    assert z.shape == (5, 3)
    torch.testing.assert_close(z[0], mu[0])
    torch.testing.assert_close(z[-1], mu[1])
    torch.testing.assert_close(z[2], (mu[0] + mu[1]) / 2)


def test_sample_grid_is_seeded_and_leaves_the_rng_alone(small_vae, tmp_path):
    torch.manual_seed(3)
    state = torch.get_rng_state()
    a = figures.sample_grid_figure(small_vae, tmp_path / "a.png", n=9, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = figures.sample_grid_figure(small_vae, tmp_path / "b.png", n=9, seed=1)
    assert np.array_equal(plt.imread(a), plt.imread(b))


def test_bad_input(small_vae, small_data, tmp_path):
    x = small_data.test[:2]
    with pytest.raises(DataError, match="one example"):
        figures.traversal_figure(small_vae, x, tmp_path / "t.png")
    with pytest.raises(SpecError, match="dims"):
        figures.traversal_figure(small_vae, x[:1], tmp_path / "t.png", dims=[0, 5])
    with pytest.raises(SpecError, match="steps"):
        figures.interpolation_figure(small_vae, x[0], x[1], tmp_path / "i.png", steps=1)
    with pytest.raises(SpecError, match="captions"):
        figures.examples_figure(x, tmp_path / "e.png", captions=["a"], title="t")
    with pytest.raises(SpecError, match="kl_se"):
        figures.kl_bars_figure([1.0, 2.0], tmp_path / "k.png", kl_se=[0.1])
    with pytest.raises(DataError, match="kl_per_dim"):
        figures.kl_bars_figure(None, tmp_path / "k.png")  # a flow's evaluation has no per-dimension KL
    with pytest.raises(DataError, match="labels"):
        figures.latent_scatter_figure(torch.randn(10, 3), tmp_path / "s.png", labels=[1, 2])
