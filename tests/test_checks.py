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

# Losses whose samples pass their class ids positionally (info_nce_loss's labels are an option, absent from
# its sample: tests/test_ids_everywhere.py checks them).
CLASS_ID_LOSSES = sorted(e.name for e in catalogue.ENTRIES if e.class_ids and inspect.signature(e.fn).parameters[
    e.class_ids[0][0]].kind is not inspect.Parameter.KEYWORD_ONLY)
ENTRIES = pytest.mark.parametrize("entry", catalogue.ENTRIES, ids=lambda e: e.name)


def _run(fn, args, kwargs):
    """``(error message or None, losses)`` of ``fn`` (a ``checked(loss, throw=False)``) under
    jit + checkify."""
    err, out = jax.jit(checkify.checkify(functools.partial(fn, **kwargs)))(*args)
    return err.get(), out


def _checked(loss, **options):
    """``checks.checked(loss, throw=False)``: the checks as an error value, for :func:`_run`."""
    return checks.checked(loss, throw=False, **options)


def _with_label(entry, value, position=-1):
    """The entry's sample with one (unpadded) class id of its first class-id argument set to ``value``."""
    args, kwargs = _verify.sample(entry)
    args, names = list(args), list(inspect.signature(entry.fn).parameters)
    i = names.index(entry.class_ids[0][0])
    ids = np.array(args[i])
    if ids.dtype.kind == "f":  # probability targets: class ids instead
        ids = ids.argmax(-1).astype(np.int32)
    ids.reshape(-1)[position] = value
    args[i] = jnp.asarray(ids)
    if checks._PADDINGS.get(names[i]) in names:  # an unpadded position
        j = names.index(checks._PADDINGS[names[i]])
        pads = np.array(args[j])
        pads.reshape(-1)[position] = 0.0
        args[j] = jnp.asarray(pads)
    return tuple(args), kwargs


def _classes(entry):
    args, kwargs = _verify.sample(entry)
    bound = inspect.signature(entry.fn).bind(*args, **kwargs)
    bound.apply_defaults()
    _, counted_by, axis = entry.class_ids[0]
    return bound.arguments[counted_by].shape[axis(bound.arguments) if callable(axis) else axis]


@pytest.mark.full
@ENTRIES
def test_class_ids_name_arguments_of_the_loss(entry):
    parameters = inspect.signature(entry.fn).parameters
    for argument, counted_by, axis in entry.class_ids:
        assert argument in parameters and counted_by in parameters and (isinstance(axis, int) or callable(axis))


def test_the_class_id_losses_read_their_entry():
    assert set(CLASS_ID_LOSSES) >= {"softmax_cross_entropy", "arcface_loss", "ctc_loss", "jaccard_loss",
                                    "linear_softmax_cross_entropy"}
    assert checks.class_id_arguments(jaxloss.ctc_loss) == (("labels", "logits", -1),)
    assert checks.class_id_arguments(jaxloss.squared_error) == ()


def test_a_function_named_like_a_loss_is_not_checked_as_that_loss():
    def softmax_cross_entropy(logits, labels):
        return jnp.sum(logits, -1)

    assert checks.class_id_arguments(softmax_cross_entropy) == ()
    assert _run(_checked(softmax_cross_entropy), (jnp.zeros((2, 3)), jnp.array([0, 9])), {})[0] is None


@pytest.mark.full
@ENTRIES
def test_valid_inputs_pass_with_the_same_losses(entry):
    args, kwargs = _verify.sample(entry)
    message, out = _run(_checked(entry.fn), args, kwargs)
    assert message is None
    np.testing.assert_allclose(out, entry.fn(*args, **kwargs), rtol=1e-6, atol=1e-6)


@pytest.mark.full
@pytest.mark.parametrize("name", CLASS_ID_LOSSES)
@pytest.mark.parametrize("bad", ["too_large", "negative"])
def test_out_of_range_ids_raise_naming_the_argument(name, bad):
    entry = catalogue.BY_NAME[name]
    argument = entry.class_ids[0][0]
    value = _classes(entry) if bad == "too_large" else -1
    args, kwargs = _with_label(entry, value)
    message, _ = _run(_checked(entry.fn), args, kwargs)
    assert message is not None and message.startswith(f"{name}: {argument}[")
    assert f"= {value} is outside [0, {_classes(entry)})" in message
    with pytest.raises(Exception, match=argument + r"\[.*is outside"):  # eagerly, at once
        checks.checked(entry.fn)(*args, **kwargs)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "arcface_loss", "ctc_loss", "jaccard_loss"])
