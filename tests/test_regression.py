"""Regression losses: values, hand-derived derivatives, parity, kinks, masks, dtypes, errors.

Values and derivatives are checked in float64 against NumPy formulas written here from
the docstrings; parity against optax and PyTorch; subgradients at kinks are pinned.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _loss_cases import (
    SHAPE,
    Case,
    assert_bad_input_raises,
    assert_check_gradients_passes_for_every_float_argument,
    assert_concrete_option_array_raises,
    assert_hand_derivative_matches_numpy_derivative,
    assert_hessian_and_hvp_match_reference,
    assert_low_precision_gives_float32_loss_and_own_dtype_gradients,
    assert_masked_entries_zero,
    assert_values_match_numpy_reference,
    gradients_and_jvp,
    gradients_of_sum,
    low_precision_params,
    mask_params,
    mean_value_and_grad_memory,
)

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue


# ----------------------------------------------------------------------------- inputs

# Residual magnitudes live in these bands; every switch point used below (0.5, 1.0, and
# array-valued delta/beta within 0.05 of them) lies at least 0.05 outside them.
BANDS = np.array([(0.05, 0.4), (0.6, 0.9), (1.2, 2.5)])


def _residuals(rng, shape):
    band = rng.integers(len(BANDS), size=shape)
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(BANDS[band, 0], BANDS[band, 1])


def _switch_points(rng, shape):
    """Array-valued delta / beta: 0.5 or 1.0, jittered by at most 0.05."""
    return rng.choice([0.5, 1.0], size=shape) + rng.uniform(-0.05, 0.05, size=shape)


def _pair(rng, shape):
    targets = rng.normal(size=shape)
    return {"predictions": targets + _residuals(rng, shape), "targets": targets}


# ----------------------------------------------------------------------------- NumPy references


def _np_huber(predictions, targets, delta=1.0):
    r = predictions - targets
    return np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))


def _np_huber_d(predictions, targets, delta=1.0):
    r = predictions - targets
    dr = np.where(np.abs(r) <= delta, r, delta * np.sign(r))
    return {"predictions": dr, "targets": -dr, "delta": np.where(np.abs(r) <= delta, 0.0, np.abs(r) - delta)}


def _np_smooth_l1(predictions, targets, beta=1.0):
    r = predictions - targets
    inside = np.abs(r) < beta
    return np.where(inside, 0.5 * r**2 / np.where(inside, beta, 1.0), np.abs(r) - 0.5 * beta)


def _np_smooth_l1_d(predictions, targets, beta=1.0):
    r = predictions - targets
    inside = np.abs(r) < beta
    b = np.where(inside, beta, 1.0)
    dr = np.where(inside, r / b, np.sign(r))
    return {"predictions": dr, "targets": -dr, "beta": np.where(inside, -0.5 * r**2 / b**2, -0.5)}


def _with(**options):
    """A maker of predictions, targets and options (values, or functions of (rng, shape))."""
    return lambda rng, shape: {**_pair(rng, shape),
                               **{k: v(rng, shape) if callable(v) else v for k, v in options.items()}}


def _d_residual(dr):
    """Derivatives of a loss of the residual r = predictions - targets, given dℓ/dr."""
    return lambda predictions, targets: {"predictions": dr(predictions - targets),
                                         "targets": -dr(predictions - targets)}


CASES = [
    Case("squared_error", jaxloss.squared_error, _with(),
         lambda predictions, targets: (predictions - targets) ** 2, _d_residual(lambda r: 2 * r)),
    Case("mse_loss", jaxloss.mse_loss, _with(),
         lambda predictions, targets: (predictions - targets) ** 2, _d_residual(lambda r: 2 * r)),
    Case("l2_loss", jaxloss.l2_loss, _with(),
         lambda predictions, targets: 0.5 * (predictions - targets) ** 2, _d_residual(lambda r: r)),
    Case("absolute_error", jaxloss.absolute_error, _with(),
         lambda predictions, targets: np.abs(predictions - targets), _d_residual(np.sign)),
    Case("l1_loss", jaxloss.l1_loss, _with(),
         lambda predictions, targets: np.abs(predictions - targets), _d_residual(np.sign)),
    Case("huber-default-delta", jaxloss.huber_loss, _with(), _np_huber, _np_huber_d),
    Case("huber-float-delta", jaxloss.huber_loss, _with(delta=0.5), _np_huber, _np_huber_d),
    Case("huber-elementwise-delta", jaxloss.huber_loss, _with(delta=_switch_points), _np_huber, _np_huber_d),
    Case("huber-per-column-delta", jaxloss.huber_loss, _with(delta=lambda rng, s: _switch_points(rng, s[-1:])),
         _np_huber, _np_huber_d),
    Case("smooth_l1-default-beta", jaxloss.smooth_l1_loss, _with(), _np_smooth_l1, _np_smooth_l1_d),
    Case("smooth_l1-float-beta", jaxloss.smooth_l1_loss, _with(beta=0.5), _np_smooth_l1, _np_smooth_l1_d),
    Case("smooth_l1-zero-beta", jaxloss.smooth_l1_loss, _with(beta=0.0), _np_smooth_l1, _np_smooth_l1_d),
    Case("smooth_l1-elementwise-beta", jaxloss.smooth_l1_loss, _with(beta=_switch_points),
         _np_smooth_l1, _np_smooth_l1_d),
    Case("smooth_l1-per-column-beta", jaxloss.smooth_l1_loss, _with(beta=lambda rng, s: _switch_points(rng, s[-1:])),
         _np_smooth_l1, _np_smooth_l1_d),
    Case("log_cosh", jaxloss.log_cosh, _with(),
         lambda predictions, targets: np.log(np.cosh(predictions - targets)), _d_residual(np.tanh)),
]
parametrize_cases = pytest.mark.parametrize("case", CASES, ids=str)
# One case per loss and kind of option, for the properties that do not depend on the option's value.
CORE = [c for c in CASES if c.id in {"squared_error", "absolute_error", "huber-elementwise-delta",
                                     "smooth_l1-per-column-beta", "smooth_l1-zero-beta", "log_cosh", "mse_loss",
                                     "l2_loss", "l1_loss"}]
parametrize_core = pytest.mark.parametrize("case", CORE, ids=str)
# Every kind of float argument (Python float option, elementwise and broadcast arrays), for the
# finite-difference checker, which is slow; the NumPy derivative test covers every case.
CHECKED = [c for c in CASES if c.id not in {"huber-default-delta", "smooth_l1-default-beta", "smooth_l1-zero-beta"}]


# ----------------------------------------------------------------------------- values and derivatives


@parametrize_cases
def test_values_match_numpy_float64_reference(case, x64):
    assert_values_match_numpy_reference(case, seed=0, trace_python_scalars=True)


@parametrize_cases
def test_hand_derivative_matches_numpy_analytic_derivative(case, x64):
    assert_hand_derivative_matches_numpy_derivative(case, seed=1)


@pytest.mark.parametrize("case", CHECKED, ids=str)
def test_check_gradients_passes_for_every_float_argument(case):
    assert_check_gradients_passes_for_every_float_argument(case, seed=2)


# ----------------------------------------------------------------------------- parity with optax and PyTorch


@pytest.mark.parametrize(
    "ours, theirs, options",
    [
        (jaxloss.squared_error, optax.losses.squared_error, {}),
        (jaxloss.huber_loss, optax.losses.huber_loss, {}),
        (jaxloss.huber_loss, optax.losses.huber_loss, {"delta": 0.5}),
        (jaxloss.huber_loss, optax.losses.huber_loss, {"delta": _switch_points}),
        (jaxloss.log_cosh, optax.losses.log_cosh, {}),
    ],
    ids=["squared_error", "huber", "huber-delta-0.5", "huber-delta-array", "log_cosh"],
)
def test_matches_optax_values_and_gradients(ours, theirs, options, x64):
    a = _with(**options)(np.random.default_rng(3), SHAPE)
    np.testing.assert_allclose(ours(**a), theirs(**a), rtol=1e-12, atol=1e-15)
    mine, optax_grads = gradients_of_sum(ours, a), gradients_of_sum(theirs, a)
    for name in mine:
        np.testing.assert_allclose(mine[name], optax_grads[name], rtol=1e-12, atol=1e-14, err_msg=name)


def _torch_values_and_grads(name, a, **options):
    torch = pytest.importorskip("torch")
    p, t = (torch.tensor(a[k], dtype=torch.float64, requires_grad=True) for k in ("predictions", "targets"))
    loss = getattr(torch.nn.functional, name)(p, t, reduction="none", **options)
    loss.sum().backward()
    return loss.detach().numpy(), {"predictions": p.grad.numpy(), "targets": t.grad.numpy()}


@pytest.mark.parametrize(
    "ours, name, options",
    [
        (jaxloss.squared_error, "mse_loss", {}),
        (jaxloss.absolute_error, "l1_loss", {}),
        (jaxloss.huber_loss, "huber_loss", {"delta": 1.0}),
        (jaxloss.huber_loss, "huber_loss", {"delta": 0.5}),
        (jaxloss.smooth_l1_loss, "smooth_l1_loss", {"beta": 1.0}),
        (jaxloss.smooth_l1_loss, "smooth_l1_loss", {"beta": 0.5}),
        (jaxloss.smooth_l1_loss, "smooth_l1_loss", {"beta": 0.0}),
    ],
    ids=["mse", "l1", "huber-1", "huber-0.5", "smooth_l1-1", "smooth_l1-0.5", "smooth_l1-0-is-l1"],
)
def test_matches_torch_values_and_gradients(ours, name, options, x64):
    a = _pair(np.random.default_rng(4), SHAPE)
    values, grads = _torch_values_and_grads(name, a, **options)
    np.testing.assert_allclose(ours(**a, **options), values, rtol=1e-12, atol=1e-15)
    mine = gradients_of_sum(ours, {**a, **options}, wrt=("predictions", "targets"))
    for k in mine:
        np.testing.assert_allclose(mine[k], grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ----------------------------------------------------------------------------- kinks


@pytest.mark.parametrize(
    "fn, options",
    [(jaxloss.absolute_error, {}), (jaxloss.l1_loss, {}), (jaxloss.smooth_l1_loss, {"beta": 0.0})],
    ids=["absolute_error", "l1_loss", "smooth_l1-zero-beta"],
)
def test_subgradient_at_zero_residual_is_zero(fn, options, x64):
    t = np.array([0.0, 1.5, -2.0, 3e3])
    a = {"predictions": t.copy(), "targets": t, **options}
    np.testing.assert_array_equal(fn(**a), 0.0)
    grads, jv = gradients_and_jvp(fn, a, ("predictions", "targets"))
    np.testing.assert_array_equal(grads["predictions"], 0.0)
    np.testing.assert_array_equal(grads["targets"], 0.0)
    np.testing.assert_array_equal(jv, 0.0)


def test_l1_zero_residual_subgradient_matches_torch(x64):
    t = np.array([0.0, 1.5, -2.0])
    a = {"predictions": t.copy(), "targets": t}
    _, grads = _torch_values_and_grads("l1_loss", a)
    mine = gradients_of_sum(jaxloss.absolute_error, a)
    np.testing.assert_array_equal(mine["predictions"], grads["predictions"])
    np.testing.assert_array_equal(mine["predictions"], 0.0)


@pytest.mark.parametrize("delta_as_array", [False, True], ids=["float-delta", "array-delta"])
def test_huber_derivative_at_switch_point_is_delta_sign_and_zero_for_delta(delta_as_array, x64):
    r = np.array([1.5, -1.5, 0.75, -0.75])
    delta = np.abs(r) if delta_as_array else 1.5
    r = r if delta_as_array else r[:2]
    a = {"predictions": r + 2.0, "targets": np.full_like(r, 2.0), "delta": np.asarray(delta, np.float64)}
    grads = gradients_of_sum(jaxloss.huber_loss, a)
    np.testing.assert_array_equal(grads["predictions"], np.abs(delta) * np.sign(r))
    np.testing.assert_array_equal(grads["targets"], -np.abs(delta) * np.sign(r))
    np.testing.assert_array_equal(grads["delta"], 0.0)
    np.testing.assert_array_equal(jaxloss.huber_loss(**a), 0.5 * r**2)


def test_smooth_l1_derivative_at_switch_point_is_sign_and_minus_half_for_beta(x64):
    r = np.array([0.5, -0.5, 2.0, -2.0])
    a = {"predictions": r, "targets": np.zeros_like(r), "beta": np.abs(r)}
    grads = gradients_of_sum(jaxloss.smooth_l1_loss, a)
    np.testing.assert_array_equal(grads["predictions"], np.sign(r))
    np.testing.assert_array_equal(grads["beta"], -0.5)
    np.testing.assert_array_equal(jaxloss.smooth_l1_loss(**a), 0.5 * np.abs(r))


@pytest.mark.parametrize("beta", [0.0, 0.7], ids=["zero-beta", "positive-beta"])
def test_smooth_l1_beta_derivative_at_zero_residual_is_zero(beta, x64):
    t = np.array([0.0, 1.5, -2.0])
    a = {"predictions": t.copy(), "targets": t, "beta": np.full_like(t, beta)}
    np.testing.assert_array_equal(gradients_of_sum(jaxloss.smooth_l1_loss, a)["beta"], 0.0)


# ----------------------------------------------------------------------------- targets=None


@pytest.mark.parametrize("fn, options", [(jaxloss.squared_error, {}), (jaxloss.l2_loss, {}),
                                         (jaxloss.huber_loss, {"delta": 0.5}), (jaxloss.log_cosh, {})],
                         ids=lambda x: getattr(x, "__name__", ""))
def test_targets_none_means_zeros_in_value_and_every_mode(fn, options, x64):
    p = _pair(np.random.default_rng(8), SHAPE)["predictions"]
    zeros = np.zeros_like(p)
    np.testing.assert_array_equal(fn(p, **options), fn(p, zeros, **options))
    np.testing.assert_array_equal(fn(p, None, **options), fn(p, zeros, **options))
    grads, jv = gradients_and_jvp(lambda **a: fn(**a, **options), {"predictions": p}, ("predictions",))
    want, want_jv = gradients_and_jvp(lambda **a: fn(**a, targets=zeros, **options), {"predictions": p},
                                      ("predictions",))
    np.testing.assert_array_equal(grads["predictions"], want["predictions"])
    np.testing.assert_array_equal(jv, want_jv)
    assert jaxloss.check_gradients(fn, jnp.asarray(p, jnp.float32), order=2, **options).ok
    where = np.arange(p.size).reshape(p.shape) % 3 != 0
    np.testing.assert_array_equal(fn(p, where=where, **options), np.where(where, fn(p, zeros, **options), 0.0))


# ----------------------------------------------------------------------------- cosine_similarity, cosine_distance


def _np_cosine(a, b, epsilon=0.0, feature_mask=None):
    """optax's formula in float64: norms floored at √ε, masked features left out."""
    m = np.ones_like(a) if feature_mask is None else np.broadcast_to(feature_mask, a.shape)
    a, b = a * m, b * m
    eps = np.asarray(epsilon)[..., None]
    na = np.sqrt(np.maximum(np.sum(a * a, -1, keepdims=True), eps))
    nb = np.sqrt(np.maximum(np.sum(b * b, -1, keepdims=True), eps))
    return np.sum(a / na * b / nb, -1)


