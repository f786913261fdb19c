"""Extra negatives of the contrastive losses and the negative queue: sentence-transformers'
hard-negative formula and OpenCLIP's ClipLoss with extra columns in float64, per-anchor
negatives, masks, blockwise and sharded forms (8 CPU devices) against the dense one, and
jaxloss.queue."""

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
mnrl, info_nce, clip = jaxloss.multiple_negatives_ranking_loss, jaxloss.info_nce_loss, jaxloss.clip_loss


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


def _openclip(x, y, logit_scale, image_negatives=None, text_negatives=None):
    """OpenCLIP's ClipLoss per pair in float64, with the extra columns appended to the logits
    of each direction: images against [texts; text negatives], texts against [images; image
    negatives], cross-entropy with labels arange(N), the two directions averaged."""
    scale, labels = np.exp(logit_scale), np.arange(len(x))
    texts = y if text_negatives is None else np.concatenate([y, text_negatives])
    images = x if image_negatives is None else np.concatenate([x, image_negatives])
    return (_cross_entropy(scale * x @ texts.T, labels) + _cross_entropy(scale * y @ images.T, labels)) / 2


def test_clip_negatives_match_openclip_formula_with_the_columns_appended(x64):
    x, y, n, n3 = _data()
    images = n3.reshape(-1, D)[:5]  # P = 5 image negatives, Q = 8 text negatives
    for block_size in (None, 3):
        _close(clip(x, y, logit_scale=0.4, image_negatives=images, text_negatives=n, block_size=block_size),
               _openclip(x, y, 0.4, images, n), 1e-12)
    _close(clip(x, y, logit_scale=0.4, text_negatives=n), _openclip(x, y, 0.4, text_negatives=n), 1e-12)
    _close(clip(x, y, logit_scale=0.4, image_negatives=images), _openclip(x, y, 0.4, images), 1e-12)


CALLS = {
    "mnrl_shared": lambda a, p, n, n3, **kw: mnrl(a, p, negatives=n, scale=3.0, symmetric=True, **kw),
    "mnrl_own": lambda a, p, n, n3, **kw: mnrl(a, p, negatives=n3, scale=3.0, **kw),
    "info_nce_queue": lambda a, p, n, n3, **kw: info_nce(a, p, negatives=n, temperature=0.7, **kw),
    "info_nce_own": lambda a, p, n, n3, **kw: info_nce(a, p, negatives=n3, temperature=0.7, **kw),
    # Q = 8 text negatives, P = 24 image negatives (queues: the same on every device).
    "clip_queues": lambda a, p, n, n3, logit_scale=0.4, **kw: clip(a, p, logit_scale=logit_scale, text_negatives=n,
                                                                   image_negatives=n3.reshape(-1, D), **kw),
}


@pytest.mark.parametrize("name", CALLS)
def test_gradients_to_every_input_match_autodiff_and_differences_to_second_order(x64, name, block_size=3):
    a, p, n, n3 = _data()

    def fn(a, p, n, n3, **options):
        return CALLS[name](a, p, n, n3, block_size=block_size, **options)

    reference = lambda *x, **o: _reference(name)(*x, block_size=block_size, **o)  # noqa: E731
    if name.startswith("clip"):
        # Every input, logit_scale too, as one flat argument: the second-order check then compiles
        # a third of the programs of one row per input, and still compares the gradient and the
        # HVP with autodiff and differences element by element.
        theta, unflat = _flat(a, p, n, n3, 0.4)
        on_flat = lambda f: lambda theta: f(*unflat(theta)[:4], logit_scale=unflat(theta)[4])  # noqa: E731
        result = jaxloss.check_gradients(on_flat(fn), theta, reference=on_flat(reference), order=2)
    else:
        # Second order where the catalogue's samples (shared negatives) do not reach: per-row ones.
        result = jaxloss.check_gradients(fn, a, p, n, n3, reference=reference, order=2 if name.endswith("own") else 1)
    assert result.ok, result
    grad = jax.grad(lambda *x: jnp.sum(fn(*x)), argnums=(2, 3))(a, p, n, n3)
    used = {"shared": (0,), "queue": (0,), "own": (1,), "queues": (0, 1)}[name.rsplit("_", 1)[1]]
    assert all(np.any(np.asarray(grad[i]) != 0) for i in used)


def _flat(*arrays):
    """One vector of ``arrays`` and the function from such a vector back to them."""
    shapes = [np.shape(x) for x in arrays]
    cuts = np.cumsum([int(np.prod(shape)) for shape in shapes])[:-1]
    return np.concatenate([np.ravel(x) for x in arrays]), \
        lambda theta: [part.reshape(shape) for part, shape in zip(jnp.split(theta, cuts), shapes)]


