"""multiclass_perceptron_loss, multilabel_margin_loss, multilabel_soft_margin_loss: values and
hand-derived derivatives against float64 NumPy formulas, ``optax.losses.multiclass_perceptron_loss``
and ``torch.nn.functional.multilabel_margin_loss`` / ``multilabel_soft_margin_loss``; forward mode,
second order, ties and hinge corners, id edge cases, ``axis=`` and errors.  The shared properties
(jit, vmap, low precision, where=) also run through the catalogue.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from _loss_cases import assert_bad_input_raises, gradients_and_jvp, gradients_of_sum

import jaxloss
from jaxloss.catalogue.margin import target_lists
from jaxloss.margin import multiclass_perceptron_loss, multilabel_margin_loss, multilabel_soft_margin_loss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

F = torch.nn.functional
PERCEPTRON = jax.jit(multiclass_perceptron_loss, static_argnames=("ignore_index", "axis"))
MULTILABEL = jax.jit(multilabel_margin_loss, static_argnames=("axis",))
SOFT = jax.jit(multilabel_soft_margin_loss, static_argnames=("axis",))


def _grid(rng, shape):
    """Scores on a 0.4 grid, distinct within an example, jittered by at most 0.04: no ties,
    and every difference keeps at least 0.12 from 1 (the multi-label hinge)."""
    grid = rng.permuted(np.broadcast_to(np.arange(shape[-1]), shape), axis=-1) - shape[-1] // 2
    return 0.4 * grid + rng.uniform(-0.04, 0.04, size=shape)


def _jvp(fn, a, name, tangent):
    """The forward-mode derivative of ``fn(**a)`` along ``tangent`` for argument ``name``."""
    return jax.jit(lambda x, t: jax.jvp(lambda x: fn(**{**a, name: x}), (x,), (t,))[1])(a[name], tangent)


def _hvp(fn, a, wrt, rng):
    """Forward-over-reverse HVPs of sum(fn) w.r.t. ``wrt`` for the hand rule and ``.reference``."""
    x = {k: jnp.asarray(a[k]) for k in wrt}
    v = {k: rng.normal(size=np.shape(a[k])).astype(np.asarray(a[k]).dtype) for k in wrt}

    def hvp(f):
        def total(x):
            return jnp.sum(f(**{**a, **x}))

        return jax.jit(lambda x: jax.jvp(jax.grad(total), (x,), (v,))[1])(x)

    return hvp(fn), hvp(fn.reference)


# ============================================================================= multiclass_perceptron_loss


def _np_perceptron(scores, labels):
    return np.max(scores, axis=-1) - np.take_along_axis(scores, labels[..., None], axis=-1)[..., 0]


def _np_perceptron_d(scores, labels):
    """∂ℓ/∂s without ties: 1 at the top class, −1 at the label."""
    classes = np.arange(scores.shape[-1])
    return 1.0 * (np.argmax(scores, axis=-1)[..., None] == classes) - (labels[..., None] == classes)


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4)], ids=["batch-6-classes-5", "batch-2x3-classes-4"])
def test_perceptron_matches_numpy_and_optax_values_gradients_and_jvp(shape, x64):
    rng = np.random.default_rng(0)
    scores, labels = _grid(rng, shape), rng.integers(0, shape[-1], size=shape[:-1])
    scores[..., 0] += 10.0 * (labels == 0)  # some examples have their label on top: loss 0
    a = {"scores": scores, "labels": labels}
    expected = _np_perceptron(scores, labels)
    assert np.any(expected == 0) and np.any(expected > 0)
    np.testing.assert_allclose(PERCEPTRON(**a), expected, rtol=1e-15, atol=0, equal_nan=False)
    np.testing.assert_allclose(PERCEPTRON(**a), optax.losses.multiclass_perceptron_loss(**a), rtol=1e-15)
    grads = gradients_of_sum(multiclass_perceptron_loss, a, ("scores",))
    d = _np_perceptron_d(scores, labels)
    np.testing.assert_allclose(grads["scores"], d, rtol=0, atol=0)
    np.testing.assert_allclose(grads["scores"],
                               gradients_of_sum(optax.losses.multiclass_perceptron_loss, a, ("scores",))["scores"])
    tangent = rng.normal(size=shape)
    np.testing.assert_allclose(_jvp(multiclass_perceptron_loss, a, "scores", tangent), np.sum(d * tangent, -1),
                               rtol=1e-14, atol=1e-15)


def test_perceptron_splits_the_maximum_among_ties_as_optax_autodiff(x64):
    # Example 0: two wrong classes tie for the top; 1: the label ties with two others; 2: all tie.
    a = {"scores": np.array([[1.0, 2.0, 2.0, 0.0], [3.0, 3.0, 3.0, 1.0], [0.5, 0.5, 0.5, 0.5]]),
         "labels": np.array([1, 0, 3])}
    np.testing.assert_array_equal(PERCEPTRON(**a), [0.0, 0.0, 0.0])
    expected = np.array([[0.0, -0.5, 0.5, 0.0], [1 / 3 - 1, 1 / 3, 1 / 3, 0.0], [0.25, 0.25, 0.25, -0.75]])
    grads = gradients_of_sum(multiclass_perceptron_loss, a, ("scores",))["scores"]
    np.testing.assert_allclose(grads, expected, rtol=1e-15)
    np.testing.assert_allclose(grads, gradients_of_sum(optax.losses.multiclass_perceptron_loss, a)["scores"],
                               rtol=1e-15)
    tangent = np.zeros((3, 4))
    tangent[:, 2] = 1.0
    jv = jax.jit(lambda s, t: jax.jvp(lambda s: multiclass_perceptron_loss(s, a["labels"]), (s,), (t,))[1])(
        a["scores"], tangent)
    np.testing.assert_allclose(jv, [0.5, 1 / 3, 0.25], rtol=1e-15)


def test_perceptron_check_gradients_to_second_order():
    rng = np.random.default_rng(1)
    a = {"scores": np.float32(_grid(rng, (5, 6))), "labels": rng.integers(0, 6, size=5)}
    check = jaxloss.check_gradients(multiclass_perceptron_loss, **a, order=2)
    assert check.ok, repr(check)
    ours, reference = _hvp(multiclass_perceptron_loss, a, ("scores",), rng)
    np.testing.assert_array_equal(ours["scores"], 0.0)  # piecewise linear
    np.testing.assert_array_equal(reference["scores"], 0.0)


def test_perceptron_ids_ignored_give_zero_other_out_of_range_nan_with_zero_gradient(x64):
    scores = np.array([[0.5, -0.25, 2.0]] * 5)
    labels = np.array([-100, 3, -1, 1000, 2])
    loss = PERCEPTRON(scores, labels)
    assert loss[0] == 0.0 and np.all(np.isnan(loss[1:4])) and loss[4] == 0.0
    grads, jv = gradients_and_jvp(multiclass_perceptron_loss, {"scores": scores, "labels": labels}, ("scores",))
    np.testing.assert_array_equal(grads["scores"], 0.0)
    np.testing.assert_array_equal(np.asarray(jv)[[0, 4]], 0.0)
    # ignore_index=None: -100 is out of range too; a custom ignore_index is honoured.
    assert np.isnan(PERCEPTRON(scores, labels, ignore_index=None)[0])
    np.testing.assert_array_equal(np.isnan(PERCEPTRON(scores, labels, ignore_index=3)), [1, 0, 1, 1, 0])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int64])
def test_perceptron_ids_are_compared_in_int32(dtype, x64):
    # 300 classes: a uint8 one-hot would wrap at 256; an int8 -100 must still be ignored.
    scores = np.tile(np.linspace(-1.0, 1.0, 300), (2, 1))
    labels = np.array([255, 5] if dtype == np.uint8 else [-100, 5], dtype)
    first = 1.0 - scores[0, 255] if dtype == np.uint8 else 0.0
    np.testing.assert_allclose(PERCEPTRON(scores, labels), [first, 1.0 - scores[1, 5]], rtol=1e-15)


def test_perceptron_minus_inf_wrong_class_is_finite_where_optax_gives_nan():
    scores = np.array([[1.0, -np.inf, 0.5], [-np.inf, 2.0, 3.0]], np.float32)
    labels = np.array([0, 1])
    np.testing.assert_array_equal(PERCEPTRON(scores, labels), [0.0, 1.0])
    assert np.all(np.isnan(optax.losses.multiclass_perceptron_loss(scores, labels)))
    grads = gradients_of_sum(multiclass_perceptron_loss, {"scores": scores, "labels": labels}, ("scores",))
    np.testing.assert_array_equal(grads["scores"], [[0.0, 0.0, 0.0], [0.0, -1.0, 1.0]])


def test_perceptron_is_exact_at_huge_scores():
    scores = np.array([[1e4, 1e4 - 1.0, -1e4], [-1e4, 1e4, 1e4]], np.float32)
    np.testing.assert_array_equal(PERCEPTRON(scores, np.array([1, 0])), [1.0, 2e4])


# ============================================================================= multilabel_margin_loss


def _np_multilabel_margin(scores, labels):
    """The formula, with loops: Σ over the listed targets (with repeats) of Σ over non-targets / C."""
    flat_s, flat_y = scores.reshape(-1, scores.shape[-1]), labels.reshape(-1, labels.shape[-1])
    classes, out = scores.shape[-1], []
    for s, y in zip(flat_s, flat_y):
        listed = list(y[: list(y).index(-1)] if -1 in y else y)
        others = [i for i in range(classes) if i not in listed]
        out.append(sum(max(0.0, 1.0 - (s[j] - s[i])) for j in listed for i in others) / classes)
    return np.array(out).reshape(scores.shape[:-1])


def _torch_multilabel(scores, labels):
    s = torch.tensor(scores.reshape(-1, scores.shape[-1]), dtype=torch.float64, requires_grad=True)
    loss = F.multilabel_margin_loss(s, torch.tensor(labels.reshape(-1, labels.shape[-1]), dtype=torch.long),
                                    reduction="none")
    loss.sum().backward()
    return loss.detach().numpy().reshape(scores.shape[:-1]), s.grad.numpy().reshape(scores.shape)


@pytest.mark.parametrize("shape", [(8, 5), (2, 3, 6)], ids=["batch-8-classes-5", "batch-2x3-classes-6"])
def test_multilabel_margin_matches_numpy_and_torch_values_and_gradients(shape, x64):
    rng = np.random.default_rng(2)
    scores, labels = _grid(rng, shape), np.array(target_lists(rng, shape))
    labels[(0,) * (labels.ndim - 1)][:3] = [1, 1, -1]  # a repeated target
    expected, grad = _torch_multilabel(scores, labels)
    assert np.any(expected > 0) and np.any(expected == 0)
    np.testing.assert_allclose(_np_multilabel_margin(scores, labels), expected, rtol=1e-14)
    np.testing.assert_allclose(MULTILABEL(scores, labels), expected, rtol=1e-14, atol=0)
    a = {"scores": scores, "labels": labels}
    np.testing.assert_allclose(gradients_of_sum(multilabel_margin_loss, a)["scores"], grad, rtol=1e-14, atol=1e-16)
    tangent = rng.normal(size=shape)
    np.testing.assert_allclose(_jvp(multilabel_margin_loss, a, "scores", tangent), np.sum(grad * tangent, -1),
                               rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("labels, value, grad", [
    pytest.param([3, 0, -1, 1], 0.85, [-0.5, 0.5, 0.5, -0.5], id="targets-3-0"),
    pytest.param([3, 3, -1, 1], 0.65, [0.5, 0.5, 0.5, -1.5], id="repeated-target-counts-twice"),
    pytest.param([3, 0, 3, -1], 1.1, [-0.5, 0.75, 0.75, -1.0], id="repeat-after-another"),
    pytest.param([-1, 0, 1, 2], 0.0, [0.0, 0.0, 0.0, 0.0], id="no-target"),
    pytest.param([0, 1, 2, 3], 0.0, [0.0, 0.0, 0.0, 0.0], id="every-class-a-target"),
])
def test_multilabel_margin_pinned_torch_numbers(labels, value, grad, x64):
    # torch.nn.functional.multilabel_margin_loss on scores [0.1, 0.2, 0.4, 0.8] (torch 2.x).
    a = {"scores": np.array([[0.1, 0.2, 0.4, 0.8]]), "labels": np.array([labels])}
    np.testing.assert_allclose(MULTILABEL(**a), [value], rtol=1e-14, atol=0)
    np.testing.assert_allclose(gradients_of_sum(multilabel_margin_loss, a, ("scores",))["scores"], [grad],
                               rtol=1e-14, atol=1e-16)
    np.testing.assert_allclose(_torch_multilabel(a["scores"], a["labels"])[1], [grad], rtol=1e-14)


def test_multilabel_margin_subgradient_at_the_hinge_corner_is_zero_as_torch(x64):
    # Target 1 at 1.0, non-target 0 at 0.0: 1 − (1 − 0) = 0, the corner; non-targets 2, 3 violate.
    a = {"scores": np.array([[0.0, 1.0, 0.5, 2.0]]), "labels": np.array([[1, -1, 0, 0]])}
    np.testing.assert_allclose(MULTILABEL(**a), [0.625], rtol=1e-15)
    grads, jv = gradients_and_jvp(multilabel_margin_loss, a, ("scores",))
    np.testing.assert_array_equal(grads["scores"], [[0.0, -0.5, 0.25, 0.25]])
    np.testing.assert_array_equal(grads["scores"], _torch_multilabel(**a)[1])
    np.testing.assert_array_equal(grads["scores"], gradients_of_sum(multilabel_margin_loss.reference, a)["scores"])
    np.testing.assert_allclose(jv, [0.0], atol=1e-16)


def test_multilabel_margin_check_gradients_to_second_order():
    rng = np.random.default_rng(3)
    a = {"scores": np.float32(_grid(rng, (6, 5))), "labels": np.asarray(target_lists(rng, (6, 5)))}
    check = jaxloss.check_gradients(multilabel_margin_loss, **a, order=2)
    assert check.ok, repr(check)
    ours, reference = _hvp(multilabel_margin_loss, a, ("scores",), rng)
    np.testing.assert_array_equal(ours["scores"], 0.0)  # piecewise linear
    np.testing.assert_array_equal(reference["scores"], 0.0)


@pytest.mark.parametrize("bad", [4, -2, -100])
@pytest.mark.parametrize("position", [0, 3], ids=["listed", "after-the-terminator"])
def test_multilabel_margin_id_outside_minus_one_to_c_gives_nan_where_torch_raises(bad, position, x64):
    scores = np.array([[0.1, 0.2, 0.4, 0.8], [0.1, 0.2, 0.4, 0.8]])
    labels = np.array([[3, 0, -1, 1], [3, 0, -1, 1]])
    labels[0, position] = bad
    with pytest.raises(RuntimeError, match="out of range"):
        _torch_multilabel(scores, labels)
    loss = MULTILABEL(scores, labels)
    assert np.isnan(loss[0])
    np.testing.assert_allclose(loss[1], 0.85, rtol=1e-15)
    grads, jv = gradients_and_jvp(multilabel_margin_loss, {"scores": scores, "labels": labels}, ("scores",))
    np.testing.assert_array_equal(grads["scores"][0], 0.0)
    assert jv[0] == 0.0


def test_multilabel_margin_ids_are_compared_in_int32(x64):
    scores = np.array([[0.1, 0.2, 0.4, 0.8]])
    for dtype in (np.int8, np.uint8, np.int16, np.int64):
        labels = np.array([[3, 0, 255, 1]] if dtype == np.uint8 else [[3, 0, -1, 1]], dtype)
        expected = np.nan if dtype == np.uint8 else 0.85  # uint8 has no -1: 255 is outside [-1, 4)
        np.testing.assert_allclose(MULTILABEL(scores, labels), [expected], rtol=1e-15)


def test_multilabel_margin_minus_inf_non_target_and_huge_scores_are_finite():
    # Example 0: targets {0, 3} far above the non-targets (one at −inf); 1: target 0 at 0 below a
    # non-target at 1e4 and two at 0, hinges 1, 1 and 1e4 + 1.
    scores = np.array([[1e4, -np.inf, -1e4, 0.0], [0.0, 0.0, 0.0, 1e4]], np.float32)
    labels = np.array([[0, 3, -1, 0], [0, -1, 2, 2]])
    np.testing.assert_allclose(MULTILABEL(scores, labels), [0.0, 10003 / 4], rtol=1e-7, atol=0)
    grads, jv = gradients_and_jvp(multilabel_margin_loss, {"scores": scores, "labels": labels}, ("scores",))
    np.testing.assert_array_equal(grads["scores"], [[0.0, 0.0, 0.0, 0.0], [-0.75, 0.25, 0.25, 0.25]])
    np.testing.assert_array_equal(jv, [0.0, 0.0])


# ============================================================================= multilabel_soft_margin_loss


def _np_soft_margin(logits, labels, class_weights=None):
    w = 1.0 if class_weights is None else class_weights
    log_sig, log_sig_neg = -np.logaddexp(0, -logits), -np.logaddexp(0, logits)
    return -np.mean(w * (labels * log_sig + (1 - labels) * log_sig_neg), axis=-1)


def _np_soft_margin_d(logits, labels, class_weights=None):
    w = 1.0 if class_weights is None else class_weights
    classes = logits.shape[-1]
    terms = labels * np.logaddexp(0, -logits) + (1 - labels) * np.logaddexp(0, logits)
    return {"logits": w * (1 / (1 + np.exp(-logits)) - labels) / classes, "labels": -w * logits / classes,
            "class_weights": np.sum(terms.reshape(-1, classes), axis=0) / classes}


def _torch_soft_margin(logits, labels, class_weights=None):
    x = torch.tensor(logits, requires_grad=True)
    y = torch.tensor(labels, requires_grad=True)
    w = None if class_weights is None else torch.tensor(class_weights, requires_grad=True)
    loss = F.multilabel_soft_margin_loss(x, y, weight=w, reduction="none")
    loss.sum().backward()
    grads = {"logits": x.grad.numpy(), "labels": y.grad.numpy()}
    return loss.detach().numpy(), grads if w is None else {**grads, "class_weights": w.grad.numpy()}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "class-weights"])
def test_soft_margin_matches_numpy_and_torch_values_and_gradients(weighted, x64):
    rng = np.random.default_rng(4)
    logits, labels = 3 * rng.normal(size=(6, 5)), rng.uniform(size=(6, 5))
    labels[:3] = labels[:3] > 0.5  # hard and soft targets
    w = rng.uniform(0.5, 2.0, size=5) if weighted else None
    a = {"logits": logits, "labels": labels, "class_weights": w}
    value, torch_grads = _torch_soft_margin(logits, labels, w)
    np.testing.assert_allclose(_np_soft_margin(logits, labels, w), value, rtol=1e-14)
    np.testing.assert_allclose(SOFT(**a), value, rtol=1e-14, atol=0)
    wrt = ("logits", "labels", "class_weights") if weighted else ("logits", "labels")
    grads, jv = gradients_and_jvp(multilabel_soft_margin_loss, a, wrt)
    d = _np_soft_margin_d(logits, labels, w)
    for name in wrt:
        np.testing.assert_allclose(grads[name], torch_grads[name], rtol=1e-13, atol=1e-16, err_msg=name)
        np.testing.assert_allclose(grads[name], d[name], rtol=1e-13, atol=1e-16, err_msg=name)
    terms = labels * np.logaddexp(0, -logits) + (1 - labels) * np.logaddexp(0, logits)
    expected_jv = np.sum(d["logits"] + d["labels"], axis=-1) + (np.mean(terms, -1) if weighted else 0.0)
    np.testing.assert_allclose(jv, expected_jv, rtol=1e-13)


def test_soft_margin_integer_labels_and_leading_batch_axes(x64):
    rng = np.random.default_rng(5)
    logits, labels = rng.normal(size=(2, 3, 4)), rng.integers(0, 2, size=(2, 3, 4))
    np.testing.assert_allclose(SOFT(logits, labels), _np_soft_margin(logits, labels), rtol=1e-14)
    np.testing.assert_allclose(SOFT(logits, labels.astype(bool)), _np_soft_margin(logits, labels), rtol=1e-14)
    grads = gradients_of_sum(multilabel_soft_margin_loss, {"logits": logits, "labels": labels}, ("logits",))
    np.testing.assert_allclose(grads["logits"], _np_soft_margin_d(logits, labels)["logits"], rtol=1e-13)


def test_soft_margin_check_gradients_and_hvp_to_second_order():
    rng = np.random.default_rng(6)
    a = {"logits": np.float32(2 * rng.normal(size=(5, 4))), "labels": np.float32(rng.uniform(size=(5, 4))),
         "class_weights": np.float32(rng.uniform(0.5, 2.0, size=4))}
    check = jaxloss.check_gradients(multilabel_soft_margin_loss, **a, order=2)
    assert {r.argument for r in check.rows} >= {"logits", "labels", "class_weights"}
    assert check.ok, repr(check)
    with jax.enable_x64(True):
        a64 = {k: np.float64(v) for k, v in a.items()}
        ours, reference = _hvp(multilabel_soft_margin_loss, a64, tuple(a64), rng)
        for name in a:
            np.testing.assert_allclose(ours[name], reference[name], rtol=1e-12, atol=1e-15, err_msg=name)
        assert np.any(np.asarray(ours["logits"]) != 0)


def test_soft_margin_is_finite_and_non_negative_at_huge_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], np.float32)
    labels = np.array([[1.0, 0.0, 0.5], [1.0, 0.25, 1.0]], np.float32)
    loss = SOFT(logits, labels)
    np.testing.assert_allclose(loss, [np.log(2) / 3, (1e4 + 0.75e4) / 3], rtol=1e-6)
    grads, jv = gradients_and_jvp(multilabel_soft_margin_loss, {"logits": logits, "labels": labels},
                                  ("logits", "labels"))
    assert all(np.all(np.isfinite(g)) for g in grads.values()) and np.all(np.isfinite(jv))


# ============================================================================= axis=

AXIS_CASES = [
    pytest.param(multiclass_perceptron_loss, lambda rng, s: rng.integers(0, s[1], size=(s[0], s[2])), id="perceptron"),
    pytest.param(multilabel_margin_loss, lambda rng, s: np.moveaxis(np.asarray(
        target_lists(rng, (s[0], s[2], s[1]))), -1, 1), id="multilabel-margin"),
    pytest.param(multilabel_soft_margin_loss, lambda rng, s: rng.uniform(size=s), id="soft-margin"),
]


@pytest.mark.parametrize("fn, make_labels", AXIS_CASES)
def test_class_axis_in_the_middle_equals_class_axis_last(fn, make_labels, x64):
    rng = np.random.default_rng(7)
    shape = (3, 5, 4)  # classes on axis 1
    scores, labels = _grid(rng, shape[:1] + shape[2:] + shape[1:2]), make_labels(rng, shape)
    scores = np.moveaxis(scores, -1, 1)
    first = list(inspect.signature(fn).parameters)[:2]
    moved = {first[0]: scores, first[1]: labels, "axis": 1}
    last_labels = labels if labels.ndim == 2 else np.moveaxis(labels, 1, -1)
    last = {first[0]: np.moveaxis(scores, 1, -1), first[1]: last_labels}
    np.testing.assert_allclose(fn(**moved), fn(**last), rtol=1e-15, equal_nan=False)
    assert fn(**moved).shape == (3, 4)
    g_moved, jv_moved = gradients_and_jvp(fn, moved, (first[0],))
    g_last, jv_last = gradients_and_jvp(fn, last, (first[0],))
    np.testing.assert_allclose(g_moved[first[0]], np.moveaxis(g_last[first[0]], -1, 1), rtol=1e-14)
    np.testing.assert_allclose(jv_moved, jv_last, rtol=1e-14)


# ============================================================================= errors

S = np.zeros((5, 4), np.float32)
I5, I54 = np.zeros(5, np.int32), np.zeros((5, 4), np.int32)

ERRORS = [
    pytest.param(multiclass_perceptron_loss, (S, np.zeros(5, np.float32)), {}, TypeError,
                 r"labels must be integer class ids", id="perceptron-float-labels"),
    pytest.param(multiclass_perceptron_loss, (S, I54), {}, ValueError,
                 r"integer labels \(class ids\) must have the batch shape of scores, \(5,\)",
                 id="perceptron-labels-shape"),
    pytest.param(multiclass_perceptron_loss, (S, I5), {"axis": 2}, ValueError,
                 r"axis=2 is out of range for scores with shape \(5, 4\)", id="perceptron-axis"),
    pytest.param(multilabel_margin_loss, (S, np.zeros((5, 4), np.float32)), {}, TypeError,
                 r"labels must be integer class ids, got shape \(5, 4\), dtype float32", id="margin-float-labels"),
    pytest.param(multilabel_margin_loss, (S, I5), {}, ValueError,
                 r"labels must have the shape of scores, \(5, 4\), got shape \(5,\)", id="margin-labels-shape"),
    pytest.param(multilabel_margin_loss, (np.zeros((5, 4), np.int32), I54), {}, TypeError,
                 r"scores must be a floating-point array", id="margin-integer-scores"),
    pytest.param(multilabel_margin_loss, (S, I54), {"where": np.ones((5, 4), bool)}, ValueError,
                 r"where with shape \(5, 4\) does not broadcast to the batch shape of scores", id="margin-where"),
    pytest.param(multilabel_soft_margin_loss, (S, np.zeros((4,), np.float32)), {}, ValueError,
                 r"labels must have the shape of logits, \(5, 4\), got shape \(4,\)", id="soft-labels-shape"),
    pytest.param(multilabel_soft_margin_loss, (S, S), {"class_weights": np.ones(5, np.float32)}, ValueError,
                 r"class_weights with shape \(5,\) does not broadcast to the class axis of logits", id="soft-weights"),
    pytest.param(multilabel_soft_margin_loss, (S, S.astype(np.complex64)), {}, TypeError,
                 r"labels must be a real array", id="soft-complex-labels"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    assert_bad_input_raises(fn, args, kwargs, error, match, jit)


def test_soft_margin_concrete_negative_class_weights_raise():
    with pytest.raises(ValueError, match=r"class_weights must be >= 0"):
        multilabel_soft_margin_loss(S, S, class_weights=np.array([1.0, -1.0, 1.0, 1.0], np.float32))
