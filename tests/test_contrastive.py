"""Contrastive losses: float64 references, optax.ntxent parity, blockwise == dense, sharded ==
one device on 8 CPU devices, memory that grows linearly in N, and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss import contrastive as C
from jaxloss import paired_contrastive as PC

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

N, D = 16, 5


def _sides(seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D))
    return x, rng.standard_normal((n, D)) + 0.7 * x


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lse(s, axis=-1):
    m = s.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(s - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def _np_info_nce(q, k, temperature, labels=None):
    s = q @ k.T / temperature
    t = np.arange(len(q)) if labels is None else labels
    return _lse(s) - s[np.arange(len(q)), t]


def _np_symmetric(x, y, scale):
    s = scale * x @ y.T
    return (_lse(s, 1) + _lse(s, 0)) / 2 - np.diag(s)


def _np_ntxent(x, labels, temperature):
    s = _unit(x) @ _unit(x).T / temperature
    out = np.zeros(len(x))
    for i in range(len(x)):
        negatives = [n for n in range(len(x)) if labels[n] != labels[i]]
        positives = [p for p in range(len(x)) if p != i and labels[p] == labels[i]]
        terms = [np.log(np.exp(s[i, p]) + np.exp(s[i, negatives]).sum()) - s[i, p] for p in positives]
        out[i] = np.mean(terms) if terms else 0.0
    return out


def _np_siglip(x, y, t, b):
    logits = t * x @ y.T + b
    z = 2 * np.eye(len(x)) - 1
    return np.log1p(np.exp(-z * logits)).sum(1)


LABELS = np.array([0, 1, 2, 3] * 4)


def _close(ours, theirs, rtol=1e-5):
    """Equal up to ``rtol`` of the largest magnitude (float32 sums in another order)."""
    theirs = np.asarray(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=rtol * max(np.abs(theirs).max(), 1e-30))

# name -> (call(x, y, **options), NumPy float64 reference(x, y))
CASES = {
    "info_nce": (lambda x, y, **kw: C.info_nce_loss(x, y, temperature=0.3, **kw),
                 lambda x, y: _np_info_nce(x, y, 0.3)),
    "info_nce_labels": (lambda x, y, **kw: C.info_nce_loss(x, y[:9], temperature=0.3, labels=jnp.arange(N) % 9, **kw),
                        lambda x, y: _np_info_nce(x, y[:9], 0.3, np.arange(N) % 9)),
    "mnrl": (lambda x, y, **kw: PC.multiple_negatives_ranking_loss(x, y, scale=7.0, **kw),
             lambda x, y: _np_info_nce(_unit(x), _unit(y), 1 / 7.0)),
    "mnrl_symmetric": (lambda x, y, **kw: PC.multiple_negatives_ranking_loss(x, y, scale=7.0, symmetric=True, **kw),
                       lambda x, y: _np_symmetric(_unit(x), _unit(y), 7.0)),
    "clip": (lambda x, y, **kw: PC.clip_loss(x, y, logit_scale=0.9, **kw),
             lambda x, y: _np_symmetric(x, y, np.exp(0.9))),
    "ntxent": (lambda x, y, **kw: C.ntxent_loss(x, jnp.asarray(LABELS), temperature=0.4, **kw),
               lambda x, y: _np_ntxent(x, LABELS, 0.4)),
    "siglip": (lambda x, y, **kw: C.sigmoid_contrastive_loss(x, y, temperature=1.7, bias=-2.0, **kw),
               lambda x, y: _np_siglip(x, y, 1.7, -2.0)),
}
PAIRED = [name for name in CASES if name != "info_nce_labels"]


@pytest.mark.parametrize("name", CASES)
def test_dense_losses_match_numpy_float64_references(name, x64):
    x, y = _sides(1)
    call, reference = CASES[name]
    np.testing.assert_allclose(call(jnp.asarray(x), jnp.asarray(y)), reference(x, y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("block_size", [1, 3, 7, N])
def test_blockwise_matches_dense_values_and_gradients(name, block_size):
    x, y = (jnp.float32(a) for a in _sides(2))
    call = CASES[name][0]
    value_and_grad = lambda **kw: jax.value_and_grad(lambda x, y: jnp.sum(call(x, y, **kw)), (0, 1))(x, y)  # noqa: E731
    (dense, dense_grads), (blocked, blocked_grads) = value_and_grad(), value_and_grad(block_size=block_size)
    _close(blocked, dense)
    for ours, theirs in zip(blocked_grads, dense_grads):
        _close(ours, theirs)


def test_ntxent_mean_over_positive_pairs_is_optax_ntxent():
    x, _ = _sides(3)
    x, labels = jnp.float32(x), jnp.asarray(LABELS)
    positives = (labels[:, None] == labels[None, :]).sum(1) - 1
    ours = lambda x: jaxloss.reduce.mean(C.ntxent_loss(x, labels, temperature=0.2, block_size=5),  # noqa: E731
                                         weights=jnp.float32(positives))
    theirs = lambda x: optax.losses.ntxent(x, labels, 0.2)  # noqa: E731
    _close(ours(x), theirs(x))
    _close(jax.grad(ours)(x), jax.grad(theirs)(x))


def test_anchors_without_positives_or_negatives_give_zero():
    x = jnp.float32(_sides(4)[0][:4])
    np.testing.assert_array_equal(C.ntxent_loss(x, jnp.array([0, 1, 2, 3])), 0.0)  # no positives
    only_positives = C.ntxent_loss(x, jnp.zeros(4, jnp.int32))  # no negatives: log(e^s)/e^s = 0
    np.testing.assert_allclose(only_positives, 0.0, atol=1e-7)


@pytest.mark.parametrize("fn", [C.ntxent_loss, C.ntxent_loss.reference], ids=["rule", "reference"])
@pytest.mark.parametrize("labels, where", [
    ([0, 0, 0, 0, 0, 0], None),  # one class
    ([0, 0, 1, 2, 1, 0], [True, True, False, False, False, True]),  # the mask leaves one class
], ids=["one_class", "mask_leaves_one_class"])
@pytest.mark.parametrize("block_size", [None, 4])
def test_ntxent_anchors_without_negatives_have_finite_derivatives_to_second_order(fn, labels, where, block_size):
    x = jnp.float32(_sides(7)[0][:6])
    dx, dt = jnp.float32(_sides(8)[1][:6]), jnp.float32(0.3)
    labels, where = jnp.asarray(labels), None if where is None else jnp.asarray(where)

    def total(fn):
        return lambda x, t: jnp.sum(fn(x, labels, temperature=t, where=where, block_size=block_size))

    f = total(fn)
    value = fn(x, labels, temperature=0.5, where=where, block_size=block_size)
    grads = jax.grad(f, (0, 1))(x, 0.5)
    tangent = jax.jvp(f, (x, jnp.float32(0.5)), (dx, dt))[1]
    hvp = jax.jvp(jax.grad(f, (0, 1)), (x, jnp.float32(0.5)), (dx, dt))[1]
    reference_hvp = jax.jvp(jax.grad(total(C.ntxent_loss.reference), (0, 1)), (x, jnp.float32(0.5)), (dx, dt))[1]
    np.testing.assert_array_equal(value, 0.0)  # the docstring's value: no negatives, loss 0
    for got in (*grads, tangent, *hvp):
        np.testing.assert_allclose(got, 0.0, atol=1e-6, equal_nan=False)  # a constant loss
    for got, want in zip(hvp, reference_hvp):
        np.testing.assert_allclose(got, want, atol=1e-6, equal_nan=False)


@pytest.mark.parametrize("name", PAIRED)
def test_masked_pairs_are_left_out_of_the_batch(name):
    x, y = (jnp.float32(a) for a in _sides(5))
    call = CASES[name][0]
    keep = np.arange(N) % 3 != 0
    x_nan = x.at[~keep].set(jnp.nan)  # padding
    losses = call(x_nan, y.at[~keep].set(jnp.inf), where=jnp.asarray(keep), block_size=4)
    grads = jax.grad(lambda x: jnp.sum(call(x, y, where=jnp.asarray(keep), block_size=4)))(x_nan)
    assert np.all(np.asarray(losses)[~keep] == 0) and np.all(np.asarray(grads)[~keep] == 0)
    if name != "ntxent":  # (its labels are sliced below)
        _close(np.asarray(losses)[keep], call(x[keep], y[keep]))


# ------------------------------------------------------------------ blockwise and sharded forms to second order

# name -> loss(x, y, s, b, where, ids, **form): every float argument (x, y, s, b) that the loss takes
# is differentiated; ``ids`` are per example (split with the batch): positive keys or group labels.
FORMS = {
    "info_nce": lambda x, y, s, b, m, ids, **kw: C.info_nce_loss(x, y, temperature=s, where=m, **kw),
    "info_nce_labels": lambda x, y, s, b, m, ids, **kw: C.info_nce_loss(x, y, temperature=s, labels=ids, where=m,
                                                                        **kw),
    "mnrl": lambda x, y, s, b, m, ids, **kw: PC.multiple_negatives_ranking_loss(x, y, scale=10 * s, where=m, **kw),
    "mnrl_symmetric": lambda x, y, s, b, m, ids, **kw: PC.multiple_negatives_ranking_loss(
        x, y, scale=10 * s, symmetric=True, where=m, **kw),
    "clip": lambda x, y, s, b, m, ids, **kw: PC.clip_loss(x, y, logit_scale=s, where=m, **kw),
    "siglip": lambda x, y, s, b, m, ids, **kw: C.sigmoid_contrastive_loss(x, y, temperature=s, bias=b, where=m, **kw),
    "ntxent": lambda x, y, s, b, m, ids, **kw: C.ntxent_loss(x, ids % 5, temperature=s, where=m, **kw),
}
UNEVEN = np.isin(np.arange(N), [1, 2, 5, 11], invert=True)  # 3 masked in the first half, 1 in the second
SECOND_HALF = np.arange(N) >= N // 2  # the first shard entirely masked
IDS = (3 * np.arange(N) + 1) % N


def _form_objective(name, mask, block_size, shards):
    """Σ_i w_i ℓ_i of the dense (shards=None, block_size=None), blockwise or sharded form; the
    sharded one maps the batch split into ``shards`` with ``jax.vmap(..., axis_name=)``."""
    loss, weights, mask, ids = FORMS[name], jnp.linspace(0.5, 1.5, N), jnp.asarray(mask), jnp.asarray(IDS)
    if shards is None:
        return lambda x, y, s, b: jnp.sum(weights * loss(x, y, s, b, mask, ids, block_size=block_size))
    split = lambda a: a.reshape((shards, -1) + a.shape[1:])  # noqa: E731

    def objective(x, y, s, b):
        local = lambda x, y, m, i: loss(x, y, s, b, m, i, block_size=block_size, axis_name="shards")  # noqa: E731
        losses = jax.vmap(local, axis_name="shards")(split(x), split(y), split(mask), split(ids))
        return jnp.sum(weights * losses.reshape(-1))

    return objective


@pytest.mark.parametrize("name", FORMS)
@pytest.mark.parametrize("mask, block_size, shards", [
    (UNEVEN, 5, None), (SECOND_HALF, 7, None), (UNEVEN, None, 2), (SECOND_HALF, 3, 2), (UNEVEN, 3, 4)],
    ids=["blocks5", "blocks7_half", "sharded", "sharded_blocks3_half", "4_shards_blocks3"])
def test_blockwise_and_sharded_forms_match_dense_to_second_order(name, mask, block_size, shards):
    x, y = (jnp.float32(a) for a in _sides(9))
    primals = (x, y, jnp.float32(0.8), jnp.float32(-1.0))
    rng = np.random.default_rng(10)
    tangents = (jnp.float32(rng.standard_normal(x.shape)), jnp.float32(rng.standard_normal(y.shape)),
                jnp.float32(0.3), jnp.float32(-0.7))

    def derivatives(f):
        value, grads = jax.value_and_grad(f, (0, 1, 2, 3))(*primals)
        hvp = jax.jvp(jax.grad(f, (0, 1, 2, 3)), primals, tangents)[1]
        return value, *grads, *hvp

    dense, form = (jax.jit(derivatives, static_argnums=0)(f) for f in (
        _form_objective(name, mask, None, None), _form_objective(name, mask, block_size, shards)))
    for ours, theirs in zip(form, dense):
        assert np.all(np.isfinite(ours))
        _close(ours, theirs)


@pytest.mark.parametrize("name", FORMS)
@pytest.mark.parametrize("block_size, shards", [(5, None), (3, 2)], ids=["blocks5", "sharded_blocks3"])
def test_features_first_embeddings_with_axis_0_in_every_form(name, block_size, shards):
    """``axis=0`` on ``[features, examples]`` embeddings: the dense last-axis value and the
    gradient (transposed), in the blockwise and the sharded form."""
    x, y = (jnp.float32(a) for a in _sides(9))
    mask, ids, weights = jnp.asarray(UNEVEN), jnp.asarray(IDS), jnp.linspace(0.5, 1.5, N)
    loss = FORMS[name]

    def features_first(x_t, y_t):
        if shards is None:
            return jnp.sum(weights * loss(x_t, y_t, 0.8, -1.0, mask, ids, block_size=block_size, axis=0))
        split = lambda a, at: jnp.moveaxis(a.reshape(a.shape[:at] + (shards, -1) + a.shape[at + 1:]), at, 0)  # noqa: E731
        local = lambda x, y, m, i: loss(x, y, 0.8, -1.0, m, i, block_size=block_size, axis_name="shards", axis=0)  # noqa: E731
        losses = jax.vmap(local, axis_name="shards")(split(x_t, 1), split(y_t, 1), split(mask, 0), split(ids, 0))
        return jnp.sum(weights * losses.reshape(-1))

    dense = _form_objective(name, UNEVEN, None, None)
    value, grads = jax.value_and_grad(features_first, (0, 1))(x.T, y.T)
    expected_value, expected_grads = jax.value_and_grad(lambda x, y: dense(x, y, 0.8, -1.0), (0, 1))(x, y)
    _close(value, expected_value)
    for ours, theirs in zip(grads, expected_grads):
        _close(ours.T, theirs)


# ------------------------------------------------------------------ float32 precision per row


def _easy_batch(dim, n=128, seed=0):
    """Near-duplicate unit pairs: each row's positive is its maximum by far (easy negatives)."""
    rng = np.random.default_rng(seed)
    u = _unit(rng.standard_normal((n, dim)))
    return u, _unit(u + 1e-3 * rng.standard_normal((n, dim)))