def _reference(name):
    if name.startswith("clip"):
        return lambda a, p, n, n3, logit_scale, **kw: clip.reference(a, p, logit_scale=logit_scale, text_negatives=n,
                                                                     image_negatives=n3.reshape(-1, D), **kw)
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
    # CLIP: one mask per side.
    masked = lambda n: clip(a, p, logit_scale=0.3, text_negatives=n, text_negatives_where=keep,  # noqa: E731
                            image_negatives=-n, image_negatives_where=~keep)
    _close(masked(n), clip(a, p, logit_scale=0.3, text_negatives=n[keep], image_negatives=-n[~keep]), 1e-6)
    grad = jax.grad(lambda n: jnp.sum(masked(n)))(n)
    assert jnp.all(jnp.any(grad != 0, axis=-1))  # the text negatives kept and the image ones kept
    grad = jax.grad(lambda n: jnp.sum(clip(a, p, logit_scale=0.3, text_negatives=n, text_negatives_where=keep)))(n)
    assert jnp.all(grad[~keep] == 0) and jnp.all(jnp.any(grad[keep] != 0, axis=-1))
    _close(clip(a, p, logit_scale=0.3, image_negatives=n, image_negatives_where=jnp.zeros(N, bool)),
           clip(a, p, logit_scale=0.3), 1e-6)


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
    InfoNCE's and CLIP's queues the same on every device; per-row negatives sharded with their
    rows."""
    a, p, n, n3 = (jnp.float32(x) * 2 for x in _data(seed=5))
    where = jnp.arange(N) != 6
    call = CALLS[name]
    queue, queues = name == "info_nce_queue", name == "clip_queues"

    def total(a, p, n, n3, sharded):
        if not sharded:
            return jnp.sum(call(a, p, n, n3, where=where, block_size=block_size)), \
                call(a, p, n, n3, where=where, block_size=block_size)
        local = lambda a, p, n, n3, w: call(a, p, n, n3, where=w, block_size=block_size, axis_name="x")  # noqa: E731
        losses = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P() if queue or queues else P("x"), P() if queues else P("x"),
                                                       P("x")),
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
    _close(clip(a.T, p.T, logit_scale=0.3, text_negatives=n.T, image_negatives=-n[:5].T, axis=0),
           clip(a, p, logit_scale=0.3, text_negatives=n, image_negatives=-n[:5]), 1e-6)


@pytest.mark.parametrize("call, error, match", [
    (lambda: mnrl(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives=jnp.ones((5, 2))), ValueError, r"negatives .*\(5, 2\)"),
    (lambda: mnrl(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives=jnp.ones((5, 2, 3))), ValueError, "negatives"),
    (lambda: info_nce(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives=jnp.ones((5, 3)),
                      negatives_where=jnp.ones(4, bool)), ValueError, "negatives_where"),
    (lambda: info_nce(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives_where=jnp.ones(4, bool)), ValueError,
     "negatives_where"),
    (lambda: mnrl(jnp.ones((4, 3)), jnp.ones((4, 3)), negatives=jnp.ones((5, 3)), negatives_where=jnp.ones(5)),
     TypeError, "negatives_where"),
    (lambda: clip(jnp.ones((4, 3)), jnp.ones((4, 3)), logit_scale=0.0, text_negatives=jnp.ones((5, 2))), ValueError,
     r"text_negatives must be \[Q, 3\] .*\(5, 2\)"),
    (lambda: clip(jnp.ones((4, 3)), jnp.ones((4, 3)), logit_scale=0.0, image_negatives=jnp.ones((4, 2, 3))),
     ValueError, r"image_negatives must be \[Q, 3\] .*\(4, 2, 3\)"),  # no per-pair form
    (lambda: clip(jnp.ones((4, 3)), jnp.ones((4, 3)), logit_scale=0.0, image_negatives=jnp.ones((5, 3)),
                  image_negatives_where=jnp.ones(4, bool)), ValueError, r"image_negatives_where .*\(5,\)"),
    (lambda: clip(jnp.ones((4, 3)), jnp.ones((4, 3)), logit_scale=0.0, text_negatives_where=jnp.ones(4, bool)),
     ValueError, "text_negatives_where is given without text_negatives"),
    (lambda: clip(jnp.ones((4, 3)), jnp.ones((4, 3)), logit_scale=0.0, text_negatives=jnp.ones((5, 3)),
                  text_negatives_where=jnp.ones(5)), TypeError, "text_negatives_where must be a boolean mask"),
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
