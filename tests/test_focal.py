"""sigmoid_focal_loss, softmax_focal_loss and poly1_cross_entropy: float64 references, hand-derived
derivatives, optax / torchvision / PyTorch parity, gamma < 1 where p_t → 1, ±1e4 logits, −inf
classes, masks, dtypes, errors and second derivatives.

Values and derivatives are checked in float64 against NumPy formulas written here from
the papers and torchvision's code (the derivatives by the chain rule through p and
1 − p_t, not the margin forms the rules use).  The elementwise sigmoid focal loss runs
through the shared machinery of ``_loss_cases``; the multi-class losses go through one
jitted function of (loss, shapes, static options), so they share its compilations.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from _loss_cases import (
    SHAPE,
    Case,
    assert_bad_input_raises,
    assert_check_gradients_passes_for_every_float_argument,
    assert_hessian_and_hvp_match_reference,
    assert_low_precision_gives_float32_loss_and_own_dtype_gradients,
    assert_masked_entries_zero,
    float_arguments,
    gradients_of_sum,
    low_precision_params,
    mask_params,
    mean_value_and_grad_memory,
)

import jaxloss
from jaxloss.focal import sigmoid_focal_loss, softmax_focal_loss
from jaxloss.multiclass import poly1_cross_entropy

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

SHAPES = [pytest.param(SHAPE, id="batch-5-classes-7"), pytest.param((2, 3, 4), id="batch-2x3-classes-4")]
INF = np.inf


@functools.partial(jax.jit, static_argnames=("fn", "options"))
def _jitted_losses_and_gradients(fn, floats, others, options):
    loss = lambda f: fn(**f, **others, **dict(options))  # noqa: E731
    return loss(floats), jax.grad(lambda f: jnp.sum(loss(f)))(floats)


def value_and_grads(fn, *args, argnums=0):
    """fn(*args) and the gradient of its sum in the arguments argnums, compiled as one program."""
    return jax.jit(lambda *a: (fn(*a), jax.grad(lambda *z: jnp.sum(fn(*z)), argnums)(*a)))(*args)


def losses_and_gradients(fn, a):
    """fn(**a) and the gradients of its sum with respect to every float argument; integer
    arrays are traced too, None and Python scalars are static.  Compiled once per loss,
    shapes and options."""
    floats = float_arguments(a)
    others = {k: v for k, v in a.items() if k not in floats and isinstance(v, np.ndarray)}
    options = tuple(sorted((k, v) for k, v in a.items() if k not in floats and k not in others))
    return _jitted_losses_and_gradients(fn, floats, others, options)


# ============================================================================= NumPy references


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_sigmoid_focal(logits, labels, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss(reduction="none"), transcribed (alpha=None for its -1)."""
    x, y = logits, np.asarray(labels, np.float64)
    p = _np_sigmoid(x)
    ce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))  # binary_cross_entropy_with_logits
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def _np_sigmoid_focal_d(logits, labels, alpha=0.25, gamma=2.0):
    """The chain rule through p = σ(x) and u = 1 − p_t = p + y − 2py."""
    x, y = logits, np.asarray(labels, np.float64)
    p = _np_sigmoid(x)
    ce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    u = p + y - 2 * p * y
    a, da = (1.0, 0.0) if alpha is None else (alpha * y + (1 - alpha) * (1 - y), 2 * alpha - 1)
    focal = u ** gamma
    dfocal_du = gamma * u ** (gamma - 1)
    d = {
        "logits": a * ((p - y) * focal + ce * dfocal_du * p * (1 - p) * (1 - 2 * y)),
        "labels": da * ce * focal + a * (-x * focal + ce * dfocal_du * (1 - 2 * p)),
        "gamma": a * ce * focal * np.log(u),
    }
    if alpha is not None:
        d["alpha"] = (2 * y - 1) * ce * focal
    return d


def _np_log_softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))


def _np_one_hot(labels, classes):
    return (np.asarray(labels)[..., None] == np.arange(classes)).astype(np.float64)


def _np_softmax_focal(logits, labels, class_weights=None, gamma=2.0):
    """−α_y (1 − p_y)^γ log p_y."""
    log_p_y = np.take_along_axis(_np_log_softmax(logits), labels[..., None], -1)[..., 0]
    a = 1.0 if class_weights is None else np.broadcast_to(class_weights, logits.shape[-1:])[labels]
    return -a * (1 - np.exp(log_p_y)) ** gamma * log_p_y


def _np_softmax_focal_d(logits, labels, class_weights=None, gamma=2.0):
    """∂ℓ/∂x_c = −α_y ([c = y] − p_c)·[(1 − p_y)^γ − γ (1 − p_y)^(γ−1) p_y log p_y]."""
    classes = logits.shape[-1]
    p = np.exp(_np_log_softmax(logits))
    one_hot = _np_one_hot(labels, classes)
    p_y = np.sum(one_hot * p, axis=-1)
    a = 1.0 if class_weights is None else np.broadcast_to(class_weights, logits.shape[-1:])[labels]
    g = np.asarray(gamma)
    bracket = (1 - p_y) ** g - g * (1 - p_y) ** (g - 1) * p_y * np.log(p_y)
    d = {"logits": -np.asarray(a)[..., None] * (one_hot - p) * bracket[..., None],
         "gamma": _np_softmax_focal(logits, labels, class_weights, gamma) * np.log1p(-p_y)}
    if class_weights is not None:
        d["class_weights"] = one_hot * (-(1 - p_y) ** g * np.log(p_y))[..., None]
    return d


def _np_targets(labels, classes):
    labels = np.asarray(labels)
    return _np_one_hot(labels, classes) if np.issubdtype(labels.dtype, np.integer) else labels


def _np_poly1(logits, labels, epsilon=1.0):
    """−Σ_c y_c log p_c + ε Σ_c y_c (1 − p_c)."""
    y = _np_targets(labels, logits.shape[-1])
    log_p = _np_log_softmax(logits)
    return -np.sum(y * log_p, axis=-1) + epsilon * np.sum(y * (1 - np.exp(log_p)), axis=-1)


def _np_poly1_d(logits, labels, epsilon=1.0):
    y = _np_targets(labels, logits.shape[-1])
    log_p = _np_log_softmax(logits)
    p = np.exp(log_p)
    e = np.asarray(epsilon)[..., None]
    p_t = np.sum(y * p, axis=-1, keepdims=True)
    return {
        "logits": np.sum(y, axis=-1, keepdims=True) * p - y - e * p * (y - p_t),  # ∂/∂x of Σ y log p and of −Σ y p
        "labels": -log_p + e * (1 - p),
        "epsilon": np.sum(y * (1 - p), axis=-1),
    }


def _sum_to(x, shape):
    x = np.sum(x, axis=tuple(range(np.ndim(x) - len(shape))))
    return np.sum(x, axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True).reshape(shape)


# ============================================================================= sigmoid_focal_loss


def _option(rng, shape, value):
    return value(rng, shape) if callable(value) else value


