"""Probabilistic losses: values, hand-derived derivatives, parity with PyTorch, extremes, masks, errors.

Values and derivatives are checked in float64 against NumPy formulas written here from the
docstrings; parity against torch.nn.functional.gaussian_nll_loss / poisson_nll_loss and
torch.distributions' Normal KL, gradients included where torch has them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _loss_cases import (
    SHAPE,
    Case,
    assert_bad_input_raises,
    assert_check_gradients_passes_for_every_float_argument,
    assert_hand_derivative_matches_numpy_derivative,
    assert_hessian_and_hvp_match_reference,
    assert_low_precision_gives_float32_loss_and_own_dtype_gradients,
    assert_masked_entries_zero,
    assert_values_match_numpy_reference,
    gradients_and_jvp,
    gradients_of_sum,
    mean_value_and_grad_memory,
    sum_to_shape,
)

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _torch():
    return pytest.importorskip("torch")


# ============================================================================ gaussian_nll_loss


def _np_variance(variance, shape):
    """torch's rule: a variance of the batch shape gets a trailing axis."""
    variance = np.asarray(variance, np.float64)
    if variance.ndim and variance.shape == shape[:-1]:
        variance = variance[..., None]
    return np.broadcast_to(variance, shape)


def _np_gaussian_nll(mean, target, variance, full=False, eps=1e-6):
    v = np.maximum(_np_variance(variance, mean.shape), eps)
    return 0.5 * (np.log(v) + (mean - target) ** 2 / v) + (HALF_LOG_2PI if full else 0.0)


def _np_gaussian_nll_d(mean, target, variance, full=False, eps=1e-6):
    var = _np_variance(variance, mean.shape)
    v = np.maximum(var, eps)
    r = mean - target
    dv = 0.5 * (1 / v - r**2 / v**2)  # at max(σ², eps): straight through the clamp
    return {"mean": r / v, "target": -r / v, "variance": dv, "eps": np.where(var < eps, dv, 0.0)}


def _gaussian(variance, **options):
    """A maker of mean, target, variance (a function of (rng, shape), or a value) and options."""

    def make(rng, shape):
        target = rng.normal(size=shape)
        return {"mean": target + rng.normal(size=shape), "target": target,
                "variance": variance(rng, shape) if callable(variance) else variance, **options}

    return make


def _positive(rng, shape):
    return rng.uniform(0.2, 3.0, size=shape)


def _some_below(eps):
    """Variances of which about a third lie below ``eps`` (0 included), the rest well above."""
    def variance(rng, shape):
        v = rng.uniform(0.2, 3.0, size=shape)
        low = rng.random(shape) < 0.33
        return np.where(low, rng.choice([0.0, 0.1 * eps, 0.5 * eps], size=shape), v)

    return variance


GAUSSIAN = [
    Case("gnll-heteroscedastic", jaxloss.gaussian_nll_loss, _gaussian(_positive),
         _np_gaussian_nll, _np_gaussian_nll_d),
    Case("gnll-column-variance-full", jaxloss.gaussian_nll_loss,
         _gaussian(lambda rng, s: _positive(rng, s[:-1] + (1,)), full=True), _np_gaussian_nll, _np_gaussian_nll_d),
    Case("gnll-per-feature-variance", jaxloss.gaussian_nll_loss,
         _gaussian(lambda rng, s: _positive(rng, s[-1:])), _np_gaussian_nll, _np_gaussian_nll_d),
    Case("gnll-float-variance", jaxloss.gaussian_nll_loss, _gaussian(0.7), _np_gaussian_nll, _np_gaussian_nll_d),
    Case("gnll-float-eps", jaxloss.gaussian_nll_loss, _gaussian(_positive, eps=0.1),
         _np_gaussian_nll, _np_gaussian_nll_d),
    Case("gnll-clamped", jaxloss.gaussian_nll_loss, _gaussian(_some_below(0.05), eps=0.05),
         _np_gaussian_nll, _np_gaussian_nll_d),
]


# ============================================================================ poisson_nll_loss


def _np_stirling(t):
    safe = np.where(t > 1, t, 2.0)
    return (np.where(t > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe), 0.0),
            np.where(t > 1, np.log(safe) + 0.5 / safe, 0.0))


def _np_poisson(log_rate_or_rate, target, log_input=True, full=False, eps=1e-8):
    x = log_rate_or_rate
    loss = np.exp(x) - target * x if log_input else x - target * np.log(x + eps)
    return loss + (_np_stirling(target)[0] if full else 0.0)