def _np_cosine_d(a, b, epsilon=0.0, feature_mask=None):
    """∂c/∂a, ∂c/∂b and ∂c/∂ε of :func:`_np_cosine` (the floored norm is √ε where active)."""
    m = np.ones_like(a) if feature_mask is None else np.broadcast_to(feature_mask, a.shape)
    a, b = a * m, b * m
    eps = np.broadcast_to(np.asarray(epsilon, np.float64), a.shape[:-1])
    sa, sb = np.sum(a * a, -1), np.sum(b * b, -1)
    na, nb = np.sqrt(np.maximum(sa, eps)), np.sqrt(np.maximum(sb, eps))
    c = np.sum(a * b, -1) / (na * nb)
    fa, fb = sa < eps, sb < eps  # floored: the norm is the constant √ε
    da = b / (na * nb)[..., None] - np.where(fa, 0.0, c / sa)[..., None] * a
    db = a / (na * nb)[..., None] - np.where(fb, 0.0, c / sb)[..., None] * b
    deps = -c / (2 * eps) * (fa.astype(float) + fb.astype(float))
    return da * m, db * m, deps


def _vectors(rng, shape=(6, 5), epsilon=0.3):
    """Pairs whose squared norms are below ε (floored) or above 1, away from the floor's kink."""
    x = rng.normal(size=(2, *shape))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    norms = np.where(rng.random((2, shape[0], 1)) < 0.5, rng.uniform(0.1, 0.4, (2, shape[0], 1)),
                     rng.uniform(1.1, 2.0, (2, shape[0], 1)))
    return x[0] * norms[0], x[1] * norms[1], np.full(shape[0], epsilon)