def _sigmoid_inputs(labels="soft", **options):
    def make(rng, shape):
        x = np.clip(rng.normal(scale=2.0, size=shape), -6.0, 6.0)
        hard = rng.integers(0, 2, size=shape)
        y = {"soft": rng.uniform(size=shape), "hard": hard.astype(np.float64), "int": hard, "bool": hard > 0}[labels]
        return {"logits": x, "labels": y, **{k: _option(rng, shape, v) for k, v in options.items()}}

    return make


def _alphas(rng, shape):
    return rng.uniform(0.1, 0.9, size=shape)


def _gammas(rng, shape):
    return rng.uniform(0.5, 3.0, size=shape)


def _per_class(draw):
    return lambda rng, shape: draw(rng, shape[-1:])


def _sigmoid_case(id, labels="soft", **options):
    return Case(f"sigmoid_focal-{id}", sigmoid_focal_loss, _sigmoid_inputs(labels, **options),
                _np_sigmoid_focal, _np_sigmoid_focal_d)


SIGMOID_CASES = [
    _sigmoid_case("soft-labels", alpha=0.25, gamma=2.0),
    _sigmoid_case("hard-float-labels", "hard", alpha=0.25, gamma=2.0),
    _sigmoid_case("int-labels", "int", alpha=0.25, gamma=2.0),
    _sigmoid_case("alpha-None", alpha=None, gamma=2.0),
    _sigmoid_case("gamma-0", alpha=0.4, gamma=0.0),
    _sigmoid_case("gamma-0.5", "hard", alpha=0.25, gamma=0.5),
    _sigmoid_case("0d-array-options", alpha=np.array(0.7), gamma=np.array(1.5)),
    _sigmoid_case("elementwise-options", alpha=_alphas, gamma=_gammas),
    _sigmoid_case("per-class-options", "int", alpha=_per_class(_alphas), gamma=_per_class(_gammas)),
]
# One case per kind of labels, with options as arrays, for the properties that do not depend on option values.
SIGMOID_CORE = [c for c in SIGMOID_CASES
                if c.id in {"sigmoid_focal-per-class-options", "sigmoid_focal-elementwise-options"}]
ELEMENTWISE = "sigmoid_focal-elementwise-options"


SIGMOID_CHECKED = [c for c in SIGMOID_CASES if c.id.split("-", 1)[1] in
                   {"hard-float-labels", "elementwise-options", "per-class-options"}]


def _assert_values_and_derivatives_match(case, shape, seed):
    """float64 values and the gradient of every float argument (Python float options as
    0-d arrays) equal the NumPy reference, under one compilation per argument structure."""
    a = case.make(np.random.default_rng(seed), shape)
    losses, grads = losses_and_gradients(case.fn, a)
    assert losses.dtype == jnp.float64
    np.testing.assert_allclose(losses, case.ref(**a), rtol=1e-12, atol=1e-15)
    expected = case.dref(**a)
    assert set(grads) == set(float_arguments(a))
    for name, g in grads.items():
        np.testing.assert_allclose(g, _sum_to(np.asarray(expected[name]), np.shape(a[name])),
                                   rtol=1e-11, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("case", SIGMOID_CASES, ids=str)
def test_sigmoid_focal_values_and_derivatives_match_numpy_transcription_of_torchvision(case, x64):
    _assert_values_and_derivatives_match(case, SHAPE, seed=0)


@pytest.mark.parametrize("case", SIGMOID_CHECKED, ids=str)
def test_sigmoid_focal_check_gradients_passes_for_every_float_argument(case):
    assert_check_gradients_passes_for_every_float_argument(case, seed=2)


def test_sigmoid_focal_3d_batch_matches_numpy(x64):
    _assert_values_and_derivatives_match(SIGMOID_CASES[-1], (2, 3, 4), seed=3)


def test_sigmoid_focal_int_bool_and_float_hard_labels_agree():
    a = _sigmoid_inputs("int")(np.random.default_rng(4), SHAPE)
    x = a["logits"].astype(np.float32)
    first, *others = [value_and_grads(lambda x, y: sigmoid_focal_loss(x, y, gamma=0.5), x, y)
                      for y in (a["labels"], a["labels"] > 0, a["labels"].astype(np.float32))]
    for other in others:
        np.testing.assert_allclose(other[0], first[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(other[1], first[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("labels", ["soft", "hard"])
def test_sigmoid_focal_matches_optax_values_and_gradients_of_every_argument(labels, x64):
    a = _sigmoid_inputs(labels, alpha=_alphas, gamma=_gammas)(np.random.default_rng(5), SHAPE)
    np.testing.assert_allclose(sigmoid_focal_loss(**a), optax.losses.sigmoid_focal_loss(**a), rtol=1e-12)
    ours, theirs = gradients_of_sum(sigmoid_focal_loss, a), gradients_of_sum(optax.losses.sigmoid_focal_loss, a)
    for name in ("logits", "alpha", "gamma") + (("labels",) if labels == "soft" else ()):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-11, atol=1e-14, err_msg=name)


def test_sigmoid_focal_alpha_none_matches_optax_default(x64):
    a = _sigmoid_inputs("soft")(np.random.default_rng(6), SHAPE)
    np.testing.assert_allclose(sigmoid_focal_loss(**a, alpha=None), optax.losses.sigmoid_focal_loss(**a), rtol=1e-12)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 0.5), (None, 2.0)], ids=["alpha-0.25-gamma-0.5", "alpha-off-gamma-2"])
def test_sigmoid_focal_matches_torchvision_formula_under_torch_autograd(alpha, gamma, x64):
    torch = pytest.importorskip("torch")
    a = _sigmoid_inputs("soft")(np.random.default_rng(7), SHAPE)
    x, y = (torch.tensor(a[k], dtype=torch.float64, requires_grad=True) for k in ("logits", "labels"))
    # torchvision.ops.sigmoid_focal_loss, verbatim (alpha=-1 turns the weighting off).
    t_alpha = -1 if alpha is None else alpha
    p = torch.sigmoid(x)
    ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if t_alpha >= 0:
        loss = (t_alpha * y + (1 - t_alpha) * (1 - y)) * loss
    loss.sum().backward()
    options = {"alpha": alpha, "gamma": gamma}
    np.testing.assert_allclose(sigmoid_focal_loss(**a, **options), loss.detach().numpy(), rtol=1e-12)
    ours = gradients_of_sum(sigmoid_focal_loss, {**a, **options}, wrt=("logits", "labels"))
    np.testing.assert_allclose(ours["logits"], x.grad.numpy(), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(ours["labels"], y.grad.numpy(), rtol=1e-11, atol=1e-14)


def test_sigmoid_focal_with_gamma_0_is_alpha_weighted_bce(x64):
    a = _sigmoid_inputs("soft", alpha=_alphas)(np.random.default_rng(8), SHAPE)

    def weighted_bce(logits, labels, alpha):
        return (alpha * labels + (1 - alpha) * (1 - labels)) * jaxloss.sigmoid_binary_cross_entropy(logits, labels)

    np.testing.assert_allclose(sigmoid_focal_loss(**a, gamma=0.0), weighted_bce(**a), rtol=1e-12)
    ours = gradients_of_sum(lambda **k: sigmoid_focal_loss(**k, gamma=0.0), a, wrt=("logits", "labels", "alpha"))
    theirs = gradients_of_sum(weighted_bce, a, wrt=("logits", "labels", "alpha"))
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-12, atol=1e-14, err_msg=name)


# ----------------------------------------------------------------------------- p_t → 1, ±1e4


def _np_stable_hard_focal(z, alpha, gamma):
    """Loss and ∂/∂z of α·softplus(−z)·σ(−z)^γ (a hard label of margin z), in float64 logs."""
    ce, log_u = np.logaddexp(0, -z), -np.logaddexp(0, z)
    w = np.exp(gamma * log_u)
    return alpha * ce * w, -alpha * w * (_np_sigmoid(-z) + gamma * ce * _np_sigmoid(z))


@pytest.mark.parametrize("labels, gamma", [("int", 0.5), ("float", 0.5), ("int", 2.0)])
def test_sigmoid_focal_is_accurate_when_p_t_goes_to_1_with_gamma_below_1(labels, gamma):
    """Logits up to 80 on the right side: (1 − p_t) underflows 1 − p, and γ − 1 < 0, yet the
    loss keeps its relative precision and the gradient is finite and right."""
    z = np.array([5.0, 20.0, 40.0, 80.0, 5.0, 20.0, 40.0, 80.0], np.float32)  # margins y·x
    hard = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    x = np.where(hard > 0, z, -z).astype(np.float32)
    y = hard if labels == "int" else hard.astype(np.float32)
    fn = lambda x, g: sigmoid_focal_loss(x, y, alpha=0.25, gamma=g)  # noqa: E731
    loss, grads = value_and_grads(fn, x, np.float32(gamma), argnums=(0, 1))
    alpha_t = np.where(hard > 0, 0.25, 0.75)
    want, dz = _np_stable_hard_focal(z.astype(np.float64), alpha_t, gamma)
    tiny = np.finfo(np.float32).tiny  # below it float32 holds 0 (or a denormal)
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=tiny)
    assert np.all(want[loss > 0] > tiny)
    np.testing.assert_allclose(grads[0], np.where(hard > 0, dz, -dz), rtol=1e-5, atol=tiny)
    np.testing.assert_allclose(grads[1], np.sum(want * -np.logaddexp(0, z)), rtol=1e-5)