def test_jit_of_checked_raises_naming_the_argument_when_it_runs(name):
    # The README's use, jax.jit(checked(loss)), used to fail to trace: a checkify.check that
    # nothing functionalised.
    entry = catalogue.BY_NAME[name]
    loss = jax.jit(functools.partial(checks.checked(entry.fn), **_verify.sample(entry)[1]))
    args, _ = _verify.sample(entry)
    np.testing.assert_allclose(loss(*args), entry.fn(*args, **_verify.sample(entry)[1]), rtol=1e-6, atol=1e-6)
    bad, _ = _with_label(entry, _classes(entry))
    with pytest.raises(jax.errors.JaxRuntimeError, match=rf"{name}: {entry.class_ids[0][0]}\[.*is outside"):
        jax.block_until_ready(loss(*bad))


def test_checked_raises_under_vmap_and_grad_and_their_jit():
    plain = jaxloss.softmax_cross_entropy
    loss = checks.checked(plain)
    logits, labels = jnp.zeros((4, 2, 3)).at[..., 1].set(0.5), jnp.array([[0, 1], [2, 0], [1, 3], [0, 0]])

    def grad(fn):
        return jax.grad(lambda x, y: jnp.sum(fn(x, y)))

    for transform in (jax.vmap, lambda f: jax.jit(jax.vmap(f)), grad, lambda f: jax.jit(grad(f))):
        with pytest.raises(Exception, match=r"labels\[(2, )?1\] = 3 is outside \[0, 3\)"):  # grad: the batch index too
            jax.block_until_ready(transform(loss)(logits, labels))
        np.testing.assert_allclose(transform(loss)(logits, labels % 3), transform(plain)(logits, labels % 3))


IGNORE_INDEX_LOSSES = [n for n in CLASS_ID_LOSSES
                       if "ignore_index" in inspect.signature(catalogue.BY_NAME[n].fn).parameters]


@pytest.mark.full
@pytest.mark.parametrize("name", IGNORE_INDEX_LOSSES)
def test_ids_equal_to_the_ignore_index_pass_and_other_negative_ids_raise(name):
    # The ignore_index (torch's -100 by default) used to be flagged as outside [0, C).
    entry = catalogue.BY_NAME[name]
    default = inspect.signature(entry.fn).parameters["ignore_index"].default
    assert default == -100
    args, kwargs = _with_label(entry, default)
    assert _run(_checked(entry.fn), args, kwargs)[0] is None
    checks.checked(entry.fn)(*args, **kwargs)  # eagerly: no error
    jax.block_until_ready(jax.jit(functools.partial(checks.checked(entry.fn), **kwargs))(*args))
    args, kwargs = _with_label(entry, -1)
    message = _run(_checked(entry.fn), args, kwargs)[0]
    assert message.startswith(f"{name}: {entry.class_ids[0][0]}[") and "= -1 is outside" in message
    assert "is not the ignore_index (-100)" in message


def test_the_ignore_index_is_read_from_the_call():
    loss = _checked(jaxloss.softmax_cross_entropy)
    logits, labels = jnp.zeros((3, 4)), jnp.array([0, 7, -100])
    message = _run(loss, (logits, labels), {"ignore_index": 7})[0]
    assert message.startswith("softmax_cross_entropy: labels[2] = -100 is outside [0, 4) "
                              "and is not the ignore_index (7)")
    assert _run(loss, (logits, labels.at[2].set(1)), {"ignore_index": 7})[0] is None
    message = _run(loss, (logits, labels.at[1].set(1)), {"ignore_index": None})[0]
    assert message.startswith("softmax_cross_entropy: labels[2] = -100 is outside [0, 4) (`check` failed)")


def test_ids_of_narrow_and_boolean_dtypes_are_compared_in_int32():
    loss = _checked(jaxloss.softmax_cross_entropy)
    logits = jnp.zeros((2, 300))
    assert _run(loss, (logits, jnp.array([0, 255], jnp.uint8)), {})[0] is None
    message = _run(loss, (jnp.zeros((2, 3)), jnp.array([0, 200], jnp.uint8)), {})[0]
    assert message.startswith("softmax_cross_entropy: labels[1] = 200 is outside [0, 3)")
    message = _run(loss, (jnp.zeros((2, 1)), jnp.array([False, True])), {})[0]
    assert message.startswith("softmax_cross_entropy: labels[1] = 1 is outside [0, 1)")


def test_the_message_gives_the_first_bad_index():
    labels = jnp.array([[0, 1], [2, 7]])
    loss = _checked(jaxloss.softmax_cross_entropy)
    message, _ = _run(loss, (jnp.zeros((2, 2, 3)), labels), {})
    assert message.startswith("softmax_cross_entropy: labels[1, 1] = 7 is outside [0, 3)")


def test_numpy_inputs_are_checked():
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    with pytest.raises(Exception, match=r"labels\[1\] = 5 is outside \[0, 3\)"):
        loss(np.zeros((2, 3), np.float32), np.array([0, 5]))


def test_a_masked_id_passes():
    loss = _checked(jaxloss.softmax_cross_entropy)
    message, out = _run(loss, (jnp.zeros((2, 3)), jnp.array([0, -100])), {"where": jnp.array([True, False])})
    assert message is None and out[1] == 0


