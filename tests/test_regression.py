"""Regression losses: values, hand-derived derivatives, parity, kinks, masks, dtypes, errors.

Values and derivatives are checked in float64 against NumPy formulas written here from
the docstrings; parity against optax and PyTorch; subgradients at kinks are pinned.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

SHAPE = (5, 7)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


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


def _is_float(x) -> bool:
    return isinstance(x, float) or (isinstance(x, np.ndarray | jax.Array) and jnp.issubdtype(x.dtype, jnp.floating))


def _float_args(a):
    """Copies of the differentiable arguments of a call, Python floats as 0-d arrays."""
    return {k: np.array(v, np.float64 if isinstance(v, float) else None) for k, v in a.items() if _is_float(v)}


def _sum_to(x, shape):
    """Reduce an elementwise derivative to the shape of a broadcast argument."""
    x = np.sum(x, axis=tuple(range(x.ndim - len(shape))))
    return np.sum(x, axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True).reshape(shape)


def _grads(fn, a, wrt=None):
    """Gradient of sum(fn(**a)) with respect to every float argument (or those in wrt)."""
    floats = _float_args(a) if wrt is None else {k: a[k] for k in wrt}
    return jax.jit(jax.grad(lambda f: jnp.sum(fn(**{**a, **f}))))(floats)


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


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    fn: Callable
    make: Callable  # (rng, shape) -> every argument by name
    ref: Callable  # NumPy float64 loss
    dref: Callable  # NumPy derivatives of each float argument, elementwise

    def __str__(self):
        return self.id


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
    Case("absolute_error", jaxloss.absolute_error, _with(),
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
                                     "smooth_l1-per-column-beta", "smooth_l1-zero-beta", "log_cosh"}]
parametrize_core = pytest.mark.parametrize("case", CORE, ids=str)
# Every kind of float argument (Python float option, elementwise and broadcast arrays), for the
# finite-difference checker, which is slow; the NumPy derivative test covers every case.
CHECKED = [c for c in CASES if c.id not in {"huber-default-delta", "smooth_l1-default-beta", "smooth_l1-zero-beta"}]


# ----------------------------------------------------------------------------- values and derivatives


@parametrize_cases
def test_values_match_numpy_float64_reference(case, x64):
    a = case.make(np.random.default_rng(0), SHAPE)
    got = case.fn(**a)
    assert got.dtype == jnp.float64 and got.shape == SHAPE
    np.testing.assert_allclose(got, case.ref(**a), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(jax.jit(lambda a: case.fn(**a))(a), got, rtol=1e-14, atol=1e-15)


@parametrize_cases
def test_hand_derivative_matches_numpy_analytic_derivative(case, x64):
    a = case.make(np.random.default_rng(1), SHAPE)
    grads = _grads(case.fn, a)
    expected = case.dref(**a)
    assert set(grads) == set(_float_args(a)) and set(grads) <= set(expected)
    for name, g in grads.items():
        np.testing.assert_allclose(g, _sum_to(expected[name], np.shape(a[name])), rtol=1e-12, atol=1e-14,
                                   err_msg=name)


@pytest.mark.parametrize("case", CHECKED, ids=str)
def test_check_gradients_passes_for_every_float_argument(case):
    a = case.make(np.random.default_rng(2), SHAPE)
    check = jaxloss.check_gradients(case.fn, **a)
    assert {r.argument for r in check.rows} == set(_float_args(a))
    assert check.ok, repr(check)


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
    mine, optax_grads = _grads(ours, a), _grads(theirs, a)
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
    mine = _grads(ours, {**a, **options}, wrt=("predictions", "targets"))
    for k in mine:
        np.testing.assert_allclose(mine[k], grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ----------------------------------------------------------------------------- kinks


def _grads_and_jvp(fn, a, wrt):
    """Reverse-mode gradients of sum(fn) and the forward-mode derivative along all-ones."""
    grads = _grads(fn, a, wrt)
    primals = {k: a[k] for k in wrt}
    ones = {k: jnp.ones_like(v) for k, v in primals.items()}
    return grads, jax.jit(lambda x: jax.jvp(lambda f: fn(**{**a, **f}), (x,), (ones,))[1])(primals)


@pytest.mark.parametrize(
    "fn, options",
    [(jaxloss.absolute_error, {}), (jaxloss.smooth_l1_loss, {"beta": 0.0})],
    ids=["absolute_error", "smooth_l1-zero-beta"],
)
def test_subgradient_at_zero_residual_is_zero(fn, options, x64):
    t = np.array([0.0, 1.5, -2.0, 3e3])
    a = {"predictions": t.copy(), "targets": t, **options}
    np.testing.assert_array_equal(fn(**a), 0.0)
    grads, jv = _grads_and_jvp(fn, a, ("predictions", "targets"))
    np.testing.assert_array_equal(grads["predictions"], 0.0)
    np.testing.assert_array_equal(grads["targets"], 0.0)
    np.testing.assert_array_equal(jv, 0.0)


def test_l1_zero_residual_subgradient_matches_torch(x64):
    t = np.array([0.0, 1.5, -2.0])
    a = {"predictions": t.copy(), "targets": t}
    _, grads = _torch_values_and_grads("l1_loss", a)
    mine = _grads(jaxloss.absolute_error, a)
    np.testing.assert_array_equal(mine["predictions"], grads["predictions"])
    np.testing.assert_array_equal(mine["predictions"], 0.0)


@pytest.mark.parametrize("delta_as_array", [False, True], ids=["float-delta", "array-delta"])
def test_huber_derivative_at_switch_point_is_delta_sign_and_zero_for_delta(delta_as_array, x64):
    r = np.array([1.5, -1.5, 0.75, -0.75])
    delta = np.abs(r) if delta_as_array else 1.5
    r = r if delta_as_array else r[:2]
    a = {"predictions": r + 2.0, "targets": np.full_like(r, 2.0), "delta": np.asarray(delta, np.float64)}
    grads = _grads(jaxloss.huber_loss, a)
    np.testing.assert_array_equal(grads["predictions"], np.abs(delta) * np.sign(r))
    np.testing.assert_array_equal(grads["targets"], -np.abs(delta) * np.sign(r))
    np.testing.assert_array_equal(grads["delta"], 0.0)
    np.testing.assert_array_equal(jaxloss.huber_loss(**a), 0.5 * r**2)


def test_smooth_l1_derivative_at_switch_point_is_sign_and_minus_half_for_beta(x64):
    r = np.array([0.5, -0.5, 2.0, -2.0])
    a = {"predictions": r, "targets": np.zeros_like(r), "beta": np.abs(r)}
    grads = _grads(jaxloss.smooth_l1_loss, a)
    np.testing.assert_array_equal(grads["predictions"], np.sign(r))
    np.testing.assert_array_equal(grads["beta"], -0.5)
    np.testing.assert_array_equal(jaxloss.smooth_l1_loss(**a), 0.5 * np.abs(r))


@pytest.mark.parametrize("beta", [0.0, 0.7], ids=["zero-beta", "positive-beta"])
def test_smooth_l1_beta_derivative_at_zero_residual_is_zero(beta, x64):
    t = np.array([0.0, 1.5, -2.0])
    a = {"predictions": t.copy(), "targets": t, "beta": np.full_like(t, beta)}
    np.testing.assert_array_equal(_grads(jaxloss.smooth_l1_loss, a)["beta"], 0.0)


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


def _per_example(fn):
    """The arguments before the keyword-only options: inputs and targets, what where= masks."""
    return [n for n, q in inspect.signature(fn).parameters.items() if q.kind == q.POSITIONAL_OR_KEYWORD]


def _mask_params():
    """Every core case with an elementwise mask; two with a mask broadcast along the last axis."""
    for case in CORE:
        yield pytest.param(case, SHAPE, id=f"{case.id}-elementwise-mask")
    for case in CORE:
        if case.id in ("smooth_l1-per-column-beta", "huber-elementwise-delta"):
            yield pytest.param(case, SHAPE[-1:], id=f"{case.id}-broadcast-mask")


@pytest.mark.parametrize("case, mask_shape", list(_mask_params()))
def test_masked_entries_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case, mask_shape):
    """Masked examples of the per-example (positional) arguments hold inf/NaN padding;
    nothing of it reaches the value or any derivative."""
    a = {k: v.astype(np.float32) if _is_float(v) and np.ndim(v) else v
         for k, v in case.make(np.random.default_rng(5), SHAPE).items()}
    where = np.arange(np.prod(mask_shape)).reshape(mask_shape) % 3 != 0
    full = np.broadcast_to(where, SHAPE)
    clean = _float_args(a)
    dirty = _float_args(a)
    for name in _per_example(case.fn):
        if name in dirty:
            dirty[name][~full] = np.resize([np.inf, -np.inf, np.nan], (~full).sum())

    @jax.jit
    def run(dirty, clean):
        masked = lambda f: case.fn(**{**a, **f}, where=where)  # noqa: E731
        by_hand = lambda f: jnp.where(where, case.fn(**{**a, **f}), 0.0)  # noqa: E731
        _, jv = jax.jvp(masked, (dirty,), (jax.tree.map(jnp.ones_like, dirty),))
        grad = lambda g, f: jax.grad(lambda f: jnp.sum(g(f)))(f)  # noqa: E731
        return masked(dirty), case.fn(**{**a, **clean}), grad(masked, dirty), grad(by_hand, clean), jv

    loss, unmasked, grads, expected, jv = run(dirty, clean)
    np.testing.assert_array_equal(loss[~full], 0.0)
    np.testing.assert_allclose(loss[full], unmasked[full], rtol=1e-6)
    np.testing.assert_array_equal(jv[~full], 0.0)
    assert np.all(np.isfinite(jv))
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g, expected[name], rtol=1e-6, atol=1e-7, err_msg=name)
        if np.shape(g) == SHAPE:
            np.testing.assert_array_equal(g[~full], 0.0, err_msg=name)


# ----------------------------------------------------------------------------- dtypes


def _dtype_params():
    """bfloat16 for every core case; float16 for two."""
    for case in CORE:
        yield pytest.param(case, jnp.bfloat16, id=f"{case.id}-bfloat16")
    for case in CORE:
        if case.id in ("huber-elementwise-delta", "log_cosh"):
            yield pytest.param(case, jnp.float16, id=f"{case.id}-float16")


@pytest.mark.parametrize("case, dtype", list(_dtype_params()))
def test_low_precision_inputs_give_float32_loss_and_own_dtype_gradients(case, dtype):
    a = case.make(np.random.default_rng(6), SHAPE)
    arrays = {k: v for k, v in a.items() if _is_float(v) and np.ndim(v)}
    low = {k: jnp.asarray(v, dtype) for k, v in arrays.items()}

    @jax.jit
    def run(low):
        up = jax.tree.map(lambda x: x.astype(jnp.float32), low)
        grad = lambda f: jax.grad(lambda f: jnp.sum(case.fn(**{**a, **f})))(f)  # noqa: E731
        return case.fn(**{**a, **low}), case.fn(**{**a, **up}), grad(low), grad(up)

    loss, loss32, grads, grads32 = run(low)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, loss32, rtol=1e-6)
    np.testing.assert_allclose(loss, case.ref(**a), rtol=0.05, atol=0.05)
    for name, g in grads.items():
        assert g.dtype == dtype, name
        np.testing.assert_allclose(g.astype(np.float32), grads32[name], rtol=1e-2, atol=1e-2, err_msg=name)


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
    ("integer-delta", jaxloss.huber_loss, (F, F), {"delta": np.ones(7, np.int32)}, TypeError,
     r"delta must be a floating-point array"),
    ("beta-shape", jaxloss.smooth_l1_loss, (F, F), {"beta": np.ones((2, 7), np.float32)}, ValueError,
     r"beta with shape \(2, 7\) does not broadcast"),
]


def _call(fn, args, kwargs, jit):
    if not jit:
        return fn(*args, **kwargs)
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    return jax.jit(lambda args, arrays: fn(*args, **arrays, **static))(args, arrays)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    with pytest.raises(error, match=match):
        _call(fn, args, kwargs, jit)


@pytest.mark.parametrize(
    "fn, option, match",
    [(jaxloss.huber_loss, {"delta": np.array([1.0, -1.0])}, r"delta must be > 0"),
     (jaxloss.smooth_l1_loss, {"beta": np.array([1.0, -1.0])}, r"beta must be >= 0")],
    ids=["delta", "beta"],
)
def test_concrete_negative_option_array_raises(fn, option, match):
    with pytest.raises(ValueError, match=match):
        fn(np.ones(2, np.float32), np.zeros(2, np.float32), **option)


# ----------------------------------------------------------------------------- higher order


@parametrize_core
def test_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    """Away from kinks: the hand rule's second derivatives equal autodiff of the formula."""
    rng = np.random.default_rng(7)
    a = case.make(rng, (3, 4))
    floats = _float_args(a)
    v = {k: rng.normal(size=np.shape(x)) for k, x in floats.items()}
    first = next(iter(floats))  # predictions / logits / scores / x1

    @jax.jit
    def run(x):
        def both(fn):
            total = lambda f: jnp.sum(fn(**{**a, **f}))  # noqa: E731
            hessian = jax.hessian(lambda y: total({**x, first: y}))(x[first])
            return hessian, jax.jvp(jax.grad(total), (x,), (v,))[1]  # HVP in every float argument
        return both(case.fn), both(case.fn.reference)

    (hessian, hvp), (hessian_ref, hvp_ref) = run(floats)
    np.testing.assert_allclose(hessian, hessian_ref, rtol=1e-12, atol=1e-14)
    for name in floats:
        np.testing.assert_allclose(hvp[name], hvp_ref[name], rtol=1e-12, atol=1e-14, err_msg=name)
