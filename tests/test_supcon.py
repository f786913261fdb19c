"""Supervised contrastive loss (jaxloss.supcon): the blockwise and sharded forms against the dense
one (values, gradients, JVP and forward-over-reverse HVP, with masks, both distances), sharded
over 8 CPU devices, a float64 reference in every form, finite derivatives at duplicates, the
compiled memory of the blockwise form, and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxloss.supcon import supervised_contrastive_loss as supcon

pytestmark = pytest.mark.full

N, D = 16, 5
LABELS = np.array([0, 1, 2, 0, 1, 0, 3, 1, 2, 0, 1, 4, 2, 0, 1, 3])  # label 4 alone: no positive
UNEVEN = np.arange(N) % 5 != 3  # masked examples on different shards
FORMS = [(None, None), (5, None), (3, None), (None, 2), (3, 2), (None, 4), (2, 4)]
FORM_IDS = ["dense", "blocks5", "blocks3", "2_shards", "2_shards_blocks3", "4_shards", "4_shards_blocks2"]


def _embeddings(seed=0, n=N):
    return np.random.default_rng(seed).standard_normal((n, D)) + 0.3


def _np_supcon(x, labels, t, distance, keep):
    """Khosla et al. Eq. 2 (L_out) in float64, on the unmasked examples."""
    x_hat = x / np.linalg.norm(x, axis=-1, keepdims=True)
    s = x_hat @ x_hat.T
    z = s / t if distance == "cosine" else -np.sqrt(np.maximum(2 - 2 * s, 0)) / t
    out = np.zeros(len(x))
    for a in np.flatnonzero(keep):
        others = keep & (np.arange(len(x)) != a)
        pos = others & (labels == labels[a])
        if pos.any() and (others & ~pos).any():
            out[a] = np.log(np.sum(np.exp(z[a, others]))) - np.mean(z[a, pos])
    return out


def _form(block_size, shards, distance, mask):
    """``f(x, T)``: the weighted sum of the losses of the form (sharded with a named vmap)."""
    labels, where = jnp.asarray(LABELS), jnp.asarray(mask)
    weights = jnp.linspace(0.5, 1.5, N)

    def f(x, t):
        call = lambda x, y, m, **kw: supcon(x, y, temperature=t, distance=distance, block_size=block_size,  # noqa: E731
                                            where=m, **kw)
        if shards is None:
            return jnp.sum(weights * call(x, labels, where))
        split = lambda a: a.reshape((shards, -1) + a.shape[1:])  # noqa: E731
        losses = jax.vmap(lambda x, y, m: call(x, y, m, axis_name="s"), axis_name="s")(
            split(x), split(labels), split(where))
        return jnp.sum(weights * losses.reshape(-1))

    return f


def _close(ours, theirs, rtol=1e-5):
    """Equal up to ``rtol`` of the largest magnitude; fails on NaN."""
    theirs = np.asarray(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=rtol * max(np.abs(theirs).max(), 1e-30), equal_nan=False)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("block_size, shards", FORMS, ids=FORM_IDS)
def test_every_form_matches_the_float64_formula(block_size, shards, distance, x64):
    x = _embeddings(1)
    got = _form(block_size, shards, distance, UNEVEN)(jnp.asarray(x), 0.3)
    want = np.sum(np.linspace(0.5, 1.5, N) * _np_supcon(x, LABELS, 0.3, distance, UNEVEN))
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("block_size, shards, distance", [
    (5, None, "cosine"), (3, 2, "cosine"), (None, 4, "euclidean"), (2, 4, "euclidean")],
    ids=["blocks5", "2_shards_blocks3", "4_shards_euclidean", "4_shards_blocks2_euclidean"])
def test_blockwise_and_sharded_forms_match_dense_to_second_order(block_size, shards, distance):
    """float32: values, gradients (embeddings and temperature), JVP and HVP within 1e-5."""
    x, t = jnp.float32(_embeddings(2)), jnp.float32(0.2)
    rng = np.random.default_rng(3)
    tangents = (jnp.float32(rng.standard_normal(x.shape)), jnp.float32(0.05))

    def derivatives(f):
        value, grads = jax.value_and_grad(f, (0, 1))(x, t)
        jvp = jax.jvp(f, (x, t), tangents)[1]
        hvp = jax.jvp(jax.grad(f, (0, 1)), (x, t), tangents)[1]
        return value, *grads, jvp, *hvp

    dense = jax.jit(derivatives, static_argnums=0)(_form(None, None, distance, UNEVEN))
    form = jax.jit(derivatives, static_argnums=0)(_form(block_size, shards, distance, UNEVEN))
    for ours, theirs in zip(form, dense):
        _close(ours, theirs)


@pytest.mark.parametrize("block_size", [None, 3])
def test_sharded_over_8_devices_equals_one_device(mesh, block_size):
    """shard_map over 8 CPU devices: each device's losses of its own examples against the whole
    batch; gradients of the embeddings and the temperature as one device's."""
    x, t = jnp.float32(_embeddings(4, 4 * N)), jnp.float32(0.5)
    labels, keep = jnp.asarray(np.arange(4 * N) % 7), jnp.asarray(np.arange(4 * N) % 9 != 4)

    def local(x, t, y, m):
        return supcon(x, y, temperature=t, where=m, block_size=block_size, axis_name="x")

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P(), P("x"), P("x")), out_specs=P("x"))
    run = lambda x, t: sharded(x, t, labels, keep)  # noqa: E731
    whole = lambda x, t: supcon(x, labels, temperature=t, where=keep)  # noqa: E731
    _close(jax.jit(run)(x, t), whole(x, t))
    weights = jnp.linspace(0.5, 1.5, 4 * N)
    grads = lambda f: jax.jit(jax.grad(lambda x, t: jnp.sum(weights * f(x, t)), (0, 1)))(x, t)  # noqa: E731
    for ours, theirs in zip(grads(run), grads(whole)):
        _close(ours, theirs)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_blockwise_duplicates_and_huge_values_give_finite_derivatives_to_second_order(distance):
    x = np.float32(_embeddings(5))
    x[1], x[4], x[7] = x[0], 1e4 * x[0], 0.0  # distance 0, a huge row, a zero row
    f = _form(3, 2, distance, UNEVEN)
    primals, tangents = (jnp.asarray(x), jnp.float32(0.1)), (jnp.ones_like(jnp.asarray(x)), jnp.float32(0.01))
    value, grads = jax.jit(jax.value_and_grad(f, (0, 1)))(*primals)
    hvp = jax.jit(lambda *p: jax.jvp(jax.grad(f, (0, 1)), p, tangents)[1])(*primals)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in (*grads, *hvp))
    dense = jax.jit(jax.value_and_grad(_form(None, None, distance, UNEVEN), (0, 1)))(*primals)
    _close(value, dense[0])
    _close(grads[0], dense[1][0])