def _np_poisson_d(log_rate_or_rate, target, log_input=True, full=False, eps=1e-8):
    x = log_rate_or_rate
    if log_input:
        d = {"log_rate_or_rate": np.exp(x) - target, "target": -x, "eps": np.zeros_like(x)}
    else:
        d = {"log_rate_or_rate": 1 - target / (x + eps), "target": -np.log(x + eps), "eps": -target / (x + eps)}
    d["target"] = d["target"] + (_np_stirling(target)[1] if full else 0.0)
    return d


def _counts(rng, shape):
    """Float counts away from the Stirling term's switch at 1."""
    return np.where(rng.random(shape) < 0.5, rng.uniform(0.0, 0.8, shape), rng.uniform(1.3, 6.0, shape))


def _poisson(log_input=True, **options):
    def make(rng, shape):
        x = rng.uniform(-2.0, 2.0, shape) if log_input else rng.uniform(0.1, 4.0, shape)
        opts = {k: v(rng, shape) if callable(v) else v for k, v in options.items()}
        return {"log_rate_or_rate": x, "target": _counts(rng, shape), "log_input": log_input, **opts}

    return make


POISSON = [
    Case("poisson-log-input", jaxloss.poisson_nll_loss, _poisson(), _np_poisson, _np_poisson_d),
    Case("poisson-log-input-full", jaxloss.poisson_nll_loss, _poisson(full=True), _np_poisson, _np_poisson_d),
    Case("poisson-rate", jaxloss.poisson_nll_loss, _poisson(False, eps=0.01), _np_poisson, _np_poisson_d),
    Case("poisson-rate-full", jaxloss.poisson_nll_loss, _poisson(False, full=True), _np_poisson, _np_poisson_d),
    Case("poisson-rate-elementwise-eps", jaxloss.poisson_nll_loss,
         _poisson(False, full=True, eps=lambda rng, s: rng.uniform(0.01, 0.1, s)), _np_poisson, _np_poisson_d),
]

ELEMENTWISE = GAUSSIAN + POISSON
# The clamped case's variance derivative is torch's straight-through one, not the derivative of
# the (flat) clamped function that finite differences see: checked separately below.
CHECKED = [c for c in ELEMENTWISE if c.id != "gnll-clamped"]
CORE = [c for c in ELEMENTWISE if c.id in {"gnll-heteroscedastic", "gnll-clamped", "poisson-log-input-full",
                                            "poisson-rate-elementwise-eps"}]


@pytest.mark.parametrize("case", ELEMENTWISE, ids=str)
def test_values_match_numpy_float64_reference(case, x64):
    assert_values_match_numpy_reference(case, seed=0, trace_python_scalars=False)


@pytest.mark.parametrize("case", ELEMENTWISE, ids=str)
def test_hand_derivative_matches_numpy_analytic_derivative(case, x64):
    assert_hand_derivative_matches_numpy_derivative(case, seed=1)


@pytest.mark.parametrize("case", CHECKED, ids=str)
def test_check_gradients_passes_for_every_float_argument(case):
    assert_check_gradients_passes_for_every_float_argument(case, seed=2)


def test_eps_derivative_at_the_clamp_matches_finite_differences():
    a = _gaussian(_some_below(0.05), eps=0.05)(np.random.default_rng(3), SHAPE)
    check = jaxloss.check_gradients(jaxloss.gaussian_nll_loss, **a, wrt=("mean", "target", "eps"))
    assert {r.argument for r in check.rows} == {"mean", "target", "eps"} and check.ok, repr(check)


@pytest.mark.parametrize("case", CORE, ids=str)
def test_masked_entries_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case):
    assert_masked_entries_zero(case, SHAPE, seed=5)


def test_per_example_variance_masked_with_nan_padding_gives_zero_gradient():
    """A variance of the batch shape (not masked by the mechanism, which masks full-shaped
    arguments) holding NaN for fully masked examples."""
    rng = np.random.default_rng(6)
    mean, target = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    variance = rng.uniform(0.5, 2.0, SHAPE[0])
    where = np.arange(SHAPE[0]) % 2 == 0
    variance[~where] = np.nan
    f = lambda m, v: jaxloss.gaussian_nll_loss(m, target, v, where=where[:, None])  # noqa: E731
    loss = f(mean, variance)
    gm, gv = jax.grad(lambda m, v: jnp.sum(f(m, v)), argnums=(0, 1))(mean, variance)
    np.testing.assert_array_equal(loss[~where], 0.0)
    np.testing.assert_allclose(loss[where], _np_gaussian_nll(mean, target, variance)[where], rtol=1e-5)
    np.testing.assert_array_equal(gv[~where], 0.0)
    np.testing.assert_array_equal(gm[~where], 0.0)
    assert np.all(np.isfinite(gv)) and np.all(gv[where] != 0)


