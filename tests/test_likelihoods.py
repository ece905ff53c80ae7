import numpy as np
import pytest
import torch
from scipy import stats

from pyrovae.errors import DataError
from pyrovae.likelihoods import registry

SHAPE = (1, 3, 4)


def lik(name, **opts):
    return registry.build(name, opts, "model.likelihood", SHAPE)


def test_bernoulli_matches_scipy_on_binary_data():
    torch.manual_seed(0)
    logits = torch.randn(5, 1, *SHAPE)
    x = torch.bernoulli(torch.full((5, *SHAPE), 0.4))
    d = lik("bernoulli")(logits)
    assert d.event_shape == SHAPE and d.batch_shape == (5,)
    p = torch.sigmoid(logits[:, 0]).numpy()
    expected = stats.bernoulli.logpmf(x.numpy(), p).reshape(5, -1).sum(1)
    np.testing.assert_allclose(d.log_prob(x).numpy(), expected, rtol=1e-5)


def test_bernoulli_on_intensities_is_cross_entropy():
    torch.manual_seed(1)
    logits = torch.randn(4, 1, *SHAPE)
    x = torch.rand(4, *SHAPE)
    p = torch.sigmoid(logits[:, 0]).double()
    expected = (x * p.log() + (1 - x) * (1 - p).log()).reshape(4, -1).sum(1)
    np.testing.assert_allclose(lik("bernoulli")(logits).log_prob(x).numpy(), expected.numpy(), rtol=1e-5)
    assert torch.allclose(lik("bernoulli").mean(logits), torch.sigmoid(logits[:, 0]))


def test_normal_fixed_scale_matches_scipy():
    torch.manual_seed(2)
    loc = torch.randn(6, 1, *SHAPE)
    x = torch.randn(6, *SHAPE)
    d = lik("normal", scale=0.7)(loc)
    expected = stats.norm.logpdf(x.numpy(), loc[:, 0].numpy(), 0.7).reshape(6, -1).sum(1)
    np.testing.assert_allclose(d.log_prob(x).numpy(), expected, rtol=1e-5)
    assert d.sample().shape == (6, *SHAPE)


def test_leading_particle_dims_are_batch_dims():
    d = lik("normal")(torch.zeros(7, 5, 1, *SHAPE))
    assert d.batch_shape == (7, 5) and d.event_shape == SHAPE


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_bernoulli_rejects_out_of_support_data(bad):
    x = torch.rand(10, *SHAPE)
    x[3, 0, 1, 2] = bad
    with pytest.raises(DataError) as e:
        lik("bernoulli").check_data(x, "data 'toy' (train split)")
    msg = str(e.value)
    assert "'bernoulli'" in msg and "[0, 1]" in msg and "toy" in msg and "normal" in msg


def test_normal_rejects_nan_and_accepts_any_finite():
    x = torch.randn(10, *SHAPE) * 100
    lik("normal").check_data(x)
    x[0, 0, 0, 0] = float("inf")
    with pytest.raises(DataError, match="finite"):
        lik("normal").check_data(x)


def test_gradients_are_finite_at_support_edges():
    logits = torch.tensor([[[[-30.0, 30.0]]]], requires_grad=True)  # (1, 1, 1, 2)
    x = torch.tensor([[[1.0, 0.0]]])
    d = registry.build("bernoulli", {}, "k", (1, 2))(logits)  # (batch, params, 1, 2)
    d.log_prob(x).sum().backward()
    assert torch.isfinite(logits.grad).all()