def _temp_bytes(n, block_size):
    x = jax.ShapeDtypeStruct((n, 32), jnp.float32)
    labels = jax.ShapeDtypeStruct((n,), jnp.int32)
    objective = jax.value_and_grad(lambda x, y: jnp.mean(supcon(x, y, block_size=block_size)))
    return jax.jit(objective).lower(x, labels).compile().memory_analysis().temp_size_in_bytes


def test_blockwise_form_holds_no_n_by_n_matrix():
    """At N = 4096 one N × N float32 matrix is 64 MiB: the blockwise value and gradient (blocks
    of 128 columns) compile to under a quarter of it, about twice the N = 2048 footprint
    (linear in N at a fixed block size); the dense form holds the matrix."""
    small, large = _temp_bytes(2048, 128), _temp_bytes(4096, 128)
    assert large < 2.25 * small, (small, large)
    assert large < 4096 * 4096 * 4 / 4, large
    assert _temp_bytes(4096, None) > 4096 * 4096 * 4


@pytest.mark.parametrize("kwargs, match", [
    ({"block_size": 0}, "block_size"),
    ({"block_size": 2.5}, "block_size"),
    ({"axis_name": ["x"]}, "axis_name"),
    ({"temperature": -1.0}, "temperature"),
    ({"distance": "manhattan"}, "distance"),
])
def test_bad_options_raise_naming_the_option(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        supcon(jnp.ones((4, 3)), jnp.zeros(4, jnp.int32), **kwargs)
