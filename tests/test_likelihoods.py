import numpy as np
import pytest
import torch
from scipy import stats

import pyrovae
from pyrovae.errors import DataError, SpecError
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


# ==== every likelihood ===========================================================================
# Each case: the registered name and options, data in its support, per-feature log p(x) computed
# independently in float64 (scipy or the definition), values outside the support.

def sp(u):
    return np.logaddexp(0.0, u)


def sp_inv(y):
    return y + np.log(-np.expm1(-y))


def positive_ref(lik, name, value, raw, init, floor):
    """A positive parameter's value as documented: a number, or floor + softplus(u)."""
    if value == "predicted":
        return floor + sp(raw + sp_inv(init - floor))
    if value in ("learned", "feature"):
        return floor + sp(getattr(lik, f"raw_{name}").detach().double().numpy())
    return value


def ref_normal_like(logpdf):
    def ref(lik, opts, out, x):
        raw = out[:, 1] if opts.get("scale") == "predicted" else None
        scale = positive_ref(lik, "scale", opts.get("scale", 0.1), raw, opts.get("init_scale", 1.0), 1e-3)
        return logpdf(x, loc=out[:, 0], scale=scale)
    return ref


def ref_student_t(lik, opts, out, x):
    raws = iter(out.swapaxes(0, 1)[1:])
    scale_opt, df_opt = opts.get("scale", "learned"), opts.get("df", "learned")
    scale = positive_ref(lik, "scale", scale_opt, next(raws) if scale_opt == "predicted" else None, 1.0, 1e-3)
    df = positive_ref(lik, "df", df_opt, next(raws) if df_opt == "predicted" else None, 5.0, 0.1)
    return stats.t.logpdf(x, df, out[:, 0], scale)


def ref_continuous_bernoulli(lik, opts, out, x):
    lam = 1 / (1 + np.exp(-out[:, 0]))
    log_c = np.log(2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam))
    return x * np.log(lam) + (1 - x) * np.log1p(-lam) + log_c


def ref_beta(lik, opts, out, x):
    eps = opts.get("eps", 1e-3)
    return stats.beta.logpdf(np.clip(x, eps, 1 - eps), 1e-3 + sp(out[:, 0]), 1e-3 + sp(out[:, 1]))


def ref_categorical(lik, opts, out, x):
    from scipy.special import log_softmax
    logp = log_softmax(np.moveaxis(out, 1, -1), axis=-1)
    k = np.rint(x * 255).astype(int)
    return np.take_along_axis(logp, k[..., None], -1)[..., 0]


def dl_ref_parts(out, components):
    p = np.moveaxis(out, 1, -1)
    if components == 1:
        return np.zeros_like(p[..., :1]), p[..., :1], 1e-3 + sp(p[..., 1:])
    logits, loc, raw = np.split(p, 3, axis=-1)
    return logits, loc, 1e-3 + sp(raw)


def ref_discretized_logistic(lik, opts, out, x):
    from scipy.special import log_softmax, logsumexp
    logits, loc, s = dl_ref_parts(out, opts.get("components", 1))
    k = np.rint(x * 255)[..., None]
    lo = np.where(k == 0, -np.inf, (k - 0.5) / 255)
    hi = np.where(k == 255, np.inf, (k + 0.5) / 255)
    # the logistic CDF difference, from the tail where it does not cancel
    mass = np.where(lo > loc, stats.logistic.sf(lo, loc, s) - stats.logistic.sf(hi, loc, s),
                    stats.logistic.cdf(hi, loc, s) - stats.logistic.cdf(lo, loc, s))
    return logsumexp(log_softmax(logits, -1) + np.log(mass), -1)


def ref_poisson(lik, opts, out, x):
    return stats.poisson.logpmf(x, np.exp(out[:, 0]))


def nb_ref(lik, opts, out, x, raw):
    theta = positive_ref(lik, "total_count", opts.get("total_count", "feature"), raw, 1.0, 1e-4)
    mu = np.exp(out[:, 0])
    return stats.nbinom.logpmf(x, theta, theta / (theta + mu))


def ref_negative_binomial(lik, opts, out, x):
    return nb_ref(lik, opts, out, x, out[:, -1])


