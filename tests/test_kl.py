"""KL divergence and distillation: values, hand-derived derivatives, parity, zero targets,
masked classes, extreme logits, masks, dtypes, errors.

Values and derivatives are checked in float64 against NumPy formulas written here from
the docstrings (the temperature derivative through an independent identity); parity
against optax and PyTorch; the subgradient at targets exactly 0 is pinned.  Most tests
go through one jitted function of (loss, shapes, static options), so they share its
compilations.
"""

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
    gradients_and_jvp,
    per_example_arguments,
    sum_to_shape,
)

from jaxloss.divergence import distillation_loss, kl_divergence

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

SHAPES = [SHAPE, (2, 3, 4)]
INF = np.inf


@functools.partial(jax.jit, static_argnames=("fn", "options"))
def _jitted_losses_and_gradients(fn, floats, options):
    loss = lambda f: fn(**f, **dict(options))  # noqa: E731
    return loss(floats), jax.grad(lambda f: jnp.sum(loss(f)))(floats)


def losses_and_gradients(fn, a):
    """fn(**a) and the gradients of its sum with respect to every float argument; the other
    arguments are static options.  Compiled once per loss, shapes, dtypes and options."""
    floats = float_arguments(a)
    options = tuple(sorted((k, v) for k, v in a.items() if k not in floats))
    return _jitted_losses_and_gradients(fn, floats, options)


# ----------------------------------------------------------------------------- NumPy references


def _np_log_softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def _np_kl(log_predictions, targets, log_targets=False):
    t = np.exp(targets) if log_targets else targets
    return np.sum(t * (np.log(t) - log_predictions), axis=-1)


def _np_kl_d(log_predictions, targets, log_targets=False):
    t = np.exp(targets) if log_targets else targets
    dt = np.log(t) - log_predictions + 1
    return {"log_predictions": -t, "targets": t * dt if log_targets else dt}


def _per_class(temperature):
    return np.asarray(temperature, np.float64)[..., None]


def _np_distillation(student_logits, teacher_logits, temperature=1.0):
    T = _per_class(temperature)
    log_p, log_q = _np_log_softmax(student_logits / T), _np_log_softmax(teacher_logits / T)
    return T[..., 0] ** 2 * np.sum(np.exp(log_q) * (log_q - log_p), axis=-1)


def _np_distillation_d(student_logits, teacher_logits, temperature=1.0):
    """The docstring's ∂ℓ/∂s and ∂ℓ/∂u; ∂ℓ/∂T through ℓ(T) = T²·K(s/T, u/T), whence
    T·∂ℓ/∂T = 2ℓ − ⟨∂ℓ/∂s, s⟩ − ⟨∂ℓ/∂u, u⟩ (not the log-probability form the rule uses)."""
    T = _per_class(temperature)
    log_p, log_q = _np_log_softmax(student_logits / T), _np_log_softmax(teacher_logits / T)
    p, q = np.exp(log_p), np.exp(log_q)
    kl = np.sum(q * (log_q - log_p), axis=-1, keepdims=True)
    ds, du = T * (p - q), T * q * (log_q - log_p - kl)
    loss = _np_distillation(student_logits, teacher_logits, temperature)
    dT = (2 * loss - np.sum(ds * student_logits + du * teacher_logits, axis=-1)) / T[..., 0]
    return {"student_logits": ds, "teacher_logits": du, "temperature": dT}


def _rowwise(fn, present, *arrays):
    """fn on each row's present classes (per-row arguments: one value per row), stacked."""
    row = lambda x, i: x[i][present[i]] if np.ndim(x) == 2 else x[i]  # noqa: E731
    return [fn(*(row(x, i) for x in arrays)) for i in range(present.shape[0])]


# ----------------------------------------------------------------------------- inputs


def _kl_inputs(log_targets=False, normalised=True):
    def make(rng, shape):
        log_predictions = _np_log_softmax(rng.normal(scale=2.0, size=shape))
        targets = np.exp(_np_log_softmax(rng.normal(size=shape))) if normalised else rng.uniform(0.05, 2.0, shape)
        return {"log_predictions": log_predictions, "targets": np.log(targets) if log_targets else targets,
                "log_targets": log_targets}

    return make