def _jnp_unit(x):
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _ntxent_logits(x, scale):
    """NT-Xent for pairs ``(x[i], x[i ± n/2])`` as rows of a softmax: the partner is each row's
    target, and every other example but the row itself its negative."""
    x, n = _jnp_unit(x), len(x)
    return [jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, scale * x @ x.T)], (jnp.arange(n) + n // 2) % n


def _clip_logits(u, v, logit_scale):
    s = jnp.exp(logit_scale) * u @ v.T
    return [s, s.T], jnp.arange(len(u))


# name -> (ours(u, v, option), logits(u, v, option) -> ([s per direction], targets), option)
PRECISION = {
    "info_nce": (lambda u, v, t: C.info_nce_loss(u, v, temperature=t),
                 lambda u, v, t: ([u @ v.T / t], jnp.arange(len(u))), 0.01),
    "mnrl": (lambda u, v, s: PC.multiple_negatives_ranking_loss(u, v, scale=s),
             lambda u, v, s: ([s * _jnp_unit(u) @ _jnp_unit(v).T], jnp.arange(len(u))), 100.0),
    "clip": (lambda u, v, ls: PC.clip_loss(u, v, logit_scale=ls), _clip_logits, np.log(100)),
    "clip_blocks": (lambda u, v, ls: PC.clip_loss(u, v, logit_scale=ls, block_size=48), _clip_logits, np.log(100)),
    "ntxent": (lambda u, v, t: C.ntxent_loss(jnp.concatenate([u, v]), jnp.arange(2 * len(u)) % len(u),
                                             temperature=t, block_size=48),
               lambda u, v, t: _ntxent_logits(jnp.concatenate([u, v]), 1 / t), 0.01),
}


def _textbook(logits):
    """Plain ``−log_softmax`` of each row's target, averaged over the directions: the baseline."""
    def loss(u, v, option):
        directions, targets = logits(u, v, option)
        rows = [jnp.take_along_axis(jax.nn.log_softmax(s, axis=1), targets[:, None], axis=1) for s in directions]
        return -sum(rows)[:, 0] / len(rows)
    return loss


def _exact(logits):
    """The same loss as ``log1p(Σ_{j ≠ t_i} exp(s_ij − s_it))``: in float64 (|s| ≤ 100) this keeps
    the digits of losses far below 1e-16, which float64 ``log_softmax`` rounds to 0."""
    def loss(u, v, option):
        directions, targets = logits(u, v, option)
        rows = []
        for s in directions:
            positive = jnp.take_along_axis(s, targets[:, None], axis=1)
            others = jnp.arange(s.shape[1])[None, :] != targets[:, None]
            rows.append(jnp.log1p(jnp.sum(jnp.where(others, jnp.exp(s - positive), 0.0), axis=1)))
        return sum(rows) / len(rows)
    return loss


def _row_error(ours, exact):
    """Per example (row): max |ours − exact| over the row / max |exact| of the row; the worst row."""
    ours, exact = (np.asarray(a, np.float64).reshape(max(np.shape(a)[:1] or (1,)), -1) for a in (ours, exact))
    return np.max(np.abs(ours - exact).max(1) / np.maximum(np.abs(exact).max(1), 1e-30))


def _values_and_grads(f, u, v, option):
    """Compiled: XLA may round a logit differently in each place it is used (a negative loss)."""
    return jax.jit(lambda *a: (f(*a), jax.grad(lambda *a: jnp.sum(f(*a)), (0, 1, 2))(*a)))(u, v, option)


@pytest.mark.parametrize("name", PRECISION)
@pytest.mark.parametrize("dim", [32, 4])  # 32: losses from 1e-30 to 1e-16; 4: from 1e-7 to 1
def test_float32_per_row_error_is_at_most_that_of_textbook_autodiff(name, dim):
    ours, logits, option = PRECISION[name]
    u, v = _easy_batch(dim)
    args32 = (jnp.float32(u), jnp.float32(v), jnp.float32(option))
    with jax.enable_x64(True):
        args64 = (jnp.asarray(a, jnp.float64) for a in args32)
        exact = jax.tree.map(np.asarray, _values_and_grads(_exact(logits), *args64))
    (value, grads), (base_value, base_grads) = (_values_and_grads(f, *args32) for f in (ours, _textbook(logits)))
    assert np.all(np.asarray(value) >= 0), np.min(value)
    for got, base, want in zip((value, *grads), (base_value, *base_grads), (exact[0], *exact[1])):
        assert np.all(np.isfinite(got))
        assert _row_error(got, want) <= max(2 * _row_error(base, want), 1e-6), (_row_error(got, want),
                                                                               _row_error(base, want))


# ------------------------------------------------------------------ sharded over 8 CPU devices




SHARDED = {
    "info_nce": lambda x, y, s, b, m, **kw: C.info_nce_loss(x, y, temperature=s, where=m, **kw),
    "mnrl_symmetric": lambda x, y, s, b, m, **kw: PC.multiple_negatives_ranking_loss(x, y, scale=s, symmetric=True,
                                                                                    where=m, **kw),
    "clip": lambda x, y, s, b, m, **kw: PC.clip_loss(x, y, logit_scale=s, where=m, **kw),
    "siglip": lambda x, y, s, b, m, **kw: C.sigmoid_contrastive_loss(x, y, temperature=s, bias=b, where=m, **kw),
    "ntxent": lambda x, y, s, b, m, **kw: C.ntxent_loss(x, jnp.asarray(np.arange(4 * N) % 5), temperature=s,
                                                       where=m, **kw),
}


@pytest.mark.parametrize("name", SHARDED)
@pytest.mark.parametrize("block_size", [None, 3])
def test_sharded_equals_one_device_values_and_gradients(mesh, name, block_size):
    x, y = (jnp.float32(a) for a in _sides(6, 4 * N))
    scale, bias, mask = jnp.float32(0.8), jnp.float32(-1.0), jnp.asarray(np.arange(4 * N) % 7 != 0)
    call = SHARDED[name]
    if name == "ntxent":  # labels are per example: shard them along with the embeddings
        labels = jnp.asarray(np.arange(4 * N) % 5)

        def local(x, y, s, b, m, labels):
            return C.ntxent_loss(x, labels, temperature=s, where=m, block_size=block_size, axis_name="x")

        whole = lambda x, y, s, b, m: C.ntxent_loss(x, labels, temperature=s, where=m)  # noqa: E731
        sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P(), P(), P("x"), P("x")),
                                out_specs=P("x"))
        run = lambda *a: sharded(*a, labels)  # noqa: E731
    else:
        sharded = jax.shard_map(lambda *a: call(*a, block_size=block_size, axis_name="x"), mesh=mesh,
                                in_specs=(P("x"), P("x"), P(), P(), P("x")), out_specs=P("x"))
        run, whole = sharded, call
    args = (x, y, scale, bias, mask)
    _close(jax.jit(run)(*args), whole(*args))
    grads = lambda f: jax.jit(jax.grad(lambda *a: jnp.sum(f(*a)), (0, 1, 2, 3)))(*args)  # noqa: E731
    for ours, theirs in zip(grads(run), grads(whole)):
        _close(ours, theirs)