COSINE = [jaxloss.cosine_similarity, jaxloss.cosine_distance]


def _sign(fn):
    return 1.0 if fn is jaxloss.cosine_similarity else -1.0


@pytest.mark.parametrize("fn", COSINE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("masked", [False, True], ids=["all-features", "feature_mask"])
def test_cosine_values_and_derivatives_match_numpy_float64(fn, masked, x64):
    a, b, eps = _vectors(np.random.default_rng(9))
    mask = np.array([True, False, True, True, False]) if masked else None
    cos = _np_cosine(a, b, eps, mask)
    np.testing.assert_allclose(fn(a, b, epsilon=eps, feature_mask=mask), cos if _sign(fn) > 0 else 1 - cos,
                               rtol=1e-12, atol=1e-15)
    grads = gradients_of_sum(lambda **k: fn(**k, feature_mask=mask), {"predictions": a, "targets": b, "epsilon": eps})
    for name, want in zip(("predictions", "targets", "epsilon"), _np_cosine_d(a, b, eps, mask)):
        np.testing.assert_allclose(grads[name], _sign(fn) * want, rtol=1e-10, atol=1e-12, err_msg=name)
    if masked:
        np.testing.assert_array_equal(grads["predictions"][:, ~mask], 0.0)


@pytest.mark.parametrize("fn", COSINE, ids=lambda f: f.__name__)
def test_cosine_check_gradients_to_order_two(fn):
    a, b, eps = (jnp.float32(x) for x in _vectors(np.random.default_rng(10)))
    check = jaxloss.check_gradients(fn, a, b, epsilon=eps, feature_mask=jnp.array([1, 1, 0, 1, 1], bool), order=2)
    assert check.ok, repr(check)
    assert {r.argument for r in check.rows} >= {"predictions", "targets", "epsilon"}


@pytest.mark.parametrize("fn", COSINE, ids=lambda f: f.__name__)
def test_cosine_zero_vectors_give_zero_similarity_and_zero_derivative_without_epsilon(fn, x64):
    a = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(fn(a, b), 0.0 if _sign(fn) > 0 else 1.0)  # optax: 0/0 = NaN
    grads, jv = gradients_and_jvp(fn, {"predictions": a, "targets": b}, ("predictions", "targets"))
    for name, g in grads.items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)
    np.testing.assert_array_equal(jv, 0.0)
    hvp = jax.jvp(jax.grad(lambda x: fn(x, b).sum()), (a,), (np.ones_like(a),))[1]
    np.testing.assert_array_equal(hvp, 0.0)
    # A traced epsilon of 0 gets derivative 0, finite.
    np.testing.assert_array_equal(gradients_of_sum(fn, {"predictions": a + 1.0, "targets": b + 1.0,
                                                        "epsilon": np.float64(0.0)})["epsilon"], 0.0)