def test_padded_ctc_labels_are_not_checked():
    loss = _checked(jaxloss.ctc_loss)
    args = (jnp.zeros((1, 3, 3)), jnp.zeros((1, 3)), jnp.array([[1, 2, -1]]), jnp.array([[0.0, 0.0, 1.0]]))
    assert _run(loss, args, {})[0] is None
    blank_padded = (*args[:2], jnp.array([[1, 2, 0]]), args[3])
    assert _run(loss, blank_padded, {})[0] is None


def test_ctc_labels_equal_to_blank_id_raise():
    loss = _checked(jaxloss.ctc_loss)
    logits, logit_paddings = jnp.zeros((2, 4, 3)), jnp.zeros((2, 4))
    labels, label_paddings = jnp.array([[1, 2], [2, 0]]), jnp.zeros((2, 2))
    message, _ = _run(loss, (logits, logit_paddings, labels, label_paddings), {})
    assert message.startswith("ctc_loss: labels[1, 1] = 0 is the blank id (blank_id=0)")
    message, _ = _run(loss, (logits, logit_paddings, labels, label_paddings), {"blank_id": 2})
    assert message.startswith("ctc_loss: labels[0, 1] = 2 is the blank id (blank_id=2)")
    assert _run(loss, (logits, logit_paddings, labels % 2 + 1, label_paddings), {})[0] is None
    where = jnp.array([True, False])  # the blank is in a masked sequence
    assert _run(loss, (logits, logit_paddings, labels, label_paddings), {"where": where})[0] is None
    with pytest.raises(Exception, match=r"labels\[1, 1\] = 0 is the blank id"):
        loss(logits, logit_paddings, labels, label_paddings)


def test_nan_in_logits_raises_and_a_masked_nan_does_not():
    loss = _checked(jaxloss.softmax_cross_entropy)
    logits, labels = jnp.zeros((2, 3)).at[1, 2].set(jnp.nan), jnp.array([0, 1])
    message, _ = _run(loss, (logits, labels), {})
    assert message.startswith("softmax_cross_entropy: logits[1, 2] = nan is not finite")
    message, out = _run(loss, (logits, labels), {"where": jnp.array([True, False])})
    assert message is None and np.all(np.isfinite(out))
    assert _run(_checked(jaxloss.softmax_cross_entropy, finite=False), (logits, labels), {})[0] is None


def test_inf_in_an_option_raises():
    loss = _checked(jaxloss.softmax_cross_entropy)
    weights = jnp.array([1.0, jnp.inf, 1.0])
    message, _ = _run(loss, (jnp.zeros((2, 3)), jnp.array([0, 1])), {"class_weights": weights})
    assert message.startswith("softmax_cross_entropy: class_weights[1] = inf is not finite")


def test_a_per_pixel_mask_is_respected():
    loss = _checked(jaxloss.soft_dice_loss)
    predictions = jnp.full((2, 4, 3), 0.5).at[1, 3].set(jnp.nan)
    targets = jnp.zeros((2, 4, 3)).at[..., 0].set(1.0)
    where = jnp.ones((2, 4), bool).at[1, 3].set(False)
    assert _run(loss, (predictions, targets), {"where": where})[0] is None
    assert "predictions[1, 3, 0] = nan" in _run(loss, (predictions, targets), {})[0]


def test_works_under_vmap():
    loss = _checked(jaxloss.softmax_cross_entropy)
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

    err, got = jax.jit(checkify.checkify(total(_checked(entry.fn))))(*args)
    assert err.get() is None
    want = jax.jit(total(entry.fn))(*args)
    for g, h, w in zip(got, jax.jit(total(checks.checked(entry.fn)))(*args), want):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(h, w, rtol=1e-6, atol=1e-7)


def test_the_wrapper_keeps_the_signature_and_is_not_a_loss_entry():
    loss = checks.checked(jaxloss.softmax_cross_entropy)
    assert inspect.signature(loss) == inspect.signature(jaxloss.softmax_cross_entropy)
    assert not hasattr(loss, "reference") and loss.__name__ == "softmax_cross_entropy"


@pytest.mark.parametrize("layout", ["hv", "vh"])
def test_linear_cross_entropy_ids_are_counted_by_the_vocabulary_axis_of_its_layout(layout):
    hidden, weight = jnp.ones((3, 4)), jnp.ones((4, 7))
    weight = weight if layout == "hv" else weight.T
    loss = _checked(jaxloss.linear_softmax_cross_entropy)
    assert _run(loss, (hidden, weight, jnp.array([0, 6, 2])), {"weight_layout": layout})[0] is None
    message = _run(loss, (hidden, weight, jnp.array([0, 7, 2])), {"weight_layout": layout})[0]
    assert "labels[1] = 7 is outside [0, 7)" in message
