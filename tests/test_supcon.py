"""Supervised contrastive loss (jaxloss.supcon): the blockwise and sharded forms against the dense
one (values, gradients, JVP and forward-over-reverse HVP, with masks, both distances, with and
without extra negatives), sharded over 8 CPU devices, a float64 reference in every form, the
extra negatives' derivatives against autodiff and finite differences, finite derivatives at
duplicates, the compiled memory of the blockwise form, and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxloss import check_gradients
from jaxloss.supcon import supervised_contrastive_loss as supcon

pytestmark = pytest.mark.full

N, D = 16, 5
LABELS = np.array([0, 1, 2, 0, 1, 0, 3, 1, 2, 0, 1, 4, 2, 0, 1, 3])  # label 4 alone: no positive
UNEVEN = np.arange(N) % 5 != 3  # masked examples on different shards
FORMS = [(None, None), (5, None), (3, None), (None, 2), (3, 2), (None, 4), (2, 4)]
FORM_IDS = ["dense", "blocks5", "blocks3", "2_shards", "2_shards_blocks3", "4_shards", "4_shards_blocks2"]


Q = 6
QUEUE_KEEP = np.arange(Q) != 4  # the masked slot holds NaN padding


def _embeddings(seed=0, n=N):
    return np.random.default_rng(seed).standard_normal((n, D)) + 0.3


def _queue(seed=0):
    """Extra negatives ``[Q, D]``, slot 4 (masked by ``QUEUE_KEEP``) NaN."""
    w = np.random.default_rng(seed + 100).standard_normal((Q, D)) - 0.2
    w[4] = np.nan
    return w


def _np_supcon(x, labels, t, distance, keep, w=None, w_keep=None):
    """Khosla et al. Eq. 2 (L_out) in float64, on the unmasked examples, with the kept extra
    negatives ``w`` (normalised) appended to every anchor's denominator, never positives."""
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    w = np.zeros((0, x.shape[1])) if w is None else w[w_keep]
    x_hat = unit(x)
    s = x_hat @ np.concatenate([x_hat, unit(w)]).T
    z = s / t if distance == "cosine" else -np.sqrt(np.maximum(2 - 2 * s, 0)) / t
    out, queue = np.zeros(len(x)), np.ones(len(w), bool)
    for a in np.flatnonzero(keep):
        others = np.concatenate([keep & (np.arange(len(x)) != a), queue])
        pos = others & np.concatenate([labels == labels[a], ~queue])
        if pos.any() and (others & ~pos).any():
            out[a] = np.log(np.sum(np.exp(z[a, others]))) - np.mean(z[a, pos])
    return out


def _form(block_size, shards, distance, mask, fn=supcon):
    """``f(x, T, w=None)``: the weighted sum of the losses of the form (sharded with a named
    vmap), with the extra negatives ``w`` (masked by ``QUEUE_KEEP``), the same on every shard."""
    labels, where = jnp.asarray(LABELS), jnp.asarray(mask)
    weights = jnp.linspace(0.5, 1.5, N)

    def f(x, t, w=None):
        queue = {} if w is None else {"negatives": w, "negatives_where": jnp.asarray(QUEUE_KEEP)}
        call = lambda x, y, m, **kw: fn(x, y, temperature=t, distance=distance, block_size=block_size,  # noqa: E731
                                        where=m, **queue, **kw)
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
    """Euclidean with extra negatives too (one masked, NaN-padded; cosine ones: below)."""
    x, w = _embeddings(1), _queue(1)
    f = _form(block_size, shards, distance, UNEVEN)
    weights = np.linspace(0.5, 1.5, N)
    want = np.sum(weights * _np_supcon(x, LABELS, 0.3, distance, UNEVEN))
    np.testing.assert_allclose(f(jnp.asarray(x), 0.3), want, rtol=1e-12, equal_nan=False)
    if distance == "cosine":
        return
    want = np.sum(weights * _np_supcon(x, LABELS, 0.3, distance, UNEVEN, w, QUEUE_KEEP))
    np.testing.assert_allclose(f(jnp.asarray(x), 0.3, jnp.asarray(w)), want, rtol=1e-12, equal_nan=False)


@pytest.mark.parametrize("block_size, shards, distance, queue", [
    (5, None, "cosine", False), (3, 2, "cosine", False), (None, 4, "euclidean", False), (2, 4, "euclidean", True)],
    ids=["blocks5", "2_shards_blocks3", "4_shards_euclidean", "4_shards_blocks2_euclidean_queue"])
def test_blockwise_and_sharded_forms_match_dense_to_second_order(block_size, shards, distance, queue):
    """float32: values, gradients (embeddings, temperature and the extra negatives), JVP and
    HVP within 1e-5 (the catalogue's check covers cosine with negatives)."""
    x, t = jnp.float32(_embeddings(2)), jnp.float32(0.2)
    rng = np.random.default_rng(3)
    primals = (x, t) + ((jnp.float32(np.nan_to_num(_queue(2))),) if queue else ())
    tangents = tuple(jnp.float32(rng.standard_normal(jnp.shape(p))) for p in primals)
    argnums = tuple(range(len(primals)))

    def derivatives(f):
        value, grads = jax.value_and_grad(f, argnums)(*primals)
        jvp = jax.jvp(f, primals, tangents)[1]
        hvp = jax.jvp(jax.grad(f, argnums), primals, tangents)[1]
        return value, *grads, jvp, *hvp

    dense = jax.jit(derivatives, static_argnums=0)(_form(None, None, distance, UNEVEN))
    form = jax.jit(derivatives, static_argnums=0)(_form(block_size, shards, distance, UNEVEN))
    for ours, theirs in zip(form, dense):
        _close(ours, theirs)