def test_sigmoid_focal_at_logits_1e4_is_exact_and_finite_for_every_argument():
    x = np.array([1e4, -1e4, 1e4, -1e4, 1e4, -1e4], np.float32)
    y = np.array([1.0, 1.0, 0.0, 0.0, 0.3, 0.999], np.float32)
    args = (x, y, np.float32(0.25), np.float32(0.5))
    fn = lambda x, y, a, g: sigmoid_focal_loss(x, y, alpha=a, gamma=g)  # noqa: E731
    loss, grads = value_and_grads(fn, *args, argnums=(0, 1, 2, 3))
    # Right side: 0.  Wrong side: α_t·1e4.  Soft: α_t·ce·(1 − p_t)^γ with 1 − p_t = 1 − y or y.
    want = [0.0, 0.25e4, 0.75e4, 0.0, 0.6 * 0.7e4 * 0.7 ** 0.5, 0.2505 * 0.999e4 * 0.999 ** 0.5]
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    for g in grads:
        assert np.all(np.isfinite(g)), grads
    gx = np.asarray(grads[0])
    np.testing.assert_array_equal(gx[[0, 3]], 0.0)  # right side
    np.testing.assert_allclose(gx[[1, 2]], [-0.25, 0.75], rtol=1e-6)  # wrong side: ∓α_t (as BCE)


def test_sigmoid_focal_label_derivative_at_0_and_1_is_the_analytic_one_sided_derivative(x64):
    x = np.tile([-6.0, -2.0, 0.5, 2.0, 6.0], 6)
    y = np.tile(np.repeat([0.0, 1.0], 5), 3)
    gamma = np.repeat([0.0, 0.5, 2.0], 10)
    a = {"logits": x, "labels": y, "alpha": 0.25, "gamma": gamma}
    g = gradients_of_sum(sigmoid_focal_loss, a, wrt=("labels",))["labels"]
    np.testing.assert_allclose(g, _np_sigmoid_focal_d(x, y, 0.25, gamma)["labels"], rtol=1e-12)


def test_sigmoid_focal_label_derivative_is_finite_at_0_and_1_with_logits_1e4():
    x = np.array([1e4, -1e4, 1e4, -1e4], np.float32)
    y = np.array([0.0, 0.0, 1.0, 1.0], np.float32)
    fn = jax.jit(lambda y, g: value_and_grads(lambda y: sigmoid_focal_loss(x, y, gamma=g), y)[1])
    for gamma in (0.0, 0.5, 2.0):
        g = fn(y, np.float32(gamma))
        assert np.all(np.isfinite(g)), (gamma, g)
        # Right side (x = −1e4 for y = 0, 1e4 for y = 1): (1 − p_t)^γ·(…) → 0 for γ > 0.
        if gamma > 0:
            np.testing.assert_array_equal(np.asarray(g)[[1, 2]], 0.0)


# ----------------------------------------------------------------------------- where=, dtypes, second order


@pytest.mark.parametrize("case, mask_shape", mask_params(SIGMOID_CORE[:1], broadcast_ids=(ELEMENTWISE,)))
def test_sigmoid_focal_masked_entries_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case, mask_shape):
    assert_masked_entries_zero(case, mask_shape, seed=10)


@pytest.mark.parametrize("case, dtype", low_precision_params(SIGMOID_CORE[:1], float16_ids=(ELEMENTWISE,)))
def test_sigmoid_focal_low_precision_inputs_give_float32_loss_and_own_dtype_gradients(case, dtype):
    assert_low_precision_gives_float32_loss_and_own_dtype_gradients(case, dtype, seed=12)


@pytest.mark.parametrize("case", SIGMOID_CORE, ids=str)
def test_sigmoid_focal_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    assert_hessian_and_hvp_match_reference(case, seed=13)


# ============================================================================= multi-class inputs


def _class_inputs(rng, shape, labels="ids"):
    logits = rng.normal(scale=2.0, size=shape)
    if labels == "ids":
        y = rng.integers(0, shape[-1], size=shape[:-1])
    elif labels == "one-hot":
        y = _np_one_hot(rng.integers(0, shape[-1], size=shape[:-1]), shape[-1])
    else:
        y = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    return logits, y


