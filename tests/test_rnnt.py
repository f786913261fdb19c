"""rnnt_loss and rnnt_loss_from_joiner: values and gradients against a float64 NumPy transcription
of Graves' (2012) forward-backward recursion (torchaudio does not install beside this torch), known
small lattices, autodiff of the reference, finite differences in both orders, the joiner form
against the dense one, padding, bad ids, and the lean form's memory."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import rnnt_loss, rnnt_loss_from_joiner

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks both losses through the catalogue


def _close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               equal_nan=False)


# ------------------------------------------------------------------ Graves' recursion in float64


def _graves(logits, frames, labels, blank=0):
    """Loss and ∂loss/∂logits of one sequence, logits [T, U+1, V] (only the first ``frames``
    frames and ``len(labels) + 1`` rows read), by Graves' α/β recursions in float64 log space."""
    logits = np.asarray(logits, np.float64)
    u1 = len(labels) + 1
    z = logits[:frames, :u1]
    lp = z - z.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    blank_lp = lp[:, :, blank]
    label_lp = np.array([[lp[t, u, labels[u]] if u < u1 - 1 else -np.inf for u in range(u1)] for t in range(frames)])
    alpha = np.full((frames, u1), -np.inf)
    for t in range(frames):
        for u in range(u1):
            if t == 0 and u == 0:
                alpha[t, u] = 0.0
                continue
            paths = []
            if t > 0:
                paths.append(alpha[t - 1, u] + blank_lp[t - 1, u])
            if u > 0:
                paths.append(alpha[t, u - 1] + label_lp[t, u - 1])
            alpha[t, u] = np.logaddexp.reduce(paths)
    beta = np.full((frames + 1, u1 + 1), -np.inf)
    beta[frames, u1 - 1] = 0.0
    for t in reversed(range(frames)):
        for u in reversed(range(u1)):
            beta[t, u] = np.logaddexp(beta[t + 1, u] + blank_lp[t, u], beta[t, u + 1] + label_lp[t, u])
    log_p = beta[0, 0]
    grad = np.zeros_like(logits)
    soft = np.exp(lp)
    for t in range(frames):
        for u in range(u1):
            g_blank = np.exp(alpha[t, u] + blank_lp[t, u] + beta[t + 1, u] - log_p)
            g_label = np.exp(alpha[t, u] + label_lp[t, u] + beta[t, u + 1] - log_p)
            grad[t, u] = (g_blank + g_label) * soft[t, u]
            grad[t, u, blank] -= g_blank
            if u < u1 - 1:
                grad[t, u, labels[u]] -= g_label
    return -log_p, grad


def _batch(seed, batch=4, frames=6, n=3, classes=5, blank=0):
    rng = np.random.default_rng(seed)
    logits = 2 * rng.standard_normal((batch, frames, n + 1, classes))
    frame_lengths = np.array([frames, 1, *rng.integers(1, frames + 1, batch - 2)])
    label_lengths = np.array([n, 0, *rng.integers(0, n + 1, batch - 2)])
    labels = rng.integers(0, classes - 1, (batch, n))
    labels = np.where(labels >= blank, labels + 1, labels)
    labels[0, 1] = labels[0, 0]
    logit_paddings = np.float32(np.arange(frames)[None] >= frame_lengths[:, None])
    label_paddings = np.float32(np.arange(n)[None] >= label_lengths[:, None])
    return logits, logit_paddings, labels, label_paddings, frame_lengths, label_lengths