@pytest.mark.parametrize("case, dtype", [pytest.param(c, d, id=f"{c.id}-{d.__name__}")
                                         for c in CORE for d in (jnp.bfloat16, jnp.float16)])
def test_low_precision_inputs_give_float32_loss_and_own_dtype_gradients(case, dtype):
    assert_low_precision_gives_float32_loss_and_own_dtype_gradients(case, dtype, seed=7)


@pytest.mark.parametrize("case", [c for c in CORE if c.id != "gnll-clamped"], ids=str)
def test_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    assert_hessian_and_hvp_match_reference(case, seed=8)


# ----------------------------------------------------------------------------- gaussian_nll_loss vs torch


def _torch_gaussian(mean, target, variance, **options):
    torch = _torch()
    m, t = (torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in (mean, target))
    v = variance if isinstance(variance, float) else torch.tensor(variance, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.gaussian_nll_loss(m, t, v, reduction="none", **options)
    loss.sum().backward()
    grads = {"mean": m.grad.numpy(), "target": t.grad.numpy()}
    if not isinstance(variance, float):
        grads["variance"] = v.grad.numpy()
    return loss.detach().numpy(), grads


@pytest.mark.parametrize("full", [False, True], ids=["partial", "full"])
@pytest.mark.parametrize("variance_shape", [SHAPE, SHAPE[:-1], SHAPE[:-1] + (1,), (1,) + SHAPE[1:], None],
                         ids=["heteroscedastic", "batch-shape", "last-dim-1", "first-dim-1", "float"])
def test_gaussian_nll_matches_torch_values_and_gradients(variance_shape, full, x64):
    rng = np.random.default_rng(9)
    mean, target = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    variance = 0.7 if variance_shape is None else rng.uniform(0.2, 3.0, variance_shape)
    values, grads = _torch_gaussian(mean, target, variance, full=full)
    ours = jaxloss.gaussian_nll_loss(mean, target, variance, full=full)
    assert ours.shape == SHAPE == values.shape  # torch's reduction="none" is elementwise
    np.testing.assert_allclose(ours, values, rtol=1e-12, atol=1e-15)
    mine = gradients_of_sum(jaxloss.gaussian_nll_loss, {"mean": mean, "target": target, "variance": variance,
                                                        "full": full}, wrt=tuple(grads))
    for k in grads:
        np.testing.assert_allclose(mine[k], grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_batch_shaped_variance_of_a_square_input_is_per_example_as_in_torch(x64):
    """mean [3, 3] with variance [3]: torch's rule takes it as one variance per row (a trailing
    axis added), not NumPy's per column."""
    rng = np.random.default_rng(19)
    mean, target, variance = rng.normal(size=(3, 3)), rng.normal(size=(3, 3)), np.array([0.5, 1.0, 4.0])
    values, _ = _torch_gaussian(mean, target, variance)
    np.testing.assert_allclose(jaxloss.gaussian_nll_loss(mean, target, variance), values, rtol=1e-12)
    np.testing.assert_allclose(values, _np_gaussian_nll(mean, target, variance[:, None]), rtol=1e-12)


def test_variance_derivative_below_eps_is_torchs_straight_through_one(x64):
    """Variances of 0 and below eps are clamped; their derivative is ½(1/ε − r²/ε²), as in
    torch, not the 0 of the clamped function; eps gets that derivative where it clamps."""
    mean, target = np.array([[0.5, 1.0, 0.0, 2.0]]), np.zeros((1, 4))
    variance = np.array([[0.0, 1e-8, 1e-7, 2.0]])
    values, grads = _torch_gaussian(mean, target, variance)
    a = {"mean": mean, "target": target, "variance": variance, "eps": 1e-6}
    np.testing.assert_allclose(jaxloss.gaussian_nll_loss(**a), values, rtol=1e-12)
    mine, jv = gradients_and_jvp(jaxloss.gaussian_nll_loss, a, ("variance", "eps"))
    np.testing.assert_allclose(mine["variance"], grads["variance"], rtol=1e-12)
    at_eps = 0.5 * (1 / 1e-6 - mean[0, :3] ** 2 / 1e-12)
    np.testing.assert_allclose(mine["variance"][0, :3], at_eps, rtol=1e-12)
    np.testing.assert_allclose(mine["eps"], at_eps.sum(), rtol=1e-12)
    np.testing.assert_allclose(jv, [list(at_eps * 2) + [0.5 * (1 / 2.0 - 4 / 4.0)]], rtol=1e-12)


def test_gaussian_nll_extremes_are_finite(x64):
    mean = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, 1.0]])
    target = np.zeros_like(mean)
    for variance in (np.array([[0.0, 1e-30, 1e4], [1.0, 0.0, 0.0]]), np.array([0.0, 1e4])):
        for dtype in (jnp.float32, jnp.float64):
            args = [jnp.asarray(x, dtype) for x in (mean, target, variance)]
            loss = jaxloss.gaussian_nll_loss(*args)
            grads = jax.grad(lambda *a: jnp.sum(jaxloss.gaussian_nll_loss(*a)), argnums=(0, 1, 2))(*args)
            assert np.all(np.isfinite(loss)) and all(np.all(np.isfinite(g)) for g in grads)
            np.testing.assert_allclose(loss, _np_gaussian_nll(mean, target, variance), rtol=1e-6)