def _distillation_inputs(temperature=None):
    """Student and teacher logits; temperature a value or a maker of (rng, batch shape)."""

    def make(rng, shape):
        a = {"student_logits": rng.normal(scale=2.0, size=shape), "teacher_logits": rng.normal(scale=2.0, size=shape)}
        if temperature is not None:
            a["temperature"] = temperature(rng, shape[:-1]) if callable(temperature) else temperature
        return a

    return make


def _temperatures(rng, batch_shape):
    return rng.uniform(0.5, 4.0, size=batch_shape)


CASES = [
    Case("kl", kl_divergence, _kl_inputs(), _np_kl, _np_kl_d),
    Case("kl-unnormalised-targets", kl_divergence, _kl_inputs(normalised=False), _np_kl, _np_kl_d),
    Case("kl-log_targets", kl_divergence, _kl_inputs(log_targets=True), _np_kl, _np_kl_d),
    Case("distillation-default-temperature", distillation_loss, _distillation_inputs(),
         _np_distillation, _np_distillation_d),
    Case("distillation-float-temperature", distillation_loss, _distillation_inputs(2.5),
         _np_distillation, _np_distillation_d),
    Case("distillation-per-example-temperature", distillation_loss, _distillation_inputs(_temperatures),
         _np_distillation, _np_distillation_d),
    Case("distillation-broadcast-temperature", distillation_loss,
         _distillation_inputs(lambda rng, batch: _temperatures(rng, batch[-1:])), _np_distillation, _np_distillation_d),
]
parametrize_cases = pytest.mark.parametrize("case", CASES, ids=str)
# One case per loss and kind of float argument (the temperature as an array), for the slower checks.
CORE = [c for c in CASES if c.id in {"kl", "kl-log_targets", "distillation-per-example-temperature"}]
parametrize_core = pytest.mark.parametrize("case", CORE, ids=str)
KL, LOG_KL, DISTILLATION = CORE


# ----------------------------------------------------------------------------- values and derivatives


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@parametrize_cases
def test_values_and_derivatives_match_numpy_float64_reference(case, shape, x64):
    a = case.make(np.random.default_rng(0), shape)
    losses, grads = losses_and_gradients(case.fn, a)
    assert losses.dtype == jnp.float64 and losses.shape == shape[:-1]
    np.testing.assert_allclose(losses, case.ref(**a), rtol=1e-12, atol=1e-15)
    expected = case.dref(**a)
    assert set(grads) == set(float_arguments(a)) and set(grads) <= set(expected)
    for name, g in grads.items():
        want = expected[name] if np.shape(expected[name]) == shape else sum_to_shape(expected[name], np.shape(g))
        np.testing.assert_allclose(g, want, rtol=1e-11, atol=1e-13, err_msg=name)


@parametrize_core
def test_check_gradients_passes_for_every_float_argument(case):
    assert_check_gradients_passes_for_every_float_argument(case, seed=2)


def test_teacher_gradient_sums_to_zero_over_classes_but_is_not_zero(x64):
    _, grads = losses_and_gradients(distillation_loss, DISTILLATION.make(np.random.default_rng(3), SHAPE))
    g = grads["teacher_logits"]
    np.testing.assert_allclose(np.sum(g, axis=-1), 0.0, atol=1e-14)
    assert np.min(np.max(np.abs(g), axis=-1)) > 1e-3


def test_identical_logits_give_zero_loss_and_zero_gradients(x64):
    logits = np.random.default_rng(4).normal(size=SHAPE)
    a = {"student_logits": logits, "teacher_logits": logits.copy(), "temperature": np.full(SHAPE[:-1], 3.0)}
    losses, grads = losses_and_gradients(distillation_loss, a)
    np.testing.assert_allclose(losses, 0.0, atol=1e-14)
    for name, g in grads.items():
        np.testing.assert_allclose(g, 0.0, atol=1e-14, err_msg=name)


# ----------------------------------------------------------------------------- parity with optax and PyTorch


def _without_options(fn, **options):
    return lambda log_predictions, targets: fn(log_predictions, targets, **options)