@pytest.mark.parametrize("block_size, queue", [(None, False), (3, True)], ids=["dense", "blocks3_queue"])
def test_sharded_over_8_devices_equals_one_device(mesh, block_size, queue):
    """shard_map over 8 CPU devices: each device's losses of its own examples against the whole
    batch (and the extra negatives, the same on every device: not gathered); gradients of the
    embeddings, the temperature and the negatives (summed over the devices) as one device's."""
    x, t = jnp.float32(_embeddings(4, 4 * N)), jnp.float32(0.5)
    labels, keep = jnp.asarray(np.arange(4 * N) % 7), jnp.asarray(np.arange(4 * N) % 9 != 4)
    w = jnp.float32(_queue(4)) if queue else None
    w_keep = jnp.asarray(QUEUE_KEEP) if queue else None

    def local(x, t, w, y, m, block_size=block_size, axis_name="x"):
        return supcon(x, y, temperature=t, where=m, negatives=w, negatives_where=w_keep, block_size=block_size,
                      axis_name=axis_name)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P(), P(), P("x"), P("x")), out_specs=P("x"))
    run = lambda x, t, w: sharded(x, t, w, labels, keep)  # noqa: E731
    whole = lambda x, t, w: local(x, t, w, labels, keep, None, None)  # noqa: E731  (one device, dense)
    _close(jax.jit(run)(x, t, w), whole(x, t, w))
    weights = jnp.linspace(0.5, 1.5, 4 * N)
    argnums = (0, 1, 2) if queue else (0, 1)
    grads = lambda f: jax.jit(jax.grad(lambda x, t, w: jnp.sum(weights * f(x, t, w)), argnums))(x, t, w)  # noqa: E731
    ours = grads(run)
    for mine, theirs in zip(ours, grads(whole)):
        _close(mine, theirs)
    if queue:
        assert np.all(ours[2][~QUEUE_KEEP] == 0) and np.all(np.any(ours[2][QUEUE_KEEP] != 0, -1))


def test_negatives_derivatives_match_autodiff_and_differences_to_second_order(x64):
    """The extra negatives (one masked, NaN-padded), blockwise over 2 shards, euclidean: reverse
    and forward mode and forward-over-reverse HVPs against autodiff of ``.reference`` and
    float64 finite differences.  (The catalogue's check does every input, cosine, dense.)"""
    fn = _form(3, 2, "euclidean", UNEVEN)
    reference = _form(3, 2, "euclidean", UNEVEN, fn=supcon.reference)
    result = check_gradients(fn, _embeddings(6), 0.4, _queue(6), reference=reference, wrt=(2,), order=2)
    assert result.ok, result


def test_masked_negatives_are_left_out_and_only_negatives_still_count():
    """float32, cosine, against the float64 formula: masked negatives (NaN padding included)
    are as if absent and get gradient exactly 0; every one masked is the loss without them;
    features first (``axis=0``) takes ``[D, Q]``; with one label the anchors have no in-batch
    negative, and only the extra negatives make a loss."""
    x, w, keep = _embeddings(7), _queue(7), jnp.asarray(QUEUE_KEEP)
    loss = jax.jit(lambda x, w, y, m: supcon(x, y, negatives=w, negatives_where=m, temperature=0.3))
    everyone = np.ones(N, bool)
    for labels in (LABELS, np.zeros(N, int)):
        got = loss(jnp.float32(x), jnp.float32(w), jnp.asarray(labels), keep)
        _close(got, _np_supcon(x, labels, 0.3, "cosine", everyone, w, QUEUE_KEEP))
    assert np.all(np.asarray(got) > 0)
    _close(loss(jnp.float32(x), jnp.float32(w), jnp.asarray(LABELS), jnp.zeros(Q, bool)),
           _np_supcon(x, LABELS, 0.3, "cosine", everyone))
    grad = jax.grad(lambda w: jnp.sum(loss(jnp.float32(x), w, jnp.asarray(LABELS), keep)))(jnp.float32(w))
    assert np.all(grad[~QUEUE_KEEP] == 0) and np.all(np.any(grad[QUEUE_KEEP] != 0, -1))
    first = supcon(jnp.float32(x).T, jnp.asarray(LABELS), negatives=jnp.float32(w).T, negatives_where=keep,
                   temperature=0.3, axis=0)
    _close(first, _np_supcon(x, LABELS, 0.3, "cosine", everyone, w, QUEUE_KEEP))



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
    ({"negatives": jnp.ones((5, 2))}, r"negatives must be \[Q, 3\].*\(5, 2\)"),
    ({"negatives": jnp.ones((4, 2, 3))}, r"negatives must be \[Q, 3\].*\(4, 2, 3\)"),
    ({"negatives": jnp.ones((5, 3)), "negatives_where": jnp.ones(4, bool)}, r"negatives_where .*\(5,\)"),
    ({"negatives": jnp.ones((5, 3)), "negatives_where": jnp.ones(5)}, "negatives_where"),
    ({"negatives_where": jnp.ones(5, bool)}, "negatives_where is given without negatives"),
])
def test_bad_options_raise_naming_the_option(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        supcon(jnp.ones((4, 3)), jnp.zeros(4, jnp.int32), **kwargs)