# ----------------------------------------------------------------------------- poisson_nll_loss vs torch


def _torch_poisson(x, target, **options):
    torch = _torch()
    xt, tt = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (x, target))
    loss = torch.nn.functional.poisson_nll_loss(xt, tt, reduction="none", **options)
    loss.sum().backward()
    return loss.detach().numpy(), {"log_rate_or_rate": xt.grad.numpy(), "target": tt.grad.numpy()}


@pytest.mark.parametrize("full", [False, True], ids=["partial", "full"])
@pytest.mark.parametrize("log_input", [True, False], ids=["log-input", "rate"])
def test_poisson_nll_matches_torch_values_and_gradients(log_input, full, x64):
    rng = np.random.default_rng(10)
    x = rng.uniform(-2, 2, SHAPE) if log_input else rng.uniform(0.0, 4.0, SHAPE)
    target = _counts(rng, SHAPE) + 0.01  # > 0: torch's target gradient is NaN at 0 with full
    target[0, :3] = [0.01, 1.0, 3.0]
    if not log_input:
        x[1, :2] = 0.0  # rate 0
    values, grads = _torch_poisson(x, target, log_input=log_input, full=full)
    a = {"log_rate_or_rate": x, "target": target, "log_input": log_input, "full": full}
    np.testing.assert_allclose(jaxloss.poisson_nll_loss(**a), values, rtol=1e-12, atol=1e-14)
    mine = gradients_of_sum(jaxloss.poisson_nll_loss, a, wrt=("log_rate_or_rate", "target"))
    for k in grads:
        np.testing.assert_allclose(mine[k], grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("log_input", [True, False], ids=["log-input", "rate"])
def test_poisson_target_derivative_at_zero_count_is_finite_where_torch_gives_nan(log_input, x64):
    x = np.array([0.5, 0.0, 2.0])
    target = np.zeros(3)
    _, grads = _torch_poisson(x, target, log_input=log_input, full=True)
    assert np.all(np.isnan(grads["target"]))
    a = {"log_rate_or_rate": x, "target": target, "log_input": log_input, "full": True}
    mine = gradients_of_sum(jaxloss.poisson_nll_loss, a, wrt=("target",))["target"]
    np.testing.assert_allclose(mine, -x if log_input else -np.log(x + 1e-8), rtol=1e-12)


def test_poisson_full_term_is_zero_up_to_one_and_stirling_above(x64):
    t = np.array([0.0, 0.5, 1.0, 1.0 + 1e-9, 10.0])
    x = np.zeros(5)
    full = jaxloss.poisson_nll_loss(x, t, full=True) - jaxloss.poisson_nll_loss(x, t)
    stirling = lambda t: t * np.log(t) - t + 0.5 * np.log(2 * np.pi * t)  # noqa: E731
    np.testing.assert_allclose(full, [0, 0, 0, stirling(1.0 + 1e-9), stirling(10.0)], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stirling(10.0), math.lgamma(11.0), rtol=1e-2)  # ≈ log 10!


def test_poisson_extremes_are_finite():
    log_rates = jnp.array([-1e4, -50.0, 0.0, 50.0, 80.0])
    rates = jnp.array([0.0, 0.0, 1e-30, 1e4, 5.0])
    counts = jnp.array([0.0, 3.0, 0.0, 1e4, 1.0])
    for x, log_input in ((log_rates, True), (rates, False)):
        for full in (False, True):
            def total(x, t, log_input=log_input, full=full):
                return jnp.sum(jaxloss.poisson_nll_loss(x, t, log_input=log_input, full=full))

            loss = jaxloss.poisson_nll_loss(x, counts, log_input=log_input, full=full)
            grads = jax.grad(total, argnums=(0, 1))(x, counts)
            assert np.all(np.isfinite(loss)) and all(np.all(np.isfinite(g)) for g in grads), (log_input, full)
            with jax.enable_x64(True):
                expected = _np_poisson(np.float64(x), np.float64(counts), log_input, full)
            # Rate = count = 1e4 with full: terms of ±9e4 cancel to 5.5, as in torch; float32 keeps 0.01.
            np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=0.01)
    # e^x beyond float32's range overflows to +inf, as the true value does; never NaN.
    assert jaxloss.poisson_nll_loss(jnp.array([100.0]), jnp.array([1.0]))[0] == jnp.inf


