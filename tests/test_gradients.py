"""jaxloss.gradients: the hand-derivative mechanism (the checker: tests/test_gradcheck.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import _checks
from jaxloss.gradients import hand_derivative, tangent_sum

# ======================================================================= the mechanism
# A toy loss built with hand_derivative: softplus(a·x), with a float option `a`, a
# static string option and a `where` mask.


def _toy_tangent(p, t, out, res):
    scale = 2.0 if p.form == "double" else 1.0
    s = scale * jax.nn.sigmoid(p.a * p.x)
    return tangent_sum((s * p.a, t.x), (s * p.x, t.a))


def _toy_check(x, a, form, where):
    _checks.float_array("x", x)
    if form not in ("single", "double"):
        raise ValueError(f"form must be 'single' or 'double', got {form!r}.")


@hand_derivative(_toy_tangent, static=("form",), check=_toy_check)
def toy(x, *, a=1.0, form="single", where=None):
    out = jax.nn.softplus(a * x)
    return 2.0 * out if form == "double" else out


TOY_X = jnp.array([-1.5, -0.3, 0.4, 1.1, 2.2])
TOY_MASK = jnp.array([True, True, False, True, True])
HUBER_X = jnp.array([-2.5, -0.6, 0.3, 1.6, 0.8])  # |x - y| stays >= 0.1 from delta = 1, also scaled by 0.5 and 1.3
HUBER_Y = jnp.array([0.1, -0.1, 0.0, 0.2, -0.1])
HUBER_MASK = jnp.array([True, False, True, True, True])


def _toy_total(fn):
    return lambda x, a: jnp.sum(jnp.sin(fn(x, a=a, where=TOY_MASK)))


def _huber_total(fn):
    return lambda x, delta: jnp.sum(jnp.sin(fn(x, HUBER_Y, delta=delta, where=HUBER_MASK)))


def _toy_elementwise(fn):
    return lambda x, a: fn(x, a=a, where=TOY_MASK)


def _huber_elementwise(fn):
    return lambda x, delta: fn(x, HUBER_Y, delta=delta, where=HUBER_MASK)


# Each transformation maps (scalar function F, elementwise function E) to a function of
# (x, option, v, v_option), where v are tangent directions.
TRANSFORMS = {
    "jit": lambda F, E: lambda x, a, v, va: jax.jit(E)(x, a),
    "grad": lambda F, E: lambda x, a, v, va: jax.grad(F, argnums=(0, 1))(x, a),
    "jvp": lambda F, E: lambda x, a, v, va: jax.jvp(E, (x, a), (v, va)),
    "vjp": lambda F, E: lambda x, a, v, va: jax.vjp(E, x, a)[1](jnp.cos(x)),
    "hessian": lambda F, E: lambda x, a, v, va: jax.hessian(F, argnums=(0, 1))(x, a),
    "grad_of_grad": lambda F, E: lambda x, a, v, va: jax.grad(
        lambda x, a: jnp.sum(jnp.sin(jnp.concatenate([g.ravel() for g in jax.grad(F, argnums=(0, 1))(x, a)]))),
        argnums=(0, 1))(x, a),
    "forward_over_reverse_hvp": lambda F, E: lambda x, a, v, va: jax.jvp(
        jax.grad(F, argnums=(0, 1)), (x, a), (v, va)),
    "reverse_over_forward": lambda F, E: lambda x, a, v, va: jax.grad(
        lambda x, a: jax.jvp(F, (x, a), (v, va))[1], argnums=(0, 1))(x, a),
    "linearize": lambda F, E: lambda x, a, v, va: (lambda lin: (lin[0], lin[1](v, va)))(jax.linearize(E, x, a)),
    "jacfwd": lambda F, E: lambda x, a, v, va: jax.jacfwd(E, argnums=(0, 1))(x, a),
    "jacrev": lambda F, E: lambda x, a, v, va: jax.jacrev(E, argnums=(0, 1))(x, a),
}

LOSSES = {
    "toy": (toy, _toy_total, _toy_elementwise, TOY_X, 1.3),
    "huber": (jaxloss.huber_loss, _huber_total, _huber_elementwise, HUBER_X, 1.0),
}


def _assert_trees_close(got, expected, rtol=2e-5, atol=1e-6):
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    exp_leaves, exp_def = jax.tree_util.tree_flatten(expected)
    assert got_def == exp_def
    for g, e in zip(got_leaves, exp_leaves):
        assert jnp.shape(g) == jnp.shape(e) and jnp.result_type(g) == jnp.result_type(e)
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_transformation_matches_reference(loss, transform):
    fn, total, elementwise, x, a = LOSSES[loss]
    v, va = jnp.cos(3.0 * x), jnp.float32(0.7)
    a = jnp.float32(a)
    T = TRANSFORMS[transform]
    # Jitted as a whole: eager op-by-op dispatch of a Hessian takes seconds.
    got = jax.jit(T(total(fn), elementwise(fn)))(x, a, v, va)
    expected = jax.jit(T(total(fn.reference), elementwise(fn.reference)))(x, a, v, va)
    _assert_trees_close(got, expected)


@pytest.mark.parametrize("transform", list(TRANSFORMS))
@pytest.mark.parametrize("loss", list(LOSSES))
def test_vmap_of_transformation_matches_reference(loss, transform):
    fn, total, elementwise, x, a = LOSSES[loss]
    xs = x[None] * jnp.array([[1.0], [0.5], [1.3]])  # a batch of 3, all away from the kinks
    vs = jnp.cos(3.0 * xs)
    a, va = jnp.float32(a), jnp.float32(0.7)
    T = TRANSFORMS[transform]
    vmapped = lambda f: jax.jit(jax.vmap(T(total(f), elementwise(f)), in_axes=(0, None, 0, None)))  # noqa: E731
    _assert_trees_close(vmapped(fn)(xs, a, vs, va), vmapped(fn.reference)(xs, a, vs, va))


def test_vmap_over_option_matches_reference():
    a = jnp.array([0.5, 1.3, 2.0])
    f = lambda fn: jax.vmap(jax.grad(_toy_total(fn), argnums=(0, 1)), in_axes=(None, 0))  # noqa: E731
    _assert_trees_close(f(toy)(TOY_X, a), f(toy.reference)(TOY_X, a))


def test_toy_values_and_gradients_match_closed_form():
    x, a = np.asarray(TOY_X, np.float64), 1.3
    np.testing.assert_allclose(toy(TOY_X, a=a), np.log1p(np.exp(a * x)), rtol=1e-6)
    gx, ga = jax.grad(lambda x, a: jnp.sum(toy(x, a=a)), argnums=(0, 1))(TOY_X, jnp.float32(a))
    sig = 1 / (1 + np.exp(-a * x))
    np.testing.assert_allclose(gx, a * sig, rtol=1e-6)
    np.testing.assert_allclose(ga, np.sum(x * sig), rtol=1e-6)
    assert jaxloss.check_gradients(toy, TOY_X, a=1.3).ok
    assert jaxloss.check_gradients(toy, TOY_X, a=1.3, form="double", where=TOY_MASK).ok


# ------------------------------------------------------------------ static options


def test_static_option_changes_the_program():
    single = toy(TOY_X, a=1.3, form="single")
    double = toy(TOY_X, a=1.3, form="double")
    np.testing.assert_allclose(double, 2 * single, rtol=1e-6)
    g1 = jax.grad(lambda x: jnp.sum(toy(x, form="single")))(TOY_X)
    g2 = jax.grad(lambda x: jnp.sum(toy(x, form="double")))(TOY_X)
    np.testing.assert_allclose(g2, 2 * g1, rtol=1e-6)
    j1 = str(jax.make_jaxpr(lambda x: toy(x, form="single"))(TOY_X))
    j2 = str(jax.make_jaxpr(lambda x: toy(x, form="double"))(TOY_X))
    assert j1 != j2
    # The static option is not an argument of the traced function: no extra input.
    assert len(jax.make_jaxpr(lambda x: toy(x, form="double"))(TOY_X).jaxpr.invars) == 1


def test_static_option_gets_no_derivative_row():
    check = jaxloss.check_gradients(toy, TOY_X, a=1.3, form="double")
    assert {r.argument for r in check.rows} == {"x", "a"}


def test_invalid_static_option_is_checked_at_trace_time():
    with pytest.raises(ValueError, match="form"):
        jax.jit(lambda x: toy(x, form="triple"))(TOY_X)


@hand_derivative(lambda p, t, out, res: tangent_sum((p.scale, t.x)), static=("axes",))
def _scaled_sum(x, *, scale=1.0, axes=(-1,)):
    return scale * jnp.sum(x, axis=axes)


def test_unhashable_static_option_raises_type_error_naming_it():
    np.testing.assert_allclose(_scaled_sum(jnp.ones((2, 3)), axes=(-1,)), [3.0, 3.0])
    with pytest.raises(TypeError, match="axes is a static option and must be hashable"):
        _scaled_sum(jnp.ones((2, 3)), axes=[-1])


# ------------------------------------------------------------------ the rule is what is used


def _fake_tangent(p, t, out, res):
    return tangent_sum((3.0 * p.x, t.x))  # deliberately not d(x²)/dx = 2x


@hand_derivative(_fake_tangent)
def fake_square(x):
    return jnp.square(x)


def test_derivatives_come_from_the_hand_rule_in_both_modes():
    x = jnp.array([0.5, -1.0, 2.0])
    v = jnp.array([1.0, 2.0, -0.5])
    np.testing.assert_allclose(fake_square(x), x**2)
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(fake_square(x)))(x), 3 * x)
    np.testing.assert_allclose(jax.jvp(fake_square, (x,), (v,))[1], 3 * x * v)
    np.testing.assert_allclose(jax.linearize(fake_square, x)[1](v), 3 * x * v)
    # Higher orders differentiate the rule too.
    np.testing.assert_allclose(jax.jit(jax.hessian(lambda x: jnp.sum(fake_square(x))))(x), 3 * np.eye(3))
    # ...while the reference is plain autodiff of the formula.
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(fake_square.reference(x)))(x), 2 * x)
    np.testing.assert_allclose(jax.jvp(fake_square.reference, (x,), (v,))[1], 2 * x * v)
    # And the checker notices the difference.
    check = jaxloss.check_gradients(fake_square, x)
    assert {(r.argument, r.mode) for r in check.rows if not r.ok} == {("x", "reverse"), ("x", "forward")}


def test_public_loss_is_a_custom_jvp():
    x = jnp.array([0.5, -1.0, 2.0])
    assert "custom_jvp_call" in str(jax.make_jaxpr(fake_square)(x))
    assert "custom_jvp_call" not in str(jax.make_jaxpr(fake_square.reference)(x))


# ------------------------------------------------------------------ reverse-mode residuals

N, C = 64, 512


def _lse_tangent(p, t, out, res):
    # Recompute the softmax from the logits and the saved log-sum-exp.
    softmax = jnp.exp(p.logits - res[..., None])
    return jnp.sum(softmax * t.logits, axis=-1)


@hand_derivative(_lse_tangent, residuals=True)
def row_logsumexp(logits):
    m = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    lse = jnp.log(jnp.sum(jnp.exp(logits - m), axis=-1)) + m[..., 0]
    return lse, lse


@pytest.fixture(scope="module")
def logits():
    return jnp.asarray(np.random.default_rng(0).normal(size=(N, C)), jnp.float32)


def _objective(fn):
    return lambda x: jnp.sum(jnp.sin(fn(x)))


def test_expensive_toy_gradient_matches_reference(logits):
    g = jax.grad(_objective(row_logsumexp))(logits)
    g_ref = jax.grad(_objective(row_logsumexp.reference))(logits)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-8)


def test_reverse_mode_keeps_only_inputs_and_per_row_statistics(logits):
    """The residuals jax.vjp keeps: the logits themselves (no copy) and [N] vectors; plain
    autodiff keeps a fresh [N, C] exp(logits - max)."""

    def new_residuals(fn):
        _, vjp = jax.vjp(_objective(fn), logits)
        leaves = jax.tree_util.tree_leaves(vjp)
        assert any(leaf is logits for leaf in leaves) or fn is row_logsumexp.reference
        return [leaf for leaf in leaves if leaf is not logits]

    ours = new_residuals(row_logsumexp)
    theirs = new_residuals(row_logsumexp.reference)
    assert all(leaf.shape == (N,) for leaf in ours), [leaf.shape for leaf in ours]
    assert sum(leaf.nbytes for leaf in ours) <= 4 * N * 4
    assert any(leaf.shape == (N, C) for leaf in theirs)
    assert sum(leaf.nbytes for leaf in theirs) >= N * C * 4


def test_compiled_gradient_temp_memory_is_small(logits):
    def temp(fn):
        analysis = jax.jit(jax.grad(_objective(fn))).lower(logits).compile().memory_analysis()
        if analysis is None:
            pytest.skip("memory_analysis() is not available on this backend")
        return analysis.temp_size_in_bytes

    ours, theirs = temp(row_logsumexp), temp(row_logsumexp.reference)
    full = N * C * 4
    # No [N, C] temporary (the gradient itself is the output buffer): a few [N] vectors.
    assert ours <= full // 16, (ours, theirs, full)
    # Plain autodiff under jit keeps one [N] vector; ours at most a few more.
    assert ours <= theirs + 4 * N * 4, (ours, theirs, full)


# ------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_input_gives_float32_loss_and_own_dtype_gradient(dtype):
    x = TOY_X.astype(dtype)
    assert toy(x, a=1.3).dtype == jnp.float32
    g = jax.grad(lambda x: jnp.sum(toy(x, a=1.3)))(x)
    assert g.dtype == dtype
    np.testing.assert_allclose(np.asarray(g, np.float32),
                               jax.grad(lambda x: jnp.sum(toy(x, a=1.3)))(x.astype(jnp.float32)), rtol=1e-2)
    assert jax.jvp(lambda x: toy(x, a=1.3), (x,), (jnp.ones_like(x),))[1].dtype == jnp.float32

    p, y = HUBER_X.astype(dtype), HUBER_Y  # mixed: low-precision predictions, float32 targets
    assert jaxloss.huber_loss(p, y).dtype == jnp.float32
    gp, gy = jax.grad(lambda p, y: jnp.sum(jaxloss.huber_loss(p, y)), argnums=(0, 1))(p, y)
    assert gp.dtype == dtype and gy.dtype == jnp.float32


def test_float64_stays_float64_under_x64():
    with jax.enable_x64(True):
        x = jnp.asarray(np.asarray(TOY_X), jnp.float64)
        out = toy(x, a=1.3)
        assert out.dtype == jnp.float64
        g, ga = jax.grad(lambda x, a: jnp.sum(toy(x, a=a)), argnums=(0, 1))(x, jnp.float64(1.3))
        assert g.dtype == jnp.float64 and ga.dtype == jnp.float64
        np.testing.assert_allclose(out, np.log1p(np.exp(1.3 * np.asarray(TOY_X, np.float64))), rtol=1e-13)
        p = jnp.asarray(np.asarray(HUBER_X), jnp.float64)
        assert jaxloss.huber_loss(p, HUBER_Y).dtype == jnp.float64
        assert jax.grad(lambda p: jnp.sum(jaxloss.huber_loss(p, HUBER_Y)))(p).dtype == jnp.float64
        assert jax.jit(jax.hessian(lambda p: jnp.sum(jaxloss.huber_loss(p, HUBER_Y))))(p).dtype == jnp.float64


# ------------------------------------------------------------------ where


@pytest.mark.parametrize("loss", list(LOSSES))
def test_masked_entries_have_zero_loss_and_exactly_zero_gradient(loss):
    fn, _, elementwise, x, a = LOSSES[loss]
    mask = TOY_MASK if loss == "toy" else HUBER_MASK
    E = elementwise(fn)
    out = E(x, a)
    np.testing.assert_array_equal(np.asarray(out)[~np.asarray(mask)], 0.0)
    gx, ga = jax.grad(lambda x, a: jnp.sum(E(x, a)), argnums=(0, 1))(x, jnp.float32(a))
    np.testing.assert_array_equal(np.asarray(gx)[~np.asarray(mask)], 0.0)
    assert np.all(np.asarray(gx)[np.asarray(mask)] != 0.0)
    _, jv = jax.jvp(E, (x, jnp.float32(a)), (jnp.ones_like(x), jnp.float32(1.0)))
    np.testing.assert_array_equal(np.asarray(jv)[~np.asarray(mask)], 0.0)
    h = jax.jit(jax.hessian(lambda x: jnp.sum(E(x, a))))(x)
    np.testing.assert_array_equal(np.asarray(h)[~np.asarray(mask)], 0.0)
    # Loss and gradient equal those on the unmasked entries alone.
    masked_total = jnp.sum(E(x, a))
    np.testing.assert_allclose(masked_total, jnp.sum(jnp.where(mask, fn(x, a=a) if loss == "toy"
                                                              else fn(x, HUBER_Y, delta=a), 0)), rtol=1e-6)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_non_finite_masked_inputs_give_zero_value_and_forward_derivative(loss):
    fn, _, elementwise, x, a = LOSSES[loss]
    mask = TOY_MASK if loss == "toy" else HUBER_MASK
    bad = jnp.where(mask, x, jnp.nan)
    E = elementwise(fn)
    out, jv = jax.jvp(E, (bad, jnp.float32(a)), (jnp.ones_like(x), jnp.float32(1.0)))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(jv))
    np.testing.assert_array_equal(np.asarray(jv)[~np.asarray(mask)], 0.0)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_non_finite_masked_inputs_give_exactly_zero_reverse_gradient(loss):
    fn, _, elementwise, x, a = LOSSES[loss]
    mask = TOY_MASK if loss == "toy" else HUBER_MASK
    for fill in (jnp.nan, jnp.inf, -jnp.inf):
        bad = jnp.where(mask, x, fill)
        g, ga = jax.grad(lambda x, a: jnp.sum(elementwise(fn)(x, a)), argnums=(0, 1))(bad, jnp.float32(a))
        assert np.all(np.isfinite(g)) and np.isfinite(ga), (fill, g, ga)
        np.testing.assert_array_equal(np.asarray(g)[~np.asarray(mask)], 0.0)
        g_clean = jax.grad(lambda x: jnp.sum(elementwise(fn)(x, a)))(x)
        np.testing.assert_array_equal(g, g_clean)


@hand_derivative(lambda p, t, out, res: tangent_sum((-1.0 / p.x, t.x)))
def _neg_log(x, *, where=None):
    return -jnp.log(x)


def test_masked_entries_of_a_loss_singular_at_zero_value_and_forward_mode():
    x = jnp.array([2.0, 3.0, 0.5])  # perfectly valid inputs, two of them masked
    mask = jnp.array([True, False, False])
    np.testing.assert_allclose(_neg_log(x, where=mask), [-np.log(2.0), 0.0, 0.0], rtol=1e-6)
    _, jv = jax.jvp(lambda x: _neg_log(x, where=mask), (x,), (jnp.ones(3),))
    np.testing.assert_allclose(jv, [-0.5, 0.0, 0.0])
    g_ref = jax.grad(lambda x: jnp.sum(_neg_log.reference(x, where=mask)))(x)
    np.testing.assert_allclose(g_ref, [-0.5, 0.0, 0.0])


def test_masked_entries_of_a_loss_singular_at_zero_have_zero_reverse_gradient():
    x = jnp.array([2.0, 3.0, 0.5])
    mask = jnp.array([True, False, False])
    g = jax.grad(lambda x: jnp.sum(_neg_log(x, where=mask)))(x)
    np.testing.assert_allclose(g, [-0.5, 0.0, 0.0])


def _table_tangent(p, t, out, res):
    return tangent_sum((p.table[p.labels], t.x), (p.x, None if t.table is None else t.table[p.labels]))


@hand_derivative(_table_tangent)
def _class_weighted(x, labels, *, table, where=None):
    """x_i · table[labels_i]: a per-example loss with a shared, gathered option."""
    return x * table[labels]


def test_masked_example_labels_do_not_matter():
    x, table = jnp.array([1.0, 2.0, 3.0]), jnp.array([10.0, 20.0, 30.0, 40.0])
    mask = jnp.array([True, True, False])
    out = _class_weighted(x, jnp.array([2, 2, 0]), table=table, where=mask)
    np.testing.assert_allclose(out, [30.0, 60.0, 0.0])
    g = jax.grad(lambda t: jnp.sum(_class_weighted(x, jnp.array([2, 2, 0]), table=t, where=mask)))(table)
    np.testing.assert_allclose(g, [0.0, 0.0, 3.0, 0.0])


def test_shared_option_with_the_batch_length_is_not_masked():
    x, table = jnp.array([1.0, 2.0, 3.0]), jnp.array([10.0, 20.0, 30.0])  # N == C == 3
    mask = jnp.array([True, True, False])
    out = _class_weighted(x, jnp.array([2, 2, 0]), table=table, where=mask)
    np.testing.assert_allclose(out, [30.0, 60.0, 0.0])


def test_where_is_broadcast_to_the_loss_shape():
    x = jnp.stack([TOY_X, -TOY_X])  # (2, 5)
    row_mask = jnp.array([[True], [False]])
    out = toy(x, where=row_mask)
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_allclose(out[0], toy(TOY_X), rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(toy(x, where=row_mask)))(x)
    np.testing.assert_array_equal(g[1], 0.0)


def test_non_boolean_where_raises_type_error():
    with pytest.raises(TypeError, match="where"):
        toy(TOY_X, where=jnp.ones(5, jnp.int32))
    with pytest.raises(TypeError, match="where"):
        jaxloss.huber_loss(HUBER_X, HUBER_Y, where=jnp.ones(5))


def _masked_sum_tangent(p, t, out, res):
    keep = p["where"] if p["where"] is not None else True
    return None if t.x is None else jnp.sum(jnp.where(keep, 2 * p.x * jnp.where(keep, t.x, 0), 0), axis=-1)


@hand_derivative(_masked_sum_tangent, where_of="inputs")
def _masked_sum_of_squares(x, *, where=None):
    """``Σ_j x_j²`` over the unmasked entries of each row: ``where`` masks the input."""
    keep = where if where is not None else True
    return jnp.sum(jnp.where(keep, jnp.where(keep, x, 0) ** 2, 0), axis=-1)


def test_where_of_inputs_hands_an_input_shaped_mask_to_the_forward_and_rule():
    x = jnp.array([[1.0, jnp.nan, 2.0], [3.0, 4.0, jnp.inf]])
    where = jnp.array([[True, False, True], [True, True, False]])
    losses = _masked_sum_of_squares(x, where=where)  # not masked by the mechanism: shape (2,) != where's
    np.testing.assert_allclose(losses, [5.0, 25.0])
    grad = jax.grad(lambda x: jnp.sum(_masked_sum_of_squares(x, where=where)))(x)
    np.testing.assert_array_equal(grad, [[2.0, 0.0, 4.0], [6.0, 8.0, 0.0]])
    tangent = jax.jvp(lambda x: _masked_sum_of_squares(x, where=where), (x,), (jnp.ones_like(x),))[1]
    np.testing.assert_allclose(tangent, [6.0, 14.0])
    with pytest.raises(TypeError, match="where"):
        _masked_sum_of_squares(x, where=jnp.ones((2, 3)))


def test_where_of_must_be_output_or_inputs():
    with pytest.raises(ValueError, match="where_of"):
        hand_derivative(_masked_sum_tangent, where_of="pixels")