def _softmax_focal_inputs(alpha=None, gamma=2.0):
    def make(rng, shape):
        logits, labels = _class_inputs(rng, shape)
        a = {"logits": logits, "labels": labels}
        if alpha is not None:
            a["class_weights"] = rng.uniform(0.2, 1.5, shape[-1]) if alpha == "per-class" else alpha
        a["gamma"] = rng.uniform(0.5, 3.0, shape[:-1]) if gamma == "per-example" else gamma
        return a

    return make


def _poly1_inputs(labels="ids", epsilon=1.0):
    def make(rng, shape):
        logits, y = _class_inputs(rng, shape, labels)
        eps = rng.uniform(-1.0, 3.0, shape[:-1]) if epsilon == "per-example" else epsilon
        return {"logits": logits, "labels": y, "epsilon": eps}

    return make


MULTICLASS_CASES = [
    Case("softmax_focal-default", softmax_focal_loss, _softmax_focal_inputs(), _np_softmax_focal, _np_softmax_focal_d),
    Case("softmax_focal-gamma-0", softmax_focal_loss, _softmax_focal_inputs("per-class", 0.0),
         _np_softmax_focal, _np_softmax_focal_d),
    Case("softmax_focal-gamma-0.5", softmax_focal_loss, _softmax_focal_inputs(0.25, 0.5),
         _np_softmax_focal, _np_softmax_focal_d),
    Case("softmax_focal-array-options", softmax_focal_loss, _softmax_focal_inputs("per-class", "per-example"),
         _np_softmax_focal, _np_softmax_focal_d),
    Case("poly1-ids", poly1_cross_entropy, _poly1_inputs(), _np_poly1, _np_poly1_d),
    Case("poly1-negative-epsilon", poly1_cross_entropy, _poly1_inputs("ids", -1.0), _np_poly1, _np_poly1_d),
    Case("poly1-probabilities", poly1_cross_entropy, _poly1_inputs("probabilities", "per-example"),
         _np_poly1, _np_poly1_d),
    Case("poly1-one-hot", poly1_cross_entropy, _poly1_inputs("one-hot", 2.0), _np_poly1, _np_poly1_d),
]
SOFTMAX_FOCAL_FULL, POLY1_FULL = MULTICLASS_CASES[3], MULTICLASS_CASES[6]


@pytest.mark.parametrize("case, shape", [(c, SHAPE) for c in MULTICLASS_CASES]
                         + [(c, (2, 3, 4)) for c in (SOFTMAX_FOCAL_FULL, POLY1_FULL)], ids=str)
def test_multiclass_values_and_derivatives_match_numpy_float64_reference(case, shape, x64):
    _assert_values_and_derivatives_match(case, shape, seed=20)


@pytest.mark.parametrize("case", [c for c in MULTICLASS_CASES if c.id in
                                  ("softmax_focal-array-options", "poly1-ids", "poly1-probabilities")], ids=str)
def test_multiclass_check_gradients_passes_for_every_float_argument(case):
    a = case.make(np.random.default_rng(21), SHAPE)
    check = jaxloss.check_gradients(case.fn, **a)
    assert {r.argument for r in check.rows} == set(float_arguments(a))
    assert check.ok, repr(check)


@pytest.mark.parametrize("case", [SOFTMAX_FOCAL_FULL, POLY1_FULL], ids=str)
def test_multiclass_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    rng = np.random.default_rng(22)
    a = case.make(rng, (3, 4))
    floats = float_arguments(a)
    v = {k: rng.normal(size=np.shape(x)) for k, x in floats.items()}
    rest = {k: x for k, x in a.items() if k not in floats}

    def both(fn):
        total = lambda f: jnp.sum(fn(**rest, **f))  # noqa: E731
        hessian = jax.hessian(lambda x: total({**floats, "logits": x}))(floats["logits"])
        return hessian, jax.jvp(jax.grad(total), (floats,), (v,))[1]

    (hessian, hvp), (hessian_ref, hvp_ref) = jax.jit(lambda: (both(case.fn), both(case.fn.reference)))()
    np.testing.assert_allclose(hessian, hessian_ref, rtol=1e-11, atol=1e-13)
    for name in floats:
        np.testing.assert_allclose(hvp[name], hvp_ref[name], rtol=1e-11, atol=1e-13, err_msg=name)


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("labels, epsilon", [("one-hot", 2.0), ("probabilities", "per-example")])
def test_poly1_matches_optax_values_and_gradients(labels, epsilon, x64):
    a = _poly1_inputs(labels, epsilon)(np.random.default_rng(23), SHAPE)
    a["epsilon"] = np.asarray(a["epsilon"], np.float64)
    np.testing.assert_allclose(poly1_cross_entropy(**a), optax.losses.poly_loss_cross_entropy(**a), rtol=1e-12)
    ours, theirs = gradients_of_sum(poly1_cross_entropy, a), gradients_of_sum(optax.losses.poly_loss_cross_entropy, a)
    for name in ("logits", "labels", "epsilon"):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-11, atol=1e-13, err_msg=name)


