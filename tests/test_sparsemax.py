"""Sparsemax and Fenchel–Young losses: values and derivatives against float64 NumPy references
written from the docstrings and against optax (its own test inputs and numbers too), forward
mode and second order (the sparsemax Jacobian on the support), class ids (ignored, invalid,
every dtype), masked classes, masks, precision of small losses, and bad inputs."""

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
    assert_masked_entries_zero,
    float_arguments,
    mean_value_and_grad_memory,
)

import jaxloss
from jaxloss.sparsemax import make_fenchel_young_loss, multiclass_sparsemax_loss, sparsemax_loss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

INF = np.inf
fenchel_young_loss = make_fenchel_young_loss(jax.nn.logsumexp)


@functools.partial(jax.jit, static_argnames=("fn", "options"))
def _jitted(fn, floats, ints, options):
    loss = lambda f: fn(**f, **ints, **dict(options))  # noqa: E731
    return loss(floats), jax.grad(lambda f: jnp.sum(loss(f)))(floats)


def losses_and_gradients(fn, a):
    """fn(**a) and the gradient of its sum w.r.t. every float argument (compiled)."""
    floats = float_arguments(a)
    ints = {k: v for k, v in a.items() if isinstance(v, np.ndarray | jax.Array) and k not in floats}
    options = tuple(sorted((k, v) for k, v in a.items() if k not in floats and k not in ints))
    return _jitted(fn, floats, ints, options)


def _no_nan(actual, desired, **tolerance):
    np.testing.assert_allclose(actual, desired, equal_nan=False, **tolerance)


# ----------------------------------------------------------------------------- NumPy references


def _np_sparse_plus(z):
    return np.where(z <= -1, 0.0, np.where(z >= 1, z, (z + 1) ** 2 / 4))


def _np_sign(labels):
    return np.where(np.asarray(labels) > 0, 1.0, -1.0)


def _np_sparsemax_binary(logits, labels):
    return _np_sparse_plus(-_np_sign(labels) * logits)


def _np_sparsemax_binary_d(logits, labels):
    y = _np_sign(labels)
    return {"logits": -y * np.clip((1 - y * logits) / 2, 0.0, 1.0)}


def _np_sparsemax(s):
    """sparsemax over the last axis, by the sorting algorithm (Martins & Astudillo, Alg. 1)."""
    ordered = -np.sort(-s, axis=-1)
    k = np.arange(1, s.shape[-1] + 1)
    cumulative = np.cumsum(ordered, axis=-1)
    size = np.sum(1 + k * ordered > cumulative, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cumulative, size - 1, axis=-1) - 1) / size
    return np.maximum(s - tau, 0.0)


def _np_multiclass_sparsemax(scores, labels):
    """The textbook form ⟨p, s⟩ + ½(1 − ‖p‖²) − s_y."""
    p = _np_sparsemax(scores)
    s_y = np.take_along_axis(scores, labels[..., None], axis=-1)[..., 0]
    return np.sum(p * scores, axis=-1) + 0.5 * (1 - np.sum(p * p, axis=-1)) - s_y


def _np_multiclass_sparsemax_d(scores, labels):
    return {"scores": _np_sparsemax(scores) - np.eye(scores.shape[-1])[labels]}


def _np_logsumexp(s):
    m = np.max(s, axis=-1, keepdims=True)
    return (m + np.log(np.sum(np.exp(s - m), axis=-1, keepdims=True)))[..., 0]


def _np_fenchel_young(scores, targets):
    return _np_logsumexp(scores) - np.sum(targets * scores, axis=-1)


def _np_fenchel_young_d(scores, targets):
    return {"scores": np.exp(scores - _np_logsumexp(scores)[..., None]) - targets, "targets": -scores}


# ----------------------------------------------------------------------------- inputs


def _binary_inputs(signs=False):
    def make(rng, shape):
        labels = rng.integers(0, 2, size=shape)
        margins = rng.uniform(0.1, 0.9, shape) * rng.choice([-1, 1], shape) + rng.choice([0, 1.5, -1.5], shape)
        return {"logits": margins, "labels": 2 * labels - 1 if signs else labels}
    return make