@pytest.mark.parametrize(
    "case, theirs",
    [(KL, optax.losses.kl_divergence), (LOG_KL, optax.losses.kl_divergence_with_log_targets)],
    ids=["kl_divergence", "kl_divergence_with_log_targets"],
)
def test_kl_divergence_matches_optax_values_and_gradients(case, theirs, x64):
    a = case.make(np.random.default_rng(5), SHAPE)
    losses, grads = losses_and_gradients(kl_divergence, a)
    b = {k: a[k] for k in ("log_predictions", "targets")}
    optax_losses, optax_grads = losses_and_gradients(_without_options(theirs), b)
    np.testing.assert_allclose(losses, optax_losses, rtol=1e-12, atol=1e-15)
    assert set(grads) == set(optax_grads)
    for name in grads:
        np.testing.assert_allclose(grads[name], optax_grads[name], rtol=1e-12, atol=1e-14, err_msg=name)


def _optax_distillation(student_logits, teacher_logits, temperature):
    T = jnp.asarray(temperature)[..., None]
    kl = optax.losses.kl_divergence(jax.nn.log_softmax(student_logits / T), jax.nn.softmax(teacher_logits / T))
    return T[..., 0] ** 2 * kl


def test_distillation_matches_optax_composition_values_and_gradients(x64):
    a = DISTILLATION.make(np.random.default_rng(6), SHAPE)
    (losses, grads), (optax_losses, optax_grads) = (losses_and_gradients(f, a)
                                                    for f in (distillation_loss, _optax_distillation))
    np.testing.assert_allclose(losses, optax_losses, rtol=1e-12, atol=1e-15)
    assert set(grads) == set(optax_grads) == {"student_logits", "teacher_logits", "temperature"}
    for name in grads:
        np.testing.assert_allclose(grads[name], optax_grads[name], rtol=1e-11, atol=1e-13, err_msg=name)


def _torch_values_and_grads(loss_of_tensors, a):
    torch = pytest.importorskip("torch")
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in a.items()}
    loss = loss_of_tensors(torch, **t)
    loss.sum().backward()
    return loss.detach().numpy(), {k: v.grad.numpy() for k, v in t.items()}


@pytest.mark.parametrize("case", [KL, LOG_KL], ids=["log_target=False", "log_target=True"])
def test_kl_divergence_matches_torch_kl_div_summed_over_classes(case, x64):
    a = case.make(np.random.default_rng(7), SHAPE)
    b = {k: a[k] for k in ("log_predictions", "targets")}
    values, torch_grads = _torch_values_and_grads(
        lambda torch, log_predictions, targets: torch.nn.functional.kl_div(
            log_predictions, targets, reduction="none", log_target=a["log_targets"]).sum(-1), b)
    losses, grads = losses_and_gradients(kl_divergence, a)
    np.testing.assert_allclose(losses, values, rtol=1e-12, atol=1e-15)
    for name in b:
        np.testing.assert_allclose(grads[name], torch_grads[name], rtol=1e-12, atol=1e-14, err_msg=name)


def test_distillation_matches_torch_composition_values_and_gradients(x64):
    a = DISTILLATION.make(np.random.default_rng(8), SHAPE)

    def torch_distillation(torch, student_logits, teacher_logits, temperature):
        T, f = temperature[..., None], torch.nn.functional
        kl = f.kl_div(f.log_softmax(student_logits / T, -1), f.softmax(teacher_logits / T, -1), reduction="none")
        return temperature**2 * kl.sum(-1)

    values, torch_grads = _torch_values_and_grads(torch_distillation, a)
    losses, grads = losses_and_gradients(distillation_loss, a)
    np.testing.assert_allclose(losses, values, rtol=1e-12, atol=1e-15)
    for name in a:
        np.testing.assert_allclose(grads[name], torch_grads[name], rtol=1e-11, atol=1e-13, err_msg=name)


# ----------------------------------------------------------------------------- zero targets and masked classes


