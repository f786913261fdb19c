"""Extra negatives of the contrastive losses and the negative queue: sentence-transformers'
hard-negative formula in float64, per-anchor negatives, masks, blockwise and sharded forms
(8 CPU devices) against the dense one, and jaxloss.queue."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss import queue as Q

pytestmark = pytest.mark.full

N, D, K = 8, 5, 3
mnrl, info_nce = jaxloss.multiple_negatives_ranking_loss, jaxloss.info_nce_loss


def _data(seed=3):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((N, D)) + 0.2
    return a, rng.standard_normal((N, D)) + 0.6 * a, rng.standard_normal((N, D)), rng.standard_normal((N, K, D))


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _cross_entropy(scores, labels):
    """torch's cross_entropy(scores, labels, reduction='none'), in float64."""
    m = scores.max(1, keepdims=True)
    lse = (m + np.log(np.exp(scores - m).sum(1, keepdims=True)))[:, 0]
    return lse - scores[np.arange(len(scores)), labels]


def _st_mnrl(anchors, *candidates, scale=20.0, symmetric=False):
    """sentence-transformers' MultipleNegativesRankingLoss on (anchor, positive, negative_1...)
    columns, per anchor: cos_sim(anchor, cat(positive, negatives...)) · scale, cross-entropy
    with labels arange(N); MultipleNegativesSymmetricRankingLoss also scores each positive
    against the anchors (the positive block of the same matrix, transposed)."""
    scores = scale * _unit(anchors) @ _unit(np.concatenate(candidates)).T
    labels = np.arange(len(anchors))
    forward = _cross_entropy(scores, labels)
    if not symmetric:
        return forward
    return (forward + _cross_entropy(scores[:, :len(anchors)].T, labels)) / 2


def _close(ours, theirs, rtol=1e-6):
    theirs = np.asarray(theirs)
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=0, atol=rtol * max(np.abs(theirs).max(), 1e-30))


@pytest.mark.parametrize("symmetric", [False, True])
def test_triplets_match_sentence_transformers_formula(x64, symmetric):
    a, p, n, n3 = _data()
    _close(mnrl(a, p, negatives=n, symmetric=symmetric), _st_mnrl(a, p, n, symmetric=symmetric), 1e-12)
    # K negative columns: every anchor sees every row's K negatives.
    columns = [n3[:, k] for k in range(K)]
    _close(mnrl(a, p, negatives=n3.reshape(-1, D), symmetric=symmetric),
           _st_mnrl(a, p, *columns, symmetric=symmetric), 1e-12)
    # The mean is sentence-transformers' loss value.
    _close(jnp.mean(mnrl(a, p, negatives=n, scale=7.0)), _st_mnrl(a, p, n, scale=7.0).mean(), 1e-12)


def test_own_negatives_match_float64_reference(x64):
    a, p, _, n3 = _data()
    s = 20.0 * _unit(a) @ _unit(p).T
    h = 20.0 * np.einsum("nd,nkd->nk", _unit(a), _unit(n3))
    _close(mnrl(a, p, negatives=n3), _cross_entropy(np.concatenate([s, h], 1), np.arange(N)), 1e-12)


def test_info_nce_queue_and_labels_match_float64_reference(x64):
    q, k, n, _ = _data()
    expected = _cross_entropy(np.concatenate([q @ k.T, q @ n.T], 1) / 0.3, np.arange(N))
    _close(info_nce(q, k, temperature=0.3, negatives=n), expected, 1e-12)
    labels = np.arange(N) % 5
    expected = _cross_entropy(np.concatenate([q @ k[:5].T, q @ n.T], 1) / 0.3, labels)
    _close(info_nce(q, k[:5], temperature=0.3, labels=jnp.asarray(labels), negatives=n), expected, 1e-12)


CALLS = {
    "mnrl_shared": lambda a, p, n, n3, **kw: mnrl(a, p, negatives=n, scale=3.0, symmetric=True, **kw),
    "mnrl_own": lambda a, p, n, n3, **kw: mnrl(a, p, negatives=n3, scale=3.0, **kw),
    "info_nce_queue": lambda a, p, n, n3, **kw: info_nce(a, p, negatives=n, temperature=0.7, **kw),
    "info_nce_own": lambda a, p, n, n3, **kw: info_nce(a, p, negatives=n3, temperature=0.7, **kw),
}