def _away_from_threshold(rng, shape, spread=2.0):
    """Scores at least 0.05 from their row's sparsemax threshold (no support change nearby)."""
    rows = []
    while len(rows) < int(np.prod(shape[:-1])):
        s = spread * rng.normal(size=shape[-1])
        if np.min(np.abs(s - _threshold(s))) > 0.05:
            rows.append(s)
    return np.reshape(rows, shape)


def _threshold(s):
    """τ of one row: s_j − p_j for a class j in the support."""
    p = _np_sparsemax(s)
    j = np.argmax(p)
    return s[j] - p[j]


def _multiclass_inputs(rng, shape):
    return {"scores": _away_from_threshold(rng, shape), "labels": rng.integers(0, shape[-1], size=shape[:-1])}


def _fenchel_young_inputs(rng, shape):
    return {"scores": 2 * rng.normal(size=shape), "targets": rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])}


CASES = [
    Case("binary", sparsemax_loss, _binary_inputs(), _np_sparsemax_binary, _np_sparsemax_binary_d),
    Case("binary-signed-labels", sparsemax_loss, _binary_inputs(signs=True), _np_sparsemax_binary,
         _np_sparsemax_binary_d),
    Case("multiclass", multiclass_sparsemax_loss, _multiclass_inputs, _np_multiclass_sparsemax,
         _np_multiclass_sparsemax_d),
    Case("fenchel_young-logsumexp", fenchel_young_loss, _fenchel_young_inputs, _np_fenchel_young,
         _np_fenchel_young_d),
]
BINARY, SIGNED, MULTICLASS, FENCHEL_YOUNG = CASES
parametrize_cases = pytest.mark.parametrize("case", CASES, ids=str)


# ----------------------------------------------------------------------------- values and derivatives


@parametrize_cases
def test_values_and_derivatives_match_numpy_float64_reference(case, x64):
    a = case.make(np.random.default_rng(0), SHAPE)
    losses, grads = losses_and_gradients(case.fn, a)
    assert losses.dtype == jnp.float64
    _no_nan(losses, case.ref(**a), rtol=1e-12, atol=1e-14)
    expected = case.dref(**a)
    assert set(grads) == set(float_arguments(a))
    for name, g in grads.items():
        _no_nan(g, expected[name], rtol=1e-12, atol=1e-14, err_msg=name)


@parametrize_cases
def test_check_gradients_passes_for_every_float_argument(case):
    assert_check_gradients_passes_for_every_float_argument(case, seed=1)


@parametrize_cases
def test_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    assert_hessian_and_hvp_match_reference(case, seed=2)


@parametrize_cases
def test_forward_mode_matches_reverse_mode(case, x64):
    """⟨u, J v⟩ from jax.jvp equals ⟨Jᵀu, v⟩ from jax.vjp, for random u and v."""
    rng = np.random.default_rng(3)
    a = case.make(rng, SHAPE)
    floats = float_arguments(a)
    rest = {k: v for k, v in a.items() if k not in floats}
    v = jax.tree.map(lambda x: rng.normal(size=x.shape), floats)
    f = lambda x: case.fn(**x, **rest)  # noqa: E731
    losses, jv = jax.jvp(f, (floats,), (v,))
    u = rng.normal(size=losses.shape)
    transposed = jax.vjp(f, floats)[1](u)[0]
    _no_nan(np.sum(u * jv), sum(np.sum(transposed[k] * v[k]) for k in floats), rtol=1e-12)
    assert np.any(jv != 0)


def test_masked_logits_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite():
    assert_masked_entries_zero(BINARY, SHAPE, seed=5)