@pytest.mark.parametrize("fn", COSINE, ids=lambda f: f.__name__)
@pytest.mark.parametrize("axis", [0, 1, (0, 2), None], ids=str)
def test_cosine_axis_equals_the_last_axis_after_moving_it(fn, axis, x64):
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(2, 3, 4, 5))
    axes = (axis,) if isinstance(axis, int) else (0, 1, 2) if axis is None else axis
    rest = [i for i in range(3) if i not in axes]
    flat = lambda x: np.transpose(x, rest + list(axes)).reshape([x.shape[i] for i in rest] + [-1])  # noqa: E731
    np.testing.assert_allclose(fn(a, b, axis=axis), fn(flat(a), flat(b)), rtol=1e-12, atol=1e-15)
    grads = gradients_of_sum(lambda **k: fn(**k, axis=axis), {"predictions": a, "targets": b})
    moved = gradients_of_sum(fn, {"predictions": flat(a), "targets": flat(b)})
    for name in grads:
        np.testing.assert_allclose(flat(grads[name]), moved[name], rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("fn", COSINE, ids=lambda f: f.__name__)
def test_cosine_where_masks_examples_even_when_nonfinite(fn):
    a, b, _ = (np.float32(x) for x in _vectors(np.random.default_rng(12)))
    where = np.array([True, False, True, True, False, True])
    a[~where] = np.nan
    loss, grad = jax.value_and_grad(lambda x: fn(x, b, where=where).sum())(a)
    np.testing.assert_array_equal(fn(a, b, where=where)[~where], 0.0)
    np.testing.assert_allclose(fn(a, b, where=where)[where], fn(a[where], b[where]), rtol=1e-6)
    np.testing.assert_array_equal(grad[~where], 0.0)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=lambda d: d.__name__)