def ref_zinb(lik, opts, out, x):
    gate = 1 / (1 + np.exp(-out[:, 1]))
    nb = np.exp(nb_ref(lik, opts, out, x, out[:, -1]))
    return np.log(gate * (x == 0) + (1 - gate) * nb)


def unit_data(g, shape):
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    x.view(-1)[:4] = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    return x


def interior_data(g, shape):
    return torch.rand(shape, generator=g, dtype=torch.float64) * 0.98 + 0.01


def grid_data(g, shape):
    x = torch.randint(0, 256, shape, generator=g).double()
    x.view(-1)[:2] = torch.tensor([0.0, 255.0], dtype=torch.float64)
    return x / 255


def real_data(g, shape):
    return torch.randn(shape, generator=g, dtype=torch.float64) * 2


def count_data(g, shape):
    x = torch.poisson(torch.rand(shape, generator=g, dtype=torch.float64) * 6, generator=g)
    x.view(-1)[:2] = torch.tensor([0.0, 40.0], dtype=torch.float64)
    return x


UNIT_BAD, GRID_BAD = [-0.1, 1.5, float("nan")], [0.5, 1.2, -1 / 255, float("nan")]
REAL_BAD, COUNT_BAD = [float("inf"), float("nan")], [-1.0, 0.5, float("nan"), float("inf")]
CASES = {  # id: (name, options, data, reference, bad values, support words)
    "continuous_bernoulli": ("continuous_bernoulli", {}, unit_data, ref_continuous_bernoulli, UNIT_BAD,
                             "[0, 1]"),
    "beta": ("beta", {}, unit_data, ref_beta, UNIT_BAD, "[0, 1]"),
    "beta-eps0": ("beta", {"eps": 0}, interior_data, ref_beta, [0.0, 1.0, 1.1], "(0, 1)"),
    "normal-learned": ("normal", {"scale": "learned"}, real_data, ref_normal_like(stats.norm.logpdf),
                       REAL_BAD, "finite"),
    "normal-feature": ("normal", {"scale": "feature", "init_scale": 0.3}, real_data,
                       ref_normal_like(stats.norm.logpdf), REAL_BAD, "finite"),
    "normal-predicted": ("normal", {"scale": "predicted"}, real_data, ref_normal_like(stats.norm.logpdf),
                         REAL_BAD, "finite"),
    "laplace": ("laplace", {"scale": 0.4}, real_data, ref_normal_like(stats.laplace.logpdf), REAL_BAD,
                "finite"),
    "laplace-predicted": ("laplace", {"scale": "predicted", "init_scale": 0.5}, real_data,
                          ref_normal_like(stats.laplace.logpdf), REAL_BAD, "finite"),
    "laplace-feature": ("laplace", {"scale": "feature"}, real_data, ref_normal_like(stats.laplace.logpdf),
                        REAL_BAD, "finite"),
    "student_t": ("student_t", {}, real_data, ref_student_t, REAL_BAD, "finite"),
    "student_t-predicted": ("student_t", {"scale": "predicted", "df": "predicted"}, real_data,
                            ref_student_t, REAL_BAD, "finite"),
    "student_t-feature": ("student_t", {"scale": 0.5, "df": "feature"}, real_data, ref_student_t,
                          REAL_BAD, "finite"),
    "categorical": ("categorical", {}, grid_data, ref_categorical, GRID_BAD, "k/255"),
    "discretized_logistic": ("discretized_logistic", {}, grid_data, ref_discretized_logistic, GRID_BAD,
                             "k/255"),
    "discretized_logistic-mix": ("discretized_logistic", {"components": 3}, grid_data,
                                 ref_discretized_logistic, GRID_BAD, "k/255"),
    "poisson": ("poisson", {}, count_data, ref_poisson, COUNT_BAD, "non-negative integer"),
    "negative_binomial": ("negative_binomial", {}, count_data, ref_negative_binomial, COUNT_BAD,
                          "non-negative integer"),
    "negative_binomial-predicted": ("negative_binomial", {"total_count": "predicted"}, count_data,
                                    ref_negative_binomial, COUNT_BAD, "non-negative integer"),
    "negative_binomial-fixed": ("negative_binomial", {"total_count": 2.5}, count_data,
                                ref_negative_binomial, COUNT_BAD, "non-negative integer"),
    "zinb": ("zinb", {}, count_data, ref_zinb, COUNT_BAD, "non-negative integer"),
    "zinb-learned": ("zinb", {"total_count": "learned", "init_total_count": 3.0}, count_data, ref_zinb,
                     COUNT_BAD, "non-negative integer"),
}
case_ids = pytest.mark.parametrize("case", list(CASES))


