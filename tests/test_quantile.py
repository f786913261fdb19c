"""quantile_loss (pinball): values, hand-derived derivatives, the subgradient at zero residual,
target shapes, masks, dtypes and errors, against NumPy float64 references of the formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _loss_cases import assert_bad_input_raises, gradients_and_jvp, mean_value_and_grad_memory, sum_to_shape

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

BATCH, Q = (5, 4), 3
SHAPE = BATCH + (Q,)
TAUS = np.array([0.1, 0.5, 0.9])


def _np_targets(targets, ndim):
    targets = np.asarray(targets, np.float64)
    return targets[..., None] if targets.ndim < ndim else targets


def _np_quantile(predictions, targets, quantiles):
    r = _np_targets(targets, predictions.ndim) - predictions
    return np.sum(np.maximum(quantiles * r, (quantiles - 1) * r), axis=-1)


def _np_quantile_d(predictions, targets, quantiles):
    """Elementwise ``[..., Q]`` derivatives of every argument (summed to its shape by the caller)."""
    r = _np_targets(targets, predictions.ndim) - predictions
    dr = np.broadcast_to(np.where(r > 0, quantiles, np.where(r < 0, quantiles - 1, 0.0)), predictions.shape)
    return {"predictions": -dr, "targets": dr, "quantiles": np.broadcast_to(r, predictions.shape)}


def _residuals(rng, shape):
    """Residuals whose magnitudes lie in [0.1, 2], away from the kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, shape)


def _args(rng, targets_shape=BATCH, quantiles=TAUS):
    targets = rng.normal(size=targets_shape)
    predictions = _np_targets(targets, len(SHAPE)) + _residuals(rng, SHAPE)
    return {"predictions": predictions, "targets": targets,
            "quantiles": quantiles(rng) if callable(quantiles) else quantiles}


VARIANTS = {
    "batch-targets": {},
    "full-targets": {"targets_shape": SHAPE},
    "column-targets": {"targets_shape": BATCH + (1,)},
    "shared-targets": {"targets_shape": (BATCH[-1],)},  # [4]: one per last batch axis, across the batch
    "float-quantile": {"quantiles": 0.3},
    "per-example-quantiles": {"quantiles": lambda rng: rng.uniform(0.05, 0.95, SHAPE)},
}
variants = pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())


def _grads(a, wrt=None):
    floats = {k: np.asarray(v, np.float64) for k, v in a.items() if wrt is None or k in wrt}
    return jax.grad(lambda f: jnp.sum(jaxloss.quantile_loss(**{**a, **f})))(floats)


@variants
def test_values_match_numpy_float64_reference(variant, x64):
    a = _args(np.random.default_rng(0), **variant)
    got = jaxloss.quantile_loss(**a)
    assert got.shape == BATCH and got.dtype == jnp.float64
    np.testing.assert_allclose(got, _np_quantile(**a), rtol=1e-12, atol=1e-15)
    jitted = jax.jit(lambda a: jaxloss.quantile_loss(**a))(a)
    np.testing.assert_allclose(jitted, got, rtol=1e-14, atol=1e-15)


@variants
def test_hand_derivative_matches_numpy_analytic_derivative(variant, x64):
    a = _args(np.random.default_rng(1), **variant)
    expected = _np_quantile_d(**a)
    for name, g in _grads(a).items():
        d = expected[name]
        if name == "targets" and np.ndim(a[name]) < len(SHAPE):
            d = d.sum(-1)  # a target without the quantile axis collects its derivative over it
        np.testing.assert_allclose(g, sum_to_shape(d, np.shape(a[name])), rtol=1e-12, atol=1e-14, err_msg=name)


@variants
def test_check_gradients_passes_for_every_float_argument(variant):
    a = _args(np.random.default_rng(2), **variant)
    check = jaxloss.check_gradients(jaxloss.quantile_loss, **a)
    assert {r.argument for r in check.rows} == set(a) and check.ok, repr(check)


def test_median_is_half_the_absolute_error_summed(x64):
    a = _args(np.random.default_rng(3), quantiles=0.5)
    np.testing.assert_allclose(jaxloss.quantile_loss(**a),
                               0.5 * np.sum(jaxloss.absolute_error(a["predictions"], a["targets"][..., None]), -1),
                               rtol=1e-14)


def test_minimiser_is_the_empirical_quantile(x64):
    """The sum of pinball losses over a sample is smallest at the sample's τ-quantile."""
    y = np.random.default_rng(4).normal(size=101)
    grid = np.linspace(-3, 3, 6001)
    for tau in (0.1, 0.5, 0.9):
        losses = jax.vmap(lambda p, tau=tau: jnp.sum(jaxloss.quantile_loss(jnp.full((101, 1), p), y, quantiles=tau)))(grid)
        assert abs(grid[np.argmin(losses)] - np.quantile(y, tau, method="inverted_cdf")) <= 1e-3


