"""The angular-margin losses over many classes: blockwise over the classes (block_size=)
equal to the dense form in value and every derivative, with no [N, C] temporary in compiled
memory; class-sharded (class_axis_name=, Partial FC) on 8 CPU devices equal to one device, the
centres split over the devices, with the embeddings replicated or all-gathered from a data axis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss.angular import angular_margin_loss, arcface_loss, cosface_loss, sphereface_loss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

N, C, D = 7, 40, 5  # 40 classes: 5 per device of 8, so labels land on several shards

LOSSES = [
    (angular_margin_loss, {"scale": 8.0, "m1": 2, "m2": 0.2, "m3": 0.1}),
    (arcface_loss, {"scale": 8.0, "margin": 0.5}),
    (cosface_loss, {"scale": 8.0, "margin": 0.35}),
    (sphereface_loss, {"scale": 4.0, "margin": 3}),
]


def _inputs(seed=0, batch=(N,), classes=C, features=D, dtype=np.float32):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=batch)
    labels.reshape(-1)[1] = -100  # one ignored example
    centers = rng.standard_normal((classes, features)) * rng.uniform(0.5, 2.0, (classes, 1))
    embeddings = rng.standard_normal(batch + (features,)) * rng.uniform(0.5, 2.0, batch + (1,))
    return jnp.asarray(embeddings, dtype), jnp.asarray(centers, dtype), jnp.int32(labels)


def _close(a, b, rtol=1e-5, atol=1e-6):
    """Each element within ``rtol`` of its own size or of the array's largest (float32 rounding of
    a sum scales with its largest terms), and ``atol``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    atol = max(atol, rtol * float(np.max(np.abs(b), initial=0.0, where=np.isfinite(b))))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=False)


def _derivatives(fn, e, c, weights):
    """Losses, the gradients of their weighted sum w.r.t. the embeddings and the centres, a JVP
    along (e, c) and a forward-over-reverse HVP along (c, e)."""
    objective = lambda e, c: jnp.sum(weights * fn(e, c))  # noqa: E731
    grads = jax.grad(objective, (0, 1))
    tangents = (e[::-1], c[::-1])
    return (fn(e, c), *grads(e, c), jax.jvp(fn, (e, c), tangents)[1], *jax.jvp(grads, (e, c), tangents)[1])


# ------------------------------------------------------------------ blockwise over the classes


@pytest.mark.parametrize("fn,kw,block_size", [(*LOSSES[0], 1), (*LOSSES[0], 13), (*LOSSES[1], 8), (*LOSSES[2], 40),
                                               (*LOSSES[3], 6)], ids=lambda x: getattr(x, "__name__", None))
def test_blockwise_equals_dense_in_value_and_every_derivative(fn, kw, block_size):
    e, c, y = _inputs(1)
    where = jnp.arange(N) != 4
    weights = jnp.arange(1.0, N + 1)
    dense = _derivatives(lambda e, c: fn(e, c, y, where=where, **kw), e, c, weights)
    blocks = jax.jit(lambda e, c: _derivatives(lambda e, c: fn(e, c, y, where=where, block_size=block_size, **kw),
                                               e, c, weights))(e, c)
    for ours, theirs in zip(blocks, dense):
        _close(ours, theirs)


def test_blockwise_matches_float64_and_finite_differences_to_second_order(x64):
    e, c, y = _inputs(2, batch=(2, 3), dtype=np.float64)  # two leading batch axes
    kw = {"scale": jnp.float64(6.0), "m2": jnp.float64(0.3), "m3": jnp.float64(0.1)}
    _close(angular_margin_loss(e, c, y, block_size=7, **kw), angular_margin_loss(e, c, y, **kw), rtol=1e-12,
           atol=1e-12)
    result = jaxloss.check_gradients(angular_margin_loss, e, c, y, block_size=7, order=2, **kw)
    assert result.ok, result


def test_blockwise_option_derivatives_equal_dense():
    e, c, y = _inputs(3)
    options = (jnp.float32(6.0), jnp.float32(0.3), jnp.float32(0.1))

    def grads(block_size):
        return jax.grad(lambda s, m2, m3: jnp.sum(angular_margin_loss(e, c, y, scale=s, m2=m2, m3=m3,
                                                                      block_size=block_size)), (0, 1, 2))(*options)

    for ours, theirs in zip(grads(6), grads(None)):
        _close(ours, theirs)


def _temp_bytes(loss, n, c, d):
    shapes = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((c, d), jnp.float32),
              jax.ShapeDtypeStruct((n,), jnp.int32))
    objective = jax.value_and_grad(lambda e, w, y: jnp.mean(loss(e, w, y)), (0, 1))
    return jax.jit(objective).lower(*shapes).compile().memory_analysis().temp_size_in_bytes