@pytest.mark.parametrize("case", [MULTICLASS, FENCHEL_YOUNG], ids=str)
def test_masked_examples_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case):
    a = case.make(np.random.default_rng(5), SHAPE)
    floats = {k: v.astype(np.float32) for k, v in float_arguments(a).items()}
    rest = {k: v for k, v in a.items() if k not in floats}
    where = np.arange(SHAPE[0]) % 3 != 0
    dirty = {k: np.where(where[:, None], v, np.resize([INF, -INF, np.nan], v.shape)) for k, v in floats.items()}

    @jax.jit
    def run(dirty, clean):
        masked = lambda f: case.fn(**f, **rest, where=where)  # noqa: E731
        by_hand = lambda f: jnp.where(where, case.fn(**f, **rest), 0.0)  # noqa: E731
        grad = lambda g, f: jax.grad(lambda f: jnp.sum(g(f)))(f)  # noqa: E731
        jv = jax.jvp(masked, (dirty,), (jax.tree.map(jnp.ones_like, dirty),))[1]
        hvp = jax.jvp(lambda f: grad(masked, f), (dirty,), (jax.tree.map(jnp.ones_like, dirty),))[1]
        return masked(dirty), by_hand(clean), grad(masked, dirty), grad(by_hand, clean), jv, hvp

    loss, expected_loss, grads, expected, jv, hvp = run(dirty, floats)
    np.testing.assert_array_equal(loss[~where], 0.0)
    _no_nan(loss, expected_loss, rtol=1e-6)
    np.testing.assert_array_equal(jv[~where], 0.0)
    for name in floats:
        _no_nan(grads[name], expected[name], rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_array_equal(grads[name][~where], 0.0, err_msg=name)
        np.testing.assert_array_equal(hvp[name][~where], 0.0, err_msg=name)
        assert np.all(np.isfinite(hvp[name])), name


# ----------------------------------------------------------------------------- binary: optax


def test_binary_matches_optax_own_test_numbers():
    # optax's SparsemaxTest.test_binary and test_batched_binary.
    _no_nan(sparsemax_loss(jnp.asarray(10.0), jnp.asarray(1)), 0.0, atol=1e-4)
    _no_nan(sparsemax_loss(jnp.array([10.0, 20.0]), jnp.array([1, 0])), [0.0, 20.0], atol=1e-4)


def test_binary_matches_optax_values_and_gradients_on_0_1_labels(x64):
    a = BINARY.make(np.random.default_rng(6), SHAPE)
    losses, grads = losses_and_gradients(sparsemax_loss, a)
    theirs, their_grads = losses_and_gradients(lambda logits, labels: optax.losses.sparsemax_loss(logits, labels), a)
    _no_nan(losses, theirs, rtol=1e-14, atol=1e-15)
    _no_nan(grads["logits"], their_grads["logits"], rtol=1e-14, atol=1e-15)


def test_binary_minus_one_label_is_the_negative_class_unlike_optax():
    x = jnp.array([0.5, -2.0])
    np.testing.assert_array_equal(sparsemax_loss(x, jnp.array([-1, -1])), sparsemax_loss(x, jnp.array([0, 0])))
    np.testing.assert_array_equal(optax.losses.sparsemax_loss(x, jnp.array([-1, -1])),
                                  optax.losses.sparsemax_loss(x, jnp.array([1, 1])))


def test_binary_derivative_is_continuous_at_the_kinks(x64):
    # z = −y·x = ±1: the slope is sparse_sigmoid(±1) = 1 or 0 exactly, from either side.
    x, labels = np.array([-1.0, 1.0, 1.0, -1.0]), np.array([1, 1, 0, 0])
    _, grads = losses_and_gradients(sparsemax_loss, {"logits": x, "labels": labels})
    np.testing.assert_array_equal(grads["logits"], [-1.0, 0.0, 1.0, 0.0])
    for h in (1e-7, -1e-7):
        _, near = losses_and_gradients(sparsemax_loss, {"logits": x + h, "labels": labels})
        _no_nan(near["logits"], grads["logits"], atol=1e-6)


def test_binary_is_finite_and_exact_at_huge_logits():
    x = jnp.array([1e4, -1e4, 3e38, -3e38], jnp.float32)
    y = jnp.array([0, 1, 0, 1])
    np.testing.assert_array_equal(sparsemax_loss(x, y), np.abs(np.asarray(x)))
    np.testing.assert_array_equal(sparsemax_loss(x, 1 - y), 0.0)
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(sparsemax_loss(x, y)))(x), [1.0, -1.0, 1.0, -1.0])


# ----------------------------------------------------------------------------- multiclass: optax