def test_cosine_low_precision_inputs_give_float32_loss_and_own_dtype_gradients(dtype):
    a, b, eps = _vectors(np.random.default_rng(13))
    low = [jnp.asarray(x, dtype) for x in (a, b)]
    loss = jaxloss.cosine_similarity(*low, epsilon=0.3)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, _np_cosine(*(np.asarray(x, np.float64) for x in low), eps), rtol=1e-5, atol=1e-6)
    grad = jax.grad(lambda x: jaxloss.cosine_distance(x, low[1], epsilon=0.3).sum())(low[0])
    assert grad.dtype == dtype


# ----------------------------------------------------------------------------- stability


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_log_cosh_is_finite_and_linear_at_residual_1e4(dtype, x64):
    p = jnp.array([1e4, -1e4], dtype)
    t = jnp.zeros(2, dtype)
    loss = jaxloss.log_cosh(p, t)
    assert loss.dtype == dtype
    np.testing.assert_allclose(loss, 1e4 - np.log(2.0), rtol=1e-7)
    total = lambda p: jaxloss.log_cosh(p, t).sum()  # noqa: E731
    np.testing.assert_array_equal(jax.jit(jax.grad(total))(p), [1.0, -1.0])
    np.testing.assert_array_equal(jax.jit(jax.hessian(total))(p), 0.0)


