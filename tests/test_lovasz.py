"""lovasz_softmax_loss and lovasz_hinge_loss against a float64 NumPy transcription of Berman et
al.'s algorithm (values and the sorted-error-weight gradients), masks, ties and extremes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

pytestmark = pytest.mark.full


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _jaccard_increments(fg_sorted):
    """The reference code's ``lovasz_grad``: increments of the Jaccard loss along the sort."""
    total = fg_sorted.sum()
    jaccard = 1 - (total - np.cumsum(fg_sorted)) / (total + np.cumsum(1 - fg_sorted))
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def _weights(errors, fg):
    """Each pixel's ``g`` at its rank in the errors sorted in decreasing order (stable): the
    Lovász extension's gradient."""
    order = np.argsort(-errors, kind="stable")
    g = np.empty(errors.shape)
    g[order] = _jaccard_increments(fg[order])
    return g


def _numpy_softmax(p, y, classes="present"):
    """Loss and gradient for probabilities ``[N, C]`` and ids ``[N]`` of one image."""
    losses, grad = [], np.zeros_like(p)
    for c in range(p.shape[1]):
        fg = (y == c).astype(float)
        if classes == "present" and fg.sum() == 0:
            continue
        errors = np.abs(fg - p[:, c])
        g = _weights(errors, fg)
        losses.append(float(np.dot(errors, g)))
        grad[:, c] = g * (1 - 2 * fg)
    return (float(np.mean(losses)), grad / len(losses)) if losses else (0.0, grad)


def _numpy_hinge(x, y):
    """Loss and gradient for logits ``[N]`` and binary labels ``[N]`` of one image."""
    signs = 2.0 * y - 1
    errors = 1 - x * signs
    g = _weights(errors, y.astype(float))
    return float(np.dot(np.maximum(errors, 0), g)), -signs * g * (errors > 0)


def _probabilities(rng, shape):
    x = 2 * rng.standard_normal(shape)
    return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


@pytest.mark.parametrize("classes", ["present", "all"])
def test_softmax_per_image_and_batch_equal_the_numpy_algorithm(x64, classes):
    rng = np.random.default_rng(0)
    p, ids = _probabilities(rng, (3, 4, 5, 4)), rng.integers(0, 4, (3, 4, 5))
    ids[0] %= 2  # classes 2 and 3 absent from image 0
    p, ids = jnp.asarray(p), jnp.asarray(ids)
    fn = jaxloss.lovasz_softmax_loss
    for batch in (False, True):
        pixels = (-1, 4) if batch else (3, -1, 4)
        flat_p, flat_y = np.asarray(p).reshape(pixels), np.asarray(ids).reshape(pixels[:-1])
        pairs = [_numpy_softmax(flat_p, flat_y, classes)] if batch else [
            _numpy_softmax(a, b, classes) for a, b in zip(flat_p, flat_y)]
        expected = np.array([loss for loss, _ in pairs])
        grad = np.stack([g for _, g in pairs]).reshape(p.shape)
        got = fn(p, ids, classes=classes, batch=batch)
        np.testing.assert_allclose(np.atleast_1d(got), expected, rtol=1e-12, equal_nan=False)
        ours = jax.grad(lambda p: jnp.sum(fn(p, ids, classes=classes, batch=batch)))(p)
        np.testing.assert_allclose(ours, grad, rtol=1e-10, atol=1e-14, equal_nan=False)


def test_hinge_per_image_and_batch_equal_the_numpy_algorithm(x64):
    rng = np.random.default_rng(1)
    x, y = jnp.asarray(2 * rng.standard_normal((3, 4, 5))), jnp.asarray(rng.integers(0, 2, (3, 4, 5)))
    fn = jaxloss.lovasz_hinge_loss
    for batch in (False, True):
        rows = (1, -1) if batch else (3, -1)
        pairs = [_numpy_hinge(a, b) for a, b in zip(np.asarray(x).reshape(rows), np.asarray(y).reshape(rows))]
        expected = np.array([loss for loss, _ in pairs])
        grad = np.stack([g for _, g in pairs]).reshape(x.shape)
        np.testing.assert_allclose(np.atleast_1d(fn(x, y, batch=batch)), expected, rtol=1e-12, equal_nan=False)
        ours = jax.grad(lambda x: jnp.sum(fn(x, y, batch=batch)))(x)
        np.testing.assert_allclose(ours, grad, rtol=1e-10, atol=1e-14, equal_nan=False)