@pytest.mark.parametrize("name", CALLS)
def test_gradients_to_every_input_match_autodiff_and_differences_to_second_order(x64, name, block_size=3):
    a, p, n, n3 = _data()

    def fn(a, p, n, n3):
        return CALLS[name](a, p, n, n3, block_size=block_size)

    # Second order where the catalogue's samples (shared negatives) do not reach: per-row ones.
    result = jaxloss.check_gradients(fn, a, p, n, n3, reference=lambda *x: _reference(name)(*x, block_size=block_size),
                                     order=2 if name.endswith("own") else 1)
    assert result.ok, result
    grad = jax.grad(lambda *x: jnp.sum(fn(*x)), argnums=(2, 3))(a, p, n, n3)
    assert np.any(np.asarray(grad[0 if name.endswith(("shared", "queue")) else 1]) != 0)


def _reference(name):
    fn = mnrl.reference if name.startswith("mnrl") else info_nce.reference
    negatives = "n" if name.endswith(("shared", "queue")) else "n3"
    options = {"scale": 3.0} if name.startswith("mnrl") else {"temperature": 0.7}
    if name == "mnrl_shared":
        options["symmetric"] = True
    return lambda a, p, n, n3, **kw: fn(a, p, negatives={"n": n, "n3": n3}[negatives], **options, **kw)


def test_masked_negatives_are_left_out():
    a, p, n, n3 = map(jnp.float32, _data())
    keep = jnp.arange(N) % 3 != 1
    _close(mnrl(a, p, negatives=n, negatives_where=keep), mnrl(a, p, negatives=n[keep]), 1e-6)
    _close(info_nce(a, p, negatives=n, negatives_where=keep), info_nce(a, p, negatives=n[keep]), 1e-6)
    keep3 = jnp.arange(K) < 2
    mask3 = jnp.broadcast_to(keep3, (N, K))
    _close(mnrl(a, p, negatives=n3, negatives_where=mask3), mnrl(a, p, negatives=n3[:, keep3]), 1e-6)
    grad = jax.grad(lambda n: jnp.sum(mnrl(a, p, negatives=n, negatives_where=keep)))(n)
    assert jnp.all(grad[~keep] == 0) and jnp.all(jnp.any(grad[keep] != 0, axis=-1))
    # No negative left: the loss without negatives.
    _close(mnrl(a, p, negatives=n3, negatives_where=jnp.zeros((N, K), bool)), mnrl(a, p), 1e-6)


@pytest.mark.parametrize("fn", [mnrl, info_nce])
def test_own_negatives_of_masked_rows_may_hold_nan_padding(fn):
    a, p, _, n3 = map(jnp.float32, _data())
    where = jnp.arange(N) < 5
    padded = jnp.where(where[:, None, None], n3, jnp.nan)
    losses, grads = jax.value_and_grad(lambda *x: jnp.sum(fn(*x[:2], negatives=x[2], where=where)),
                                       argnums=(0, 1, 2))(a, p, padded)
    assert jnp.isfinite(losses) and all(jnp.all(jnp.isfinite(g)) for g in grads)
    assert jnp.all(grads[2][~where] == 0)
    _close(fn(a, p, negatives=padded, where=where)[where], fn(a[:5], p[:5], negatives=n3[:5]), 1e-6)


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("block_size", [None, 3])
def test_sharded_equals_one_device_values_and_gradients(mesh, name, block_size):
    """On 8 devices: multiple-negatives ranking's negatives sharded like the batch (gathered),
    InfoNCE's queue the same on every device; per-row negatives sharded with their rows."""
    a, p, n, n3 = (jnp.float32(x) * 2 for x in _data(seed=5))
    where = jnp.arange(N) != 6
    call = CALLS[name]
    queue = name == "info_nce_queue"

    def total(a, p, n, n3, sharded):
        if not sharded:
            return jnp.sum(call(a, p, n, n3, where=where, block_size=block_size)), \
                call(a, p, n, n3, where=where, block_size=block_size)
        local = lambda a, p, n, n3, w: call(a, p, n, n3, where=w, block_size=block_size, axis_name="x")  # noqa: E731
        losses = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P() if queue else P("x"), P("x"), P("x")),
                               out_specs=P("x"))(a, p, n, n3, where)
        return jnp.sum(losses), losses

    for sharded in (False, True):
        run = jax.jit(jax.value_and_grad(total, argnums=(0, 1, 2, 3), has_aux=True), static_argnums=4)
        (_, losses), grads = run(a, p, n, n3, sharded)
        if not sharded:
            dense = losses, grads
    _close(losses, dense[0], 1e-5)
    for x, y in zip(grads, dense[1]):
        _close(x, y, 1e-5)