def test_poly1_class_ids_equal_one_hot_targets(x64):
    logits, ids = _class_inputs(np.random.default_rng(24), SHAPE)
    one_hot = _np_one_hot(ids, SHAPE[-1])
    (loss, g), (loss_one_hot, g_one_hot) = (
        value_and_grads(lambda x, y: poly1_cross_entropy(x, y, epsilon=1.5), logits, y) for y in (ids, one_hot))
    np.testing.assert_allclose(loss, _np_poly1(logits, ids, 1.5), rtol=1e-12)
    np.testing.assert_allclose(loss_one_hot, loss, rtol=1e-12)
    np.testing.assert_allclose(g_one_hot, g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("labels", ["ids", "probabilities"])
def test_poly1_with_epsilon_0_is_softmax_cross_entropy(labels, x64):
    logits, y = _class_inputs(np.random.default_rng(25), SHAPE, labels)
    ours = lambda x: poly1_cross_entropy(x, y, epsilon=0.0)  # noqa: E731
    theirs = lambda x: jaxloss.softmax_cross_entropy(x, y)  # noqa: E731
    (loss, g), (ce, g_ce) = value_and_grads(ours, logits), value_and_grads(theirs, logits)
    np.testing.assert_allclose(loss, ce, rtol=1e-12)
    np.testing.assert_allclose(g, g_ce, rtol=1e-12, atol=1e-15)


def test_softmax_focal_with_gamma_0_is_class_weighted_cross_entropy(x64):
    a = _softmax_focal_inputs("per-class", 0.0)(np.random.default_rng(26), SHAPE)
    ours = lambda x, w: softmax_focal_loss(x, a["labels"], class_weights=w, gamma=0.0)  # noqa: E731
    theirs = lambda x, w: jaxloss.softmax_cross_entropy(x, a["labels"], class_weights=w)  # noqa: E731
    (loss, g_ours), (ce, g_theirs) = (value_and_grads(f, a["logits"], a["class_weights"], argnums=(0, 1))
                                      for f in (ours, theirs))
    np.testing.assert_allclose(loss, ce, rtol=1e-12)
    for mine, other in zip(g_ours, g_theirs):
        np.testing.assert_allclose(mine, other, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("gamma", [0.5])
def test_softmax_focal_matches_the_common_pytorch_implementation(gamma, x64):
    """The usual PyTorch multi-class focal loss, nll_loss((1 − p)^γ·log p, y, weight=alpha)
    (e.g. open-mmlab mmocr's FocalLoss), per example."""
    torch = pytest.importorskip("torch")
    a = _softmax_focal_inputs("per-class", gamma)(np.random.default_rng(27), SHAPE)
    x = torch.tensor(a["logits"], requires_grad=True)
    w = torch.tensor(a["class_weights"])
    y = torch.tensor(a["labels"])
    # mmocr's FocalLoss.forward with reduction="none" (its nll_loss has no weight derivative).
    logpt = torch.nn.functional.log_softmax(x, dim=1)
    pt = torch.exp(logpt)
    logpt = (1 - pt) ** gamma * logpt
    loss = torch.nn.functional.nll_loss(logpt, y, w, reduction="none")
    loss.sum().backward()
    np.testing.assert_allclose(softmax_focal_loss(**a), loss.detach().numpy(), rtol=1e-12)
    grads = gradients_of_sum(softmax_focal_loss, a, wrt=("logits",))
    np.testing.assert_allclose(grads["logits"], x.grad.numpy(), rtol=1e-11, atol=1e-14)


# ----------------------------------------------------------------------------- p_y → 1, ±1e4, −inf classes


@pytest.mark.parametrize("gamma", [0.5])
def test_softmax_focal_is_accurate_when_p_y_goes_to_1_with_gamma_below_1(gamma):
    """Margins of 5 to 80 over the other classes: 1 − p_y underflows in float32, γ − 1 < 0,
    yet the loss keeps its relative precision and every derivative is finite and right."""
    margins = np.array([5.0, 20.0, 40.0, 80.0])
    logits = np.stack([margins, np.zeros(4), np.full(4, -1.0)], axis=-1).astype(np.float32)
    labels = np.zeros(4, np.int32)
    d = margins - np.logaddexp(0.0, -1.0)  # the label's margin over the log-sum-exp of the others
    want, dd = _np_stable_hard_focal(d, 1.0, gamma)
    tiny = np.finfo(np.float32).tiny
    fn = lambda x, g: softmax_focal_loss(x, labels, gamma=g)  # noqa: E731
    loss, (gx, gg) = value_and_grads(fn, logits, np.float32(gamma), argnums=(0, 1))
    np.testing.assert_allclose(loss, want, rtol=1e-5, atol=tiny)
    q = np.exp(np.array([0.0, -1.0]) - np.logaddexp(0.0, -1.0))  # softmax over the other classes
    np.testing.assert_allclose(gx, dd[:, None] * np.concatenate([np.ones((4, 1)), -np.broadcast_to(q, (4, 2))], -1),
                               rtol=1e-5, atol=tiny)
    np.testing.assert_allclose(gg, np.sum(want * -np.logaddexp(0, d)), rtol=1e-5)


def test_multiclass_losses_at_logits_1e4_are_exact():
    logits = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4], [-1e4, 1e4, 1e4]], np.float32)
    labels = np.array([1, 0, 2])
    alpha = np.array([0.5, 2.0, 1.0], np.float32)
    # Row 0: −log p_y = 2e4, 1 − p_y = 1.  Rows 1, 2: p_y = 1/2.
    half = np.log(2.0) * 0.5 ** 0.5
    (focal, g_focal), (poly, g_poly) = jax.jit(lambda x: (
        value_and_grads(lambda x: softmax_focal_loss(x, labels, class_weights=alpha, gamma=0.5), x),
        value_and_grads(lambda x: poly1_cross_entropy(x, labels, epsilon=2.0), x)))(logits)
    np.testing.assert_allclose(focal, [4e4, 0.5 * half, half], rtol=1e-6)
    assert np.all(np.isfinite(g_focal))
    np.testing.assert_allclose(g_focal[0], [2.0, -2.0, 0.0], atol=1e-6)  # −α_y·([c = y] − q_c), q = (1, ·, 0)
    np.testing.assert_allclose(poly, [2e4 + 2, np.log(2) + 1, np.log(2) + 1], rtol=1e-6)
    np.testing.assert_allclose(g_poly, [[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 1.0, -1.0]], atol=1e-6)


@pytest.mark.parametrize("loss", ["softmax_focal", "poly1-ids", "poly1-probabilities"])
def test_minus_inf_class_is_absent_with_zero_gradient(loss):
    rng = np.random.default_rng(28)
    logits, ids = _class_inputs(rng, SHAPE)
    ids = np.where(ids == 3, 0, ids).astype(np.int32)
    kept = np.delete(logits, 3, axis=-1).astype(np.float32)
    masked = logits.astype(np.float32)
    masked[:, 3] = -np.inf
    if loss == "softmax_focal":
        alpha = rng.uniform(0.2, 1.5, SHAPE[-1]).astype(np.float32)
        fn = lambda x, y, a: softmax_focal_loss(x, y, class_weights=a, gamma=0.5)  # noqa: E731
        full, small = (masked, ids, alpha), (kept, np.where(ids > 3, ids - 1, ids), np.delete(alpha, 3))
    elif loss == "poly1-ids":
        fn = lambda x, y: poly1_cross_entropy(x, y, epsilon=2.0)  # noqa: E731
        full, small = (masked, ids), (kept, np.where(ids > 3, ids - 1, ids))
    else:
        y = np.float32(np.exp(_np_log_softmax(np.delete(logits, 3, axis=-1) / 3)))
        fn = lambda x, y: poly1_cross_entropy(x, y, epsilon=2.0)  # noqa: E731
        full, small = (masked, np.insert(y, 3, 0.0, axis=-1)), (kept, y)
    floats = tuple(i for i, z in enumerate(full) if z.dtype == np.float32)
    (loss, grads), (small_loss, small_grads) = (value_and_grads(fn, *args, argnums=floats) for args in (full, small))
    np.testing.assert_allclose(loss, small_loss, rtol=1e-6)
    for g, s in zip(grads, small_grads):
        assert np.all(np.isfinite(g))
        np.testing.assert_array_equal(g[..., 3], 0.0)
        np.testing.assert_allclose(np.delete(g, 3, axis=-1), s, rtol=1e-5, atol=1e-7)


def test_softmax_focal_label_with_minus_inf_logit_gives_inf_loss_and_finite_logits_gradient():
    logits = np.array([[-np.inf, 1.0, 0.0]], np.float32)
    loss, g = value_and_grads(lambda x: softmax_focal_loss(x, np.array([0]), gamma=0.5), logits)
    assert loss[0] == np.inf
    q = np.exp(np.array([1.0, 0.0]) - np.logaddexp(1.0, 0.0))
    np.testing.assert_allclose(g, [[-1.0, *q]], rtol=1e-6)