@pytest.mark.parametrize("derivative", ["hand", "reference"])
def test_poisson_zero_rate_with_eps_0_reads_0_log_0_as_0_and_never_gives_nan(derivative, x64):
    # eps = 0 at rate 0 used to give NaN: 0·log 0 in the value, 0/0 in the derivative.
    fn = jaxloss.poisson_nll_loss if derivative == "hand" else jaxloss.poisson_nll_loss.reference
    x, t, eps = jnp.array([0.0, 0.0, 1.5]), jnp.array([0.0, 3.0, 2.0]), jnp.zeros(3)

    def loss(x, t, eps):
        return fn(x, t, log_input=False, eps=eps)

    def total(x, t, eps):
        return jnp.sum(loss(x, t, eps))

    inf = np.inf
    # count 0: x − 0·log x = x; count 3 at rate 0: +inf, with its one-sided derivatives.
    want = {"value": [0.0, inf, 1.5 - 2 * np.log(1.5)], "x": [1.0, -inf, 1 - 2 / 1.5],
            "t": [0.0, inf, -np.log(1.5)], "eps": [0.0, -inf, -2 / 1.5], "xx": [0.0, inf, 2 / 1.5 ** 2]}
    got = {"value": loss(x, t, eps)}
    got["x"], got["t"], got["eps"] = jax.grad(total, argnums=(0, 1, 2))(x, t, eps)
    ones = jnp.ones(3)
    np.testing.assert_array_equal(jax.jvp(lambda x: loss(x, t, eps), (x,), (ones,))[1], want["x"])
    got["xx"] = jax.jvp(jax.grad(lambda x: total(x, t, eps)), (x,), (ones,))[1]
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v, rtol=1e-15, atol=0, equal_nan=False, err_msg=k)
    # The count-0 entry alone: every derivative finite, to second order.
    hessian = jax.hessian(lambda x, t: total(x, t, 0.0), argnums=(0, 1))(x[:1], t[:1])
    assert np.all(np.isfinite(np.asarray(jax.tree_util.tree_leaves(hessian))))


def test_poisson_masked_zero_rates_with_eps_0_give_zero_gradients(x64):
    x, t, where = jnp.array([0.0, 2.0, 0.0]), jnp.array([0.0, 1.0, 4.0]), jnp.array([False, True, False])

    def total(x, t):
        return jnp.sum(jaxloss.poisson_nll_loss(x, t, log_input=False, eps=0.0, where=where))

    np.testing.assert_allclose(total(x, t), 2 - np.log(2.0), rtol=1e-15)
    for g in jax.grad(total, argnums=(0, 1))(x, t):
        assert np.all(np.isfinite(g)) and g[0] == 0 and g[2] == 0
    hvp = jax.jvp(jax.grad(lambda x: total(x, t)), (x,), (jnp.ones(3),))[1]
    np.testing.assert_allclose(hvp, [0.0, 1 / 4, 0.0], rtol=1e-15, equal_nan=False)


# ============================================================================ gaussian_kl_divergence


def _np_kl(mean, log_variance, prior_mean=0.0, prior_log_variance=0.0):
    var, prior_var = np.exp(log_variance), np.exp(prior_log_variance)
    terms = (var + (mean - prior_mean) ** 2) / prior_var - 1 + prior_log_variance - log_variance
    return 0.5 * np.sum(np.broadcast_to(terms, np.shape(mean)), axis=-1)


def _np_kl_d(mean, log_variance, prior_mean=0.0, prior_log_variance=0.0):
    """Elementwise derivatives of each argument (to be summed to its shape)."""
    d = (mean - prior_mean) / np.exp(prior_log_variance)
    ratio = np.exp(log_variance - prior_log_variance)
    z2 = (mean - prior_mean) ** 2 / np.exp(prior_log_variance)
    return {"mean": d, "prior_mean": -d, "log_variance": 0.5 * (ratio - 1),
            "prior_log_variance": 0.5 * (1 - ratio - z2)}


def _kl_args(rng, shape=SHAPE, **priors):
    return {"mean": rng.normal(size=shape), "log_variance": rng.uniform(-2, 2, shape),
            **{k: v(rng, shape) if callable(v) else v for k, v in priors.items()}}