# ------------------------------------------------------------------ memory


def _footprint(n, block_size):
    x = jax.ShapeDtypeStruct((n, 128), jnp.float32)
    objective = jax.value_and_grad(lambda q, k: jnp.mean(C.info_nce_loss(q, k, block_size=block_size)), (0, 1))
    memory = jax.jit(objective).lower(x, x).compile().memory_analysis()
    return memory.temp_size_in_bytes + memory.output_size_in_bytes


def test_blockwise_footprint_grows_linearly_and_holds_no_n_by_n_matrix():
    small, large = _footprint(2048, 256), _footprint(8192, 256)
    assert large < 4.5 * small, (small, large)  # linear in N at a fixed block size
    assert large < 8192 * 8192 * 4 / 4, large  # a quarter of one N × N float32 matrix
    assert _footprint(8192, None) > 8192 * 8192 * 4  # the dense form does hold it


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("call, error, match", [
    (lambda: C.info_nce_loss(jnp.ones((4, 3)), jnp.ones((5, 3))), ValueError, r"queries and keys .* \(4, 3\) and \(5, 3\)"),
    (lambda: C.info_nce_loss(jnp.ones((4, 3)), jnp.ones((5, 2)), labels=jnp.zeros(4, int)), ValueError,
     "same feature size"),
    (lambda: C.info_nce_loss(jnp.ones((4, 3)), jnp.ones((4, 3)), labels=jnp.zeros(3, int)), ValueError, "labels"),
    (lambda: PC.clip_loss(jnp.ones((4,)), jnp.ones((4,)), logit_scale=1.0), ValueError, r"image_embeddings must be"),
    (lambda: PC.clip_loss(jnp.ones((4, 3), int), jnp.ones((4, 3)), logit_scale=1.0), TypeError, "image_embeddings"),
    (lambda: C.ntxent_loss(jnp.ones((4, 3)), jnp.ones(4)), ValueError, "labels must be integer"),
    (lambda: C.info_nce_loss(jnp.ones((4, 3)), jnp.ones((4, 3)), block_size=0), ValueError, "block_size"),
    (lambda: C.info_nce_loss(jnp.ones((4, 3)), jnp.ones((4, 3)), temperature=-1.0), ValueError, "temperature"),
    (lambda: C.sigmoid_contrastive_loss(jnp.ones((4, 3)), jnp.ones((4, 3)), temperature=1.0, bias=jnp.ones(2)),
     ValueError, "bias"),
])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------ guard rails for the scale options


@pytest.mark.parametrize("call, bad, good", [
    (lambda x, v: PC.clip_loss(x, x, logit_scale=v), 1 / 0.07, np.log(1 / 0.07)),
    (lambda x, v: C.sigmoid_contrastive_loss(x, x, temperature=v, bias=-10.0), 0.07, 10.0),
], ids=["clip_logit_scale_is_a_log", "siglip_temperature_multiplies"])
def test_an_implausible_concrete_scale_warns_at_trace_time(call, bad, good):
    import warnings

    x = jnp.float32(_unit(_sides(0)[0]))
    with pytest.warns(UserWarning, match="pass"):
        call(x, bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(x, good)
        jax.jit(call)(x, jnp.float32(bad))  # a traced value cannot be judged: no warning