@pytest.mark.parametrize("log_targets", [False, True], ids=["probability-targets", "log-targets"])
def test_zero_targets_contribute_zero_with_pinned_zero_subgradient(log_targets, x64):
    """t_c = 0 (log t_c = −inf) adds 0 and gets derivative 0 for both arguments, also where
    log p_c = −inf (row 0: a class masked out of the predictions) and where it is finite
    (row 1, where the true derivative for the target is −inf)."""
    t = np.array([[0.0, 0.4, 0.6, 0.0], [0.0, 0.3, 0.5, 0.2]])
    lp = np.array([[-INF, np.log(0.5), np.log(0.5), -INF], np.log([0.1, 0.2, 0.3, 0.4])])
    present = t > 0
    a = {"log_predictions": lp, "targets": np.log(t, where=present, out=np.full_like(t, -INF)) if log_targets else t,
         "log_targets": log_targets}
    losses, grads = losses_and_gradients(kl_divergence, a)
    np.testing.assert_allclose(losses, _rowwise(_np_kl, present, lp, t), rtol=1e-14)
    d = _np_kl_d(np.where(present, lp, 0.0), np.where(present, a["targets"], 1.0), log_targets)
    for name, g in grads.items():
        np.testing.assert_array_equal(g[~present], 0.0, err_msg=name)
        np.testing.assert_allclose(g[present], d[name][present], rtol=1e-14, err_msg=name)
    _, jv = gradients_and_jvp(kl_divergence, a, ("log_predictions", "targets"))
    assert np.all(np.isfinite(jv))


def test_positive_target_where_prediction_is_neg_inf_gives_inf_loss(x64):
    a = {"log_predictions": np.array([[-INF, 0.0], np.log([0.5, 0.5])]), "targets": np.full((2, 2), 0.5)}
    np.testing.assert_array_equal(kl_divergence(**a), [INF, 0.0])


def test_distillation_classes_neg_inf_in_both_are_absent_with_zero_gradients(x64):
    rng = np.random.default_rng(9)
    s, u, T = rng.normal(scale=2.0, size=SHAPE), rng.normal(scale=2.0, size=SHAPE), _temperatures(rng, SHAPE[:-1])
    present = rng.random(SHAPE) < 0.6
    present[:, 0] = True
    a = {"student_logits": np.where(present, s, -INF), "teacher_logits": np.where(present, u, -INF), "temperature": T}
    losses, grads = losses_and_gradients(distillation_loss, a)
    np.testing.assert_allclose(losses, _rowwise(_np_distillation, present, s, u, T), rtol=1e-12)
    expected = _rowwise(_np_distillation_d, present, s, u, T)
    for name in ("student_logits", "teacher_logits"):
        np.testing.assert_array_equal(grads[name][~present], 0.0, err_msg=name)
        want = np.concatenate([d[name] for d in expected])
        np.testing.assert_allclose(grads[name][present], want, rtol=1e-11, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(grads["temperature"], [d["temperature"] for d in expected], rtol=1e-11, atol=1e-13)
    _, jv = gradients_and_jvp(distillation_loss, a, ("student_logits", "teacher_logits", "temperature"))
    assert np.all(np.isfinite(jv))


def test_distillation_teacher_only_neg_inf_class_has_zero_teacher_mass(x64):
    a = {"student_logits": np.array([[1.0, 2.0, 3.0]]), "teacher_logits": np.array([[0.5, -INF, 1.0]])}
    losses, grads = losses_and_gradients(distillation_loss, a)
    np.testing.assert_allclose(losses, _np_distillation(a["student_logits"], np.array([[0.5, -1e300, 1.0]])),
                               rtol=1e-14)
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    assert grads["teacher_logits"][0, 1] == 0.0


def test_distillation_student_only_neg_inf_where_teacher_has_mass_gives_inf_loss_and_finite_student_gradient(x64):
    a = {"student_logits": np.array([[1.0, -INF, 3.0]]), "teacher_logits": np.array([[0.5, 0.2, 1.0]])}
    losses, grads = losses_and_gradients(distillation_loss, a)
    assert losses[0] == INF
    p, q = np.exp(_np_log_softmax(np.array([1.0, -1e300, 3.0]))), np.exp(_np_log_softmax(a["teacher_logits"][0]))
    np.testing.assert_allclose(grads["student_logits"][0], p - q, rtol=1e-14)


# ----------------------------------------------------------------------------- extreme logits


def test_distillation_is_finite_and_accurate_at_logits_1e4():
    s = np.array([[1e4, -1e4, 0.0, 1.0], [-1e4, 1e4, 0.5, -INF], [1e4, 1e4 - 1.0, -1e4, 0.0]], np.float32)
    u = np.array([[-1e4, 1e4, 0.5, 2.0], [1e4, -1e4, 0.0, -INF], [1e4, 1e4, 0.0, -1e4]], np.float32)
    T = np.array([1.0, 4.0, 2.0], np.float32)
    losses, grads = losses_and_gradients(distillation_loss, {"student_logits": s, "teacher_logits": u,
                                                             "temperature": T})
    present = np.isfinite(s)
    s64, u64, T64 = s.astype(np.float64), u.astype(np.float64), T.astype(np.float64)
    np.testing.assert_allclose(losses, _rowwise(_np_distillation, present, s64, u64, T64), rtol=1e-6)
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
    expected = _rowwise(_np_distillation_d, present, s64, u64, T64)
    for name in ("student_logits", "teacher_logits"):
        np.testing.assert_allclose(grads[name][present], np.concatenate([d[name] for d in expected]), atol=1e-5)
        np.testing.assert_array_equal(grads[name][~present], 0.0)


def test_kl_divergence_is_finite_at_log_predictions_from_logits_1e4():
    lp = np.asarray(jax.nn.log_softmax(np.array([[1e4, -1e4, 0.0], [0.0, 1e4, -INF]], np.float32)))
    t = np.array([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0]], np.float32)
    losses, grads = losses_and_gradients(kl_divergence, {"log_predictions": lp, "targets": t})
    expected = [0.5 * np.log(0.5) + 0.5 * np.log(0.25) + 0.25 * 2e4 + 0.25 * 1e4, 0.5 * np.log(0.25) + 0.5 * 1e4]
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


