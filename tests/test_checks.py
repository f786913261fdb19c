"""jaxloss.checks: run-time checks of class ids and finiteness through checkify."""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxloss
from jaxloss import _verify, catalogue, checks

CLASS_ID_LOSSES = sorted(checks._CLASSES)
ENTRIES = pytest.mark.parametrize("entry", catalogue.ENTRIES, ids=lambda e: e.name)


def _run(fn, args, kwargs):
    """``(error message or None, losses)`` of ``fn`` under jit + checkify."""
    err, out = jax.jit(checkify.checkify(functools.partial(fn, **kwargs)))(*args)
    return err.get(), out


def _with_label(entry, value, position=-1):
    """The entry's sample with one (unpadded) class id set to ``value``."""
    args, kwargs = _verify.sample(entry)
    names = list(inspect.signature(entry.fn).parameters)
    i = names.index("labels")
    labels = np.array(args[i])
    if labels.dtype.kind == "f":  # probability targets: class ids instead
        labels = labels.argmax(-1).astype(np.int32)
    labels.reshape(-1)[position] = value
    if entry.name == "ctc_loss":  # an unpadded label position
        pads = np.array(args[names.index("label_paddings")])
        pads.reshape(-1)[position] = 0.0
        args = (*args[:3], jnp.asarray(pads), *args[4:])
    return (*args[:i], jnp.asarray(labels), *args[i + 1:]), kwargs


def _classes(entry):
    args, _ = _verify.sample(entry)
    bound = inspect.signature(entry.fn).bind(*args)
    return checks._CLASSES[entry.name](bound.arguments)


def test_the_class_id_losses_are_public_losses():
    assert set(CLASS_ID_LOSSES) <= set(catalogue.BY_NAME)


@ENTRIES
def test_valid_inputs_pass_with_the_same_losses(entry):
    args, kwargs = _verify.sample(entry)
    message, out = _run(checks.checked(entry.fn), args, kwargs)
    assert message is None
    np.testing.assert_allclose(out, entry.fn(*args, **kwargs), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", CLASS_ID_LOSSES)
@pytest.mark.parametrize("bad", ["too_large", "negative"])
def test_out_of_range_ids_raise_naming_the_argument(name, bad):
    entry = catalogue.BY_NAME[name]
    value = _classes(entry) if bad == "too_large" else -1
    args, kwargs = _with_label(entry, value)
    message, _ = _run(checks.checked(entry.fn), args, kwargs)
    assert message is not None and message.startswith(f"{name}: labels[")
    assert f"= {value} is outside [0, {_classes(entry)})" in message
    with pytest.raises(Exception, match=r"labels\[.*is outside"):  # eagerly, at once
        checks.checked(entry.fn)(*args, **kwargs)


def test_the_message_gives_the_first_bad_index():
    labels = jnp.array([[0, 1], [2, 7]])
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    message, _ = _run(loss, (jnp.zeros((2, 2, 3)), labels), {})
    assert message.startswith("softmax_cross_entropy: labels[1, 1] = 7 is outside [0, 3)")


def test_numpy_inputs_are_checked():
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    with pytest.raises(Exception, match=r"labels\[1\] = 5 is outside \[0, 3\)"):
        loss(np.zeros((2, 3), np.float32), np.array([0, 5]))


def test_a_masked_id_passes():
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    message, out = _run(loss, (jnp.zeros((2, 3)), jnp.array([0, -100])), {"where": jnp.array([True, False])})
    assert message is None and out[1] == 0


def test_padded_ctc_labels_are_not_checked():
    loss = checks.checked(jaxloss.ctc_loss)
    args = (jnp.zeros((1, 3, 3)), jnp.zeros((1, 3)), jnp.array([[1, 2, -1]]), jnp.array([[0.0, 0.0, 1.0]]))
    assert _run(loss, args, {})[0] is None


def test_nan_in_logits_raises_and_a_masked_nan_does_not():
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    logits, labels = jnp.zeros((2, 3)).at[1, 2].set(jnp.nan), jnp.array([0, 1])
    message, _ = _run(loss, (logits, labels), {})
    assert message.startswith("softmax_cross_entropy: logits[1, 2] = nan is not finite")
    message, out = _run(loss, (logits, labels), {"where": jnp.array([True, False])})
    assert message is None and np.all(np.isfinite(out))
    assert _run(checks.checked(jaxloss.softmax_cross_entropy, finite=False), (logits, labels), {})[0] is None


def test_inf_in_an_option_raises():
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    weights = jnp.array([1.0, jnp.inf, 1.0])
    message, _ = _run(loss, (jnp.zeros((2, 3)), jnp.array([0, 1])), {"class_weights": weights})
    assert message.startswith("softmax_cross_entropy: class_weights[1] = inf is not finite")


def test_a_per_pixel_mask_is_respected():
    loss = checks.checked(jaxloss.dice_loss)
    predictions = jnp.full((2, 4, 3), 0.5).at[1, 3].set(jnp.nan)
    targets = jnp.zeros((2, 4, 3)).at[..., 0].set(1.0)
    where = jnp.ones((2, 4), bool).at[1, 3].set(False)
    assert _run(loss, (predictions, targets), {"where": where})[0] is None
    assert "predictions[1, 3, 0] = nan" in _run(loss, (predictions, targets), {})[0]


def test_works_under_vmap():
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    logits, labels = jnp.zeros((4, 2, 3)), jnp.array([[0, 1], [2, 0], [1, 3], [0, 0]])
    err, out = jax.jit(checkify.checkify(jax.vmap(loss)))(logits, labels)
    assert "labels[1] = 3 is outside [0, 3)" in err.get() and out.shape == (4, 2)
    err, out = jax.jit(checkify.checkify(jax.vmap(loss)))(logits, labels % 3)
    assert err.get() is None
    np.testing.assert_allclose(out, jax.vmap(jaxloss.softmax_cross_entropy)(logits, labels % 3))


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "arcface_loss", "ctc_loss", "squared_error"])
def test_gradients_are_the_unwrapped_losses(name):
    entry = catalogue.BY_NAME[name]
    args, kwargs = _verify.sample(entry)
    floats = tuple(i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.floating))

    def total(fn):
        return jax.grad(lambda *a: jnp.sum(fn(*a, **kwargs)), argnums=floats)

    err, got = jax.jit(checkify.checkify(total(checks.checked(entry.fn))))(*args)
    assert err.get() is None
    for g, want in zip(got, jax.jit(total(entry.fn))(*args)):
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-7)


def test_the_wrapper_keeps_the_signature_and_is_not_a_loss_entry():
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    assert inspect.signature(loss) == inspect.signature(jaxloss.softmax_cross_entropy)
    assert not hasattr(loss, "reference") and loss.__name__ == "softmax_cross_entropy"