def test_multiclass_matches_optax_own_test_numbers():
    # optax's test_multi_class_zero_loss and test_multi_class_gradient.
    labels = jnp.array([1, 0, 2])
    scores = jnp.array([[0.0, 1e5, 0.0], [1e5, 0.0, 0.0], [0.0, 0.0, 1e5]])
    np.testing.assert_array_equal(multiclass_sparsemax_loss(scores, labels), 0.0)
    grad = jax.grad(lambda s: jnp.mean(multiclass_sparsemax_loss(s, labels)))(scores)
    _no_nan(grad, jax.vmap(optax.projections.projection_simplex)(scores) - jax.nn.one_hot(labels, 3), atol=1e-4)
    np.testing.assert_array_equal(grad, 0.0)


def test_multiclass_matches_optax_values_and_gradients(x64):
    a = MULTICLASS.make(np.random.default_rng(7), SHAPE)
    losses, grads = losses_and_gradients(multiclass_sparsemax_loss, a)
    theirs, their_grads = losses_and_gradients(
        lambda scores, labels: optax.losses.multiclass_sparsemax_loss(scores, labels), a)
    _no_nan(losses, theirs, rtol=1e-12, atol=1e-14)
    _no_nan(grads["scores"], their_grads["scores"], rtol=1e-12, atol=1e-14)


def test_multiclass_hessian_is_the_support_set_jacobian(x64):
    s = np.array([1.2, 0.9, -0.4, 0.1, 1.0])  # support {0, 1, 4}: τ = (3.1 − 1)/3 = 0.7
    hessian = jax.hessian(lambda s: multiclass_sparsemax_loss(s, jnp.asarray(3)))(s)
    support = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    _no_nan(hessian, np.diag(support) - np.outer(support, support) / 3, rtol=1e-14, atol=1e-15)
    _no_nan(multiclass_sparsemax_loss(s, jnp.asarray(3)), _np_multiclass_sparsemax(s, np.asarray(3)), rtol=1e-14)


def test_multiclass_small_losses_keep_their_digits_in_float32():
    # Two classes, margin d < 1: the loss is (1 − d)²/4; the textbook ⟨p, s⟩ + ½(1 − ‖p‖²) cancels.
    d = np.array([0.999, 0.9999, 0.99, 0.9])
    s = np.stack([np.zeros_like(d), -d], -1).astype(np.float32)
    exact = (1 + s[:, 1].astype(np.float64)) ** 2 / 4  # (1 − d)²/4 at the rounded d
    ours = multiclass_sparsemax_loss(jnp.asarray(s), jnp.zeros(4, jnp.int32))
    textbook = optax.losses.multiclass_sparsemax_loss(jnp.asarray(s), jnp.zeros(4, jnp.int32))
    ours_error, textbook_error = (np.abs(np.asarray(x, np.float64) - exact) / exact for x in (ours, textbook))
    assert np.all(ours_error <= 1e-2) and np.all(ours_error <= textbook_error + 1e-6)
    assert np.all(np.asarray(ours) >= 0)