# ----------------------------------------------------------------------------- where=


@pytest.mark.parametrize("case", [KL, DISTILLATION], ids=str)
def test_masked_examples_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case):
    """Masked examples of the inputs hold inf/NaN padding; nothing of it reaches the value or
    any derivative (forward or reverse)."""
    a = {k: v.astype(np.float32) if isinstance(v, np.ndarray) else v
         for k, v in case.make(np.random.default_rng(10), SHAPE).items()}
    where = np.arange(SHAPE[0]) % 3 != 0
    clean, dirty = float_arguments(a), float_arguments(a)
    for name in per_example_arguments(case.fn):
        dirty[name][~where] = np.resize([np.inf, -np.inf, np.nan], dirty[name][~where].shape)

    @jax.jit
    def run(dirty, clean):
        masked = lambda f: case.fn(**{**a, **f}, where=where)  # noqa: E731
        by_hand = lambda f: jnp.where(where, case.fn(**{**a, **f}), 0.0)  # noqa: E731
        _, jv = jax.jvp(masked, (dirty,), (jax.tree.map(jnp.ones_like, dirty),))
        grad = lambda g, f: jax.grad(lambda f: jnp.sum(g(f)))(f)  # noqa: E731
        return masked(dirty), case.fn(**{**a, **clean}), grad(masked, dirty), grad(by_hand, clean), jv

    loss, unmasked, grads, expected, jv = run(dirty, clean)
    np.testing.assert_array_equal(loss[~where], 0.0)
    np.testing.assert_allclose(loss[where], unmasked[where], rtol=1e-6)
    np.testing.assert_array_equal(jv[~where], 0.0)
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g, expected[name], rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_array_equal(g[~where], 0.0, err_msg=name)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("case, dtype", [(KL, jnp.bfloat16), (LOG_KL, jnp.float16), (DISTILLATION, jnp.bfloat16),
                                         (DISTILLATION, jnp.float16)], ids=lambda x: getattr(x, "__name__", str(x)))