def make(case, shape=SHAPE):
    name, opts, *_ = CASES[case]
    return registry.build(name, dict(opts), "model.likelihood", shape)


def randomize(lk, g):
    """Move learned parameters away from their initial values."""
    with torch.no_grad():
        for p in lk.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def test_every_registered_likelihood_has_a_case():
    ours = {n for n in registry.names() if registry.module_of(n).startswith("pyrovae.")}
    assert {c[0] for c in CASES.values()} | {"bernoulli", "normal"} == ours


@case_ids
def test_log_prob_matches_independent_reference(case):
    name, opts, data, ref, *_ = CASES[case]
    g = torch.Generator().manual_seed(list(CASES).index(case))
    lk = make(case)
    randomize(lk, g)
    out = torch.randn(6, lk.num_params, *SHAPE, generator=g, dtype=torch.float64) * 1.5
    x = data(g, (6, *SHAPE))
    d = lk(out.float())
    assert d.batch_shape == (6,) and d.event_shape == SHAPE
    got = d.log_prob(x.float()).detach().double().numpy()
    expected = ref(lk, opts, out.numpy(), x.numpy()).reshape(6, -1).sum(1)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-3)
    assert torch.isfinite(lk.mean(out.float())).all()


@case_ids
def test_particle_dims_shapes_and_samples_in_support(case):
    lk = make(case)
    g = torch.Generator().manual_seed(3)
    out = torch.randn(7, 5, lk.num_params, *SHAPE, generator=g)
    d = lk(out)
    assert d.batch_shape == (7, 5) and d.event_shape == SHAPE
    x = CASES[case][2](g, (5, *SHAPE)).float()
    assert d.log_prob(x).shape == (7, 5)
    assert lk.mean(out).shape == (7, 5, *SHAPE)
    s = d.sample()
    assert s.shape == (7, 5, *SHAPE) and bool(lk.in_support(s).all())
    assert d.sample((2,)).shape == (2, 7, 5, *SHAPE)
    e = d.expand((3, 7, 5))
    assert e.batch_shape == (3, 7, 5) and torch.allclose(e.log_prob(x)[1], d.log_prob(x))


@case_ids
def test_mean_matches_the_mean_of_samples(case):
    lk = make(case)
    g = torch.Generator().manual_seed(4)
    torch.manual_seed(4)
    out = torch.randn(1, lk.num_params, *SHAPE, generator=g) * 0.7
    draws = lk(out).sample((4000,))
    sd = draws.std(0)
    err = (draws.mean(0) - lk.mean(out)).abs()
    assert bool((err <= 5 * sd / 4000**0.5 + 1e-3).all()), (err.max(), sd.max())


EDGE_X = {"unit": [0.0, 1.0, 0.5], "grid": [0.0, 1.0, 1 / 255, 254 / 255], "real": [0.0, -50.0, 50.0],
          "count": [0.0, 1.0, 500.0]}
KIND = {unit_data: "unit", interior_data: None, grid_data: "grid", real_data: "real", count_data: "count"}


@case_ids
@pytest.mark.parametrize("extreme", [-30.0, -8.0, 0.0, 8.0, 30.0])
def test_gradients_are_finite_at_the_support_edges_and_extreme_outputs(case, extreme):
    lk = make(case)
    kind = KIND[CASES[case][2]] or "interior"
    xs = EDGE_X.get(kind, [1e-6, 1 - 1e-6])
    with torch.no_grad():
        for p in lk.parameters():
            p.fill_(extreme)
    g = torch.Generator().manual_seed(5)
    # every decoder output at the extreme, or mixed with its opposite
    for out in (torch.full((len(xs), lk.num_params, 1, 3, 4), extreme),
                extreme * torch.randn(len(xs), lk.num_params, 1, 3, 4, generator=g).sign()):
        out.requires_grad_(True)
        x = torch.tensor(xs).view(-1, 1, 1, 1).expand(len(xs), *SHAPE)
        lp = lk(out).log_prob(x)
        assert not torch.isnan(lp).any()
        lk.zero_grad()
        lp.sum().backward()
        assert torch.isfinite(out.grad).all(), (xs, extreme)
        for name, p in lk.named_parameters():
            assert torch.isfinite(p.grad).all(), name


