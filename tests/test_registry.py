import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae.errors import SpecError
from pyrovae.registry import Registry


def test_options_come_from_keyword_only_parameters():
    reg = Registry("thing")

    @reg.register("a")
    class A:
        """An A. Second sentence.

        Details."""

        def __init__(self, size, *, alpha: float = 1.0, name: str = "x", needed):
            self.size, self.alpha, self.needed = size, alpha, needed

    opts = reg.options("a")
    assert [o.name for o in opts.values()] == ["alpha", "name", "needed"]
    assert opts["needed"].required and opts["alpha"].default == 1.0
    assert reg.describe("a") == "An A. Second sentence."
    with pytest.raises(SpecError, match="needs option"):
        reg.build("a", {}, "k", 3)
    obj = reg.build("a", {"needed": 2, "alpha": 0.5}, "k", 3)
    assert (obj.size, obj.alpha, obj.needed) == (3, 0.5, 2)
    with pytest.raises(SpecError) as e:
        reg.build("a", {"needed": 1, "beta": 2}, "k", 3)
    assert e.value.key == "k.beta" and e.value.choices == ["alpha", "name", "needed"]


def test_duplicate_name_is_refused():
    reg = Registry("thing")

    def one():
        return 1

    def two():
        return 2

    reg.register("a", one)
    reg.register("a", one)  # the same factory again (a re-run script cell) is fine
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", two)


def test_user_likelihood_by_decorator_is_usable_from_a_spec(small_data):
    @pyrovae.likelihoods.register("test_logit_normal_cb")
    class LogitNormalish(pyrovae.likelihoods.Likelihood):
        """Normal on the data with a learned global scale (a user's own component)."""

        def __init__(self, data_shape, *, init_scale: float = 0.3):
            super().__init__(data_shape)
            self.log_scale = torch.nn.Parameter(torch.tensor(init_scale).log())

        def forward(self, params):
            return dist.Normal(self.split(params)[0], self.log_scale.exp()).to_event(self.event_dim)

        def mean(self, params):
            return self.split(params)[0]

    try:
        vae = pyrovae.build({"model": {"likelihood": {"name": "test_logit_normal_cb",
                                                      "init_scale": 0.5}}}, data=small_data)
        assert vae.spec.model.likelihood.options == {"init_scale": 0.5}
        assert any(n.endswith("log_scale") for n, _ in vae.named_parameters())
        hist = pyrovae.fit(vae, small_data, epochs=1, progress=False)
        assert torch.isfinite(torch.tensor(hist[-1]["test_elbo"]))
    finally:
        pyrovae.likelihoods.registry._entries.pop("test_logit_normal_cb")
