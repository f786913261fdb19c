"""jaxloss.reduce: masked, weighted and cross-device reductions, against NumPy."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss import reduce

RNG = np.random.default_rng(0)


def _np_mean(losses, where=None, weights=None):
    """Float64 NumPy reference: sum(w*l)/sum(w) over unmasked entries, 0 when empty."""
    losses = np.asarray(losses, np.float64)
    where = np.ones(losses.shape, bool) if where is None else np.broadcast_to(np.asarray(where), losses.shape)
    w = np.ones(losses.shape) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), losses.shape)
    total = np.sum(np.where(where, w * np.where(where, losses, 0.0), 0.0))
    count = np.sum(np.where(where, w, 0.0))
    return total / count if count != 0 else 0.0


def _np_sum(losses, where=None, weights=None):
    losses = np.asarray(losses, np.float64)
    where = np.ones(losses.shape, bool) if where is None else np.broadcast_to(np.asarray(where), losses.shape)
    w = np.ones(losses.shape) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), losses.shape)
    return np.sum(np.where(where, w * np.where(where, losses, 0.0), 0.0))


@pytest.fixture
def batch():
    losses = jnp.asarray(RNG.gamma(2.0, size=(6, 5)), jnp.float32)
    where = jnp.asarray(RNG.random((6, 5)) < 0.7)
    weights = jnp.asarray(RNG.random((6, 5)) + 0.1, jnp.float32)
    return losses, where, weights


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("use_where", [False, True])
@pytest.mark.parametrize("use_weights", [False, True])
def test_mean_and_sum_match_numpy(batch, use_where, use_weights):
    losses, where, weights = batch
    kw = dict(where=where if use_where else None, weights=weights if use_weights else None)
    np.testing.assert_allclose(reduce.mean(losses, **kw), _np_mean(losses, **kw), rtol=1e-6)
    np.testing.assert_allclose(reduce.sum(losses, **kw), _np_sum(losses, **kw), rtol=1e-6)


def test_weighted_mean_divides_by_sum_of_unmasked_weights():
    losses = jnp.array([1.0, 2.0, 4.0, 100.0])
    weights = jnp.array([1.0, 3.0, 0.5, 7.0])
    where = jnp.array([True, True, True, False])
    expected = (1.0 * 1 + 3.0 * 2 + 0.5 * 4) / (1.0 + 3.0 + 0.5)
    np.testing.assert_allclose(reduce.mean(losses, where=where, weights=weights), expected, rtol=1e-6)
    np.testing.assert_allclose(reduce.sum(losses, where=where, weights=weights), 9.0, rtol=1e-6)


def test_where_and_weights_broadcast_to_losses():
    losses = jnp.asarray(RNG.gamma(2.0, size=(4, 5)), jnp.float32)
    where = jnp.array([[True], [False], [True], [True]])  # per row
    weights = jnp.asarray(RNG.random(5) + 0.5, jnp.float32)  # per column
    np.testing.assert_allclose(reduce.mean(losses, where=where, weights=weights),
                               _np_mean(losses, where, weights), rtol=1e-6)
    np.testing.assert_allclose(reduce.sum(losses, where=where, weights=weights),
                               _np_sum(losses, where, weights), rtol=1e-6)


def test_scalar_weight_gives_plain_mean(batch):
    losses, where, _ = batch
    np.testing.assert_allclose(reduce.mean(losses, where=where, weights=jnp.float32(3.0)),
                               _np_mean(losses, where), rtol=1e-6)


def test_reductions_work_under_jit(batch):
    losses, where, weights = batch
    f = jax.jit(lambda l, m, w: (reduce.mean(l, where=m, weights=w), reduce.sum(l, where=m, weights=w)))
    mean, total = f(losses, where, weights)
    np.testing.assert_allclose(mean, _np_mean(losses, where, weights), rtol=1e-6)
    np.testing.assert_allclose(total, _np_sum(losses, where, weights), rtol=1e-6)


def test_torch_style_class_weighted_mean():
    # PyTorch's nll_loss(weight=class_weights, reduction="mean", ignore_index=-100):
    # sum_i w[y_i] * l_i / sum_i w[y_i] over non-ignored i.
    n, classes = 12, 4
    logits = RNG.normal(size=(n, classes))
    labels = RNG.integers(0, classes, n)
    labels[[2, 7]] = -100
    class_weights = np.array([0.2, 1.0, 3.0, 0.7])
    mask = labels != -100
    safe = np.where(mask, labels, 0)
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    nll = -log_probs[np.arange(n), safe]

    got = reduce.mean(jnp.asarray(nll, jnp.float32), weights=jnp.asarray(class_weights, jnp.float32)[safe],
                      where=jnp.asarray(mask))
    w_y = class_weights[safe][mask]
    expected = np.sum(w_y * nll[mask]) / np.sum(w_y)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# ------------------------------------------------------------------ empty / degenerate


@pytest.mark.parametrize("use_weights", [False, True])
def test_all_masked_mean_is_zero_with_zero_gradient(use_weights):
    losses = jnp.array([1.0, 2.0, 3.0])
    weights = jnp.array([1.0, 2.0, 0.5]) if use_weights else None
    where = jnp.zeros(3, bool)
    assert reduce.mean(losses, where=where, weights=weights) == 0.0
    assert reduce.sum(losses, where=where, weights=weights) == 0.0
    g = jax.grad(lambda l: reduce.mean(l, where=where, weights=weights))(losses)
    np.testing.assert_array_equal(g, np.zeros(3))
    if use_weights:
        gw = jax.grad(lambda w: reduce.mean(losses, where=where, weights=w))(weights)
        np.testing.assert_array_equal(gw, np.zeros(3))


def test_zero_total_weight_mean_is_zero_and_finite_gradient():
    losses = jnp.array([1.0, 2.0, 3.0])
    weights = jnp.zeros(3)
    assert reduce.mean(losses, weights=weights) == 0.0
    gl, gw = jax.grad(lambda l, w: reduce.mean(l, weights=w), argnums=(0, 1))(losses, weights)
    assert np.all(np.isfinite(gl)) and np.all(np.isfinite(gw))


def test_empty_losses_mean_is_zero():
    assert reduce.mean(jnp.zeros((0,), jnp.float32)) == 0.0
    assert reduce.sum(jnp.zeros((0,), jnp.float32)) == 0.0


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("name", ["mean", "sum"])
def test_non_finite_masked_losses_do_not_leak(name, bad):
    fn = getattr(reduce, name)
    losses = jnp.array([1.0, bad, 3.0, bad])
    weights = jnp.array([2.0, 1.0, 0.5, 4.0])
    where = jnp.array([True, False, True, False])
    expected = {"mean": (2.0 + 1.5) / 2.5, "sum": 3.5}[name]
    np.testing.assert_allclose(fn(losses, where=where, weights=weights), expected, rtol=1e-6)
    np.testing.assert_allclose(fn(losses, where=where), {"mean": 2.0, "sum": 4.0}[name], rtol=1e-6)
    for w in (None, weights):
        gl = jax.grad(lambda l: fn(l, where=where, weights=w))(losses)
        assert np.all(np.isfinite(gl)), gl
        np.testing.assert_array_equal(np.asarray(gl)[[1, 3]], [0.0, 0.0])


@pytest.mark.parametrize("bad", [np.inf, np.nan])
@pytest.mark.parametrize("name", ["mean", "sum"])
def test_non_finite_masked_losses_do_not_leak_into_weight_gradient(name, bad):
    fn = getattr(reduce, name)
    losses = jnp.array([1.0, bad, 3.0, bad])
    weights = jnp.array([2.0, 1.0, 0.5, 4.0])
    where = jnp.array([True, False, True, False])
    gw = jax.grad(lambda w: fn(losses, where=where, weights=w))(weights)
    np.testing.assert_array_equal(np.asarray(gw)[[1, 3]], [0.0, 0.0])
    assert np.all(np.isfinite(gw)), gw


# ------------------------------------------------------------------ gradients


def test_mean_gradients_are_the_true_derivatives():
    losses = jnp.array([1.0, 2.0, 4.0, 8.0, 5.0])
    weights = jnp.array([1.0, 0.0, 2.0, 3.0, 0.5])  # a zero weight on an unmasked entry
    where = jnp.array([True, True, True, False, True])
    m, wts, lo = np.asarray(where), np.asarray(weights, np.float64), np.asarray(losses, np.float64)
    W = np.sum(wts[m])
    mean = np.sum(wts[m] * lo[m]) / W
    gl, gw = jax.grad(lambda l, w: reduce.mean(l, where=where, weights=w), argnums=(0, 1))(losses, weights)
    np.testing.assert_allclose(gl, np.where(m, wts / W, 0.0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, np.where(m, (lo - mean) / W, 0.0), rtol=1e-6, atol=1e-7)
    assert gw[1] != 0.0  # zero weight, unmasked: still the true derivative (l_1 - mean)/W


def test_sum_gradients_are_the_true_derivatives():
    losses = jnp.array([1.0, 2.0, 4.0, 8.0])
    weights = jnp.array([1.0, 0.0, 2.0, 3.0])
    where = jnp.array([True, True, False, True])
    gl, gw = jax.grad(lambda l, w: reduce.sum(l, where=where, weights=w), argnums=(0, 1))(losses, weights)
    np.testing.assert_allclose(gl, [1.0, 0.0, 0.0, 3.0])
    np.testing.assert_allclose(gw, [1.0, 2.0, 0.0, 8.0])


def test_mean_gradients_match_finite_differences():
    losses = jnp.asarray(RNG.gamma(2.0, size=7))
    weights = jnp.asarray(RNG.random(7) + 0.2)
    where = jnp.asarray([True, False, True, True, True, False, True])
    check = jaxloss.check_gradients(lambda l, w: reduce.mean(l, where=where, weights=w), losses, weights)
    assert check.ok, check


# ------------------------------------------------------------------ vmap axis_name


def test_axis_name_under_vmap_gives_global_mean_everywhere():
    losses = jnp.asarray(RNG.gamma(2.0, size=(4, 6)), jnp.float32)
    where = jnp.asarray(RNG.random((4, 6)) < 0.6).at[1].set(False)  # one fully-masked member
    weights = jnp.asarray(RNG.random((4, 6)) + 0.1, jnp.float32)
    f = jax.vmap(lambda l, m, w: reduce.mean(l, where=m, weights=w, axis_name="b"), axis_name="b")
    out = f(losses, where, weights)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, np.full(4, _np_mean(losses, where, weights)), rtol=1e-6)
    s = jax.vmap(lambda l, m, w: reduce.sum(l, where=m, weights=w, axis_name="b"), axis_name="b")
    np.testing.assert_allclose(s(losses, where, weights), np.full(4, _np_sum(losses, where, weights)), rtol=1e-6)


def test_axis_name_tuple_under_nested_vmap():
    losses = jnp.asarray(RNG.gamma(2.0, size=(3, 4, 5)), jnp.float32)
    where = jnp.asarray(RNG.random((3, 4, 5)) < 0.6)
    weights = jnp.asarray(RNG.random((3, 4, 5)) + 0.1, jnp.float32)

    def inner(axis_name):
        return lambda l, m, w: reduce.mean(l, where=m, weights=w, axis_name=axis_name)

    both = jax.vmap(jax.vmap(inner(("a", "b")), axis_name="b"), axis_name="a")(losses, where, weights)
    np.testing.assert_allclose(both, np.full((3, 4), _np_mean(losses, where, weights)), rtol=1e-6)

    # Only the inner axis: one mean per outer row.
    rows = jax.vmap(jax.vmap(inner("b"), axis_name="b"), axis_name="a")(losses, where, weights)
    expected = np.array([_np_mean(losses[i], where[i], weights[i]) for i in range(3)])
    np.testing.assert_allclose(rows, np.broadcast_to(expected[:, None], (3, 4)), rtol=1e-6)


def test_axis_name_under_vmap_gradient_matches_whole_batch():
    losses = jnp.asarray(RNG.gamma(2.0, size=(4, 6)), jnp.float32)
    where = jnp.asarray(RNG.random((4, 6)) < 0.6)
    weights = jnp.asarray(RNG.random((4, 6)) + 0.1, jnp.float32)
    per = jax.vmap(lambda l, m, w: reduce.mean(l, where=m, weights=w, axis_name="b"), axis_name="b")
    g = jax.grad(lambda l, w: per(l, where, w)[0], argnums=(0, 1))(losses, weights)
    g_ref = jax.grad(lambda l, w: reduce.mean(l, where=where, weights=w), argnums=(0, 1))(losses, weights)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ shard_map / pmap over 8 CPU devices

N_DEV = 8




def test_conftest_gives_eight_cpu_devices():
    assert len(jax.devices()) == N_DEV


@pytest.fixture(scope="module")
def sharded_batch():
    rng = np.random.default_rng(42)
    n = 64  # 8 per device
    predictions = jnp.asarray(rng.normal(size=n) * 2.0, jnp.float32)
    targets = jnp.asarray(rng.normal(size=n), jnp.float32)
    mask = rng.random(n) < 0.6
    mask[8:16] = False  # shard 1 fully masked
    mask[40:48] = False  # shard 5 fully masked
    mask[56:64] = True  # shard 7 fully valid
    weights = jnp.asarray(rng.random(n) + 0.1, jnp.float32)
    return predictions, targets, jnp.asarray(mask), weights


def _local(reduction, use_weights):
    def f(p, t, m, w):
        losses = jaxloss.huber_loss(p, t, delta=1.0)
        return getattr(reduce, reduction)(losses, where=m, weights=w if use_weights else None, axis_name="x")

    return f


def _whole(reduction, use_weights):
    def f(p, t, m, w):
        losses = jaxloss.huber_loss(p, t, delta=1.0)
        return getattr(reduce, reduction)(losses, where=m, weights=w if use_weights else None)

    return f


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("use_weights", [False, True])
def test_shard_map_reduction_equals_whole_batch(mesh, sharded_batch, reduction, use_weights):
    p, t, m, w = sharded_batch
    # Some shards see no valid entry at all.
    assert not np.asarray(m[8:16]).any() and not np.asarray(m[40:48]).any()
    sharded = jax.jit(jax.shard_map(_local(reduction, use_weights), mesh=mesh,
                                    in_specs=(P("x"),) * 4, out_specs=P()))
    whole = jax.jit(_whole(reduction, use_weights))

    np.testing.assert_allclose(sharded(p, t, m, w), whole(p, t, m, w), rtol=1e-6)
    np.testing.assert_allclose(whole(p, t, m, w),
                               (_np_mean if reduction == "mean" else _np_sum)(
                                   jaxloss.huber_loss(p, t), m, w if use_weights else None), rtol=1e-5)

    argnums = (0, 1, 3) if use_weights else (0, 1)
    g_sharded = jax.grad(sharded, argnums=argnums)(p, t, m, w)
    g_whole = jax.grad(whole, argnums=argnums)(p, t, m, w)
    for a, b in zip(g_sharded, g_whole):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    # The fully-masked shards get exactly zero gradient.
    np.testing.assert_array_equal(np.asarray(g_sharded[0])[8:16], 0.0)


def test_shard_map_all_masked_batch_gives_zero(mesh, sharded_batch):
    p, t, _, w = sharded_batch
    m = jnp.zeros(p.shape, bool)
    sharded = jax.jit(jax.shard_map(_local("mean", True), mesh=mesh, in_specs=(P("x"),) * 4, out_specs=P()))
    assert sharded(p, t, m, w) == 0.0
    g = jax.grad(sharded)(p, t, m, w)
    np.testing.assert_array_equal(g, np.zeros(p.shape))


def _pmap(f, **kw):
    """jax.pmap, skipping the test if this JAX has removed or deprecated it."""
    if not hasattr(jax, "pmap"):
        pytest.skip("jax.pmap is not available in this JAX version")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            return jax.pmap(f, **kw)
        except DeprecationWarning as e:  # pragma: no cover - depends on the JAX version
            pytest.skip(f"jax.pmap is deprecated: {e}")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_pmap_reduction_equals_whole_batch(mesh, sharded_batch, reduction):
    p, t, m, w = sharded_batch
    split = lambda a: a.reshape(N_DEV, -1)  # noqa: E731
    pmapped = _pmap(_local(reduction, True), axis_name="x")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        out = pmapped(split(p), split(t), split(m), split(w))
    expected = _whole(reduction, True)(p, t, m, w)
    np.testing.assert_allclose(out, np.full(N_DEV, expected), rtol=1e-6)

    # Differentiating through the pmap (the loss read off one device) gives the
    # whole-batch gradient.  (Inside pmap, jax.grad of a psum-ed loss is the usual
    # per-device convention: psum transposes to psum, so it is N_DEV times larger.)
    g = jax.grad(lambda p: pmapped(split(p), split(t), split(m), split(w))[0])(p)
    g_whole = jax.grad(_whole(reduction, True))(p, t, m, w)
    np.testing.assert_allclose(g, g_whole, rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("name", ["mean", "sum"])
def test_non_boolean_where_raises_type_error(name):
    with pytest.raises(TypeError, match="where"):
        getattr(reduce, name)(jnp.ones(3), where=jnp.array([1, 0, 1]))
    with pytest.raises(TypeError, match="where"):
        getattr(reduce, name)(jnp.ones(3), where=jnp.array([1.0, 0.0, 1.0]))


@pytest.mark.parametrize("name", ["mean", "sum"])
def test_where_shape_mismatch_raises_value_error_naming_shapes(name):
    with pytest.raises(ValueError, match=r"where.*\(4,\).*losses.*\(3,\)"):
        getattr(reduce, name)(jnp.ones(3), where=jnp.ones(4, bool))
    # A mask that would grow the losses is rejected too.
    with pytest.raises(ValueError, match=r"where.*\(2, 3\).*\(3,\)"):
        getattr(reduce, name)(jnp.ones(3), where=jnp.ones((2, 3), bool))


@pytest.mark.parametrize("name", ["mean", "sum"])
def test_weights_shape_mismatch_raises_value_error_naming_shapes(name):
    with pytest.raises(ValueError, match=r"weights.*\(2,\).*losses.*\(3,\)"):
        getattr(reduce, name)(jnp.ones(3), weights=jnp.ones(2))


@pytest.mark.parametrize("name", ["mean", "sum"])
def test_integer_losses_raise_type_error(name):
    with pytest.raises(TypeError, match="losses"):
        getattr(reduce, name)(jnp.array([1, 2, 3]))


@pytest.mark.parametrize("name", ["mean", "sum"])
def test_integer_weights_raise_type_error(name):
    with pytest.raises(TypeError, match="weights"):
        getattr(reduce, name)(jnp.ones(3), weights=jnp.array([1, 2, 3]))


def test_errors_raise_at_trace_time_under_jit():
    with pytest.raises(ValueError, match="where"):
        jax.jit(lambda l, m: reduce.mean(l, where=m))(jnp.ones(3), jnp.ones(4, bool))