@case_ids
def test_check_data_rejects_out_of_support_values(case):
    name, _, data, _, bad_values, words = CASES[case]
    lk = make(case)
    x = data(torch.Generator().manual_seed(6), (10, *SHAPE)).float()
    lk.check_data(x)
    for bad in bad_values:
        xb = x.clone()
        xb[4, 0, 2, 1] = bad
        with pytest.raises(DataError) as e:
            lk.check_data(xb, "data 'toy' (train split)")
        msg = str(e.value)
        assert f"'{name}'" in msg and words in msg and "toy" in msg, msg


@pytest.mark.parametrize("name, options, words", [
    ("normal", {"scale": "learnt"}, ["scale", "'learnt'", "'learned'", "'feature'", "'predicted'"]),
    ("normal", {"scale": -1.0}, ["scale", "positive number", "'learned'"]),
    ("normal", {"scale": True}, ["scale", "positive number"]),
    ("normal", {"scale": "learned", "init_scale": 0.0}, ["init_scale", "> 0.001"]),
    ("normal", {"min_scale": 0}, ["min_scale", "positive"]),
    ("laplace", {"scale": "global"}, ["scale", "'learned'", "'feature'", "'predicted'"]),
    ("student_t", {"df": "lerned"}, ["df", "'learned'", "'feature'", "'predicted'"]),
    ("student_t", {"init_df": -1}, ["init_df", "> 0.1"]),
    ("beta", {"eps": 0.5}, ["eps", "[0, 0.5)"]),
    ("beta", {"min_concentration": "a"}, ["min_concentration", "positive"]),
    ("categorical", {"levels": 1}, ["levels", "[2, 65536]"]),
    ("discretized_logistic", {"components": 0}, ["components", ">= 1"]),
    ("discretized_logistic", {"levels": 255.0}, ["levels", "integer"]),
    ("negative_binomial", {"total_count": "per_feature"}, ["total_count", "'feature'", "'learned'"]),
    ("zinb", {"total_count": -2}, ["total_count", "positive number", "'predicted'"]),
    ("zinb", {"total_count": "learned", "init_total_count": 0}, ["init_total_count"]),
])
def test_bad_option_values_are_spec_errors_naming_the_key_and_choices(name, options, words):
    with pytest.raises(SpecError) as e:
        registry.build(name, options, "model.likelihood", SHAPE)
    msg = str(e.value)
    assert e.value.key == "model.likelihood" and msg.startswith("model.likelihood:"), msg
    assert f"'{name}'" in msg
    for w in words:
        assert w in msg, (w, msg)


TRAIN_DATA = {unit_data: lambda g: torch.rand(48, 6, generator=g),
              interior_data: lambda g: torch.rand(48, 6, generator=g) * 0.9 + 0.05,
              grid_data: lambda g: torch.randint(0, 256, (48, 6), generator=g).float() / 255,
              real_data: lambda g: torch.randn(48, 6, generator=g),
              count_data: lambda g: torch.poisson(torch.full((48, 6), 3.0), generator=g)}