def test_ignored_ids_and_examples_without_other_classes_give_zero_loss_and_gradient():
    logits = np.float32(np.random.default_rng(29).normal(size=(4, 3)))
    logits[3, 1:] = -np.inf  # only the label class is left
    labels = np.array([0, -100, 1, 0])
    for fn in (lambda x: softmax_focal_loss(x, labels, gamma=0.5), lambda x: poly1_cross_entropy(x, labels)):
        loss, g = (np.asarray(a) for a in value_and_grads(fn, logits))
        np.testing.assert_array_equal(loss[[1, 3]], 0.0)
        assert np.all(loss[[0, 2]] > 0)
        np.testing.assert_array_equal(g[[1, 3]], 0.0)
    # ignore_index inside [0, C): that class's examples are ignored, and −100 is invalid.
    loss, g = (np.asarray(a) for a in value_and_grads(lambda x: softmax_focal_loss(x, labels, ignore_index=1), logits))
    assert loss[2] == 0 and np.all(g[2] == 0) and np.isnan(loss[1]) and np.all(g[1] == 0)


# ----------------------------------------------------------------------------- soft targets, label smoothing


def _torch_soft_focal(logits, targets, alpha, gamma, smoothing):
    """−Σ_c α_c ỹ_c (1 − p_c)^γ log p_c with ỹ = (1 − ε) y + ε/C, and its gradients with respect
    to every argument, by torch autograd in float64."""
    t = [torch.tensor(np.asarray(v, np.float64), requires_grad=True) for v in (logits, targets, alpha, gamma, smoothing)]
    x, y, a, g, e = t
    log_p = torch.log_softmax(x, -1)
    smoothed = (1 - e) * y + e / x.shape[-1]
    loss = -torch.sum(a * smoothed * (1 - log_p.exp()) ** g[..., None] * log_p, -1)
    loss.sum().backward()
    return loss.detach().numpy(), [v.grad.numpy() for v in t]


def _soft_focal_inputs(seed, shape=SHAPE):
    rng = np.random.default_rng(seed)
    logits, y = _class_inputs(rng, shape, "probabilities")
    return {"logits": logits, "labels": y, "class_weights": rng.uniform(0.2, 1.5, shape[-1]),
            "gamma": rng.uniform(0.5, 3.0, shape[:-1]), "label_smoothing": np.float64(0.15)}


def test_softmax_focal_soft_targets_match_torch_autograd_of_the_formula(x64):
    a = _soft_focal_inputs(40)
    losses, grads = losses_and_gradients(softmax_focal_loss, a)
    want, want_grads = _torch_soft_focal(*a.values())
    np.testing.assert_allclose(losses, want, rtol=1e-12)
    for name, expected in zip(a, want_grads):
        np.testing.assert_allclose(grads[name], expected, rtol=1e-10, atol=1e-14, err_msg=name)


def test_softmax_focal_soft_targets_check_gradients_to_second_order(x64):
    a = _soft_focal_inputs(41, (3, 4))
    check = jaxloss.check_gradients(softmax_focal_loss, **a, order=2)
    assert set(a) <= {r.argument for r in check.rows} and check.ok, repr(check)


def test_softmax_focal_one_hot_targets_and_smoothing_agree_with_class_ids(x64):
    a = _softmax_focal_inputs("per-class", "per-example")(np.random.default_rng(42), SHAPE)
    ids = a["labels"]
    one_hot = {**a, "labels": _np_one_hot(ids, SHAPE[-1])}
    for smoothing in (None, 0.0, 0.2):  # None: the margin path of class ids
        extra = {} if smoothing is None else {"label_smoothing": np.float64(smoothing)}
        ours = losses_and_gradients(softmax_focal_loss, {**a, **extra})
        dense = losses_and_gradients(softmax_focal_loss, {**one_hot, **extra})
        reference = _torch_soft_focal(a["logits"], one_hot["labels"], a["class_weights"], a["gamma"], smoothing or 0.0)
        np.testing.assert_allclose(ours[0], reference[0], rtol=1e-12)
        np.testing.assert_allclose(dense[0], reference[0], rtol=1e-12)
        for name in ("logits", "class_weights", "gamma"):
            np.testing.assert_allclose(ours[1][name], dense[1][name], rtol=1e-11, atol=1e-14, err_msg=name)


def test_softmax_focal_soft_targets_with_gamma_0_are_weighted_cross_entropy(x64):
    a = _soft_focal_inputs(43)
    focal = lambda x, y, w: softmax_focal_loss(x, y, class_weights=w, gamma=0.0, label_smoothing=0.1)  # noqa: E731
    ce = lambda x, y, w: jaxloss.softmax_cross_entropy(x, y, class_weights=w, label_smoothing=0.1)  # noqa: E731
    (loss, g), (want, g_want) = (value_and_grads(f, a["logits"], a["labels"], a["class_weights"], argnums=(0, 1, 2))
                                 for f in (focal, ce))
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    for mine, other in zip(g, g_want):
        np.testing.assert_allclose(mine, other, rtol=1e-11, atol=1e-14)


def _np_exact_soft_focal(logits, y, gamma):
    """float64, from each class's margin over the others, ``d_c = x_c − lse_{k≠c} x_k``:
    ``log p_c = −softplus(−d_c)``, ``log(1 − p_c) = −softplus(d_c)``, both exact."""
    x = np.asarray(logits, np.float64)
    others = np.stack([np.logaddexp.reduce(np.delete(x, c, -1), axis=-1) for c in range(x.shape[-1])], -1)
    d = x - others
    return np.sum(y * np.exp(-gamma * np.logaddexp(0, d)) * np.logaddexp(0, -d), -1)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_softmax_focal_soft_targets_are_exact_as_a_probability_goes_to_1(gamma):
    """p_top = 1 − ~e^{−margin}: float32 values within 1e-5 of float64 (1 − p would round to 0
    from margin ~17), and derivatives finite at margins of 1e4."""
    x = np.array([[12.0, 0.0, -1.0], [20.0, 1.0, 0.0], [25.0, 0.0, 3.0], [1e4, -1e4, 0.0]], np.float32)
    y = np.array([[0.9, 0.05, 0.05], [0.98, 0.02, 0.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]], np.float32)
    loss, grads = value_and_grads(lambda x, y: softmax_focal_loss(x, y, gamma=gamma), x, y, argnums=(0, 1))
    np.testing.assert_allclose(loss[:3], _np_exact_soft_focal(x[:3], y[:3], gamma), rtol=1e-5)
    assert loss[3] == pytest.approx(0.5 * 1e4, rel=1e-6)
    for g in grads:
        assert np.all(np.isfinite(g)), grads


# ----------------------------------------------------------------------------- where=, dtypes, residuals