def test_multiclass_neg_inf_scores_are_out_of_the_support_with_zero_derivative(x64):
    s = np.array([[1.0, -INF, 0.5, 0.2], [-INF, 2.0, 1.9, -INF]])
    labels = np.array([2, 1])
    losses, grads = losses_and_gradients(multiclass_sparsemax_loss, {"scores": s, "labels": labels})
    finite = np.isfinite(s)
    for i in range(2):
        row = s[i][finite[i]]
        label = int(np.sum(finite[i][: labels[i]]))
        _no_nan(losses[i], _np_multiclass_sparsemax(row, np.asarray(label)), rtol=1e-14)
        _no_nan(grads["scores"][i][finite[i]], _np_multiclass_sparsemax_d(row, np.asarray(label))["scores"],
                rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(grads["scores"][~finite], 0.0)
    assert multiclass_sparsemax_loss(s, np.array([1, 0]))[0] == INF  # the label class ruled out


def test_multiclass_works_on_any_batch_shape_and_without_one(x64):
    rng = np.random.default_rng(8)
    s, labels = _away_from_threshold(rng, (2, 3, 5)), rng.integers(0, 5, (2, 3))
    flat = multiclass_sparsemax_loss(s.reshape(6, 5), labels.reshape(6))
    _no_nan(multiclass_sparsemax_loss(s, labels), flat.reshape(2, 3), rtol=1e-15)
    _no_nan(multiclass_sparsemax_loss(s[0, 0], labels[0, 0]), flat[0], rtol=1e-15)


# ----------------------------------------------------------------------------- multiclass: class ids


def _ids_losses_and_derivatives(labels, **options):
    s = jnp.asarray(_away_from_threshold(np.random.default_rng(9), (4, 5)), jnp.float32)
    v = jnp.ones_like(s)
    f = lambda s: multiclass_sparsemax_loss(s, labels, **options)  # noqa: E731
    total = lambda s: jnp.sum(jnp.where(jnp.isnan(f(s)), 0.0, f(s)))  # noqa: E731
    _, jv = jax.jvp(f, (s,), (v,))
    return f(s), jax.grad(total)(s), jv, jax.jvp(jax.grad(total), (s,), (v,))[1]


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16, np.int8, np.uint8])
def test_ignored_and_invalid_ids_in_every_dtype(dtype):
    labels = np.array([0, -100, 5, 3]).astype(dtype) if np.issubdtype(dtype, np.signedinteger) else \
        np.array([0, 200, 5, 3], dtype)
    losses, grad, jv, hvp = _ids_losses_and_derivatives(jnp.asarray(labels))
    reference = multiclass_sparsemax_loss.reference(
        jnp.asarray(_away_from_threshold(np.random.default_rng(9), (4, 5)), jnp.float32), jnp.asarray(labels))
    ignored = labels.astype(np.int64) == -100
    invalid = ~ignored & ((labels.astype(np.int64) < 0) | (labels.astype(np.int64) >= 5))
    np.testing.assert_array_equal(losses[ignored], 0.0)
    assert np.all(np.isnan(losses[invalid])) and np.all(np.isnan(reference[invalid]))
    valid = ~ignored & ~invalid
    assert np.all(np.isfinite(losses[valid])) and np.all(losses[valid] >= 0)
    for d in (grad, jv, hvp):
        np.testing.assert_array_equal(np.asarray(d)[~valid], 0.0)
        assert np.all(np.isfinite(d))


def test_ignore_index_none_makes_minus_100_invalid_and_a_custom_index_ignores():
    labels = jnp.array([0, -100, 2, 4])
    assert np.isnan(_ids_losses_and_derivatives(labels, ignore_index=None)[0][1])
    losses, grad, _, _ = _ids_losses_and_derivatives(labels, ignore_index=4)
    assert np.isnan(losses[1]) and losses[3] == 0.0
    np.testing.assert_array_equal(grad[3], 0.0)


# ----------------------------------------------------------------------------- Fenchel–Young


def test_fenchel_young_matches_optax_own_test():
    # optax's FenchelYoungTest.test_fenchel_young_reg, unbatched under vmap and batched.
    rngs = jax.random.split(jax.random.key(0), 2)
    theta_true, theta_random = jax.random.uniform(rngs[0], (8, 5)), jax.random.uniform(rngs[1], (8, 5))
    y_true, y_random = jax.nn.softmax(theta_true), jax.nn.softmax(theta_random)
    loss = jax.jit(fenchel_young_loss)
    grad = jax.vmap(jax.grad(loss))(theta_random, y_true)
    _no_nan(grad, y_random - y_true, rtol=1e-4, atol=1e-7)
    one_hot = jax.nn.one_hot(jnp.argmax(theta_true, -1), 5)
    log_loss = optax.losses.softmax_cross_entropy_with_integer_labels(theta_random, jnp.argmax(theta_true, -1))
    _no_nan(jax.vmap(loss)(theta_random, one_hot), log_loss, rtol=1e-4)
    _no_nan(loss(theta_random, one_hot), jax.vmap(loss)(theta_random, one_hot), rtol=1e-6)


def test_fenchel_young_matches_optax_values_and_gradients(x64):
    a = FENCHEL_YOUNG.make(np.random.default_rng(10), SHAPE)
    theirs = optax.losses.make_fenchel_young_loss(jax.nn.logsumexp)
    (losses, grads), (their_losses, their_grads) = (losses_and_gradients(f, a) for f in (
        fenchel_young_loss, lambda scores, targets: theirs(scores, targets)))
    _no_nan(losses, their_losses, rtol=1e-14, atol=1e-15)
    for name in grads:
        _no_nan(grads[name], their_grads[name], rtol=1e-14, atol=1e-15, err_msg=name)