def test_subgradient_at_zero_residual_is_zero_and_quantile_derivative_is_zero(x64):
    t = np.array([[0.0, 0.0, 0.0], [1.5, 1.5, 1.5], [-2e3, -2e3, -2e3]])
    a = {"predictions": t.copy(), "targets": t[:, 0], "quantiles": TAUS}
    np.testing.assert_array_equal(jaxloss.quantile_loss(**a), 0.0)
    grads, jv = gradients_and_jvp(jaxloss.quantile_loss, a, ("predictions", "targets", "quantiles"))
    for name, g in grads.items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)
    np.testing.assert_array_equal(jv, 0.0)
    # Plain autodiff of the formula computed, |τ·max(r, 0) + (1 − τ)·min(r, 0)| (JAX splitting the tie of
    # the maxima, abs′(0) = 1), takes ρ′(0) = ½ instead, as the docstring says.
    ref = jax.grad(lambda p: jnp.sum(jaxloss.quantile_loss.reference(p, a["targets"], quantiles=TAUS)))(t)
    np.testing.assert_array_equal(ref, -0.5)


def test_subgradient_only_changes_at_the_kink(x64):
    """Residuals of exactly 0 next to ones of both signs: only the zero ones get 0."""
    p = np.array([[0.5, 1.0, 1.5]])
    a = {"predictions": p, "targets": np.array([1.0]), "quantiles": TAUS}
    g = _grads(a)
    np.testing.assert_array_equal(g["predictions"], [[-(0.1 - 0), 0.0, -(0.9 - 1)]])
    np.testing.assert_allclose(g["quantiles"], [0.5, 0.0, -0.5])
    np.testing.assert_allclose(g["targets"], [0.1 + 0.0 + (0.9 - 1)])


def test_batch_targets_equal_targets_with_a_trailing_axis_of_one(x64):
    a = _args(np.random.default_rng(5))
    col = {**a, "targets": a["targets"][..., None]}
    np.testing.assert_array_equal(jaxloss.quantile_loss(**a), jaxloss.quantile_loss(**col))


def test_masked_examples_with_nan_padding_give_zero_loss_and_gradient():
    a = {k: np.float32(v) for k, v in _args(np.random.default_rng(6)).items()}
    where = np.arange(BATCH[0] * BATCH[1]).reshape(BATCH) % 3 != 0
    clean = {k: v.copy() for k, v in a.items()}
    a["predictions"][~where] = np.nan
    a["targets"][~where] = np.inf
    loss = jaxloss.quantile_loss(**a, where=where)
    np.testing.assert_array_equal(loss[~where], 0.0)
    np.testing.assert_allclose(loss[where], jaxloss.quantile_loss(**clean)[where], rtol=1e-6)
    grads = jax.grad(lambda f: jnp.sum(jaxloss.quantile_loss(**f, where=where)))(a)
    for name in ("predictions", "targets"):
        np.testing.assert_array_equal(grads[name][~where], 0.0, err_msg=name)
        assert np.all(np.isfinite(grads[name])) and np.any(grads[name][where] != 0), name
    expected_tau = np.sum(np.where(where[..., None], clean["targets"][..., None] - clean["predictions"], 0), (0, 1))
    np.testing.assert_allclose(grads["quantiles"], expected_tau, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=lambda d: d.__name__)
def test_low_precision_gives_float32_loss_and_own_dtype_gradients(dtype):
    a = _args(np.random.default_rng(7))
    low = {k: jnp.asarray(v, dtype) for k, v in a.items()}
    loss = jaxloss.quantile_loss(**low)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, jaxloss.quantile_loss(**{k: v.astype(jnp.float32) for k, v in low.items()}),
                               rtol=1e-6)
    grads = jax.grad(lambda f: jnp.sum(jaxloss.quantile_loss(**f)))(low)
    assert all(g.dtype == dtype for g in grads.values())


def test_huge_inputs_are_finite():
    p = jnp.array([[-1e4, 0.0, 1e4], [1e4, 1e4, 1e4]])
    loss = jaxloss.quantile_loss(p, jnp.array([0.0, -1e4]), quantiles=jnp.array(TAUS, jnp.float32))
    np.testing.assert_allclose(loss, [0.1 * 1e4 + 0.1 * 1e4, 0.1 * 2e4 + 0.5 * 2e4 + 0.9 * 2e4], rtol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(jaxloss.quantile_loss(p, jnp.zeros(2), quantiles=0.5)))(p)
    assert np.all(np.isfinite(grads))