@pytest.mark.parametrize("case", ["bernoulli", *CASES])
def test_a_vae_with_each_likelihood_trains_without_nan(case):
    name, opts, data = ("bernoulli", {}, unit_data) if case == "bernoulli" else CASES[case][:3]
    spec = {"model": {"likelihood": {"name": name, **opts}, "latent_dim": 2,
                      "encoder": {"name": "mlp", "hidden": [16]}, "decoder": {"name": "mlp", "hidden": [16]}},
            "objective": {"name": "elbo", "num_particles": 2}}  # particles: batch shape (2, B)
    vae = pyrovae.build(spec, data_shape=(6,))
    before = {n: p.detach().clone() for n, p in vae.likelihood.named_parameters()}
    x = TRAIN_DATA[data](torch.Generator().manual_seed(7))
    hist = pyrovae.fit(vae, (x[:32], x[32:]), epochs=2, batch_size=16, progress=False)
    assert all(np.isfinite(h["train_objective"]) and np.isfinite(h["test_elbo"]) for h in hist)
    assert all(torch.isfinite(p).all() for p in vae.parameters())
    for n, p in vae.likelihood.named_parameters():  # learned likelihood parameters are trained
        assert not torch.equal(p, before[n]), n
    assert torch.isfinite(vae.reconstruct(x)).all() and vae.sample(3, mean=False).shape == (3, 6)


def test_every_likelihood_describes_itself_in_one_line():
    for name in registry.names():
        text = registry.describe(name)
        assert text and "\n" not in text and len(text) < 200, (name, text)


# ---- family-specific checks ---------------------------------------------------------------------
def test_scale_modes_store_what_they_say():
    fixed = lik("normal")
    assert fixed.num_params == 1 and "scale" in dict(fixed.named_buffers()) and not list(fixed.parameters())
    learned = lik("normal", scale="learned", init_scale=0.2)
    (name, p), = learned.named_parameters()
    assert name == "raw_scale" and p.shape == ()
    assert torch.allclose(learned(torch.zeros(2, 1, *SHAPE)).base_dist.scale, torch.tensor(0.2))
    feature = lik("laplace", scale="feature", init_scale=0.2)
    assert feature.raw_scale.shape == SHAPE
    predicted = lik("normal", scale="predicted", init_scale=0.2)
    assert predicted.num_params == 2 and not list(predicted.parameters())
    # a decoder output of 0 gives init_scale; large negative ones stop at min_scale
    out = torch.zeros(2, 2, *SHAPE)
    out[1, 1] = -100.0
    scale = predicted(out).base_dist.scale
    assert torch.allclose(scale[0], torch.tensor(0.2)) and torch.allclose(scale[1], torch.tensor(1e-3))
    t = lik("student_t")
    assert {n for n, _ in t.named_parameters()} == {"raw_scale", "raw_df"}
    assert torch.allclose(t(torch.zeros(1, 1, *SHAPE)).base_dist.df, torch.tensor(5.0))