@pytest.mark.parametrize("case", [SOFTMAX_FOCAL_FULL, POLY1_FULL], ids=str)
def test_multiclass_masked_examples_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case):
    a = case.make(np.random.default_rng(30), SHAPE)
    floats = {k: np.float32(v) for k, v in float_arguments(a).items()}
    rest = {k: v for k, v in a.items() if k not in floats}
    where = np.arange(SHAPE[0]) % 2 == 0
    dirty = {k: v.copy() for k, v in floats.items()}
    for name in ("logits", "labels"):
        if name in dirty:
            dirty[name][~where] = np.resize([np.inf, -np.inf, np.nan], dirty[name][~where].shape)

    @jax.jit
    def run(dirty, clean):
        masked = lambda f: case.fn(**rest, **f, where=where)  # noqa: E731
        by_hand = lambda f: jnp.where(where, case.fn(**rest, **f), 0.0)  # noqa: E731
        grad = lambda g, f: jax.grad(lambda f: jnp.sum(g(f)))(f)  # noqa: E731
        jv = jax.jvp(masked, (dirty,), (jax.tree.map(jnp.ones_like, dirty),))[1]
        return masked(dirty), case.fn(**rest, **clean), grad(masked, dirty), grad(by_hand, clean), jv

    loss, unmasked, grads, expected, jv = run(dirty, floats)
    np.testing.assert_array_equal(loss[~where], 0.0)
    np.testing.assert_allclose(loss[where], unmasked[where], rtol=1e-6)
    np.testing.assert_array_equal(jv[~where], 0.0)
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g, expected[name], rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("case", [SOFTMAX_FOCAL_FULL, POLY1_FULL], ids=str)
def test_multiclass_bfloat16_inputs_give_float32_loss_and_bfloat16_gradients(case):
    a = case.make(np.random.default_rng(31), SHAPE)
    floats = {k: jnp.bfloat16(v) for k, v in float_arguments(a).items()}
    rest = {k: v for k, v in a.items() if k not in floats}
    up = jax.tree.map(lambda x: x.astype(jnp.float32), floats)
    (loss, grads), (loss32, grads32) = (value_and_grads(lambda f: case.fn(**rest, **f), f) for f in (floats, up))
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, loss32, rtol=1e-6)
    for name, g in grads.items():
        assert g.dtype == jnp.bfloat16, name
        np.testing.assert_allclose(g.astype(np.float32), grads32[name], rtol=2e-2, atol=2e-2, err_msg=name)


@pytest.mark.parametrize("fn", [softmax_focal_loss, poly1_cross_entropy], ids=lambda f: f.__name__)
def test_reverse_mode_keeps_only_the_logits_and_per_example_statistics(fn):
    logits, ids = _class_inputs(np.random.default_rng(32), (64, 100))
    logits = jnp.float32(logits)
    _, vjp = jax.vjp(lambda x: fn(x, ids), logits)
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(vjp) if hasattr(leaf, "shape")]
    assert any(leaf is logits for leaf in leaves)
    big = [leaf.shape for leaf in leaves if leaf is not logits and leaf.size >= logits.size]
    assert not big, big


# ----------------------------------------------------------------------------- errors