def _tempered(s, temperature, *, shift=0.0):
    return temperature * jax.nn.logsumexp(s / temperature) + shift


def test_fenchel_young_differentiates_max_fun_options_to_second_order(x64):
    rng = np.random.default_rng(11)
    loss = make_fenchel_young_loss(_tempered)
    s, t = 2 * rng.normal(size=SHAPE), rng.dirichlet(np.ones(SHAPE[-1]), size=SHAPE[0])
    check = jaxloss.check_gradients(loss, s, t, np.float64(1.7), shift=np.float64(0.3), order=2)
    assert check.ok, check
    assert {r.argument for r in check.rows} >= {"scores", "targets", "shift"}
    d_temperature = jax.grad(lambda T: jnp.sum(loss(s, t, T)))(1.7)
    expected = np.sum(_np_logsumexp(s / 1.7) - np.sum(jax.nn.softmax(s / 1.7) * s / 1.7, -1))
    _no_nan(d_temperature, expected, rtol=1e-12)
    # A Python number is static: no derivative, the same value.
    _no_nan(loss(s, t, 1.7, shift=0.3), loss(s, t, np.float64(1.7), shift=np.float64(0.3)), rtol=1e-15)


def test_fenchel_young_zero_target_on_a_masked_class_adds_nothing(x64):
    s = np.array([[1.0, -INF, 0.5], [2.0, 0.0, -INF]])
    t = np.array([[0.6, 0.0, 0.4], [1.0, 0.0, 0.0]])
    losses, grads = losses_and_gradients(fenchel_young_loss, {"scores": s, "targets": t})
    finite = np.isfinite(s)
    for i in range(2):
        _no_nan(losses[i], _np_fenchel_young(s[i][finite[i]], t[i][finite[i]]), rtol=1e-14)
    np.testing.assert_array_equal(grads["scores"][~finite], 0.0)
    np.testing.assert_array_equal(grads["targets"][~finite], 0.0)
    assert np.all(np.isfinite(grads["targets"]))


def test_fenchel_young_has_a_stable_name_and_a_reference():
    assert fenchel_young_loss.__name__ == "fenchel_young_loss"
    s, t = jnp.array([[1.0, 2.0, 3.0]]), jnp.array([[0.0, 0.0, 1.0]])
    _no_nan(fenchel_young_loss.reference(s, t), fenchel_young_loss(s, t), rtol=1e-7)


def test_fenchel_young_targets_broadcast_against_the_scores(x64):
    rng = np.random.default_rng(12)
    s, t = rng.normal(size=(3, 4)), rng.dirichlet(np.ones(4))
    _no_nan(fenchel_young_loss(s, t), fenchel_young_loss(s, np.broadcast_to(t, s.shape)), rtol=1e-15)
    g = jax.grad(lambda t: jnp.sum(fenchel_young_loss(s, t)))(t)
    _no_nan(g, -np.sum(s, 0), rtol=1e-14)


# ----------------------------------------------------------------------------- errors