def test_blockwise_value_and_gradient_hold_no_n_by_c_temporary():
    n, c, d, block = 64, 32768, 16, 1024
    logits = n * c * 4  # one [N, C] float32 array: 8 MiB
    blockwise = _temp_bytes(lambda e, w, y: arcface_loss(e, w, y, block_size=block), n, c, d)
    dense = _temp_bytes(arcface_loss, n, c, d)
    assert dense >= logits  # the measure sees the dense form's [N, C] cosines
    assert blockwise < logits / 4, (blockwise, logits)


# ------------------------------------------------------------------ class-sharded over 8 CPU devices


@pytest.mark.parametrize("fn,kw,block_size", [(*LOSSES[0], None), (*LOSSES[0], 2), (*LOSSES[1], 3), (*LOSSES[2], None),
                                               (*LOSSES[3], 4)], ids=lambda x: getattr(x, "__name__", None))
def test_class_sharded_equals_one_device(mesh, fn, kw, block_size):
    e, c, y = _inputs(4)
    where = jnp.arange(N) != 4
    weights = jnp.arange(1.0, N + 1)
    whole = lambda e, c: fn(e, c, y, where=where, **kw)  # noqa: E731
    sharded = jax.shard_map(lambda e, c: fn(e, c, y, where=where, block_size=block_size, class_axis_name="x", **kw),
                            mesh=mesh, in_specs=(P(), P("x")), out_specs=P())
    for ours, theirs in zip(jax.jit(lambda e, c: _derivatives(sharded, e, c, weights))(e, c),
                            _derivatives(whole, e, c, weights)):
        _close(ours, theirs)


def test_class_sharded_option_derivatives_equal_one_device(mesh):
    e, c, y = _inputs(5)
    options = (jnp.float32(6.0), jnp.float32(0.3), jnp.float32(0.1))

    def loss(e, c, s, m2, m3, **kw):
        return jnp.sum(angular_margin_loss(e, c, y, scale=s, m2=m2, m3=m3, **kw))

    sharded = jax.shard_map(lambda e, c, *o: loss(e, c, *o, class_axis_name="x"), mesh=mesh,
                            in_specs=(P(), P("x"), P(), P(), P()), out_specs=P())
    ours = jax.jit(jax.grad(sharded, (2, 3, 4)))(e, c, *options)
    for a, b in zip(ours, jax.grad(loss, (2, 3, 4))(e, c, *options)):
        _close(a, b)


def test_partial_fc_step_with_embeddings_all_gathered_from_the_data_axis(mesh):
    """Partial FC: each device embeds its own slice of the batch and holds a slice of the centres;
    it all-gathers the embeddings (and labels), computes every example's loss against all the
    classes, keeps its own examples' losses and takes the global mean over the data axis; the
    gradient returns to each device its embeddings' rows and its centres'."""
    e, c, y = _inputs(6, batch=(16,))

    def step(e_local, y_local, c_local):
        e_all = jax.lax.all_gather(e_local, "x", tiled=True)
        y_all = jax.lax.all_gather(y_local, "x", tiled=True)
        losses = arcface_loss(e_all, c_local, y_all, scale=16.0, class_axis_name="x", block_size=3)
        own = jax.lax.dynamic_slice_in_dim(losses, jax.lax.axis_index("x") * y_local.shape[0], y_local.shape[0])
        return jaxloss.reduce.mean(own, where=y_local != -100, axis_name="x")

    sharded = jax.shard_map(step, mesh=mesh, in_specs=(P("x"), P("x"), P("x")), out_specs=P())
    whole = lambda e, y, c: jaxloss.reduce.mean(arcface_loss(e, c, y, scale=16.0), where=y != -100)  # noqa: E731
    _close(jax.jit(sharded)(e, y, c), whole(e, y, c))
    for ours, theirs in zip(jax.jit(jax.grad(sharded, (0, 2)))(e, y, c), jax.grad(whole, (0, 2))(e, y, c)):
        _close(ours, theirs)


def test_class_sharded_label_ids_are_global(mesh):
    """An id owned by another shard, an ignored id and an id outside every shard (NaN loss)."""
    e, c, _ = _inputs(7)
    y = jnp.int32([0, 39, 17, -100, 40, 5, 22])
    sharded = jax.shard_map(lambda e, c: arcface_loss(e, c, y, scale=8.0, class_axis_name="x"), mesh=mesh,
                            in_specs=(P(), P("x")), out_specs=P())
    ours, theirs = jax.jit(sharded)(e, c), arcface_loss(e, c, y, scale=8.0)
    assert np.isnan(ours[4]) and np.isnan(theirs[4]) and ours[3] == 0
    keep = np.arange(N) != 4
    _close(ours[keep], theirs[keep])