F, I = np.ones(SHAPE, np.float32), np.ones(SHAPE, np.int32)
F6 = np.ones((5, 6), np.float32)
B, B4 = np.zeros(5, np.int32), np.zeros(4, np.int32)
ERRORS = [
    # sigmoid_focal_loss
    pytest.param(sigmoid_focal_loss, (I, F), {}, TypeError,
                 r"logits must be a floating-point array, got shape \(5, 7\)",
                 id="sigmoid-integer-logits"),
    pytest.param(sigmoid_focal_loss, (F, F6), {}, ValueError,
                 r"labels with shape \(5, 6\) does not broadcast to logits with shape \(5, 7\)",
                 id="sigmoid-labels-shape"),
    pytest.param(sigmoid_focal_loss, (F, F), {"gamma": -0.5}, ValueError, r"gamma must be >= 0, got -0.5",
                 id="sigmoid-negative-gamma"),
    pytest.param(sigmoid_focal_loss, (F, F), {"alpha": 1.5}, ValueError, r"alpha must lie in \[0, 1\], got 1.5",
                 id="sigmoid-alpha-above-1"),
    pytest.param(sigmoid_focal_loss, (F, F), {"alpha": -0.1}, ValueError, r"alpha must lie in \[0, 1\]",
                 id="sigmoid-negative-alpha"),
    pytest.param(sigmoid_focal_loss, (F, F), {"alpha": np.ones(6, np.float32)}, ValueError,
                 r"alpha with shape \(6,\) does not broadcast to logits", id="sigmoid-alpha-shape"),
    pytest.param(sigmoid_focal_loss, (F, F), {"where": F}, TypeError, r"where must be a boolean mask",
                 id="sigmoid-float-where"),
    # softmax_focal_loss
    pytest.param(softmax_focal_loss, (I, B), {}, TypeError, r"logits must be a floating-point array",
                 id="softmax-integer-logits"),
    pytest.param(softmax_focal_loss, (F, F[:, 0]), {}, ValueError,
                 r"float labels \(probability targets\) must have the shape of logits", id="softmax-float-labels"),
    pytest.param(softmax_focal_loss, (F, B4), {}, ValueError,
                 r"integer labels \(class ids\) must have the batch shape of logits, \(5,\), got shape \(4,\)",
                 id="softmax-labels-shape"),
    pytest.param(softmax_focal_loss, (F, B), {"gamma": -1.0}, ValueError, r"gamma must be >= 0",
                 id="softmax-negative-gamma"),
    pytest.param(softmax_focal_loss, (F, B), {"gamma": np.ones(7, np.float32)}, ValueError,
                 r"gamma with shape \(7,\) does not broadcast to the batch shape of logits", id="softmax-gamma-shape"),
    pytest.param(softmax_focal_loss, (F, B), {"class_weights": -1.0}, ValueError, r"class_weights must be >= 0",
                 id="softmax-negative-class-weights"),
    pytest.param(softmax_focal_loss, (F, B), {"class_weights": np.ones(5, np.float32)}, ValueError,
                 r"class_weights with shape \(5,\) does not broadcast to the class axis of logits", id="softmax-class-weights-shape"),
    # poly1_cross_entropy
    pytest.param(poly1_cross_entropy, (I, B), {}, TypeError, r"logits must be a floating-point array",
                 id="poly1-integer-logits"),
    pytest.param(poly1_cross_entropy, (F, F6), {}, ValueError,
                 r"float labels \(probability targets\) must have the shape of logits", id="poly1-targets-shape"),
    pytest.param(poly1_cross_entropy, (F, B4), {}, ValueError,
                 r"integer labels \(class ids\) must have the batch shape",
                 id="poly1-labels-shape"),
    pytest.param(poly1_cross_entropy, (F, B), {"epsilon": np.ones(7, np.float32)}, ValueError,
                 r"epsilon with shape \(7,\) does not broadcast to the batch shape of logits",
                 id="poly1-epsilon-shape"),
    pytest.param(poly1_cross_entropy, (F, B), {"where": np.ones(7, bool)}, ValueError,
                 r"where with shape \(7,\) does not broadcast", id="poly1-where-shape"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    assert_bad_input_raises(fn, args, kwargs, error, match, jit)


@pytest.mark.parametrize("fn, option, match", [
    (sigmoid_focal_loss, {"gamma": np.array([1.0, -1.0])}, r"gamma must be >= 0"),
    (sigmoid_focal_loss, {"alpha": np.array([0.5, 1.5])}, r"alpha must lie in \[0, 1\]"),
    (softmax_focal_loss, {"gamma": np.array([1.0, -1.0])}, r"gamma must be >= 0"),
    (softmax_focal_loss, {"class_weights": np.array([1.0, -1.0, 1.0])}, r"class_weights must be >= 0"),
], ids=["sigmoid-gamma", "sigmoid-alpha", "softmax-gamma", "softmax-alpha"])
def test_concrete_out_of_range_option_array_raises(fn, option, match):
    logits, labels = ((np.ones(2, np.float32), np.zeros(2, np.float32)) if fn is sigmoid_focal_loss
                      else (np.ones((2, 3), np.float32), np.zeros(2, np.int32)))
    with pytest.raises(ValueError, match=match):
        fn(logits, labels, **option)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_second_derivatives_are_finite_for_float_labels_at_huge_logits(gamma):
    """Float labels of exactly 0 and 1 at logits of ±1e4: the label slope's own derivative
    (∂r/∂y ~ eˣ) must not meet a 0 factor as 0·∞, whether from an underflowing (1 − p_t)^γ
    (γ = 0.5) or from γ = 0; and at γ = 0 the mixed derivative in γ is still the formula's."""
    logits = jnp.array([[-1e4, -1.0, 0.0], [1.0, 1e4, 0.5]])
    labels = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    g = jnp.float32(gamma)
    for fn in (jaxloss.sigmoid_focal_loss, jaxloss.sigmoid_focal_loss.reference):
        def total(x, y, g, fn=fn):
            return jnp.sum(fn(x, y, gamma=g))

        direction = (jnp.ones_like(logits), jnp.full_like(labels, 0.5), jnp.float32(1.0))
        hvp = jax.jvp(jax.grad(total, argnums=(0, 1, 2)), (logits, labels, g), direction)[1]
        for h in hvp:
            assert np.all(np.isfinite(np.asarray(h))), (fn, h)
    x, y = jnp.array([[0.3, -1.2, 2.0]]), jnp.array([[0.2, 0.9, 0.5]])
    check = jaxloss.check_gradients(jaxloss.sigmoid_focal_loss, x, y, gamma=g, order=2)
    assert check.ok, check


def _hvp_in_every_argument(fn, args, direction, **options):
    """Forward-over-reverse HVP of the summed losses in every positional argument."""
    total = lambda *a: jnp.sum(fn(*a, **options))  # noqa: E731
    return jax.jvp(jax.grad(total, argnums=tuple(range(len(args)))), args, direction)[1]


def _assert_hvp_matches(got, want, names):
    """Finite, and each argument's HVP within rtol 1e-4 of the float64 one, per element, with an
    absolute floor of 1e-5 of that argument's largest entry (float32 second derivatives)."""
    for name, g, w in zip(names, got, want):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        assert np.all(np.isfinite(g)), (name, g)
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * np.max(np.abs(w)), err_msg=name)


def test_sigmoid_focal_hvp_for_soft_labels_near_logits_60_is_finite_and_right_in_float32(x64):
    """Issue 18: soft labels at |x| ≈ 44–87 gave a NaN HVP in float32 (the label slope's
    log1p(e)/e differentiated to 1/e² terms that overflow).  The float32 HVP in every argument
    against the float64 Hessian of ``.reference`` (x = 0, where that reference's second
    derivative is not exact, is left out)."""
    x = np.array([-60.0, -60.0, 60.0, 60.0, -44.0, 50.0, 87.0, -75.0, 3.0])
    y = np.array([0.3, 0.95, 0.05, 0.7, 0.5, 0.999, 0.25, 0.6, 1e-3])
    args = (x, y, np.linspace(0.2, 0.8, x.size), np.float64(0.5))
    rng = np.random.default_rng(40)
    v = tuple(rng.normal(size=np.shape(a)) for a in args)
    total = lambda x, y, a, g: jnp.sum(sigmoid_focal_loss.reference(x, y, alpha=a, gamma=g))  # noqa: E731

    @jax.jit
    def run(args32, v32):
        fn = lambda x, y, a, g: sigmoid_focal_loss(x, y, alpha=a, gamma=g)  # noqa: E731
        hessian = jax.hessian(total, argnums=(0, 1, 2, 3))(*args)
        want = [sum(jnp.tensordot(hessian[i][j], v[j], axes=np.ndim(v[j])) for j in range(4)) for i in range(4)]
        return _hvp_in_every_argument(fn, args32, v32), want

    got, want = run(*(tuple(np.float32(a) for a in t) for t in (args, v)))
    _assert_hvp_matches(got, want, ("logits", "labels", "alpha", "gamma"))


def test_softmax_focal_hvp_for_soft_targets_at_margins_45_to_60_is_finite_and_right_in_float32(x64):
    """The same defect in the soft-target rule (``softplus/σ`` of the top class's margin): the
    float32 HVP in logits and targets against the float64 one of ``.reference``."""
    x = np.array([[60.0, 0.0, -1.0], [0.5, 50.0, 2.0], [-3.0, 1.0, 45.0], [0.3, -0.2, 1.0]])
    y = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]])
    v = tuple(np.random.default_rng(41).normal(size=x.shape) for _ in range(2))
    got, want = jax.jit(lambda: (_hvp_in_every_argument(softmax_focal_loss, (np.float32(x), np.float32(y)),
                                                        (np.float32(v[0]), np.float32(v[1]))),
                                 _hvp_in_every_argument(softmax_focal_loss.reference, (x, y), v)))()
    _assert_hvp_matches(got, want, ("logits", "labels"))


def test_sigmoid_focal_value_and_grad_of_the_mean_holds_no_more_memory_than_autodiff_of_the_formula():
    """Issue 18: compiled footprint (temporaries + outputs) of ``value_and_grad`` of the mean, float
    labels, at most that of autodiff of the plain formula (benchmarks/catalogue.py's one-liner):
    the forward fuses into the mean and reverse mode keeps only the inputs."""
    def simple(x, y):
        u = 1 - jax.nn.sigmoid(x) * y - jax.nn.sigmoid(-x) * (1 - y)
        return (jnp.logaddexp(0, x) - x * y) * u**2

    def footprint(fn, dtype):
        x = jax.ShapeDtypeStruct((512, 512), dtype)
        return mean_value_and_grad_memory(fn, (x, x))[1]

    for dtype in (jnp.float32, jnp.bfloat16):
        ours, theirs = footprint(sigmoid_focal_loss, dtype), footprint(simple, dtype)
        assert ours <= theirs, (dtype, ours, theirs)