def test_continuous_bernoulli_is_normalised_and_its_mean_exact_at_any_logit():
    from pyrovae.likelihoods import ContinuousBernoulli
    logits = torch.tensor([-60.0, -20.0, -3.0, -1e-3, 0.0, 1e-3, 0.3, 0.6, 5.0, 20.0, 60.0])
    d = ContinuousBernoulli(logits=logits.view(-1, 1))
    x = torch.linspace(0, 1, 100_001)
    dens = d.log_prob(x.view(1, -1).expand(len(logits), -1)).double().exp().numpy()
    xs = x.double().numpy()
    np.testing.assert_allclose(np.trapezoid(dens, xs, axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(d.mean[:, 0].double().numpy(), np.trapezoid(dens * xs, xs, axis=1), atol=1e-5)
    # torch's own ContinuousBernoulli clamps λ: off by ~log|l| beyond |l| ~ 16
    torch_lp = torch.distributions.ContinuousBernoulli(logits=torch.tensor(60.0)).log_prob(torch.tensor(1.0))
    assert abs(torch_lp.item() - d.log_prob(torch.ones(len(logits), 1))[-1].item()) > 1
    # inverse-CDF sampling stays in [0, 1] and follows the density at extreme logits
    torch.manual_seed(0)
    s = d.sample((20_000,))
    assert bool(((s >= 0) & (s <= 1)).all())
    torch.testing.assert_close(s.mean(0), d.mean, atol=0.01, rtol=0)


def test_beta_scores_exact_zeros_and_ones_at_eps():
    out = torch.randn(3, 2, *SHAPE)
    x = torch.zeros(3, *SHAPE)
    x[1] = 1.0
    x[2] = 0.5
    for eps in (1e-3, 1e-2):
        b = lik("beta", eps=eps)
        x_eps = x.clone()
        x_eps[0], x_eps[1] = eps, 1 - eps
        assert torch.isfinite(b(out).log_prob(x)).all()
        torch.testing.assert_close(b(out).log_prob(x), b(out).log_prob(x_eps))
    with pytest.raises(DataError, match=r"strictly inside \(0, 1\)"):
        lik("beta", eps=0).check_data(x)


def test_categorical_grid_tolerance_and_mean():
    c = lik("categorical")
    x = torch.randint(0, 256, (4, *SHAPE)).float() / 255
    assert bool(c.in_support(x + 5e-5).all()) and not bool(c.in_support(x + 3e-4).any())
    out = torch.randn(4, 256, *SHAPE)
    p = torch.softmax(out.movedim(1, -1).double(), -1)
    expected = (p * torch.arange(256, dtype=torch.double) / 255).sum(-1)
    torch.testing.assert_close(c.mean(out).double(), expected, atol=1e-6, rtol=1e-5)
    # values a hair off the grid score as the nearest level
    torch.testing.assert_close(c(out).log_prob(x + 5e-5), c(out).log_prob(x))
    coarse = lik("categorical", levels=17)  # scikit-learn digits: k/16
    assert coarse.num_params == 17 and bool(coarse.in_support(torch.arange(17.0) / 16).all())


def discretized_logistic(loc, scale, logits=None):
    from pyrovae.likelihoods import DiscretizedLogistic
    return DiscretizedLogistic(torch.as_tensor(loc), torch.as_tensor(scale),
                               None if logits is None else torch.as_tensor(logits))


@pytest.mark.parametrize("loc, scale, logits", [
    ([[0.5]], [[0.1]], None),
    ([[-5.0], [3.0], [0.5], [0.3]], [[1e-4], [1e-3], [1e3], [5e-3]], None),  # far outside, tiny, huge
    ([[0.1, 0.5, 0.9]], [[0.01, 0.3, 2.0]], [[0.0, -3.0, 2.0]]),
    ([[-20.0, 0.5, 40.0]], [[1e-3, 1e-4, 50.0]], [[30.0, -30.0, 0.0]]),
])
def test_discretized_logistic_masses_over_all_levels_sum_to_one(loc, scale, logits):
    d = discretized_logistic(loc, scale, logits)  # batch (S,)
    levels = torch.arange(256.0) / 255
    lp = d.expand((256, *d.batch_shape)).log_prob(levels.view(-1, 1))  # (256, S)
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp.logsumexp(0), torch.zeros(d.batch_shape), atol=2e-5, rtol=0)


def test_discretized_logistic_is_accurate_in_float32_far_in_the_tails():
    # P(x = 0) and P(x = 1/255) for μ = 0.9, s = 0.005: around e^-180, which a float32
    # difference of CDFs rounds to 0; float64 scipy has it exactly.
    loc, s = 0.9, 0.005
    d = discretized_logistic([[loc]], [[s]])
    for k in (0, 1, 40, 200):
        lo, hi = (k - 0.5) / 255, (k + 0.5) / 255
        expected = np.log(stats.logistic.cdf(hi, loc, s) - (stats.logistic.cdf(lo, loc, s) if k else 0))
        got = d.log_prob(torch.tensor([k / 255])).item()
        assert got == pytest.approx(expected, rel=1e-5), k
    cdf = lambda t: torch.sigmoid(torch.tensor((t - loc) / s))  # noqa: E731
    assert (cdf(40.5 / 255) - cdf(39.5 / 255)).item() == 0.0  # a float32 difference of CDFs, k = 40
    # for a scale much wider than a bin it is the density times the bin width
    d = discretized_logistic([[0.4]], [[2.0]])
    mid = stats.logistic.logpdf(128 / 255, 0.4, 2.0) + np.log(1 / 255)
    assert d.log_prob(torch.tensor([128 / 255])).item() == pytest.approx(mid, abs=1e-4)


def test_poisson_gradient_is_finite_when_the_rate_underflows():
    log_rate = torch.tensor([[[-120.0, 80.0]]], requires_grad=True)
    d = registry.build("poisson", {}, "k", (2,))(log_rate)
    d.log_prob(torch.tensor([[0.0, 3.0]])).sum().backward()
    assert torch.isfinite(log_rate.grad).all()