# ----------------------------------------------------------------------------- where=


@pytest.mark.parametrize(
    "case, mask_shape", mask_params(CORE, broadcast_ids=("smooth_l1-per-column-beta", "huber-elementwise-delta"))
)
def test_masked_entries_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case, mask_shape):
    """Masked examples of the per-example (positional) arguments hold inf/NaN padding;
    nothing of it reaches the value or any derivative."""
    assert_masked_entries_zero(case, mask_shape, seed=5)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("case, dtype", low_precision_params(CORE, float16_ids=("huber-elementwise-delta", "log_cosh")))
def test_low_precision_inputs_give_float32_loss_and_own_dtype_gradients(case, dtype):
    assert_low_precision_gives_float32_loss_and_own_dtype_gradients(case, dtype, seed=6)


# ----------------------------------------------------------------------------- errors

F = np.ones(SHAPE, np.float32)
ERRORS = [
    ("targets-shape", jaxloss.squared_error, (F, np.ones((5, 6), np.float32)), {}, ValueError,
     r"targets with shape \(5, 6\) does not broadcast to predictions with shape \(5, 7\)"),
    ("targets-larger-than-predictions", jaxloss.log_cosh, (np.ones(7, np.float32), F), {}, ValueError,
     r"targets with shape \(5, 7\) does not broadcast to predictions with shape \(7,\)"),
    ("integer-predictions", jaxloss.huber_loss, (np.ones(SHAPE, np.int32), F), {}, TypeError,
     r"predictions must be a floating-point array, got shape \(5, 7\), dtype int32"),
    ("complex-targets", jaxloss.absolute_error, (F, F.astype(np.complex64)), {}, TypeError,
     r"targets must be a real array"),
    ("float-where", jaxloss.smooth_l1_loss, (F, F), {"where": F}, TypeError, r"where must be a boolean mask"),
    ("where-shape", jaxloss.squared_error, (F, F), {"where": np.ones((4, 7), bool)}, ValueError,
     r"where with shape \(4, 7\) does not broadcast to predictions with shape \(5, 7\)"),
    ("negative-delta", jaxloss.huber_loss, (F, F), {"delta": -1.0}, ValueError, r"delta must be > 0"),
    ("zero-delta", jaxloss.huber_loss, (F, F), {"delta": 0.0}, ValueError, r"delta must be > 0"),
    ("negative-beta", jaxloss.smooth_l1_loss, (F, F), {"beta": -0.5}, ValueError, r"beta must be >= 0"),
    ("delta-shape", jaxloss.huber_loss, (F, F), {"delta": np.ones(6, np.float32)}, ValueError,
     r"delta with shape \(6,\) does not broadcast to predictions with shape \(5, 7\)"),
    ("complex-delta", jaxloss.huber_loss, (F, F), {"delta": np.ones(7, np.complex64)}, TypeError,
     r"delta must be a floating-point array"),
    ("l1-targets-required", jaxloss.l1_loss, (F, None), {}, TypeError, r"targets must be a real array, got None"),
    ("cosine-integer-targets", jaxloss.cosine_similarity, (F, np.ones(SHAPE, np.int32)), {}, TypeError,
     r"targets must be a floating-point array"),
    ("cosine-targets-shape", jaxloss.cosine_distance, (F, np.ones((5, 6), np.float32)), {}, ValueError,
     r"predictions and targets must have the same shape"),
    ("cosine-negative-epsilon", jaxloss.cosine_similarity, (F, F), {"epsilon": -1.0}, ValueError,
     r"epsilon must be >= 0"),
    ("cosine-epsilon-shape", jaxloss.cosine_similarity, (F, F), {"epsilon": np.ones(7, np.float32)}, ValueError,
     r"epsilon with shape \(7,\) does not broadcast to the batch shape of predictions with shape \(5,\)"),
    ("cosine-float-feature_mask", jaxloss.cosine_distance, (F, F), {"feature_mask": F}, TypeError,
     r"feature_mask must be a boolean mask"),
    ("cosine-feature_mask-shape", jaxloss.cosine_distance, (F, F), {"feature_mask": np.ones(6, bool)}, ValueError,
     r"feature_mask with shape \(6,\) does not broadcast to predictions"),
    ("cosine-where-shape", jaxloss.cosine_similarity, (F, F), {"where": np.ones(7, bool)}, ValueError,
     r"where with shape \(7,\) does not broadcast to the batch shape of predictions"),
    ("cosine-bad-axis", jaxloss.cosine_similarity, (F, F), {"axis": 2}, ValueError, r"axis"),
    ("beta-shape", jaxloss.smooth_l1_loss, (F, F), {"beta": np.ones((2, 7), np.float32)}, ValueError,
     r"beta with shape \(2, 7\) does not broadcast"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    assert_bad_input_raises(fn, args, kwargs, error, match, jit)


@pytest.mark.parametrize(
    "fn, option, match",
    [(jaxloss.huber_loss, {"delta": np.array([1.0, -1.0])}, r"delta must be > 0"),
     (jaxloss.smooth_l1_loss, {"beta": np.array([1.0, -1.0])}, r"beta must be >= 0")],
    ids=["delta", "beta"],
)
def test_concrete_negative_option_array_raises(fn, option, match):
    assert_concrete_option_array_raises(fn, option, match)


# ----------------------------------------------------------------------------- higher order


@parametrize_core
def test_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    """Away from kinks: the hand rule's second derivatives equal autodiff of the formula."""
    assert_hessian_and_hvp_match_reference(case, seed=7)


def test_smooth_l1_value_and_grad_of_the_mean_materialises_nothing_and_holds_at_most_the_one_liners_memory():
    """Issue 18: the compiled ``value_and_grad`` of the mean (float32 and bfloat16) keeps no full-size
    temporary (the select-free forward, β opaque, fuses into the mean: under 1 KiB of scalars)
    and its footprint (temporaries + outputs) is at most that of autodiff of benchmarks/catalogue.py's
    one-liner, at the default β = 1 and at β = 0 (the L1 loss)."""
    def simple(p, y):
        return jnp.where(jnp.abs(p - y) <= 1, 0.5 * (p - y) ** 2, jnp.abs(p - y) - 0.5)

    for dtype in (jnp.float32, jnp.bfloat16):
        x = jax.ShapeDtypeStruct((256, 256), dtype)
        _, theirs = mean_value_and_grad_memory(simple, (x, x))
        for beta in (1.0, 0.0):
            temp, footprint = mean_value_and_grad_memory(
                lambda p, y, beta=beta: jaxloss.smooth_l1_loss(p, y, beta=beta), (x, x))
            assert temp <= 1024, (dtype, beta, temp)
            assert footprint <= theirs + 64, (dtype, beta, footprint)
