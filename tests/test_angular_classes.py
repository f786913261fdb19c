"""The angular-margin losses over many classes: blockwise over the classes (block_size=)
equal to the dense form in value and every derivative, with no [N, C] temporary in compiled
memory; class-sharded (class_axis_name=, Partial FC) on 8 CPU devices equal to one device, the
centres split over the devices, with the embeddings replicated or all-gathered from a data axis;
Partial FC sampling (sample_rate=, key=) equal to a float64 reference over the kept classes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss.angular import angular_margin_loss, arcface_loss, cosface_loss, partial_fc_classes, sphereface_loss

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


# ------------------------------------------------------------------ Partial FC sampling (sample_rate=, key=)


def _kept_reference(e, c, y, kept, valid, scale, m2, m3):
    """The sampled loss written from its formula (``arccos``, every class's cosine then masked):
    softmax cross-entropy over the kept classes (``kept``: global ids) other than the label, and
    the label's ArcFace/CosFace logit ``s·(ψ − m3)`` from its own centre."""
    e_hat = e / jnp.linalg.norm(e, axis=-1, keepdims=True)
    c_hat = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
    cos = e_hat @ c_hat.T
    cos_y = jnp.take_along_axis(cos, jnp.clip(y, 0)[:, None], axis=1)[:, 0]
    theta = jnp.arccos(cos_y)
    psi = jnp.where(theta + m2 < np.pi, jnp.cos(theta + m2), cos_y - m2 * np.sin(m2))
    z_y = scale * (psi - m3)
    others = jnp.zeros(c.shape[0], bool).at[kept].set(True)[None, :] & (jnp.arange(c.shape[0]) != y[:, None])
    z = jnp.concatenate([jnp.where(others, scale * cos, -jnp.inf), z_y[:, None]], axis=1)
    return jnp.where(valid, jax.nn.logsumexp(z, axis=1) - z_y, 0.0)


def _sampled(fn, y, where, key, **kw):
    return lambda e, c: fn(e, c, y, where=where, key=key, **kw)


def test_sample_rate_one_and_every_class_kept_are_the_full_loss_exactly():
    e, c, y = _inputs(8)
    kw = {"scale": 8.0, "margin": 0.4}
    full = arcface_loss(e, c, y, **kw)
    np.testing.assert_array_equal(arcface_loss(e, c, y, sample_rate=1.0, **kw), full)
    np.testing.assert_array_equal(arcface_loss(e, c, y, sample_rate=1, key=jax.random.key(0), **kw), full)
    # k = ⌈0.99·40⌉ = 40: nothing to sample
    np.testing.assert_array_equal(arcface_loss(e, c, y, sample_rate=0.99, key=jax.random.key(0), **kw), full)
    assert partial_fc_classes(y, 100, 0.07, jax.random.key(0)).shape == (7,)  # 0.07·100 = 7.000000000000001
    typed, raw = (arcface_loss(e, c, y, sample_rate=0.25, key=k, **kw) for k in (jax.random.key(3),
                                                                                 jax.random.PRNGKey(3)))
    np.testing.assert_array_equal(typed, raw)  # a raw uint32 key draws the same classes
    assert np.all(np.asarray(typed)[np.asarray(y) != -100] < np.asarray(full)[np.asarray(y) != -100])


@pytest.mark.parametrize("sample_rate,block_size", [(0.25, 3), (0.1, None)], ids=["labels-fit", "more-labels-than-k"])
def test_sampled_loss_and_every_derivative_match_float64_reference_over_the_kept_classes(sample_rate, block_size, x64):
    """k = 10 (every label of the batch kept, then random others; blockwise, 3 kept centres a
    block) and k = 4 (fewer than the batch's 5 distinct labels: a random 4 of them kept, each
    example's own class still counting through its label logit): value, gradients of the
    embeddings and the centres (0 exactly on centres neither kept nor a label), JVP and HVP,
    with the key traced."""
    e, c, y = _inputs(9, dtype=np.float64)
    where = jnp.arange(N) != 4  # a masked example: its label is not forced into the kept set
    weights = jnp.arange(1.0, N + 1)
    opts = {"scale": 6.0, "m2": 0.3, "m3": 0.1}
    valid = (y != -100) & where
    kept = partial_fc_classes(y, C, sample_rate, jax.random.key(11), counted=valid)
    labels = set(np.asarray(y)[np.asarray(valid)].tolist())
    k = int(np.ceil(sample_rate * C))
    assert kept.shape == (k,) and len(set(np.asarray(kept).tolist())) == k
    assert labels <= set(np.asarray(kept).tolist()) if len(labels) <= k else set(np.asarray(kept).tolist()) <= labels

    @jax.jit
    def both(e, c, key, kept):
        ours = _sampled(angular_margin_loss, y, where, key, sample_rate=sample_rate, block_size=block_size, **opts)
        return (_derivatives(ours, e, c, weights),
                _derivatives(lambda e, c: _kept_reference(e, c, y, kept, valid, *opts.values()), e, c, weights))

    ours, reference = both(e, c, jax.random.key(11), kept)
    for a, b in zip(ours, reference):
        _close(a, b, rtol=1e-10, atol=1e-12)
    touched = np.zeros(C, bool)
    touched[np.asarray(kept)] = True
    touched[list(labels)] = True
    grad = np.asarray(ours[2])  # the centres' gradient
    assert np.all(grad[~touched] == 0) and np.all(np.any(grad[touched] != 0, axis=1))


def test_class_sharded_sampling_draws_per_shard_and_matches_the_reference(mesh):
    """Each of the 8 shards keeps ⌈0.4·5⌉ = 2 of its 5 classes (its labels first), drawn with
    the key folded with its index; the value and the gradients equal the float32 reference over
    the union of the shards' kept classes (forward mode and HVPs: the dense tests above)."""
    e, c, y = _inputs(10)
    where = jnp.arange(N) != 4
    weights = jnp.arange(1.0, N + 1)
    key, kw = jax.random.key(5), {"scale": 8.0, "margin": 0.35}
    valid = (y != -100) & where
    local = jax.jit(jax.shard_map(lambda c: partial_fc_classes(y, c.shape[0], 0.4, key, axis_name="x", counted=valid),
                                  mesh=mesh, in_specs=P("x"), out_specs=P("x")))(c)
    kept = np.asarray(local) + np.repeat(np.arange(8) * (C // 8), 2)
    assert set(np.asarray(y)[np.asarray(valid)].tolist()) <= set(kept.tolist()) and len(set(kept.tolist())) == 16
    sharded = jax.shard_map(_sampled(cosface_loss, y, where, key, sample_rate=0.4, class_axis_name="x", block_size=1,
                                     **kw), mesh=mesh, in_specs=(P(), P("x")), out_specs=P())
    reference = lambda e, c: _kept_reference(e, c, y, kept, valid, 8.0, 0.0, 0.35)  # noqa: E731
    value_and_grads = lambda f: jax.value_and_grad(lambda e, c: jnp.sum(weights * f(e, c)), (0, 1))  # noqa: E731
    ours, theirs = jax.jit(lambda e, c: (value_and_grads(sharded)(e, c), value_and_grads(reference)(e, c)))(e, c)
    for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
        _close(a, b)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"sample_rate": 0.0}, ValueError, r"sample_rate .*\(0, 1\]"), ({"sample_rate": 1.5}, ValueError, "sample_rate"),
    ({"sample_rate": True}, ValueError, "sample_rate"), ({"sample_rate": 0.5}, ValueError, "pass key="),
    ({"sample_rate": 0.5, "key": np.ones(3, np.float32)}, TypeError, r"key .*shape \(3,\)"),
], ids=["zero", "above-one", "bool", "missing-key", "float-key"])
def test_bad_sampling_options_raise_naming_them(kwargs, error, match):
    e, c, y = _inputs(11)
    with pytest.raises(error, match=match):
        arcface_loss(e, c, y, **kwargs)