F, INTS = np.ones(SHAPE, np.float32), np.ones(SHAPE, np.int32)
ERRORS = [
    pytest.param(sparsemax_loss, (INTS, INTS), {}, TypeError, r"logits must be a floating-point array",
                 id="binary-int"),
    pytest.param(sparsemax_loss, (F, np.ones((5, 6), np.int32)), {}, ValueError,
                 r"labels with shape \(5, 6\) does not broadcast", id="binary-labels-shape"),
    pytest.param(multiclass_sparsemax_loss, (F, np.ones(5, np.float32)), {}, TypeError,
                 r"labels must be integer class ids", id="float-ids"),
    pytest.param(multiclass_sparsemax_loss, (F, np.ones(6, np.int32)), {}, ValueError,
                 r"integer labels \(class ids\) must have the batch shape of scores", id="ids-shape"),
    pytest.param(multiclass_sparsemax_loss, (F, np.ones(5, np.int32)), {"ignore_index": 1.5}, TypeError,
                 r"ignore_index must be None or an int", id="float-ignore_index"),
    pytest.param(multiclass_sparsemax_loss, (F, np.ones(5, np.int32)), {"where": np.ones(5, np.int32)}, TypeError,
                 r"where must be a boolean mask", id="int-where"),
    pytest.param(fenchel_young_loss, (INTS, F), {}, TypeError, r"scores must be a floating-point array", id="fy-int"),
    pytest.param(fenchel_young_loss, (F, INTS), {}, TypeError, r"targets must be a floating-point array",
                 id="fy-int-targets"),
    pytest.param(fenchel_young_loss, (F, np.ones((5, 6), np.float32)), {}, ValueError,
                 r"targets with shape \(5, 6\) does not broadcast to scores", id="fy-targets-shape"),
    pytest.param(fenchel_young_loss, (np.float32(1.0), np.float32(1.0)), {}, ValueError,
                 r"scores must have a class axis", id="fy-scalar"),
    pytest.param(fenchel_young_loss, (F, F), {"where": np.ones(SHAPE, bool)}, ValueError,
                 r"where with shape \(5, 7\) does not broadcast to the batch shape of scores", id="fy-where-shape"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    assert_bad_input_raises(fn, args, kwargs, error, match, jit)


def test_fenchel_young_rejects_integer_array_options_and_non_callables():
    with pytest.raises(TypeError, match=r"array arguments of max_fun must be float arrays"):
        make_fenchel_young_loss(lambda s, k: jnp.max(s) * k)(F, F, np.int32(2) * np.ones(1, np.int32))
    with pytest.raises(TypeError, match=r"max_fun must be callable"):
        make_fenchel_young_loss(3.0)


# ----------------------------------------------------------------------------- axis=


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_multiclass_axis_moves_the_class_axis(axis, x64):
    """Scores with the classes on ``axis``: the batch shape is the rest, in order, so the ids and
    the losses are those of the scores with the classes last; gradients come back moved."""
    rng = np.random.default_rng(13)
    last, labels = _away_from_threshold(rng, (2, 3, 5)), rng.integers(0, 5, (2, 3))
    moved = np.moveaxis(last, -1, axis)
    losses, grads = losses_and_gradients(lambda scores, labels: multiclass_sparsemax_loss(scores, labels, axis=axis),
                                         {"scores": moved, "labels": labels})
    expected, expected_grads = losses_and_gradients(multiclass_sparsemax_loss, {"scores": last, "labels": labels})
    _no_nan(losses, expected, rtol=1e-14)
    _no_nan(grads["scores"], np.moveaxis(expected_grads["scores"], -1, axis), rtol=1e-14, atol=1e-15)


# ----------------------------------------------------------------------------- compiled memory


def test_binary_value_and_grad_of_the_mean_holds_at_most_the_one_liners_memory():
    """Issue 18: compiled footprint (temporaries + outputs) of ``value_and_grad`` of the mean, integer
    ids (converted once, the one full-size temporary) and float {0, 1} labels (none), float32 and
    bfloat16, at most that of autodiff of benchmarks/catalogue.py's one-liner (64 bytes of slack:
    the forward's opaque scalar constants).  ``memory_analysis()`` is deterministic."""
    def one_liner(x, y):
        z = (1 - 2 * y) * x
        return jnp.where(z <= -1, 0, jnp.where(z >= 1, z, (z + 1) ** 2 / 4))

    def memory(fn, x, y):  # the labels closed over, as constants
        return mean_value_and_grad_memory(lambda x: fn(x, y), (x,))

    kx, ky = jax.random.split(jax.random.key(0))
    ids = jax.random.randint(ky, (256, 256), 0, 2)
    for dtype in (jnp.float32, jnp.bfloat16):
        x = jax.random.normal(kx, ids.shape, dtype)
        for y, temporaries in ((ids, 4 * ids.size), (ids.astype(dtype), 0)):
            (temp, ours), (_, theirs) = memory(sparsemax_loss, x, y), memory(one_liner, x, y)
            assert temp <= temporaries + 64 and ours <= theirs + 64, (dtype, y.dtype, temp, ours, theirs)