KL_PRIORS = {
    "standard-normal": {},
    "float-priors": {"prior_mean": 0.3, "prior_log_variance": -0.5},
    "per-dimension-priors": {"prior_mean": lambda rng, s: rng.normal(size=s[-1:]),
                             "prior_log_variance": lambda rng, s: rng.uniform(-1, 1, s[-1:])},
    "per-example-priors": {"prior_mean": lambda rng, s: rng.normal(size=s),
                           "prior_log_variance": lambda rng, s: rng.uniform(-1, 1, s)},
}
kl_priors = pytest.mark.parametrize("priors", KL_PRIORS.values(), ids=KL_PRIORS.keys())


@kl_priors
def test_kl_values_match_numpy_float64_reference(priors, x64):
    a = _kl_args(np.random.default_rng(11), **priors)
    got = jaxloss.gaussian_kl_divergence(**a)
    assert got.shape == SHAPE[:-1] and got.dtype == jnp.float64
    np.testing.assert_allclose(got, _np_kl(**a), rtol=1e-12)
    np.testing.assert_allclose(jax.jit(lambda a: jaxloss.gaussian_kl_divergence(**a))(a), got, rtol=1e-14)


@kl_priors
def test_kl_hand_derivative_matches_numpy_analytic_derivative(priors, x64):
    a = _kl_args(np.random.default_rng(12), **priors)
    floats = {k: np.asarray(v, np.float64) for k, v in a.items()}
    grads = jax.grad(lambda f: jnp.sum(jaxloss.gaussian_kl_divergence(**f)))(floats)
    expected = _np_kl_d(**a)
    for name, g in grads.items():
        np.testing.assert_allclose(g, sum_to_shape(np.broadcast_to(expected[name], SHAPE), np.shape(a[name])),
                                   rtol=1e-12, atol=1e-14, err_msg=name)


@kl_priors
def test_kl_check_gradients_passes_for_every_float_argument(priors):
    a = _kl_args(np.random.default_rng(13), **priors)
    check = jaxloss.check_gradients(jaxloss.gaussian_kl_divergence, **a)
    assert {r.argument for r in check.rows} == set(a) and check.ok, repr(check)


def test_kl_matches_torch_normal_kl_values_and_gradients(x64):
    torch = _torch()
    rng = np.random.default_rng(14)
    a = _kl_args(rng, prior_mean=lambda rng, s: rng.normal(size=s), prior_log_variance=lambda rng, s: rng.uniform(-1, 1, s))
    ts = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in a.items()}
    normal = torch.distributions.Normal
    kl = torch.distributions.kl_divergence(normal(ts["mean"], torch.exp(0.5 * ts["log_variance"])),
                                           normal(ts["prior_mean"], torch.exp(0.5 * ts["prior_log_variance"]))).sum(-1)
    kl.sum().backward()
    np.testing.assert_allclose(jaxloss.gaussian_kl_divergence(**a), kl.detach().numpy(), rtol=1e-12)
    grads = jax.grad(lambda f: jnp.sum(jaxloss.gaussian_kl_divergence(**f)))(a)
    for k, t in ts.items():
        np.testing.assert_allclose(grads[k], t.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=k)


def test_kl_of_the_prior_itself_is_zero_with_zero_gradient(x64):
    rng = np.random.default_rng(15)
    mu, lv = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    a = {"mean": mu, "log_variance": lv, "prior_mean": mu.copy(), "prior_log_variance": lv.copy()}
    np.testing.assert_array_equal(jaxloss.gaussian_kl_divergence(**a), 0.0)
    for name, g in jax.grad(lambda f: jnp.sum(jaxloss.gaussian_kl_divergence(**f)))(a).items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("side", ["posterior", "prior"])
def test_kl_at_log_variance_plus_minus_50_is_finite_and_exact(side, dtype, x64):
    """Log-variances of ±50 on either side (with means up to 1e4, and a mean equal to the
    prior's): values equal the float64 formula, every derivative is finite."""
    mean = np.array([[1e4, 0.0, -1.0], [-1e4, 1.0, 0.0]])
    lv = np.array([[50.0, -50.0, 0.0], [-50.0, 50.0, 3.0]])
    a = {"mean": mean, "log_variance": lv, "prior_mean": np.zeros(3), "prior_log_variance": np.zeros(3)}
    if side == "prior":
        a["log_variance"], a["prior_log_variance"] = np.zeros_like(lv), lv
    a = {k: jnp.asarray(v, dtype) for k, v in a.items()}
    loss = jaxloss.gaussian_kl_divergence(**a)
    grads = jax.grad(lambda f: jnp.sum(jaxloss.gaussian_kl_divergence(**f)))(a)
    np.testing.assert_allclose(loss, _np_kl(**{k: np.float64(v) for k, v in a.items()}), rtol=1e-6)
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
    np.testing.assert_allclose(grads["log_variance"], _np_kl_d(**{k: np.float64(v) for k, v in a.items()})
                               ["log_variance"].reshape(np.shape(a["log_variance"])), rtol=1e-6)


