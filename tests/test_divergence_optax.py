"""The optax-named divergences (generalized_kl_divergence, convex_kl_divergence,
kl_divergence_with_log_targets) and class_mask= / axis= on the KL family: optax's own test
numbers, values and derivatives against optax and float64 NumPy references, masked classes
as optax's ``where``, zero targets (where optax gives NaN), forward mode and second order."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _loss_cases import (
    SHAPE,
    Case,
    assert_bad_input_raises,
    assert_check_gradients_passes_for_every_float_argument,
    assert_hessian_and_hvp_match_reference,
    float_arguments,
)

import jaxloss
from jaxloss.divergence import (
    convex_kl_divergence, generalized_kl_divergence, kl_divergence, kl_divergence_with_log_targets,
)

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

INF = np.inf
# optax's test inputs (losses/_classification_test.py).
LOG_PS = np.array([[-2.9957, -3.5066, -3.9120, -1.2040, -0.6931, -2.3026],
                   [-1.6094, -1.6094, -1.6094, -2.3026, -1.8971, -1.8971]])
QS = np.array([[0.2, 0.2, 0.2, 0.1, 0.15, 0.15], [0.05, 0.03, 0.02, 0.3, 0.5, 0.0]])


@functools.partial(jax.jit, static_argnames=("fn", "options"))
def _jitted(fn, floats, masks, options):
    loss = lambda f: fn(**f, **masks, **dict(options))  # noqa: E731
    return loss(floats), jax.grad(lambda f: jnp.sum(loss(f)))(floats)


def losses_and_gradients(fn, a):
    """fn(**a) and the gradient of its sum w.r.t. every float argument (compiled)."""
    floats = float_arguments(a)
    masks = {k: v for k, v in a.items() if isinstance(v, np.ndarray) and k not in floats}
    options = tuple(sorted((k, v) for k, v in a.items() if k not in floats and k not in masks))
    return _jitted(fn, floats, masks, options)


def _no_nan(actual, desired, **tolerance):
    np.testing.assert_allclose(actual, desired, equal_nan=False, **tolerance)


# ----------------------------------------------------------------------------- NumPy references


def _np_generalized(log_predictions, targets, class_mask=True):
    keep = np.broadcast_to(class_mask, targets.shape)
    t, lp = np.where(keep, targets, 1.0), np.where(keep, log_predictions, 0.0)
    return np.sum(np.where(keep, t * (np.log(t) - lp) + np.exp(lp) - t, 0.0), axis=-1)


def _np_generalized_d(log_predictions, targets, class_mask=True):
    keep = np.broadcast_to(class_mask, targets.shape)
    return {"log_predictions": np.where(keep, np.exp(log_predictions) - targets, 0.0),
            "targets": np.where(keep, np.log(targets) - log_predictions, 0.0)}


def _np_log_targets(log_predictions, log_targets, class_mask=True):
    keep = np.broadcast_to(class_mask, log_targets.shape)
    return np.sum(np.where(keep, np.exp(log_targets) * (log_targets - log_predictions), 0.0), axis=-1)


def _np_log_targets_d(log_predictions, log_targets, class_mask=True):
    keep = np.broadcast_to(class_mask, log_targets.shape)
    t = np.exp(log_targets)
    return {"log_predictions": np.where(keep, -t, 0.0),
            "log_targets": np.where(keep, t * (log_targets - log_predictions + 1), 0.0)}


def _np_kl(log_predictions, targets, class_mask=True):
    keep = np.broadcast_to(class_mask, targets.shape)
    return np.sum(np.where(keep, targets * (np.log(targets) - log_predictions), 0.0), axis=-1)


def _np_kl_d(log_predictions, targets, class_mask=True):
    keep = np.broadcast_to(class_mask, targets.shape)
    return {"log_predictions": np.where(keep, -targets, 0.0),
            "targets": np.where(keep, np.log(targets) - log_predictions + 1, 0.0)}


# ----------------------------------------------------------------------------- inputs


def _log_softmax(x):
    return x - np.max(x, -1, keepdims=True) - np.log(np.sum(np.exp(x - np.max(x, -1, keepdims=True)), -1,
                                                            keepdims=True))


def _inputs(second="targets", log=False, normalised=True, masked=False):
    def make(rng, shape):
        lp = _log_softmax(2 * rng.normal(size=shape)) if normalised else rng.normal(scale=0.5, size=shape)
        t = np.exp(_log_softmax(rng.normal(size=shape))) if normalised else rng.uniform(0.05, 2.0, shape)
        a = {"log_predictions": lp, second: np.log(t) if log else t}
        if masked:
            a["class_mask"] = rng.random(shape) < 0.7
        return a
    return make


CASES = [
    Case("generalized", generalized_kl_divergence, _inputs(normalised=False), _np_generalized, _np_generalized_d),
    Case("generalized-class_mask", generalized_kl_divergence, _inputs(normalised=False, masked=True),
         _np_generalized, _np_generalized_d),
    Case("log_targets", kl_divergence_with_log_targets, _inputs("log_targets", log=True), _np_log_targets,
         _np_log_targets_d),
    Case("log_targets-class_mask", kl_divergence_with_log_targets, _inputs("log_targets", log=True, masked=True),
         _np_log_targets, _np_log_targets_d),
    Case("kl-class_mask", kl_divergence, _inputs(masked=True), _np_kl, _np_kl_d),
]
parametrize_cases = pytest.mark.parametrize("case", CASES, ids=str)
OPTAX = {generalized_kl_divergence: optax.losses.generalized_kl_divergence,
         kl_divergence_with_log_targets: optax.losses.kl_divergence_with_log_targets,
         kl_divergence: optax.losses.kl_divergence}


# ----------------------------------------------------------------------------- values and derivatives


@parametrize_cases
def test_values_and_derivatives_match_numpy_float64_reference(case, x64):
    a = case.make(np.random.default_rng(0), SHAPE)
    losses, grads = losses_and_gradients(case.fn, a)
    assert losses.dtype == jnp.float64 and losses.shape == SHAPE[:-1]
    _no_nan(losses, case.ref(**a), rtol=1e-12, atol=1e-14)
    expected = case.dref(**a)
    assert set(grads) == set(float_arguments(a))
    for name, g in grads.items():
        _no_nan(g, expected[name], rtol=1e-12, atol=1e-14, err_msg=name)


@parametrize_cases
def test_values_and_derivatives_match_optax_with_class_mask_as_its_where(case, x64):
    a = case.make(np.random.default_rng(1), SHAPE)
    second = "log_targets" if case.fn is kl_divergence_with_log_targets else "targets"
    theirs = OPTAX[case.fn]
    (losses, grads), (their_losses, their_grads) = (losses_and_gradients(f, a) for f in (
        case.fn, lambda log_predictions, class_mask=None, **t: theirs(log_predictions, t[second], where=class_mask)))
    _no_nan(losses, their_losses, rtol=1e-12, atol=1e-14)
    for name in grads:
        _no_nan(grads[name], their_grads[name], rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("case", [CASES[1], CASES[3]], ids=str)
def test_check_gradients_passes_for_every_float_argument(case):
    assert_check_gradients_passes_for_every_float_argument(case, seed=2)


@parametrize_cases
def test_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    assert_hessian_and_hvp_match_reference(case, seed=3)


@parametrize_cases
def test_forward_mode_matches_reverse_mode(case, x64):
    rng = np.random.default_rng(4)
    a = case.make(rng, SHAPE)
    floats = float_arguments(a)
    rest = {k: v for k, v in a.items() if k not in floats}
    v = jax.tree.map(lambda x: rng.normal(size=x.shape), floats)
    f = lambda x: case.fn(**x, **rest)  # noqa: E731
    losses, jv = jax.jvp(f, (floats,), (v,))
    u = rng.normal(size=losses.shape)
    transposed = jax.vjp(f, floats)[1](u)[0]
    _no_nan(np.sum(u * jv), sum(np.sum(transposed[k] * v[k]) for k in floats), rtol=1e-12)


# ----------------------------------------------------------------------------- optax's own numbers


@pytest.mark.parametrize("fn, second, expected", [
    (generalized_kl_divergence, QS, [0.88757247, 0.859308]),
    (kl_divergence, QS, [0.8875577, 0.7592807]),
    (kl_divergence_with_log_targets, LOG_PS[::-1], [0.8875625, 0.7187435584901326]),
], ids=["generalized", "kl", "log_targets"])
def test_optax_test_numbers(fn, second, expected):
    log_ps, second = np.float32(LOG_PS), np.float32(second)
    _no_nan(jax.jit(fn)(log_ps, second), expected, atol=1e-4)
    _no_nan(fn(log_ps[0], second[0]), expected[0], atol=1e-4)


def test_convex_kl_divergence_is_generalized_kl_divergence():
    assert convex_kl_divergence is generalized_kl_divergence
    assert jaxloss.convex_kl_divergence is jaxloss.generalized_kl_divergence


@pytest.mark.parametrize("fn", [generalized_kl_divergence, kl_divergence, kl_divergence_with_log_targets],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("size", [5, 10])
def test_class_mask_equals_the_kept_classes_alone_as_in_optax_test_mask(fn, size, x64):
    rng = np.random.default_rng(size)
    preds, targets = rng.normal(size=size), rng.dirichlet(np.ones(size))
    if fn is kl_divergence_with_log_targets:
        targets = np.log(targets)
    mask = rng.integers(2, size=size).astype(bool)
    _no_nan(fn(preds, targets, class_mask=mask), fn(preds[mask], targets[mask]), rtol=1e-14)
    _no_nan(fn(preds, targets, class_mask=mask), OPTAX[fn](preds, targets, where=mask), rtol=1e-12)


@pytest.mark.parametrize("fn", [generalized_kl_divergence, kl_divergence, kl_divergence_with_log_targets],
                         ids=lambda f: f.__name__)
@pytest.mark.parametrize("axis", [0, 1, 2, (0, 2), (2, 1), None], ids=str)
def test_axis_matches_optax(fn, axis, x64):
    rng = np.random.default_rng(6)
    preds, targets = rng.normal(size=(4, 5, 6)), rng.dirichlet(np.ones(6), size=(4, 5))
    if fn is kl_divergence_with_log_targets:
        targets = np.log(targets)
    mask = rng.random((4, 5, 6)) < 0.7
    _no_nan(fn(preds, targets, axis=axis), OPTAX[fn](preds, targets, axis=axis), rtol=1e-12, atol=1e-14)
    _no_nan(fn(preds, targets, axis=axis, class_mask=mask), OPTAX[fn](preds, targets, axis=axis, where=mask),
            rtol=1e-12, atol=1e-14)
    g = jax.grad(lambda p: jnp.sum(fn(p, targets, axis=axis, class_mask=mask)))(preds)
    their_g = jax.grad(lambda p: jnp.sum(OPTAX[fn](p, targets, axis=axis, where=mask)))(preds)
    _no_nan(g, their_g, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- zero targets, masked classes


def test_generalized_zero_target_on_a_neg_inf_prediction_adds_zero_where_optax_gives_nan(x64):
    lp, t = np.array([[-INF, np.log(0.5), np.log(0.7)]]), np.array([[0.0, 0.4, 0.6]])
    losses, grads = losses_and_gradients(generalized_kl_divergence, {"log_predictions": lp, "targets": t})
    assert np.isnan(optax.losses.generalized_kl_divergence(lp, t)[0])
    _no_nan(losses, _np_generalized(lp[:, 1:], t[:, 1:]), rtol=1e-14)
    # ∂/∂t at t = 0: the KL term's is read as 0, the linear term's −1 stays; ∂/∂lp = p − t = 0.
    np.testing.assert_array_equal(grads["targets"][0, 0], -1.0)
    np.testing.assert_array_equal(grads["log_predictions"][0, 0], 0.0)
    _no_nan(grads["targets"][:, 1:], _np_generalized_d(lp[:, 1:], t[:, 1:])["targets"], rtol=1e-14)


def test_log_targets_of_neg_inf_add_zero_where_optax_gives_nan(x64):
    lp, lt = np.log([[0.2, 0.3, 0.5], [0.5, 0.5, 1e-300]]), np.array([[-INF, np.log(0.4), np.log(0.6)]] * 2)
    lp[1, 0] = -INF
    losses, grads = losses_and_gradients(kl_divergence_with_log_targets, {"log_predictions": lp, "log_targets": lt})
    with np.errstate(invalid="ignore"):
        assert np.isnan(optax.losses.kl_divergence_with_log_targets(lp, lt)[1])
    _no_nan(losses, _np_log_targets(lp[:, 1:], lt[:, 1:]), rtol=1e-14)
    for name, g in grads.items():
        np.testing.assert_array_equal(g[:, 0], 0.0, err_msg=name)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[4]], ids=str)
def test_left_out_classes_holding_nan_and_inf_reach_no_value_or_derivative(case, x64):
    rng = np.random.default_rng(7)
    a = case.make(rng, SHAPE)
    dirty = {k: np.where(a["class_mask"], v, np.resize([INF, -INF, np.nan], v.shape)) if k != "class_mask" else v
             for k, v in a.items()}
    floats = float_arguments(dirty)
    f = lambda x: case.fn(**x, class_mask=a["class_mask"])  # noqa: E731
    total = lambda x: jnp.sum(f(x))  # noqa: E731
    ones = jax.tree.map(np.ones_like, floats)
    losses, grads = jax.jit(lambda x: (f(x), jax.grad(total)(x)))(floats)
    jv = jax.jit(lambda x: jax.jvp(f, (x,), (ones,))[1])(floats)
    hvp = jax.jit(lambda x: jax.jvp(jax.grad(total), (x,), (ones,))[1])(floats)
    _no_nan(losses, case.ref(**a), rtol=1e-12)
    assert np.all(np.isfinite(jv))
    for name in floats:
        np.testing.assert_array_equal(grads[name][~a["class_mask"]], 0.0, err_msg=name)
        np.testing.assert_array_equal(hvp[name][~a["class_mask"]], 0.0, err_msg=name)
        _no_nan(grads[name], case.dref(**a)[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_class_mask_broadcasts_per_class_and_where_still_masks_examples(x64):
    rng = np.random.default_rng(8)
    a = _inputs()(rng, SHAPE)
    per_class = rng.random(SHAPE[-1]) < 0.6
    full = np.broadcast_to(per_class, SHAPE)
    _no_nan(kl_divergence(**a, class_mask=per_class), kl_divergence(**a, class_mask=full), rtol=1e-15)
    _no_nan(kl_divergence(**a, class_mask=per_class[None]), kl_divergence(**a, class_mask=full), rtol=1e-15)
    where = np.arange(SHAPE[0]) % 2 == 0
    both = kl_divergence(**a, class_mask=per_class, where=where)
    _no_nan(both, np.where(where, kl_divergence(**a, class_mask=per_class), 0.0), rtol=1e-15)


def test_kl_divergence_with_log_targets_matches_torch(x64):
    torch = pytest.importorskip("torch")
    a = _inputs("log_targets", log=True)(np.random.default_rng(9), SHAPE)
    t = {k: torch.tensor(v, requires_grad=True) for k, v in a.items()}
    loss = torch.nn.functional.kl_div(t["log_predictions"], t["log_targets"], reduction="none", log_target=True)
    loss.sum(-1).sum().backward()
    losses, grads = losses_and_gradients(kl_divergence_with_log_targets, a)
    _no_nan(losses, loss.sum(-1).detach().numpy(), rtol=1e-12)
    for name in a:
        _no_nan(grads[name], t[name].grad.numpy(), rtol=1e-12, atol=1e-14, err_msg=name)


# ----------------------------------------------------------------------------- errors

F = np.ones(SHAPE, np.float32)
ERRORS = [
    pytest.param(generalized_kl_divergence, (F, np.ones(SHAPE, np.int32)), {}, TypeError,
                 r"targets must be a floating-point array", id="generalized-int-targets"),
    pytest.param(kl_divergence_with_log_targets, (F, np.ones((5, 6), np.float32)), {}, ValueError,
                 r"log_targets with shape \(5, 6\) must have the shape of log_predictions", id="log_targets-shape"),
    pytest.param(kl_divergence, (F, F), {"class_mask": np.ones(SHAPE, np.float32)}, TypeError,
                 r"class_mask must be a boolean mask", id="float-class_mask"),
    pytest.param(generalized_kl_divergence, (F, F), {"class_mask": np.ones((5, 6), bool)}, ValueError,
                 r"class_mask with shape \(5, 6\) does not broadcast to log_predictions", id="class_mask-shape"),
    pytest.param(kl_divergence_with_log_targets, (F, F), {"axis": 2}, ValueError, r"axis", id="axis-out-of-range"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    assert_bad_input_raises(fn, args, kwargs, error, match, jit)