def test_masked_and_ignored_pixels_are_left_out(x64):
    rng = np.random.default_rng(2)
    p, ids = _probabilities(rng, (2, 3, 4, 3)), rng.integers(0, 3, (2, 3, 4))
    keep = rng.random((2, 3, 4)) < 0.6
    ignored = rng.random((2, 3, 4)) < 0.2
    labels = jnp.asarray(np.where(ignored, -100, ids))
    padded = jnp.where(jnp.asarray(keep)[..., None], jnp.asarray(p), jnp.nan)
    got = jaxloss.lovasz_softmax_loss(padded, labels, where=jnp.asarray(keep))
    kept = keep & ~ignored
    expected = [_numpy_softmax(p[b][kept[b]], ids[b][kept[b]])[0] for b in range(2)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=False)
    grad = jax.grad(lambda p: jnp.sum(jaxloss.lovasz_softmax_loss(p, labels, where=jnp.asarray(keep))))(padded)
    assert np.all(np.asarray(grad)[~kept] == 0) and np.all(np.isfinite(grad))

    x, y = rng.standard_normal((2, 3, 4)), rng.integers(0, 2, (2, 3, 4))
    got = jaxloss.lovasz_hinge_loss(jnp.where(jnp.asarray(keep), jnp.asarray(x), jnp.nan),
                                    jnp.asarray(np.where(ignored, -100, y)), where=jnp.asarray(keep))
    np.testing.assert_allclose(got, [_numpy_hinge(x[b][kept[b]], y[b][kept[b]])[0] for b in range(2)], rtol=1e-12)


def test_at_ties_the_value_is_order_free_and_the_gradient_a_subgradient(x64):
    """Two pixels of equal error (one foreground, one not): the value is the Lovász extension's
    (continuous), the gradient the stable order's: it equals the one-sided derivative along a
    direction that keeps that order."""
    x = jnp.asarray([[0.5, -0.5, 2.0, -3.0]])  # errors 0.5, 0.5 (tied), -1, -2
    y = jnp.asarray([[1, 0, 1, 0]])
    fn = jaxloss.lovasz_hinge_loss
    value, grad = jax.value_and_grad(lambda x: fn(x, y)[0])(x)
    swapped = _numpy_hinge(np.asarray(x[0])[[1, 0, 2, 3]], np.asarray(y[0])[[1, 0, 2, 3]])[0]
    np.testing.assert_allclose(value, swapped, rtol=1e-12)
    direction = jnp.asarray([[-1.0, 0.0, 0.0, 0.0]])  # lowers the first error's logit: keeps it first
    h = 1e-6
    one_sided = (fn(x + h * direction, y)[0] - value) / h
    np.testing.assert_allclose(jnp.sum(grad * direction), one_sided, rtol=1e-6)


def test_invalid_ids_make_their_image_nan_and_everything_else_stays_finite():
    rng = np.random.default_rng(3)
    p = jnp.float32(_probabilities(rng, (2, 3, 3, 3)))
    ids = np.zeros((2, 3, 3), np.int32)
    ids[1, 0, 0] = 7
    out = jaxloss.lovasz_softmax_loss(p, jnp.asarray(ids))
    assert np.isfinite(out[0]) and np.isnan(out[1])
    labels = ids.copy()
    labels[1, 0, 0] = 2
    out = jaxloss.lovasz_hinge_loss(jnp.float32(rng.standard_normal((2, 3, 3))), jnp.asarray(labels))
    assert np.isfinite(out[0]) and np.isnan(out[1])


def test_bool_labels_and_channel_first_probabilities():
    rng = np.random.default_rng(4)
    x, y = jnp.float32(rng.standard_normal((2, 3, 3))), rng.integers(0, 2, (2, 3, 3))
    np.testing.assert_array_equal(jaxloss.lovasz_hinge_loss(x, jnp.asarray(y, bool)),
                                  jaxloss.lovasz_hinge_loss(x, jnp.asarray(y)))
    p, ids = jnp.float32(_probabilities(rng, (2, 3, 3, 4))), jnp.asarray(rng.integers(0, 4, (2, 3, 3)))
    np.testing.assert_allclose(jaxloss.lovasz_softmax_loss(jnp.moveaxis(p, -1, 1), ids, axis=1),
                               jaxloss.lovasz_softmax_loss(p, ids), rtol=1e-6)