def test_kl_beyond_the_float32_range_is_inf_not_nan():
    """KL ≈ ½e^100 does not fit float32: +inf, with a finite derivative for the means."""
    mean, lv = jnp.zeros((1, 2)), jnp.array([[50.0, 0.0]])
    loss = jaxloss.gaussian_kl_divergence(mean, lv, prior_log_variance=jnp.array([-50.0, 0.0]))
    assert loss[0] == jnp.inf
    assert jaxloss.gaussian_kl_divergence(mean, jnp.array([[-jnp.inf, 0.0]]))[0] == jnp.inf  # σ² = 0
    g = jax.grad(lambda m: jnp.sum(jaxloss.gaussian_kl_divergence(m, lv, prior_log_variance=-50.0)))(mean)
    np.testing.assert_array_equal(g, 0.0)


def test_kl_masked_examples_with_nan_padding_give_zero_loss_and_gradient():
    rng = np.random.default_rng(16)
    a = {k: np.float32(v) for k, v in _kl_args(rng, prior_mean=lambda rng, s: rng.normal(size=s),
                                                prior_log_variance=lambda rng, s: rng.uniform(-1, 1, s)).items()}
    where = np.arange(SHAPE[0]) % 3 != 0
    clean = {k: v.copy() for k, v in a.items()}
    for v in a.values():
        v[~where] = np.nan
    loss = jaxloss.gaussian_kl_divergence(**a, where=where)
    grads = jax.grad(lambda f: jnp.sum(jaxloss.gaussian_kl_divergence(**f, where=where)))(a)
    np.testing.assert_array_equal(loss[~where], 0.0)
    np.testing.assert_allclose(loss[where], jaxloss.gaussian_kl_divergence(**clean)[where], rtol=1e-6)
    _, jv = jax.jvp(lambda f: jaxloss.gaussian_kl_divergence(**f, where=where), (a,), (jax.tree.map(jnp.ones_like, a),))
    np.testing.assert_array_equal(jv[~where], 0.0)
    for name, g in grads.items():
        np.testing.assert_array_equal(g[~where], 0.0, err_msg=name)
        assert np.all(np.isfinite(g)) and np.any(g[where] != 0), name


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=lambda d: d.__name__)
def test_kl_low_precision_gives_float32_loss_and_own_dtype_gradients(dtype):
    a = _kl_args(np.random.default_rng(17), prior_mean=lambda rng, s: rng.normal(size=s[-1:]))
    low = {k: jnp.asarray(v, dtype) for k, v in a.items()}
    loss = jaxloss.gaussian_kl_divergence(**low)
    assert loss.dtype == jnp.float32
    up = {k: v.astype(jnp.float32) for k, v in low.items()}
    np.testing.assert_allclose(loss, jaxloss.gaussian_kl_divergence(**up), rtol=1e-6)
    grads = jax.grad(lambda f: jnp.sum(jaxloss.gaussian_kl_divergence(**f)))(low)
    assert all(g.dtype == dtype for g in grads.values())


