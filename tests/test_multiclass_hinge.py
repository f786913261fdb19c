"""multiclass_hinge_loss: values, hand-derived derivatives, PyTorch parity, corners, ties, -inf, errors.

Values and derivatives are checked in float64 against NumPy formulas written here from
the docstring; Crammer–Singer against ``optax.losses.multiclass_hinge_loss`` and
Weston–Watkins against ``torch.nn.functional.multi_margin_loss`` (with its ``weight``:
``class_weights``);
subgradients at hinge corners and at tied runner-up classes are pinned.  The shared
properties (jit, vmap, Hessians, low precision, where=) run through the catalogue.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _loss_cases import (
    assert_bad_input_raises,
    gradients_and_jvp,
    gradients_of_sum,
    sum_to_shape,
)

import jaxloss
from jaxloss.margin import multiclass_hinge_loss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

KINDS = ("crammer_singer", "weston_watkins")
# Jitted, for the pinned-value tests: eager float64 calls compile every primitive separately.
LOSS = jax.jit(multiclass_hinge_loss, static_argnames=("kind", "p", "axis"))


# ----------------------------------------------------------------------------- inputs

# Scores sit on a grid of step 0.4 (distinct within an example) jittered by at most 0.04,
# and margins are 0.2 mod 0.4 (jittered by at most 0.02), so every hinge argument
# m − s_y + s_j keeps at least 0.1 from the corner and runner-up classes never tie.
# Every other example has its label score raised by 4 (ten grid steps), which puts it
# beyond every margin: those examples have loss 0, the others a positive loss.


def _scores(rng, shape, labels):
    classes = shape[-1]
    grid = rng.permuted(np.broadcast_to(np.arange(classes), shape), axis=-1) - classes // 2
    scores = 0.4 * grid + rng.uniform(-0.04, 0.04, size=shape)
    bonus = 4.0 * (np.arange(labels.size).reshape(labels.shape) % 2 == 0)
    return scores + bonus[..., None] * (labels[..., None] == np.arange(classes))


def _margin(rng, shape, margin):
    if margin == "array":  # one per example
        return rng.choice([0.6, 1.0, 1.4], size=shape[:-1]) + rng.uniform(-0.02, 0.02, size=shape[:-1])
    if margin == "last-batch-axis":  # broadcast along the leading batch axes
        return rng.choice([0.6, 1.0], size=shape[-2:-1]) + rng.uniform(-0.02, 0.02, size=shape[-2:-1])
    return margin


def _make(rng, shape, margin=None, **options):
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    a = {"scores": _scores(rng, shape, labels), "labels": labels, **options}
    return a if margin is None else {**a, "margin": _margin(rng, shape, margin)}


# ----------------------------------------------------------------------------- NumPy references


def _np_label_score(scores, labels):
    return np.take_along_axis(scores, labels[..., None], axis=-1)[..., 0]


def _np_slope(z, p):
    return np.where(z > 0, 1.0, 0.0) if p == 1 else 2 * np.maximum(z, 0.0)


def _np_multiclass_hinge(scores, labels, margin=1.0, kind="crammer_singer", p=1):
    classes = scores.shape[-1]
    wrong = labels[..., None] != np.arange(classes)
    s_y = _np_label_score(scores, labels)
    if kind == "crammer_singer":
        runner_up = np.max(np.where(wrong, scores, -np.inf), axis=-1)
        return np.maximum(0.0, margin + runner_up - s_y) ** p
    hinges = np.maximum(0.0, np.asarray(margin)[..., None] - s_y[..., None] + scores) ** p
    return np.sum(np.where(wrong, hinges, 0.0), axis=-1) / classes


def _np_multiclass_hinge_d(scores, labels, margin=1.0, kind="crammer_singer", p=1):
    """Elementwise derivatives: {"scores": [..., C], "margin": batch shape} (no ties)."""
    classes = scores.shape[-1]
    label = labels[..., None] == np.arange(classes)
    s_y = _np_label_score(scores, labels)
    if kind == "crammer_singer":
        runner_up = np.argmax(np.where(label, -np.inf, scores), axis=-1)
        g = _np_slope(margin + np.max(np.where(label, -np.inf, scores), axis=-1) - s_y, p)
        ds = g[..., None] * ((runner_up[..., None] == np.arange(classes)) - label.astype(float))
        return {"scores": ds, "margin": g}
    g = np.where(label, 0.0, _np_slope(np.asarray(margin)[..., None] - s_y[..., None] + scores, p)) / classes
    dm = g.sum(axis=-1)
    return {"scores": g - label * dm[..., None], "margin": dm}


# ----------------------------------------------------------------------------- values and derivatives

# The default margin, an array of one per example, and an array broadcast along the
# leading batch axes (a Python float margin is in the PyTorch parity test).
CASES = [
    pytest.param((5, 7), None, id="batch-5-classes-7-default-margin"),
    pytest.param((5, 7), "array", id="batch-5-classes-7-margin-per-example"),
    pytest.param((2, 3, 4), "last-batch-axis", id="batch-2x3-classes-4-broadcast-margin"),
]
KIND_AND_P = [pytest.param(kind, p, id=f"{kind}-p{p}") for kind in KINDS for p in (1, 2)]
# Both kinds and both powers, in two cases, for the slower checks.
MIXED = [pytest.param("crammer_singer", 1, id="crammer_singer-p1"),
         pytest.param("weston_watkins", 2, id="weston_watkins-p2")]


@pytest.mark.parametrize("shape, margin", CASES)
@pytest.mark.parametrize("kind, p", KIND_AND_P)
def test_values_match_numpy_float64_reference(kind, p, shape, margin, x64):
    a = _make(np.random.default_rng(0), shape, margin, kind=kind, p=p)
    got = multiclass_hinge_loss(**a)
    assert got.dtype == jnp.float64 and got.shape == shape[:-1]
    expected = _np_multiclass_hinge(**a)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert np.any(expected > 0) and np.any(expected == 0)  # both sides of the hinge are exercised
    traced = {k: v for k, v in a.items() if k not in ("kind", "p")}
    jitted = jax.jit(lambda traced: multiclass_hinge_loss(**traced, kind=kind, p=p))(traced)
    np.testing.assert_allclose(jitted, got, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("shape, margin", CASES)
@pytest.mark.parametrize("kind, p", KIND_AND_P)
def test_hand_derivative_matches_numpy_analytic_derivative(kind, p, shape, margin, x64):
    a = _make(np.random.default_rng(1), shape, margin, kind=kind, p=p)
    wrt = ("scores", "margin") if isinstance(a.get("margin"), np.ndarray) else ("scores",)
    grads = gradients_of_sum(multiclass_hinge_loss, a, wrt)
    expected = _np_multiclass_hinge_d(**a)
    for name in wrt:
        np.testing.assert_allclose(grads[name], sum_to_shape(expected[name], np.shape(a[name])),
                                   rtol=1e-12, atol=1e-14, err_msg=name)
    assert np.any(grads["scores"] != 0)


@pytest.mark.parametrize("kind, p", MIXED)
def test_check_gradients_passes_for_scores_and_margin(kind, p):
    a = _make(np.random.default_rng(2), (5, 7), "array", kind=kind, p=p)
    check = jaxloss.check_gradients(multiclass_hinge_loss, **a)
    assert {r.argument for r in check.rows} == {"scores", "margin"}
    assert check.ok, repr(check)


@pytest.mark.parametrize("kind", KINDS)
def test_squared_hinge_hessian_and_forward_over_reverse_hvp_match_reference(kind, x64):
    """p = 2 (with p = 1 every second derivative is 0 away from the corners)."""
    rng = np.random.default_rng(3)
    a = _make(rng, (3, 4), "array", kind=kind, p=2)
    floats = {"scores": a["scores"], "margin": a["margin"]}
    v = {k: rng.normal(size=np.shape(x)) for k, x in floats.items()}

    @jax.jit
    def run(x):
        def both(fn):
            total = lambda f: jnp.sum(fn(**{**a, **f}))
            hessian = jax.hessian(lambda s: total({**x, "scores": s}))(x["scores"])
            return hessian, jax.jvp(jax.grad(total), (x,), (v,))[1]
        return both(multiclass_hinge_loss), both(multiclass_hinge_loss.reference)

    (hessian, hvp), (hessian_ref, hvp_ref) = run(floats)
    np.testing.assert_allclose(hessian, hessian_ref, rtol=1e-12, atol=1e-14)
    for name in floats:
        np.testing.assert_allclose(hvp[name], hvp_ref[name], rtol=1e-12, atol=1e-14, err_msg=name)


# ----------------------------------------------------------------------------- parity with optax and PyTorch


def test_crammer_singer_matches_optax_multiclass_hinge_loss_values_and_gradients(x64):
    # optax: max_j(s_j + [j ≠ y]) − s_y, Crammer–Singer with margin 1 and p = 1.
    a = _make(np.random.default_rng(6), (5, 7))
    np.testing.assert_allclose(LOSS(**a), optax.losses.multiclass_hinge_loss(**a), rtol=1e-12, atol=1e-15)
    ours = gradients_of_sum(multiclass_hinge_loss, a, ("scores",))["scores"]
    theirs = gradients_of_sum(optax.losses.multiclass_hinge_loss, a, ("scores",))["scores"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


def _torch_values_and_grads(scores, labels, **options):
    torch = pytest.importorskip("torch")
    s = torch.tensor(scores.reshape(-1, scores.shape[-1]), dtype=torch.float64, requires_grad=True)
    if options.get("weight") is not None:
        options["weight"] = torch.tensor(options["weight"], dtype=torch.float64)
    loss = torch.nn.functional.multi_margin_loss(s, torch.tensor(labels.reshape(-1)), reduction="none", **options)
    loss.sum().backward()
    return loss.detach().numpy().reshape(labels.shape), s.grad.numpy().reshape(scores.shape)


@pytest.mark.parametrize("shape, margin", [pytest.param((5, 7), 1.0, id="batch-5-classes-7-margin-1"),
                                           pytest.param((2, 3, 4), 0.6, id="batch-2x3-classes-4-margin-0.6")])
@pytest.mark.parametrize("p", [1, 2], ids=["p1", "p2"])
def test_weston_watkins_matches_torch_multi_margin_loss_values_and_gradients(shape, p, margin, x64):
    a = _make(np.random.default_rng(4), shape)
    values, grad = _torch_values_and_grads(**a, p=p, margin=margin)
    ours = {**a, "margin": margin, "kind": "weston_watkins", "p": p}
    np.testing.assert_allclose(LOSS(**ours), values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gradients_of_sum(multiclass_hinge_loss, ours, ("scores",))["scores"], grad,
                               rtol=1e-12, atol=1e-15)


def test_weston_watkins_divides_by_the_number_of_classes_as_torch_does(x64):
    # One violated wrong class out of C = 4: the loss is its hinge over 4, not over C − 1 = 3.
    scores, labels = np.array([[1.0, 0.5, -3.0, -3.0]]), np.array([0])
    loss = LOSS(scores, labels, kind="weston_watkins")
    np.testing.assert_allclose(loss, [0.5 / 4], rtol=1e-15)
    np.testing.assert_allclose(loss, _torch_values_and_grads(scores, labels)[0], rtol=1e-15)


# ----------------------------------------------------------------------------- class_weights (torch's weight)


def _weights(rng, classes):
    return rng.uniform(0.5, 2.0, size=classes)


@pytest.mark.parametrize("margin", [1.0, 0.6], ids=["margin-1", "margin-0.6"])
@pytest.mark.parametrize("p", [1, 2], ids=["p1", "p2"])
def test_weston_watkins_class_weights_match_torch_multi_margin_loss_weight(p, margin, x64):
    rng = np.random.default_rng(7)
    a = _make(rng, (6, 5))
    w = _weights(rng, 5)
    values, grad = _torch_values_and_grads(**a, p=p, margin=margin, weight=w)
    assert np.any(values > 0) and np.any(values == 0)
    ours = {**a, "margin": margin, "kind": "weston_watkins", "p": p, "class_weights": w}
    np.testing.assert_allclose(LOSS(**ours), values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gradients_of_sum(multiclass_hinge_loss, ours, ("scores",))["scores"], grad,
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("p, value, grad", [
    pytest.param(1, 2.4, [-2.25, 0.75, 0.75, 0.75], id="p1"),
    pytest.param(2, 2.7, [-4.8, 1.2, 1.5, 2.1], id="p2"),
])
def test_class_weight_multiplies_the_powered_hinge_as_torch_does(p, value, grad, x64):
    # torch.nn.functional.multi_margin_loss(x, [0], p=p, margin=0.7, weight=[3, 1, 1, 1]):
    # the weight scales max(0, z)^p (3 · 0.9 = 2.7 for p = 2), not the hinge argument.
    a = {"scores": np.array([[0.1, 0.2, 0.4, 0.8]]), "labels": np.array([0]), "margin": 0.7,
         "kind": "weston_watkins", "p": p, "class_weights": np.array([3.0, 1.0, 1.0, 1.0])}
    np.testing.assert_allclose(LOSS(**a), [value], rtol=1e-14)
    np.testing.assert_allclose(gradients_of_sum(multiclass_hinge_loss, a, ("scores",))["scores"], [grad], rtol=1e-14)


@pytest.mark.parametrize("kind, p", KIND_AND_P)
def test_class_weights_scale_each_example_by_its_label_weight_with_derivatives(kind, p, x64):
    rng = np.random.default_rng(8)
    a = _make(rng, (5, 7), "array", kind=kind, p=p)
    w = _weights(rng, 7)
    weighted = {**a, "class_weights": w}
    w_y, unweighted = w[a["labels"]], _np_multiclass_hinge(**a)
    np.testing.assert_allclose(LOSS(**weighted), w_y * unweighted, rtol=1e-12, atol=1e-15)
    grads, jv = gradients_and_jvp(multiclass_hinge_loss, weighted, ("scores", "margin", "class_weights"))
    d = _np_multiclass_hinge_d(**a)
    np.testing.assert_allclose(grads["scores"], w_y[:, None] * d["scores"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["margin"], w_y * d["margin"], rtol=1e-12, atol=1e-14)
    # ∂ℓ/∂w_c: the unweighted hinges of the examples labelled c.
    np.testing.assert_allclose(grads["class_weights"], np.bincount(a["labels"], unweighted, minlength=7),
                               rtol=1e-12, atol=1e-14)
    expected_jv = w_y * (d["scores"].sum(-1) + d["margin"]) + unweighted
    np.testing.assert_allclose(jv, expected_jv, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_check_gradients_passes_for_class_weights_to_second_order(kind):
    rng = np.random.default_rng(9)
    a = _make(rng, (5, 7), "array", kind=kind, p=2)
    check = jaxloss.check_gradients(multiclass_hinge_loss, **a, class_weights=_weights(rng, 7), order=2)
    assert {r.argument for r in check.rows} >= {"scores", "margin", "class_weights"}
    assert check.ok, repr(check)


@pytest.mark.parametrize("kind", KINDS)
def test_zero_weight_ignored_and_invalid_labels_with_class_weights(kind, x64):
    # Example 0 ignored, 1 an invalid id, 2 labelled with a class of weight 0: its loss is 0,
    # its scores get derivative 0, and the weight still gets the unweighted hinge.
    a = {"scores": np.array([[0.5, -0.25, 0.0]] * 3), "labels": np.array([-100, 3, 0]), "kind": kind,
         "class_weights": np.array([0.0, 1.0, 2.0])}
    loss = LOSS(**a)
    assert loss[0] == 0.0 and np.isnan(loss[1]) and loss[2] == 0.0
    grads = gradients_of_sum(multiclass_hinge_loss, a, ("scores", "class_weights"))
    np.testing.assert_array_equal(grads["scores"], 0.0)
    hinge = _np_multiclass_hinge(a["scores"][2:], a["labels"][2:], kind=kind)[0]
    assert hinge > 0
    np.testing.assert_allclose(grads["class_weights"], [hinge, 0.0, 0.0], rtol=1e-15)


@pytest.mark.parametrize("kind", KINDS)
def test_class_axis_first_equals_class_axis_last_with_derivatives(kind, x64):
    rng = np.random.default_rng(10)
    a = _make(rng, (2, 3, 5), "array", kind=kind, p=2, class_weights=_weights(rng, 5))
    moved = {**a, "scores": np.moveaxis(a["scores"], -1, 0), "axis": 0}
    np.testing.assert_allclose(LOSS(**moved), LOSS(**a), rtol=1e-15)
    ours = gradients_and_jvp(multiclass_hinge_loss, moved, ("scores", "margin", "class_weights"))
    last = gradients_and_jvp(multiclass_hinge_loss, a, ("scores", "margin", "class_weights"))
    np.testing.assert_allclose(ours[0]["scores"], np.moveaxis(last[0]["scores"], -1, 0), rtol=1e-15)
    for name in ("margin", "class_weights"):
        np.testing.assert_allclose(ours[0][name], last[0][name], rtol=1e-14, err_msg=name)
    np.testing.assert_allclose(ours[1], last[1], rtol=1e-14)


# ----------------------------------------------------------------------------- corners and ties


@pytest.mark.parametrize("kind, p", KIND_AND_P)
def test_subgradient_at_hinge_corner_is_zero_for_scores_and_margin(kind, p, x64):
    # m − s_y + s_j = 0 for the runner-up class and < 0 for the others, in every example.
    a = {"scores": np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 1.5], [-1.0, 3.0, 3.5]]), "labels": np.array([0, 1, 2]),
         "margin": np.array([1.0, 0.5, 0.5]), "kind": kind, "p": p}
    np.testing.assert_array_equal(LOSS(**a), 0.0)
    grads, jv = gradients_and_jvp(multiclass_hinge_loss, a, ("scores", "margin"))
    for name, g in grads.items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)
    np.testing.assert_array_equal(jv, 0.0)


@pytest.mark.parametrize("p", [1, 2], ids=["p1", "p2"])
def test_weston_watkins_corner_subgradient_matches_torch(p, x64):
    a = {"scores": np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 1.0]]), "labels": np.array([0, 1])}  # margin 1
    _, grad = _torch_values_and_grads(**a, p=p)
    ours = gradients_of_sum(multiclass_hinge_loss, {**a, "kind": "weston_watkins", "p": p}, ("scores",))["scores"]
    np.testing.assert_array_equal(ours, grad)
    np.testing.assert_array_equal(ours, 0.0)


@pytest.mark.parametrize("p", [1, 2], ids=["p1", "p2"])
def test_crammer_singer_splits_derivative_evenly_among_tied_runner_up_classes(p, x64):
    # Runner-up tied between two classes (example 0) and three classes (example 1); z = 2 in both.
    a = {"scores": np.array([[0.0, 1.0, 1.0, 0.5], [2.0, 0.0, 2.0, 2.0]]), "labels": np.array([0, 1]),
         "margin": np.array([1.0, 0.0]), "p": p}
    slope = 1.0 if p == 1 else 4.0  # g(z) at z = 2
    np.testing.assert_array_equal(LOSS(**a), 2.0**p)
    expected = slope * np.array([[-1.0, 0.5, 0.5, 0.0], [1 / 3, -1.0, 1 / 3, 1 / 3]])
    grads = gradients_of_sum(multiclass_hinge_loss, a, ("scores", "margin"))
    np.testing.assert_allclose(grads["scores"], expected, rtol=1e-15)
    np.testing.assert_array_equal(grads["margin"], slope)
    # Forward mode gives the same split: tangent along one of the tied classes.
    tangent = np.zeros_like(a["scores"])
    tangent[:, 2] = 1.0
    jv = jax.jit(lambda s, t: jax.jvp(lambda s: multiclass_hinge_loss(**{**a, "scores": s}), (s,), (t,))[1])(
        a["scores"], tangent)
    np.testing.assert_allclose(jv, slope * np.array([0.5, 1 / 3]), rtol=1e-15)
    # And it is what plain autodiff of jnp.max gives.
    reference = gradients_of_sum(multiclass_hinge_loss.reference, a, ("scores",))["scores"]
    np.testing.assert_allclose(grads["scores"], reference, rtol=1e-15)


# ----------------------------------------------------------------------------- -inf and out-of-range labels


@pytest.mark.parametrize("kind, p", MIXED)
def test_minus_inf_wrong_class_scores_give_finite_values_and_zero_gradients_there(kind, p):
    inf = np.inf
    scores = np.array([[2.0, -inf, 1.5, -inf], [0.5, 1.0, -inf, 0.0], [1.0, -inf, -inf, -inf]], np.float32)
    labels = np.array([0, 1, 0])
    a = {"scores": scores, "labels": labels, "margin": np.float32(1.0), "kind": kind, "p": p}
    loss = LOSS(**a)
    assert np.all(np.isfinite(loss))
    # The same as dropping the masked classes (Weston–Watkins still divides by all C = 4).
    finite = np.where(np.isinf(scores), -1e30, scores).astype(np.float64)
    np.testing.assert_allclose(loss, _np_multiclass_hinge(finite, labels, kind=kind, p=p), rtol=1e-6)
    assert loss[2] == 0.0  # every wrong class masked
    grads, jv = gradients_and_jvp(multiclass_hinge_loss, a, ("scores", "margin"))
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
    assert np.all(np.isfinite(jv))
    np.testing.assert_array_equal(grads["scores"][np.isinf(scores)], 0.0)
    np.testing.assert_array_equal(grads["scores"][2], 0.0)
    np.testing.assert_allclose(grads["scores"], _np_multiclass_hinge_d(finite, labels, kind=kind, p=p)["scores"],
                               rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_ignored_label_gives_zero_and_other_out_of_range_labels_nan(kind, x64):
    scores = np.array([[0.5, -0.25, 0.0]] * 3)
    loss = LOSS(scores, np.array([-100, 3, -1]), kind=kind)
    assert loss[0] == 0.0 and np.all(np.isnan(loss[1:]))


# ----------------------------------------------------------------------------- where=


def test_masked_examples_give_zero_loss_and_zero_gradients_over_nan_padding():
    a = _make(np.random.default_rng(5), (5, 7), "array", p=2)
    where = np.array([True, False, True, False, True])
    scores = a["scores"].copy()
    scores[~where] = np.resize([np.nan, np.inf, -np.inf], scores[~where].shape)
    masked = {**a, "scores": scores, "where": where}
    loss = LOSS(**masked)
    np.testing.assert_array_equal(loss[~where], 0.0)
    np.testing.assert_allclose(loss[where], LOSS(**a)[where], rtol=1e-6)
    grads, jv = gradients_and_jvp(multiclass_hinge_loss, masked, ("scores", "margin"))
    np.testing.assert_array_equal(grads["scores"][~where], 0.0)
    np.testing.assert_array_equal(grads["margin"][~where], 0.0)
    np.testing.assert_array_equal(jv[~where], 0.0)
    assert np.all(np.isfinite(grads["scores"])) and np.all(np.isfinite(jv))


# ----------------------------------------------------------------------------- errors

F = np.zeros((5, 7), np.float32)
I5 = np.zeros(5, np.int32)

ERRORS = [
    pytest.param((F, np.zeros(5, np.float32)), {}, TypeError,
                 r"labels must be integer class ids, got shape \(5,\), dtype float32", id="float-labels"),
    pytest.param((F, np.zeros((5, 7), np.int32)), {}, ValueError,
                 r"integer labels \(class ids\) must have the batch shape of scores, \(5,\), got shape \(5, 7\)",
                 id="labels-shape"),
    pytest.param((np.zeros((5, 7), np.int32), I5), {}, TypeError,
                 r"scores must be a floating-point array, got shape \(5, 7\), dtype int32", id="integer-scores"),
    pytest.param((np.zeros((), np.float32), np.zeros((), np.int32)), {}, ValueError,
                 r"scores must have a class axis \(rank >= 1\), got shape \(\)", id="scalar-scores"),
    pytest.param((F, I5), {"kind": "one_vs_rest"}, ValueError,
                 r"kind must be 'crammer_singer' or 'weston_watkins', got 'one_vs_rest'", id="bad-kind"),
    pytest.param((F, I5), {"p": 3}, ValueError, r"p must be the int 1 \(hinge\) or 2 \(squared hinge\), got 3",
                 id="p-3"),
    pytest.param((F, I5), {"p": 2.0}, ValueError, r"p must be the int 1 .* got 2.0", id="float-p"),
    pytest.param((F, I5), {"p": True}, ValueError, r"p must be the int 1 .* got True", id="bool-p"),
    pytest.param((F, I5), {"margin": -0.5}, ValueError, r"margin must be >= 0, got -0.5", id="negative-margin"),
    pytest.param((F, I5), {"margin": np.ones(7, np.float32)}, ValueError,
                 r"margin with shape \(7,\) does not broadcast to the batch shape of scores with shape \(5,\)",
                 id="margin-shape"),
    pytest.param((F, I5), {"class_weights": np.ones(5, np.float32)}, ValueError,
                 r"class_weights with shape \(5,\) does not broadcast to the class axis of scores with shape \(7,\)",
                 id="class-weights-shape"),
    pytest.param((F, I5), {"where": np.ones((5, 7), bool)}, ValueError,
                 r"where with shape \(5, 7\) does not broadcast to the batch shape of scores", id="where-shape"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(args, kwargs, error, match, jit):
    assert_bad_input_raises(multiclass_hinge_loss, args, kwargs, error, match, jit)


def test_concrete_negative_margin_array_raises():
    with pytest.raises(ValueError, match=r"margin must be >= 0"):
        multiclass_hinge_loss(F, I5, margin=np.array([1.0, -1.0, 1.0, 1.0, 1.0], np.float32))


def test_concrete_negative_class_weights_raise():
    with pytest.raises(ValueError, match=r"class_weights must be >= 0"):
        multiclass_hinge_loss(F, I5, class_weights=np.array([1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0], np.float32))