def test_features_first_negatives_with_axis_0():
    a, p, n, _ = map(jnp.float32, _data())
    _close(mnrl(a.T, p.T, negatives=n.T, axis=0), mnrl(a, p, negatives=n), 1e-6)
    _close(info_nce(a.T, p.T, negatives=n.T, axis=0), info_nce(a, p, negatives=n), 1e-6)


@pytest.mark.parametrize("call, error, match", [
    (lambda: mnrl(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives=jnp.ones((5, 2))), ValueError, r"negatives .*\(5, 2\)"),
    (lambda: mnrl(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives=jnp.ones((5, 2, 3))), ValueError, "negatives"),
    (lambda: info_nce(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives=jnp.ones((5, 3)),
                      negatives_where=jnp.ones(4, bool)), ValueError, "negatives_where"),
    (lambda: info_nce(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives_where=jnp.ones(4, bool)), ValueError,
     "negatives_where"),
    (lambda: mnrl(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives=jnp.ones((5, 3)), negatives_where=jnp.ones(5)),
     TypeError, "negatives_where"),
])
def test_bad_negatives_raise_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------ jaxloss.queue


def test_queue_is_first_in_first_out_like_a_bounded_deque():
    state, expected = Q.queue_init(5, 2), collections.deque(maxlen=5)
    push = jax.jit(Q.queue_push)
    for step, size in enumerate([2, 3, 1, 4, 5, 2]):
        batch = np.arange(size * 2, dtype=np.float32).reshape(size, 2) + 100 * step
        state = push(state, jnp.asarray(batch))
        expected.extend(batch)
        keys, filled = Q.queue_read(state)
        assert int(filled.sum()) == len(expected)
        assert sorted(map(tuple, np.asarray(keys)[np.asarray(filled)])) == sorted(map(tuple, expected))
        assert int(state.position) == (sum([2, 3, 1, 4, 5, 2][:step + 1])) % 5


def test_queue_passes_no_gradient_and_feeds_the_loss():
    q, k, _, _ = map(jnp.float32, _data())

    def loss(k, state):
        state = Q.queue_push(state, k)
        keys, filled = Q.queue_read(state)
        return jnp.sum(info_nce(q, k, negatives=keys, negatives_where=filled))

    state = Q.queue_push(Q.queue_init(16, D), -k)
    grad = jax.grad(loss)(k, state)
    keys, filled = Q.queue_read(Q.queue_push(state, k))
    # Through the queue the pushed keys get no gradient: only their part as keys.
    with_queue = jax.grad(lambda k: jnp.sum(info_nce(q, k, negatives=keys, negatives_where=filled)))(k)
    _close(grad, with_queue, 1e-6)
    _close(loss(k, state), jnp.sum(info_nce(q, k, negatives=jnp.concatenate([-k, k]))), 1e-6)


def test_sharded_push_gathers_the_batch_and_every_device_holds_the_same_queue(mesh):
    batch = jnp.arange(16 * 2, dtype=jnp.float32).reshape(16, 2)
    state = Q.queue_push(Q.queue_init(24, 2), batch[:12])

    def local(state, batch):
        return jax.tree.map(lambda x: x[None], Q.queue_push(state, batch, axis_name="x"))

    pushed = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("x")), out_specs=P("x"))(state, batch)
    one_device = Q.queue_push(state, batch)
    for x, y in zip(pushed, one_device):
        np.testing.assert_array_equal(np.asarray(x), np.broadcast_to(np.asarray(y), np.shape(x)))


def test_queue_rejects_bad_input():
    with pytest.raises(ValueError, match="capacity"):
        Q.queue_init(0, 3)
    state = Q.queue_init(4, 3)
    with pytest.raises(ValueError, match="does not fit"):
        Q.queue_push(state, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="batch must be"):
        Q.queue_push(state, jnp.ones((2, 2)))
    with pytest.raises(TypeError, match="batch"):
        Q.queue_push(state, jnp.ones((2, 3), int))