def test_low_precision_inputs_give_float32_loss_and_own_dtype_gradients(case, dtype):
    a = case.make(np.random.default_rng(12), SHAPE)
    low = {k: np.asarray(v, dtype) for k, v in float_arguments(a).items()}
    options = {k: v for k, v in a.items() if k not in low}
    losses, grads = losses_and_gradients(case.fn, {**low, **options})
    losses32, grads32 = losses_and_gradients(case.fn, {**{k: v.astype(np.float32) for k, v in low.items()},
                                                       **options})
    assert losses.dtype == jnp.float32
    np.testing.assert_allclose(losses, losses32, rtol=1e-6)
    np.testing.assert_allclose(losses, case.ref(**a), rtol=0.05, atol=0.05)
    for name, g in grads.items():
        assert g.dtype == dtype, name
        np.testing.assert_allclose(g.astype(np.float32), grads32[name], rtol=1e-2, atol=1e-2, err_msg=name)


# ----------------------------------------------------------------------------- errors

F, I = np.ones(SHAPE, np.float32), np.ones(SHAPE, np.int32)
F6 = np.ones((5, 6), np.float32)
ERRORS = [
    pytest.param(kl_divergence, (I, F), {}, TypeError,
                 r"log_predictions must be a floating-point array, got shape \(5, 7\), dtype int32",
                 id="integer-log_predictions"),
    pytest.param(kl_divergence, (F, I), {}, TypeError,
                 r"targets must be a floating-point array, got shape \(5, 7\), dtype int32", id="integer-targets"),
    pytest.param(kl_divergence, (F, F6), {}, ValueError,
                 r"targets with shape \(5, 6\) must have the shape of log_predictions, \(5, 7\)", id="targets-shape"),
    pytest.param(kl_divergence, (np.float32(1.0), np.float32(1.0)), {}, ValueError,
                 r"log_predictions must have a class axis \(rank >= 1\), got shape \(\)", id="scalar-inputs"),
    pytest.param(kl_divergence, (F, F), {"log_targets": 1}, TypeError, r"log_targets must be a Python bool",
                 id="log_targets-not-bool"),
    pytest.param(kl_divergence, (F, F), {"where": np.ones(5, np.float32)}, TypeError,
                 r"where must be a boolean mask", id="kl-float-where"),
    pytest.param(kl_divergence, (F, F), {"where": np.ones(SHAPE, bool)}, ValueError,
                 r"where with shape \(5, 7\) does not broadcast to the batch shape of log_predictions "
                 r"with shape \(5,\)", id="kl-where-shape"),
    pytest.param(distillation_loss, (I, F), {}, TypeError,
                 r"student_logits must be a floating-point array, got shape \(5, 7\), dtype int32",
                 id="integer-student_logits"),
    pytest.param(distillation_loss, (F, I), {}, TypeError,
                 r"teacher_logits must be a floating-point array, got shape \(5, 7\), dtype int32",
                 id="integer-teacher_logits"),
    pytest.param(distillation_loss, (F, F6), {}, ValueError,
                 r"teacher_logits with shape \(5, 6\) must have the shape of student_logits, \(5, 7\)",
                 id="teacher_logits-shape"),
    pytest.param(distillation_loss, (F, F), {"temperature": -1.0}, ValueError, r"temperature must be > 0, got -1.0",
                 id="negative-temperature"),
    pytest.param(distillation_loss, (F, F), {"temperature": 0.0}, ValueError, r"temperature must be > 0",
                 id="zero-temperature"),
    pytest.param(distillation_loss, (F, F), {"temperature": np.ones(7, np.float32)}, ValueError,
                 r"temperature with shape \(7,\) does not broadcast to the batch shape of student_logits "
                 r"with shape \(5,\)", id="temperature-shape"),
    pytest.param(distillation_loss, (F, F), {"where": np.ones(5, np.int32)}, TypeError,
                 r"where must be a boolean mask", id="distillation-integer-where"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    assert_bad_input_raises(fn, args, kwargs, error, match, jit)


def test_concrete_nonpositive_temperature_array_raises():
    with pytest.raises(ValueError, match=r"temperature must be > 0"):
        distillation_loss(F, F, temperature=np.array([1.0, 2.0, 0.0, 1.0, 1.0], np.float32))


# ----------------------------------------------------------------------------- higher order


@parametrize_core
def test_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    """The hand rule's second derivatives equal autodiff of the formula, in every float argument."""
    assert_hessian_and_hvp_match_reference(case, seed=13)