def test_kl_hessian_and_hvp_match_reference(x64):
    rng = np.random.default_rng(18)
    a = _kl_args(rng, (3, 4), prior_mean=lambda rng, s: rng.normal(size=s[-1:]),
                 prior_log_variance=lambda rng, s: rng.uniform(-1, 1, s))
    v = {k: rng.normal(size=np.shape(x)) for k, x in a.items()}

    def both(fn):
        total = lambda f: jnp.sum(fn(**f))  # noqa: E731
        hessian = jax.hessian(lambda lv: total({**a, "log_variance": lv}))(a["log_variance"])
        return hessian, jax.jvp(jax.grad(total), (a,), (v,))[1]

    (h, hvp), (h_ref, hvp_ref) = both(jaxloss.gaussian_kl_divergence), both(jaxloss.gaussian_kl_divergence.reference)
    np.testing.assert_allclose(h, h_ref, rtol=1e-12, atol=1e-14)
    for k in a:
        np.testing.assert_allclose(hvp[k], hvp_ref[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ============================================================================ errors

F = np.ones(SHAPE, np.float32)
ERRORS = [
    ("kl-scalar-mean", jaxloss.gaussian_kl_divergence, (np.float32(1.0), np.float32(0.0)), {}, ValueError,
     r"mean must have a latent axis"),
    ("kl-integer-mean", jaxloss.gaussian_kl_divergence, (np.ones(SHAPE, np.int32), F), {}, TypeError,
     r"mean must be a floating-point array"),
    ("kl-log-variance-shape", jaxloss.gaussian_kl_divergence, (F, np.ones((5, 6), np.float32)), {}, ValueError,
     r"log_variance with shape \(5, 6\) does not broadcast to mean with shape \(5, 7\)"),
    ("kl-prior-shape", jaxloss.gaussian_kl_divergence, (F, F), {"prior_mean": np.ones(6, np.float32)}, ValueError,
     r"prior_mean with shape \(6,\) does not broadcast to mean"),
    ("kl-complex-prior", jaxloss.gaussian_kl_divergence, (F, F), {"prior_log_variance": np.ones(7, np.complex64)},
     TypeError, r"prior_log_variance must be a floating-point array"),
    ("kl-where-shape", jaxloss.gaussian_kl_divergence, (F, F), {"where": np.ones(SHAPE, bool)}, ValueError,
     r"where with shape \(5, 7\) does not broadcast to the batch shape of mean with shape \(5,\)"),
    ("gnll-target-shape", jaxloss.gaussian_nll_loss, (F, np.ones((5, 6), np.float32), F), {}, ValueError,
     r"target with shape \(5, 6\) does not broadcast to mean"),
    ("gnll-variance-shape", jaxloss.gaussian_nll_loss, (F, F, np.ones(6, np.float32)), {}, ValueError,
     r"variance with shape \(6,\) does not broadcast to mean with shape \(5, 7\), nor has its batch shape \(5,\)"),
    ("gnll-integer-variance", jaxloss.gaussian_nll_loss, (F, F, np.ones(SHAPE, np.int32)), {}, TypeError,
     r"variance must be a floating-point array"),
    ("gnll-zero-eps", jaxloss.gaussian_nll_loss, (F, F, F), {"eps": 0.0}, ValueError, r"eps must be > 0"),
    ("gnll-full-not-bool", jaxloss.gaussian_nll_loss, (F, F, F), {"full": 1}, TypeError, r"full must be a Python bool"),
    ("gnll-float-where", jaxloss.gaussian_nll_loss, (F, F, F), {"where": F}, TypeError, r"where must be a boolean"),
    ("poisson-integer-input", jaxloss.poisson_nll_loss, (np.ones(SHAPE, np.int32), F), {}, TypeError,
     r"log_rate_or_rate must be a floating-point array"),
    ("poisson-target-shape", jaxloss.poisson_nll_loss, (F, np.ones((2, 7), np.float32)), {}, ValueError,
     r"target with shape \(2, 7\) does not broadcast to log_rate_or_rate"),
    ("poisson-negative-eps", jaxloss.poisson_nll_loss, (F, F), {"log_input": False, "eps": -1.0}, ValueError,
     r"eps must be >= 0"),
    ("poisson-log-input-not-bool", jaxloss.poisson_nll_loss, (F, F), {"log_input": "yes"}, TypeError,
     r"log_input must be a Python bool"),
    ("poisson-where-shape", jaxloss.poisson_nll_loss, (F, F), {"where": np.ones((4, 7), bool)}, ValueError,
     r"where with shape \(4, 7\) does not broadcast to log_rate_or_rate"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    assert_bad_input_raises(fn, args, kwargs, error, match, jit)


def test_gaussian_kl_value_and_grad_of_the_mean_holds_at_most_the_one_liners_memory():
    """Issue 18: compiled footprint (temporaries + outputs) of ``value_and_grad`` of the mean with
    respect to both inputs, at most that of autodiff of benchmarks/catalogue.py's one-liner, float32 and
    bfloat16, with no temporary beyond a few scalars (64 bytes: the loss's opaque constants).  [4096, 16] is a size where the forward's ½,
    shared with the rule's, was computed into a [4096] temporary (16 KiB over the one-liner)."""
    def simple(m, lv):
        return 0.5 * jnp.sum(jnp.exp(lv) + m**2 - 1 - lv, -1)

    for dtype in (jnp.float32, jnp.bfloat16):
        x = jax.ShapeDtypeStruct((4096, 16), dtype)
        (temp, footprint), (_, theirs) = (mean_value_and_grad_memory(fn, (x, x), (0, 1))
                                          for fn in (jaxloss.gaussian_kl_divergence, simple))
        assert temp <= 64, (dtype, temp)
        assert footprint <= theirs + 64, (dtype, footprint)