P = np.ones(SHAPE, np.float32)
T = np.ones(BATCH, np.float32)
ERRORS = [
    ("scalar-predictions", (np.float32(1.0), np.float32(0.0)), {"quantiles": 0.5}, ValueError,
     r"predictions must have a quantile axis"),
    ("integer-predictions", (P.astype(np.int32), T), {"quantiles": 0.5}, TypeError,
     r"predictions must be a floating-point array"),
    ("targets-shape", (P, np.ones((5, 3), np.float32)), {"quantiles": 0.5}, ValueError,
     r"targets with shape \(5, 3\) broadcast neither to the batch shape \(5, 4\) nor to the shape \(5, 4, 3\)"),
    ("quantiles-shape", (P, T), {"quantiles": np.full(4, 0.5, np.float32)}, ValueError,
     r"quantiles with shape \(4,\) does not broadcast to predictions"),
    ("complex-quantiles", (P, T), {"quantiles": np.full(3, 0.5, np.complex64)}, TypeError,
     r"quantiles must be a floating-point array"),
    ("quantile-zero", (P, T), {"quantiles": 0.0}, ValueError, r"quantiles must lie in \(0, 1\)"),
    ("quantile-negative", (P, T), {"quantiles": -0.5}, ValueError, r"quantiles must lie in \(0, 1\)"),
    ("quantiles-none", (P, T), {"quantiles": None}, TypeError, r"quantiles must be given"),
    ("where-shape", (P, T), {"quantiles": 0.5, "where": np.ones(SHAPE, bool)}, ValueError,
     r"where with shape \(5, 4, 3\) does not broadcast to the batch shape of predictions"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("args, kwargs, error, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_raises_at_trace_time_naming_the_argument(args, kwargs, error, match, jit):
    assert_bad_input_raises(jaxloss.quantile_loss, args, kwargs, error, match, jit)


def test_concrete_quantile_array_out_of_range_raises():
    """Concrete arrays are checked (traced ones cannot be)."""
    with pytest.raises(ValueError, match=r"quantiles must lie in \(0, 1\), got \[0.5 1.  0.2\]"):
        jaxloss.quantile_loss(P, T, quantiles=np.array([0.5, 1.0, 0.2], np.float32))


def test_missing_quantiles_raise_type_error():
    with pytest.raises(TypeError, match="quantiles"):
        jaxloss.quantile_loss(P, T)


def test_value_and_grad_of_the_mean_holds_no_more_memory_than_autodiff_of_the_formula():
    """Issue 18: compiled footprint (temporaries + outputs) of ``value_and_grad`` of the mean, at most
    that of autodiff of the plain formula (benchmarks/catalogue.py's one-liner), float32 and bfloat16.
    In float32 the forward's signed terms are the one full-size buffer, which the gradient overwrites
    (no full-size temporary: the one-liner's layout, not a mean fused over rows of 8 with the targets
    broadcast along them, which XLA:CPU runs about 3x slower); the sign the rule reads from them gives
    the same derivatives as the bfloat16 path, which keeps nothing and reads r itself."""
    taus = jnp.linspace(0.1, 0.9, 8)

    def simple(p, y):
        r = y[:, None] - p
        return jnp.sum(jnp.maximum(taus * r, (taus - 1) * r), -1)

    def ours(p, y):
        return jaxloss.quantile_loss(p, y, quantiles=taus)

    for dtype in (jnp.float32, jnp.bfloat16):
        p, y = jax.ShapeDtypeStruct((4096, 8), dtype), jax.ShapeDtypeStruct((4096,), dtype)
        (temp, footprint), (_, theirs) = (mean_value_and_grad_memory(fn, (p, y)) for fn in (ours, simple))
        assert footprint <= theirs + 64, (dtype, footprint)
        assert temp <= 64, (dtype, temp)
    # Residuals of both signs, exact zeros and ties with the quantile levels: both paths agree.
    rng = np.random.default_rng(7)
    p = np.round(rng.normal(size=(64, 8)), 1).astype(np.float32)
    y = p[:, 3].copy()
    wide = jax.grad(lambda p: jnp.mean(ours(p, y)))(p)
    narrow = jax.grad(lambda p: jnp.mean(ours(p, y.astype(jnp.bfloat16))))(p.astype(jnp.bfloat16))
    expected = -np.where(y[:, None] > p, taus, np.where(y[:, None] < p, taus - 1, 0.0)) / 64
    np.testing.assert_allclose(wide, expected, rtol=1e-6, atol=0)
    np.testing.assert_allclose(narrow.astype(np.float32), expected, rtol=1e-2, atol=0)
