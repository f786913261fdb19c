"""ctc_loss: parity with optax and PyTorch, the hand rule against autodiff, impossible alignments."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from jaxloss import ctc_loss

torch = pytest.importorskip("torch")


def _close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


def _batch(seed, batch=5, frames=16, classes=6, n=5, blank_id=0, repeats=True):
    """Random logits and labels with padded frames and labels, some labels repeated."""
    rng = np.random.default_rng(seed)
    logits = 2 * rng.standard_normal((batch, frames, classes))
    label_lengths = rng.integers(1, n + 1, batch)
    label_lengths[0] = n
    labels = rng.integers(0, classes - 1, (batch, n))
    labels = np.where(labels >= blank_id, labels + 1, labels)  # never the blank
    if repeats:
        labels[0, 1] = labels[0, 0]
        labels[1, -1] = labels[1, -2]
    # Enough frames for the labels and the blanks between repeats.
    need = label_lengths + np.array([np.sum(l[1:k] == l[:k - 1]) for l, k in zip(labels, label_lengths)])
    frame_lengths = np.array([rng.integers(k, frames + 1) for k in need])
    frame_lengths[0] = frames
    logit_paddings = (np.arange(frames)[None] >= frame_lengths[:, None]).astype(np.float32)
    label_paddings = (np.arange(n)[None] >= label_lengths[:, None]).astype(np.float32)
    return (jnp.float32(logits), jnp.float32(logit_paddings), jnp.int32(labels), jnp.float32(label_paddings),
            frame_lengths, label_lengths)


def _torch_ctc(logits, labels, frame_lengths, label_lengths, blank_id=0, zero_infinity=False):
    log_probs = torch.log_softmax(torch.tensor(np.asarray(logits, np.float64)), -1).transpose(0, 1)
    return torch.nn.functional.ctc_loss(
        log_probs, torch.tensor(np.asarray(labels)).long(), torch.tensor(frame_lengths), torch.tensor(label_lengths),
        blank=blank_id, reduction="none", zero_infinity=zero_infinity).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_match_optax_and_torch(seed):
    x, lp, y, yp, frame_lengths, label_lengths = _batch(seed)
    ours = ctc_loss(x, lp, y, yp)
    _close(ours, optax.ctc_loss(x, lp, y, yp))
    _close(ours, _torch_ctc(x, y, frame_lengths, label_lengths))


def test_blank_id_other_than_zero_matches_optax_and_torch():
    x, lp, y, yp, frame_lengths, label_lengths = _batch(3, blank_id=2)
    ours = ctc_loss(x, lp, y, yp, blank_id=2)
    _close(ours, optax.ctc_loss(x, lp, y, yp, blank_id=2))
    _close(ours, _torch_ctc(x, y, frame_lengths, label_lengths, blank_id=2))


def test_uniform_logits_count_the_alignments():
    # Labels (1, 2) in 3 frames: 5 of the 3³ equally likely paths collapse to them.
    loss = ctc_loss(jnp.zeros((1, 3, 3)), jnp.zeros((1, 3)), jnp.array([[1, 2]]), jnp.zeros((1, 2)))
    _close(loss, [np.log(27 / 5)])


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_autodiff_of_reference_and_optax(seed):
    x, lp, y, yp, *_ = _batch(seed)
    w = jnp.asarray(np.random.default_rng(7).standard_normal(x.shape[0]), jnp.float32)
    grad = lambda fn: jax.jit(jax.grad(lambda x: jnp.sum(w * fn(x, lp, y, yp))))(x)  # noqa: E731
    ours = grad(ctc_loss)
    _close(ours, grad(ctc_loss.reference), atol=1e-5)
    _close(ours, grad(optax.ctc_loss), atol=1e-5)
    # Padded frames get no gradient.
    assert jnp.all(ours[lp > 0.5] == 0)


def test_gradient_is_softmax_minus_occupancy_summing_to_zero_per_frame():
    x, lp, y, yp, *_ = _batch(4)
    grad = jax.grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp)))(x)
    _close(jnp.sum(grad, axis=-1), jnp.zeros(lp.shape), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 5])
def test_check_gradients_passes(seed):
    x, lp, y, yp, *_ = _batch(seed, batch=3, frames=8, classes=4, n=3)
    result = jaxloss.check_gradients(ctc_loss, x, lp, y, yp)
    assert result.ok, result
    assert {r.argument for r in result.rows} == {"logits", "logit_paddings", "label_paddings"}


def test_paddings_get_zero_derivative():
    x, lp, y, yp, *_ = _batch(6)
    for fn in (ctc_loss, ctc_loss.reference):
        g_lp, g_yp = jax.grad(lambda a, b, fn=fn: jnp.sum(fn(x, a, y, b)), argnums=(0, 1))(lp, yp)
        assert jnp.all(g_lp == 0) and jnp.all(g_yp == 0)


def _impossible():
    # Sequence 0: labels (1, 1) need 3 frames (a blank between the repeats), it has 2.
    # Sequence 1: labels (1, 2, 3) in 2 frames.  Sequence 2 is possible.
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4, 5)), jnp.float32)
    logit_paddings = jnp.float32([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    labels = jnp.int32([[1, 1, 0], [1, 2, 3], [2, 2, 4]])
    label_paddings = jnp.float32([[0, 0, 1], [0, 0, 0], [0, 0, 1]])
    return logits, logit_paddings, labels, label_paddings


def test_impossible_alignment_gives_inf_and_zero_gradient():
    x, lp, y, yp = _impossible()
    losses = ctc_loss(x, lp, y, yp)
    assert jnp.all(jnp.isinf(losses[:2])) and jnp.isfinite(losses[2])
    _close(losses, _torch_ctc(x, y, [2, 2, 4], [2, 3, 2]))
    for fn in (ctc_loss, ctc_loss.reference):
        grad = jax.grad(lambda x, fn=fn: jnp.sum(jnp.where(jnp.isfinite(losses), fn(x, lp, y, yp), 0.0)))(x)
        assert jnp.all(jnp.isfinite(grad))
        full = jax.grad(lambda x, fn=fn: jnp.sum(fn(x, lp, y, yp)))(x)
        assert jnp.all(jnp.isfinite(full)) and jnp.all(full[:2] == 0)
    # optax gives a large finite stand-in (log 0 ≈ -1e5) there instead.
    theirs = optax.ctc_loss(x, lp, y, yp)
    assert jnp.all(jnp.isfinite(theirs)) and jnp.all(theirs[:2] > 1e4)
    _close(losses[2], theirs[2])


def test_zero_infinity_gives_zero_loss_and_gradient_like_torch():
    x, lp, y, yp = _impossible()
    losses = ctc_loss(x, lp, y, yp, zero_infinity=True)
    _close(losses, _torch_ctc(x, y, [2, 2, 4], [2, 3, 2], zero_infinity=True))
    assert jnp.all(losses[:2] == 0)
    grad = jax.grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp, zero_infinity=True)))(x)
    assert jnp.all(grad[:2] == 0) and jnp.any(grad[2] != 0)
    _close(grad, jax.grad(lambda x: jnp.sum(ctc_loss.reference(x, lp, y, yp, zero_infinity=True)))(x))


def test_all_frames_padded_with_no_labels_gives_zero():
    loss = ctc_loss(jnp.ones((1, 3, 4)), jnp.ones((1, 3)), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2)))
    _close(loss, [0.0])


def test_huge_logits_are_finite():
    x, lp, y, yp, *_ = _batch(8)
    x = 1e4 * jnp.sign(x)
    losses, grad = jax.value_and_grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp, zero_infinity=True)))(x)
    assert jnp.isfinite(losses) and jnp.all(jnp.isfinite(grad))


def test_leading_batch_shapes_and_vmap():
    x, lp, y, yp, *_ = _batch(9, batch=4)
    flat = ctc_loss(x, lp, y, yp)
    shaped = lambda a: a.reshape((2, 2) + a.shape[1:])  # noqa: E731
    _close(ctc_loss(*map(shaped, (x, lp, y, yp))), flat.reshape(2, 2))
    _close(jax.vmap(ctc_loss)(*map(shaped, (x, lp, y, yp))), flat.reshape(2, 2))
    _close(ctc_loss(x[0], lp[0], y[0], yp[0]), flat[0])


def test_where_masks_loss_and_gradient():
    x, lp, y, yp = _impossible()
    where = jnp.array([False, False, True])
    losses, grad = jax.value_and_grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp, where=where)))(x)
    _close(losses, ctc_loss(x, lp, y, yp)[2])
    assert jnp.all(grad[:2] == 0) and jnp.any(grad[2] != 0)


def test_low_precision_logits_compute_in_float32():
    x, lp, y, yp, *_ = _batch(10)
    losses = ctc_loss(x.astype(jnp.bfloat16), lp, y, yp)
    assert losses.dtype == jnp.float32
    _close(losses, ctc_loss(x.astype(jnp.bfloat16).astype(jnp.float32), lp, y, yp))
    grad = jax.grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp)))(x.astype(jnp.bfloat16))
    assert grad.dtype == jnp.bfloat16


@pytest.mark.parametrize("call, error, words", [
    (lambda x, lp, y, yp: ctc_loss(x.astype(jnp.int32), lp, y, yp), TypeError, "logits"),
    (lambda x, lp, y, yp: ctc_loss(x[0, 0], lp, y, yp), ValueError, "logits"),
    (lambda x, lp, y, yp: ctc_loss(x, lp[:, 1:], y, yp), ValueError, "logit_paddings"),
    (lambda x, lp, y, yp: ctc_loss(x, lp, y.astype(jnp.float32), yp), TypeError, "labels"),
    (lambda x, lp, y, yp: ctc_loss(x, lp, y[1:], yp[1:]), ValueError, "labels"),
    (lambda x, lp, y, yp: ctc_loss(x, lp, y, yp[:, 1:]), ValueError, "label_paddings"),
    (lambda x, lp, y, yp: ctc_loss(x, lp, y, yp, blank_id=6), ValueError, "blank_id"),
    (lambda x, lp, y, yp: ctc_loss(x, lp, y, yp, zero_infinity=1), TypeError, "zero_infinity"),
    (lambda x, lp, y, yp: ctc_loss(x, lp, y, yp, where=jnp.ones(3, bool)), ValueError, "where"),
])
def test_bad_inputs_raise_naming_the_argument(call, error, words):
    x, lp, y, yp, *_ = _batch(0)
    with pytest.raises(error, match=words):
        call(x, lp, y, yp)