def _expected(logits, labels, frame_lengths, label_lengths, blank=0):
    pairs = [_graves(x, t, y[:u], blank) for x, t, y, u in zip(logits, frame_lengths, labels, label_lengths)]
    return np.array([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@pytest.mark.parametrize("seed, blank", [(0, 0), (1, 0), (2, 3)])
def test_values_and_gradients_match_graves_recursion_in_float64(seed, blank):
    x, lp, y, yp, frames, lengths = _batch(seed, blank=blank)
    losses, grads = _expected(x, y, frames, lengths, blank)
    loss_fn = lambda x: jnp.sum(rnnt_loss(x, lp, y, yp, blank_id=blank))  # noqa: E731
    with jax.enable_x64(True):
        _close(rnnt_loss(x, lp, y, yp, blank_id=blank), losses, rtol=1e-12, atol=1e-12)
        _close(jax.grad(loss_fn)(x), grads, rtol=1e-10, atol=1e-12)
    x32 = jnp.float32(x)
    _close(rnnt_loss(x32, lp, y, yp, blank_id=blank), losses, rtol=2e-6, atol=1e-6)
    _close(jax.grad(loss_fn)(x32), grads, rtol=1e-4, atol=2e-6)


def test_one_frame_no_labels_is_minus_log_blank():
    x = jnp.float32(np.random.default_rng(0).standard_normal((1, 1, 1, 4)))
    loss = rnnt_loss(x, jnp.zeros((1, 1)), jnp.zeros((1, 0), jnp.int32), jnp.zeros((1, 0)))
    _close(loss, -jax.nn.log_softmax(x[0, 0, 0])[0][None], rtol=1e-6)


@pytest.mark.parametrize("frames, n, classes", [(1, 2, 3), (2, 1, 3), (4, 3, 5)])
def test_uniform_logits_count_the_alignments(frames, n, classes):
    # Every alignment emits T blanks and U labels, each with probability 1/V; there are
    # C(T − 1 + U, U) of them (the last blank is fixed).
    x = jnp.zeros((1, frames, n + 1, classes))
    loss = rnnt_loss(x, jnp.zeros((1, frames)), jnp.ones((1, n), jnp.int32), jnp.zeros((1, n)))
    _close(loss, [(frames + n) * math.log(classes) - math.log(math.comb(frames - 1 + n, n))], rtol=1e-6)


def test_gradient_matches_autodiff_of_reference():
    x, lp, y, yp, *_ = _batch(3)
    x = jnp.float32(x)
    w = jnp.float32(np.random.default_rng(7).standard_normal(x.shape[0]))
    grad = lambda fn: jax.jit(jax.grad(lambda x: jnp.sum(w * fn(x, lp, y, yp))))(x)  # noqa: E731
    _close(grad(rnnt_loss), grad(rnnt_loss.reference), atol=1e-6)


def test_gradient_sums_to_zero_per_node_and_is_zero_off_the_lattice():
    x, lp, y, yp, frames, lengths = _batch(4)
    grad = jax.grad(lambda x: jnp.sum(rnnt_loss(jnp.float32(x), lp, y, yp)))(jnp.float32(x))
    _close(jnp.sum(grad, -1), jnp.zeros(grad.shape[:-1]), atol=1e-6)
    for b, (t, u) in enumerate(zip(frames, lengths)):
        assert jnp.all(grad[b, t:] == 0) and jnp.all(grad[b, :, u + 1:] == 0)


@pytest.mark.parametrize("order", [1, 2])
def test_check_gradients_passes_in_both_modes(order):
    x, lp, y, yp, *_ = _batch(5, batch=3, frames=4, n=2, classes=4)
    result = jaxloss.check_gradients(rnnt_loss, jnp.float32(x), lp, y, yp, order=order)
    assert result.ok, result


def test_padding_holds_nan_without_reaching_values_or_gradients():
    x, lp, y, yp, frames, lengths = _batch(6)
    x = jnp.float32(x)
    dirty = x.at[2, frames[2]:].set(jnp.nan).at[3, :, lengths[3] + 1:].set(jnp.nan)
    for fn in (rnnt_loss, rnnt_loss.reference):
        _close(fn(dirty, lp, y, yp), fn(x, lp, y, yp))
        g_lp, g_yp = jax.grad(lambda a, b, fn=fn: jnp.sum(fn(x, a, y, b)), argnums=(0, 1))(lp, yp)
        assert jnp.all(g_lp == 0) and jnp.all(g_yp == 0)
    _close(jax.grad(lambda x: jnp.sum(rnnt_loss(x, lp, y, yp)))(dirty),
           jax.grad(lambda x: jnp.sum(rnnt_loss(x, lp, y, yp)))(x))


def test_no_frames_gives_inf_and_zero_gradient():
    x, lp, y, yp, *_ = _batch(7)
    lp = lp.copy()
    lp[1] = 1.0
    for fn in (rnnt_loss, rnnt_loss.reference):
        losses = fn(jnp.float32(x), lp, y, yp)
        assert jnp.isinf(losses[1]) and jnp.all(jnp.isfinite(losses[jnp.array([0, 2, 3])]))
        grad = jax.grad(lambda x, fn=fn: jnp.sum(fn(x, lp, y, yp)[jnp.array([0, 2, 3])] + 0 * fn(x, lp, y, yp)[1]))
        g = grad(jnp.float32(x))
        assert jnp.all(jnp.isfinite(g)) and jnp.all(g[1] == 0)


@pytest.mark.parametrize("bad", [-1, 5, 0])
def test_invalid_label_gives_nan_loss_and_zero_gradient(bad):
    x, lp, y, yp, *_ = _batch(8)
    y = y.copy()
    y[0, 0] = bad  # outside [0, V) or the blank
    losses = rnnt_loss(jnp.float32(x), lp, y, yp)
    assert jnp.isnan(losses[0]) and jnp.all(jnp.isfinite(losses[1:]))
    g = jax.grad(lambda x: jnp.sum(jnp.where(jnp.isnan(losses), 0.0, rnnt_loss(x, lp, y, yp))))(jnp.float32(x))
    assert jnp.all(g[0] == 0)


def test_any_leading_batch_shape_and_where():
    x, lp, y, yp, *_ = _batch(9)
    x = jnp.float32(x)
    flat = rnnt_loss(x, lp, y, yp)
    _close(rnnt_loss(x.reshape(2, 2, *x.shape[1:]), lp.reshape(2, 2, -1), y.reshape(2, 2, -1), yp.reshape(2, 2, -1)),
           flat.reshape(2, 2))
    keep = jnp.array([True, False, True, False])
    _close(rnnt_loss(x, lp, y, yp, where=keep), jnp.where(keep, flat, 0.0))


@pytest.mark.parametrize("call, match", [
    (lambda x, lp, y, yp: rnnt_loss(x[..., 0], lp, y, yp), "logit_paddings with shape"),
    (lambda x, lp, y, yp: rnnt_loss(x, lp[:, 1:], y, yp), "logit_paddings with shape"),
    (lambda x, lp, y, yp: rnnt_loss(x, lp, y[:, 1:], yp[:, 1:]), "labels with shape"),
    (lambda x, lp, y, yp: rnnt_loss(x, lp, y, yp[:, 1:]), "label_paddings with shape"),
    (lambda x, lp, y, yp: rnnt_loss(x, lp, y, yp, blank_id=5), "blank_id must be"),
    (lambda x, lp, y, yp: rnnt_loss(x, lp, jnp.float32(y), yp), "labels must be an integer"),
])
def test_bad_shapes_raise_naming_the_argument(call, match):
    x, lp, y, yp, *_ = _batch(0)
    with pytest.raises((ValueError, TypeError), match=match):
        call(jnp.float32(x), lp, y, yp)


# ------------------------------------------------------------------ the joiner form


def _joiner(seed, hidden=5, **kw):
    x, lp, y, yp, frames, lengths = _batch(seed, **kw)
    batch, t, u1, classes = x.shape
    rng = np.random.default_rng(seed + 100)
    enc, pred = rng.standard_normal((batch, t, hidden)), rng.standard_normal((batch, u1, hidden))
    w, b = 2 * rng.standard_normal((hidden, classes)), rng.standard_normal(classes)
    return (jnp.float32(enc), jnp.float32(pred), jnp.float32(w), jnp.float32(b)), (lp, y, yp), (frames, lengths)


def _dense_logits(enc, pred, w, b):
    return jnp.tanh(enc[:, :, None] + pred[:, None]) @ w + b


@pytest.mark.parametrize("block_size", [None, 1, 4, 6])
def test_joiner_form_equals_rnnt_loss_of_the_materialised_logits(block_size):
    params, (lp, y, yp), (frames, lengths) = _joiner(10)
    lean = lambda e, p, w, b: rnnt_loss_from_joiner(e, p, w, lp, y, yp, joiner_bias=b,  # noqa: E731
                                                    block_size=block_size)
    dense = lambda e, p, w, b: rnnt_loss(_dense_logits(e, p, w, b), lp, y, yp)  # noqa: E731
    _close(lean(*params), dense(*params))
    expected, _ = _expected(np.asarray(_dense_logits(*params)), y, frames, lengths)
    _close(lean(*params), expected, rtol=2e-6)
    weights = jnp.float32(np.random.default_rng(1).standard_normal(len(frames)))
    grad = lambda fn: jax.grad(lambda *a: jnp.sum(weights * fn(*a)), argnums=(0, 1, 2, 3))(*params)  # noqa: E731
    for ours, theirs in zip(grad(lean), grad(dense)):
        _close(ours, theirs, atol=2e-6)


@pytest.mark.parametrize("order", [1, 2])
def test_joiner_form_check_gradients_in_both_modes(order):
    (enc, pred, w, b), (lp, y, yp), _ = _joiner(11, hidden=3, batch=3, frames=4, n=2, classes=4)
    result = jaxloss.check_gradients(rnnt_loss_from_joiner, enc, pred, w, lp, y, yp, joiner_bias=b, block_size=3,
                                     order=order)
    assert result.ok, result


def test_joiner_form_without_bias_and_blank_elsewhere():
    (enc, pred, w, _), (lp, y, yp), _ = _joiner(12, blank=2)
    _close(rnnt_loss_from_joiner(enc, pred, w, lp, y, yp, blank_id=2, block_size=4),
           rnnt_loss(jnp.tanh(enc[:, :, None] + pred[:, None]) @ w, lp, y, yp, blank_id=2))


def test_joiner_form_padding_reaches_nothing():
    (enc, pred, w, b), (lp, y, yp), (frames, lengths) = _joiner(13)
    dirty_enc = enc.at[2, frames[2]:].set(jnp.nan)
    dirty_pred = pred.at[3, lengths[3] + 1:].set(jnp.inf)
    f = lambda e, p, w: jnp.sum(rnnt_loss_from_joiner(e, p, w, lp, y, yp, block_size=2))  # noqa: E731
    _close(f(dirty_enc, dirty_pred, w), f(enc, pred, w))
    g_enc, g_pred, g_w = jax.grad(f, argnums=(0, 1, 2))(dirty_enc, dirty_pred, w)
    assert jnp.all(g_enc[2, frames[2]:] == 0) and jnp.all(g_pred[3, lengths[3] + 1:] == 0)
    for ours, clean in zip((g_enc, g_pred, g_w), jax.grad(f, argnums=(0, 1, 2))(enc, pred, w)):
        _close(ours, clean)


def test_joiner_form_bad_shapes_raise():
    (enc, pred, w, b), (lp, y, yp), _ = _joiner(0)
    with pytest.raises(ValueError, match="joiner_weight must be"):
        rnnt_loss_from_joiner(enc, pred, w[1:], lp, y, yp)
    with pytest.raises(ValueError, match="encoder .* and predictor"):
        rnnt_loss_from_joiner(enc, pred[:, :, 1:], w, lp, y, yp)
    with pytest.raises(ValueError, match="joiner_bias must have shape"):
        rnnt_loss_from_joiner(enc, pred, w, lp, y, yp, joiner_bias=b[1:])
    with pytest.raises(ValueError, match="labels with shape"):
        rnnt_loss_from_joiner(enc, pred[:, 1:], w, lp, y, yp)
    with pytest.raises(ValueError, match="block_size"):
        rnnt_loss_from_joiner(enc, pred, w, lp, y, yp, block_size=0)


# ------------------------------------------------------------------ memory


def _temp(objective, *shapes):
    return jax.jit(objective).lower(*shapes).compile().memory_analysis().temp_size_in_bytes


def test_joiner_form_never_holds_the_logits_in_value_and_grad():
    batch, frames, n, hidden, classes, block = 2, 64, 16, 16, 512, 4
    shapes = (jax.ShapeDtypeStruct((batch, frames, hidden), jnp.float32),
              jax.ShapeDtypeStruct((batch, n + 1, hidden), jnp.float32),
              jax.ShapeDtypeStruct((hidden, classes), jnp.float32))
    lp, yp = jnp.zeros((batch, frames)), jnp.zeros((batch, n))
    y = jnp.ones((batch, n), jnp.int32)
    lean = jax.value_and_grad(lambda e, p, w: jnp.sum(rnnt_loss_from_joiner(e, p, w, lp, y, yp, block_size=block)),
                              (0, 1, 2))
    dense = jax.value_and_grad(lambda e, p, w: jnp.sum(rnnt_loss(jnp.tanh(e[:, :, None] + p[:, None]) @ w, lp, y, yp)),
                               (0, 1, 2))
    logits = batch * frames * (n + 1) * classes * 4
    ours = _temp(lean, *shapes)
    assert ours < logits / 4, (ours, logits)  # a block of frames is 1/16 of the logits
    assert _temp(dense, *shapes) > logits
