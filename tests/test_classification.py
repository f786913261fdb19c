"""Classification losses: values, hand-derived derivatives, parity, kinks, labels, masks, dtypes, errors.

Values and derivatives are checked in float64 against NumPy formulas written here from
the docstrings; parity against optax and PyTorch; subgradients at corners are pinned.
"""

from __future__ import annotations

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
    assert_concrete_option_array_raises,
    assert_hand_derivative_matches_numpy_derivative,
    assert_hessian_and_hvp_match_reference,
    assert_low_precision_gives_float32_loss_and_own_dtype_gradients,
    assert_masked_entries_zero,
    assert_values_match_numpy_reference,
    gradients_and_jvp,
    gradients_of_sum,
    low_precision_params,
    mask_params,
    mean_value_and_grad_memory,
    sum_to_shape,
)
from jax.flatten_util import ravel_pytree

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue


# ----------------------------------------------------------------------------- helpers


def _options(rng, shape, options):
    return {k: v(rng, shape) if callable(v) else v for k, v in options.items()}


def _np_softplus(x):
    return np.logaddexp(0.0, x)


def _np_sigmoid(x):
    return np.exp(-_np_softplus(-x))


def _signed(labels):
    return np.where(labels > 0, 1.0, -1.0)


# ----------------------------------------------------------------------------- inputs


def _bce(labels="soft", **options):
    def make(rng, shape):
        logits = np.clip(rng.normal(scale=2.0, size=shape), -6.0, 6.0)
        hard = rng.integers(0, 2, size=shape)
        y = {"soft": rng.uniform(size=shape), "hard": hard.astype(np.float64), "int": hard}[labels]
        return {"logits": logits, "labels": y, **_options(rng, shape, options)}

    return make


def _scored(corner=1.0, labels=int, **options):
    """Scores and ±1 labels (integer, or float as PyTorch passes them) with y·s at least 0.1
    from the corner."""

    def make(rng, shape):
        z = rng.uniform(-2.0, 3.0, size=shape)
        z = np.where(np.abs(z - corner) < 0.1, z + 0.3, z)
        y = rng.choice([-1, 1], size=shape)
        return {"scores": z * y, "labels": y.astype(labels), **options}

    return make


def _probabilities(labels="soft"):
    def make(rng, shape):
        hard = rng.integers(0, 2, size=shape)
        y = {"soft": rng.uniform(size=shape), "hard": hard.astype(np.float64), "int": hard}[labels]
        return {"probabilities": rng.uniform(0.02, 0.98, size=shape), "labels": y}

    return make


def _distances(margin=None, labels=int):
    """Inputs, ±1 labels and margin with m − x at least 0.1 from the corner at 0."""

    def make(rng, shape):
        m = 1.0 if margin is None else (margin(rng, shape) if callable(margin) else margin)
        u = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)  # = m − x
        y = rng.choice([-1, 1], size=shape).astype(labels)
        return {"inputs": m - u, "labels": y, **({} if margin is None else {"margin": m})}

    return make


def _ranked(margin=None):
    """x1, x2, y and margin with m − y(x1 − x2) at least 0.1 from the corner at 0."""

    def make(rng, shape):
        m = 0.0 if margin is None else (margin(rng, shape) if callable(margin) else margin)
        y = rng.choice([-1, 1], size=shape)
        x1 = rng.normal(size=shape)
        u = rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.1, 2.0, size=shape)  # = m − y(x1 − x2)
        return {"x1": x1, "x2": x1 - y * (m - u), "y": y, **({} if margin is None else {"margin": m})}

    return make


def _positive(rng, shape):
    return rng.uniform(0.5, 3.0, size=shape)


def _per_class(draw):
    return lambda rng, shape: draw(rng, shape[-1:])


# ----------------------------------------------------------------------------- NumPy references


def _np_bce(logits, labels, pos_weight=None, label_smoothing=0.0):
    w = 1.0 if pos_weight is None else pos_weight
    y = labels * (1 - label_smoothing) + label_smoothing / 2
    p = _np_sigmoid(logits)
    return -w * y * np.log(p) - (1 - y) * np.log1p(-p)


def _np_bce_stable(logits, labels, pos_weight=None, label_smoothing=0.0):
    """The same loss through softplus, for logits far beyond ±6."""
    w = 1.0 if pos_weight is None else pos_weight
    y = labels * (1 - label_smoothing) + label_smoothing / 2
    return w * y * _np_softplus(-logits) + (1 - y) * _np_softplus(logits)


def _np_bce_d(logits, labels, pos_weight=None, label_smoothing=0.0):
    # -log σ(x) = softplus(-x), -log(1 - σ(x)) = softplus(x), 1 - σ(x) = σ(-x).
    w = 1.0 if pos_weight is None else pos_weight
    y = labels * (1 - label_smoothing) + label_smoothing / 2
    d_smoothed = w * _np_softplus(-logits) - _np_softplus(logits)  # ∂ℓ/∂y'
    return {
        "logits": -w * y * _np_sigmoid(-logits) + (1 - y) * _np_sigmoid(logits),
        "labels": (1 - label_smoothing) * d_smoothed,
        "label_smoothing": (0.5 - labels) * d_smoothed,
        "pos_weight": y * _np_softplus(-logits),
    }


def _np_bce_probabilities(probabilities, labels):
    return -labels * np.log(probabilities) - (1 - labels) * np.log1p(-probabilities)


def _np_bce_probabilities_d(probabilities, labels):
    p, y = probabilities, labels
    return {"probabilities": -y / p + (1 - y) / (1 - p), "labels": np.log1p(-p) - np.log(p)}


def _np_hinge_embedding(inputs, labels, margin=1.0):
    return np.where(labels > 0, inputs, np.maximum(0.0, margin - inputs))


def _np_hinge_embedding_d(inputs, labels, margin=1.0):
    active = np.where(labels > 0, 0.0, (margin - inputs > 0).astype(np.float64))
    return {"inputs": np.where(labels > 0, 1.0, -active), "margin": active, "labels": np.zeros_like(inputs)}


def _margin_case(phi, dphi):
    """NumPy loss and derivative of φ(y·s)."""

    def ref(scores, labels, base2=False):
        return phi(_signed(labels) * scores) / (np.log(2.0) if base2 else 1.0)

    def dref(scores, labels, base2=False):
        y = _signed(labels)
        return {"scores": dphi(y * scores) * y / (np.log(2.0) if base2 else 1.0), "labels": np.zeros_like(scores)}

    return ref, dref


_hinge = _margin_case(lambda z: np.maximum(0.0, 1 - z), lambda z: np.where(z < 1, -1.0, 0.0))
_squared_hinge = _margin_case(lambda z: np.maximum(0.0, 1 - z) ** 2, lambda z: -2 * np.maximum(0.0, 1 - z))
_logistic = _margin_case(lambda z: np.log1p(np.exp(-z)), lambda z: -1 / (1 + np.exp(z)))
_square = _margin_case(lambda z: (1 - z) ** 2, lambda z: -2 * (1 - z))
_perceptron = _margin_case(lambda z: np.maximum(0.0, -z), lambda z: np.where(z < 0, -1.0, 0.0))


def _np_ranking(x1, x2, y, margin=0.0):
    return np.maximum(0.0, -_signed(y) * (x1 - x2) + margin)


def _np_ranking_d(x1, x2, y, margin=0.0):
    s = _signed(y)
    active = (margin - s * (x1 - x2) > 0).astype(np.float64)
    return {"x1": -s * active, "x2": s * active, "margin": active * np.ones_like(x1)}


BCE = jaxloss.sigmoid_binary_cross_entropy
CASES = [
    Case("sigmoid_bce-hard-float-labels", BCE, _bce("hard"), _np_bce, _np_bce_d),
    Case("sigmoid_bce-int-labels", BCE, _bce("int"), _np_bce, _np_bce_d),
    Case("sigmoid_bce-soft-labels", BCE, _bce("soft"), _np_bce, _np_bce_d),
    Case("sigmoid_bce-float-pos_weight", BCE, _bce(pos_weight=2.0), _np_bce, _np_bce_d),
    Case("sigmoid_bce-per-class-pos_weight", BCE, _bce(pos_weight=_per_class(_positive)), _np_bce, _np_bce_d),
    Case("sigmoid_bce-elementwise-pos_weight", BCE, _bce("int", pos_weight=_positive), _np_bce, _np_bce_d),
    Case("sigmoid_bce-float-label_smoothing", BCE, _bce("hard", label_smoothing=0.1), _np_bce, _np_bce_d),
    Case("sigmoid_bce-0d-array-label_smoothing", BCE, _bce("hard", label_smoothing=np.array(0.2)),
         _np_bce, _np_bce_d),
    Case("sigmoid_bce-per-class-label_smoothing", BCE,
         _bce("soft", label_smoothing=_per_class(lambda rng, s: rng.uniform(0.05, 0.3, s))), _np_bce, _np_bce_d),
    Case("sigmoid_bce-all-options", BCE,
         _bce("soft", pos_weight=_positive, label_smoothing=_per_class(lambda rng, s: rng.uniform(0.05, 0.3, s))),
         _np_bce, _np_bce_d),
    Case("hinge", jaxloss.hinge_loss, _scored(), *_hinge),
    Case("squared_hinge", jaxloss.squared_hinge_loss, _scored(), *_squared_hinge),
    Case("logistic", jaxloss.logistic_loss, _scored(), *_logistic),
    Case("logistic-base2", jaxloss.logistic_loss, _scored(base2=True), *_logistic),
    Case("square", jaxloss.square_loss, _scored(), *_square),
    Case("binary_cross_entropy-soft-labels", jaxloss.binary_cross_entropy, _probabilities(),
         _np_bce_probabilities, _np_bce_probabilities_d),
    Case("binary_cross_entropy-hard-float-labels", jaxloss.binary_cross_entropy, _probabilities("hard"),
         _np_bce_probabilities, _np_bce_probabilities_d),
    Case("binary_cross_entropy-int-labels", jaxloss.binary_cross_entropy, _probabilities("int"),
         _np_bce_probabilities, _np_bce_probabilities_d),
    Case("perceptron", jaxloss.perceptron_loss, _scored(corner=0.0), *_perceptron),
    Case("perceptron-float-labels", jaxloss.perceptron_loss, _scored(corner=0.0, labels=float), *_perceptron),
    Case("soft_margin-float-labels", jaxloss.soft_margin_loss, _scored(labels=float), *_logistic),
    Case("logistic-float-labels", jaxloss.logistic_loss, _scored(labels=float), *_logistic),
    Case("hinge-float-labels", jaxloss.hinge_loss, _scored(labels=float), *_hinge),
    Case("hinge_embedding-default-margin", jaxloss.hinge_embedding_loss, _distances(),
         _np_hinge_embedding, _np_hinge_embedding_d),
    Case("hinge_embedding-float-labels", jaxloss.hinge_embedding_loss, _distances(0.5, labels=float),
         _np_hinge_embedding, _np_hinge_embedding_d),
    Case("hinge_embedding-elementwise-margin", jaxloss.hinge_embedding_loss,
         _distances(lambda rng, s: rng.uniform(-1.0, 2.0, s)), _np_hinge_embedding, _np_hinge_embedding_d),
    Case("margin_ranking-default-margin", jaxloss.margin_ranking_loss, _ranked(), _np_ranking, _np_ranking_d),
    Case("margin_ranking-float-margin", jaxloss.margin_ranking_loss, _ranked(0.5), _np_ranking, _np_ranking_d),
    Case("margin_ranking-elementwise-margin", jaxloss.margin_ranking_loss,
         _ranked(lambda rng, s: rng.uniform(0.0, 1.0, s)), _np_ranking, _np_ranking_d),
    Case("margin_ranking-per-class-margin", jaxloss.margin_ranking_loss,
         _ranked(_per_class(lambda rng, s: rng.uniform(0.0, 1.0, s))), _np_ranking, _np_ranking_d),
]
parametrize_cases = pytest.mark.parametrize("case", CASES, ids=str)
# One case per loss (with its options as arrays), for properties that do not depend on option values.
CORE = [c for c in CASES if c.id in {"sigmoid_bce-int-labels", "sigmoid_bce-all-options", "hinge", "squared_hinge",
                                     "logistic-base2", "square", "margin_ranking-elementwise-margin",
                                     "binary_cross_entropy-soft-labels", "perceptron", "soft_margin-float-labels",
                                     "hinge_embedding-elementwise-margin"}]
parametrize_core = pytest.mark.parametrize("case", CORE, ids=str)
# Every kind of float argument (Python float option, 0-d, elementwise and broadcast arrays, hard and
# soft float labels), for the finite-difference checker, which is slow; the NumPy derivative test
# covers every case.
CHECKED = [c for c in CASES if c.id not in {"sigmoid_bce-int-labels", "sigmoid_bce-soft-labels",
                                            "sigmoid_bce-elementwise-pos_weight", "sigmoid_bce-float-label_smoothing",
                                            "logistic", "margin_ranking-default-margin",
                                            "binary_cross_entropy-hard-float-labels", "perceptron-float-labels",
                                            "logistic-float-labels", "hinge-float-labels",
                                            "hinge_embedding-float-labels"}]


# ----------------------------------------------------------------------------- values and derivatives


@parametrize_cases
def test_values_match_numpy_float64_reference(case, x64):
    # base2 must stay a Python bool, so under jit only the array arguments are traced.
    assert_values_match_numpy_reference(case, seed=0, trace_python_scalars=False)


@parametrize_cases
def test_hand_derivative_matches_numpy_analytic_derivative(case, x64):
    assert_hand_derivative_matches_numpy_derivative(case, seed=1)


@pytest.mark.parametrize("case", CHECKED, ids=str)
def test_check_gradients_passes_for_every_float_argument(case):
    assert_check_gradients_passes_for_every_float_argument(case, seed=2)


# ----------------------------------------------------------------------------- label conventions


def _label_variants(signs):
    """The same labels as int ±1, int {0, 1}, bool, float ±1 and float {0, 1}."""
    return [signs, (signs > 0).astype(np.int32), signs > 0, signs.astype(np.float32),
            (signs > 0).astype(np.float32)]


@pytest.mark.parametrize(
    "fn", [jaxloss.hinge_loss, jaxloss.squared_hinge_loss, jaxloss.logistic_loss, jaxloss.square_loss,
           jaxloss.perceptron_loss, jaxloss.soft_margin_loss],
    ids=lambda f: f.__name__,
)
def test_signed_zero_one_and_bool_labels_give_identical_losses_and_gradients(fn):
    a = _scored()(np.random.default_rng(3), SHAPE)
    scores = a["scores"].astype(np.float32)
    run = jax.jit(lambda s, y: (fn(s, y), jax.grad(lambda s: fn(s, y).sum())(s)))
    first, *others = [run(scores, y) for y in _label_variants(a["labels"])]
    for other in others:
        np.testing.assert_array_equal(other[0], first[0])
        np.testing.assert_array_equal(other[1], first[1])


def test_margin_ranking_signed_zero_one_and_bool_labels_agree():
    a = _ranked(0.5)(np.random.default_rng(4), SHAPE)
    x1, x2 = a["x1"].astype(np.float32), a["x2"].astype(np.float32)
    fn = jaxloss.margin_ranking_loss
    run = jax.jit(lambda x1, x2, y: (fn(x1, x2, y, margin=0.5),
                                     jax.grad(lambda x1, x2: fn(x1, x2, y, margin=0.5).sum(), (0, 1))(x1, x2)))
    first, *others = [run(x1, x2, y) for y in _label_variants(a["y"])]
    for other in others:
        np.testing.assert_array_equal(ravel_pytree(other)[0], ravel_pytree(first)[0])


def test_sigmoid_bce_int_bool_and_float_hard_labels_agree():
    a = _bce("int", pos_weight=2.0, label_smoothing=0.1)(np.random.default_rng(5), SHAPE)
    logits = a["logits"].astype(np.float32)
    run = jax.jit(lambda x, y: (BCE(x, y, pos_weight=2.0, label_smoothing=0.1),
                                jax.grad(lambda x: BCE(x, y, pos_weight=2.0, label_smoothing=0.1).sum())(x)))
    y = a["labels"]
    first, *others = [run(logits, v) for v in (y.astype(np.float32), y.astype(np.int32), y > 0)]
    for other in others:
        np.testing.assert_array_equal(other[0], first[0])
        np.testing.assert_array_equal(other[1], first[1])


# ----------------------------------------------------------------------------- parity with optax and PyTorch


def _optax_smoothed_bce(logits, labels, label_smoothing):
    return optax.losses.sigmoid_binary_cross_entropy(logits, labels * (1 - label_smoothing) + label_smoothing / 2)


@pytest.mark.parametrize(
    "ours, theirs, make",
    [
        (BCE, optax.losses.sigmoid_binary_cross_entropy, _bce("soft")),
        (BCE, optax.losses.sigmoid_binary_cross_entropy, _bce("hard")),
        (BCE, _optax_smoothed_bce, _bce("soft", label_smoothing=0.1)),
        (BCE, _optax_smoothed_bce, _bce("hard", label_smoothing=_per_class(lambda rng, s: rng.uniform(0, 0.3, s)))),
        (jaxloss.hinge_loss, lambda scores, labels: optax.losses.hinge_loss(scores, labels.astype(scores.dtype)),
         _scored()),
    ],
    ids=["bce-soft", "bce-hard", "bce-label_smoothing", "bce-per-class-label_smoothing", "hinge-signed-targets"],
)
def test_matches_optax_values_and_gradients(ours, theirs, make, x64):
    a = make(np.random.default_rng(6), SHAPE)
    np.testing.assert_allclose(ours(**a), theirs(**a), rtol=1e-12, atol=1e-15)
    mine, optax_grads = gradients_of_sum(ours, a), gradients_of_sum(theirs, a)
    assert set(mine) == set(optax_grads)
    for name in mine:
        np.testing.assert_allclose(mine[name], optax_grads[name], rtol=1e-12, atol=1e-14, err_msg=name)


def _torch_values_and_grads(name, tensors, wrt, **options):
    torch = pytest.importorskip("torch")
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=k in wrt) for k, v in tensors.items()}
    loss = getattr(torch.nn.functional, name)(*t.values(), reduction="none", **options)
    loss.sum().backward()
    return loss.detach().numpy(), {k: t[k].grad.numpy() for k in wrt}


@pytest.mark.parametrize("pos_weight", [None, "per-class"])
@pytest.mark.parametrize("labels", ["soft", "hard"])
def test_sigmoid_bce_matches_torch_binary_cross_entropy_with_logits(labels, pos_weight, x64):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    a = _bce(labels)(rng, SHAPE)
    w = None if pos_weight is None else _positive(rng, SHAPE[-1:])
    values, grads = _torch_values_and_grads("binary_cross_entropy_with_logits", a, ("logits", "labels"),
                                            pos_weight=None if w is None else torch.tensor(w))
    np.testing.assert_allclose(BCE(**a, pos_weight=w), values, rtol=1e-12, atol=1e-15)
    mine = gradients_of_sum(BCE, {**a, "pos_weight": w}, wrt=("logits", "labels"))
    for k in mine:
        np.testing.assert_allclose(mine[k], grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_logistic_loss_matches_torch_soft_margin_loss(x64):
    a = _scored()(np.random.default_rng(8), SHAPE)
    values, grads = _torch_values_and_grads("soft_margin_loss", a, ("scores",))
    np.testing.assert_allclose(jaxloss.logistic_loss(**a), values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gradients_of_sum(jaxloss.logistic_loss, a)["scores"], grads["scores"],
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_margin_ranking_matches_torch(margin, x64):
    a = _ranked(margin)(np.random.default_rng(9), SHAPE)
    values, grads = _torch_values_and_grads("margin_ranking_loss", {k: a[k] for k in ("x1", "x2", "y")},
                                            ("x1", "x2"), margin=margin)
    np.testing.assert_allclose(jaxloss.margin_ranking_loss(**a), values, rtol=1e-12, atol=1e-15)
    mine = gradients_of_sum(jaxloss.margin_ranking_loss, a, wrt=("x1", "x2"))
    for k in mine:
        np.testing.assert_allclose(mine[k], grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ----------------------------------------------------------------------------- corners


@pytest.mark.parametrize("fn", [jaxloss.hinge_loss, jaxloss.squared_hinge_loss], ids=lambda f: f.__name__)
def test_subgradient_at_hinge_corner_is_zero(fn, x64):
    a = {"scores": np.array([1.0, -1.0, -1.0]), "labels": np.array([1, -1, 0])}  # y·s = 1 everywhere
    np.testing.assert_array_equal(fn(**a), 0.0)
    grads, jv = gradients_and_jvp(fn, a, ("scores",))
    np.testing.assert_array_equal(grads["scores"], 0.0)
    np.testing.assert_array_equal(jv, 0.0)


def test_margin_ranking_subgradient_at_corner_is_zero_for_x1_x2_and_margin(x64):
    # m − y(x1 − x2) = 0 in every entry.
    a = {"x1": np.array([1.5, 0.25, 2.0]), "x2": np.array([1.0, 0.75, 2.0]), "y": np.array([1, -1, 1]),
         "margin": np.array([0.5, 0.5, 0.0])}
    np.testing.assert_array_equal(jaxloss.margin_ranking_loss(**a), 0.0)
    grads, jv = gradients_and_jvp(jaxloss.margin_ranking_loss, a, ("x1", "x2", "margin"))
    for name, g in grads.items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)
    np.testing.assert_array_equal(jv, 0.0)


def test_perceptron_subgradient_at_zero_score_is_zero(x64):
    a = {"scores": np.zeros(3), "labels": np.array([1, -1, 0])}
    np.testing.assert_array_equal(jaxloss.perceptron_loss(**a), 0.0)
    grads, jv = gradients_and_jvp(jaxloss.perceptron_loss, a, ("scores",))
    np.testing.assert_array_equal(grads["scores"], 0.0)
    np.testing.assert_array_equal(jv, 0.0)


def test_hinge_embedding_subgradient_at_margin_is_zero_for_inputs_and_margin(x64):
    a = {"inputs": np.array([1.0, 0.5, -2.0]), "labels": np.array([-1, -1, -1]), "margin": np.array([1.0, 0.5, -2.0])}
    np.testing.assert_array_equal(jaxloss.hinge_embedding_loss(**a), 0.0)
    grads, jv = gradients_and_jvp(jaxloss.hinge_embedding_loss, a, ("inputs", "margin"))
    for name, g in grads.items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)
    np.testing.assert_array_equal(jv, 0.0)


def test_hinge_embedding_is_exact_at_infinite_inputs():
    """The forward picks a label's side with minima and maxima against ±inf (no select): infinite
    inputs give PyTorch's values (x for y = 1, max(0, m − x) for y = −1), not NaN."""
    x = np.array([np.inf, np.inf, -np.inf, -np.inf, 0.3], np.float32)
    loss = jaxloss.hinge_embedding_loss(x, np.array([1, -1, 1, -1, -1]))
    np.testing.assert_array_equal(loss, np.array([np.inf, 0.0, -np.inf, np.inf, 0.7], np.float32))


def test_hinge_embedding_zero_and_bool_labels_mean_minus_one():
    x = np.array([0.3, 0.3, 2.0, -1.0], np.float32)
    signed = jaxloss.hinge_embedding_loss(x, np.array([1, -1, -1, -1]))
    np.testing.assert_allclose(signed, [0.3, 0.7, 0.0, 2.0], rtol=1e-6)
    for labels in (np.array([1, 0, 0, 0]), np.array([True, False, False, False]),
                   np.array([1.0, -1.0, -1.0, -1.0], np.float32)):
        np.testing.assert_array_equal(jaxloss.hinge_embedding_loss(x, labels), signed)


# ----------------------------------------------------------------------------- stability


def test_binary_cross_entropy_clamps_each_log_at_minus_100_and_keeps_derivatives_finite():
    p = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1e-30], np.float32)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 1.0], np.float32)
    loss = jaxloss.binary_cross_entropy(p, y)
    np.testing.assert_allclose(loss, [100.0, 0.0, 100.0, 0.0, 30.0, 69.077553], rtol=1e-6)
    grads, jv = gradients_and_jvp(jaxloss.binary_cross_entropy, {"probabilities": p, "labels": y},
                                  ("probabilities", "labels"))
    # PyTorch's slope (p − y)/max(p(1 − p), 1e-12) where p(1 − p) < 1e-12.
    np.testing.assert_allclose(grads["probabilities"], (p - y) / np.float32(1e-12), rtol=1e-6)
    # max(log(1 − p), −100) − max(log p, −100): finite where PyTorch's −logit(p) is ±inf.
    np.testing.assert_allclose(grads["labels"], [100.0, 100.0, -100.0, -100.0, 100.0, 69.077553], rtol=1e-6)
    assert np.all(np.isfinite(jv))
    hvp = jax.jvp(jax.grad(lambda p: jaxloss.binary_cross_entropy(p, y).sum()), (p,), (np.ones_like(p),))[1]
    assert np.all(np.isfinite(hvp))
    # .reference differentiates the clamped formula: 0 for a clamped log.
    ref = jax.grad(lambda p: jaxloss.binary_cross_entropy.reference(p, y).sum())(p)
    np.testing.assert_allclose(ref[:4], [0.0, 1.0, 0.0, -1.0], atol=0)


def test_binary_cross_entropy_is_nan_outside_the_unit_interval():
    loss = jaxloss.binary_cross_entropy(np.array([1.5, -0.1], np.float32), np.array([1.0, 0.0], np.float32))
    assert np.all(np.isnan(loss))


@pytest.mark.parametrize(
    "options", [{}, {"pos_weight": 2.0}, {"label_smoothing": 0.1}, {"pos_weight": 2.0, "label_smoothing": 0.1}],
    ids=["plain", "pos_weight", "label_smoothing", "both"],
)
def test_sigmoid_bce_is_finite_and_exact_at_logits_1e4(options):
    logits = np.array([1e4, -1e4, 1e4, -1e4], np.float32)
    labels = np.array([0.0, 1.0, 1.0, 0.0], np.float32)
    a = {"logits": logits, "labels": labels, **options}
    loss = BCE(**a)
    x, y = logits.astype(np.float64), labels.astype(np.float64)
    np.testing.assert_allclose(loss, _np_bce_stable(x, y, **options), rtol=1e-6)
    expected = _np_bce_d(x, y, **options)
    grads = gradients_of_sum(BCE, a)
    assert set(grads) == {"logits", "labels", *options}
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
        want = sum_to_shape(np.broadcast_to(expected[name], x.shape), np.shape(g))
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-6 * max(1.0, np.max(np.abs(want))), err_msg=name)
    # A wrong-side logit of 1e4 costs 1e4 (times the weight of its term).
    w, eps = options.get("pos_weight", 1.0), options.get("label_smoothing", 0.0)
    np.testing.assert_allclose(loss[0], (1 - eps / 2) * 1e4, rtol=1e-6)
    np.testing.assert_allclose(loss[1], w * (1 - eps / 2) * 1e4, rtol=1e-6)


@pytest.mark.parametrize("base2", [False, True])
def test_logistic_loss_is_finite_at_scores_1e4(base2):
    scores, labels = np.array([1e4, -1e4, 1e4, -1e4], np.float32), np.array([1, 1, -1, 0])
    scale = np.log(2.0) if base2 else 1.0
    loss = jaxloss.logistic_loss(scores, labels, base2=base2)
    np.testing.assert_allclose(loss, np.array([0.0, 1e4, 1e4, 0.0]) / scale, rtol=1e-6)
    g = gradients_of_sum(jaxloss.logistic_loss, {"scores": scores, "labels": labels, "base2": base2})["scores"]
    np.testing.assert_allclose(g, np.array([0.0, -1.0, 1.0, 0.0]) / scale, rtol=1e-6, atol=1e-30)


# ----------------------------------------------------------------------------- where=


@pytest.mark.parametrize(
    "case, mask_shape",
    mask_params(CORE, broadcast_ids=("margin_ranking-elementwise-margin", "sigmoid_bce-all-options")),
)
def test_masked_entries_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case, mask_shape):
    """Masked examples of the per-example (positional) arguments hold inf/NaN padding;
    nothing of it reaches the value or any derivative."""
    assert_masked_entries_zero(case, mask_shape, seed=10)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
    "case, dtype", low_precision_params(CORE, float16_ids=("squared_hinge", "sigmoid_bce-all-options"))
)
def test_low_precision_inputs_give_float32_loss_and_own_dtype_gradients(case, dtype):
    assert_low_precision_gives_float32_loss_and_own_dtype_gradients(case, dtype, seed=12)


# ----------------------------------------------------------------------------- errors

F, I = np.ones(SHAPE, np.float32), np.ones(SHAPE, np.int32)
F6, I6 = np.ones((5, 6), np.float32), np.ones((5, 6), np.int32)
MARGIN_LOSSES = [jaxloss.hinge_loss, jaxloss.squared_hinge_loss, jaxloss.logistic_loss, jaxloss.square_loss,
                 jaxloss.perceptron_loss, jaxloss.soft_margin_loss]
ERRORS = [
    *[pytest.param(fn, (I, I), {}, TypeError, r"scores must be a floating-point array, got shape \(5, 7\), dtype int32",
                   id=f"integer-scores-{fn.__name__}") for fn in MARGIN_LOSSES],
    *[pytest.param(fn, (F, I6), {}, ValueError,
                   r"labels with shape \(5, 6\) does not broadcast to scores with shape \(5, 7\)",
                   id=f"labels-shape-{fn.__name__}") for fn in MARGIN_LOSSES],
    pytest.param(BCE, (I, F), {}, TypeError, r"logits must be a floating-point array, got shape \(5, 7\), dtype int32",
                 id="integer-logits"),
    pytest.param(BCE, (F, F6), {}, ValueError,
                 r"labels with shape \(5, 6\) does not broadcast to logits with shape \(5, 7\)", id="bce-labels-shape"),
    pytest.param(BCE, (F, F), {"where": F}, TypeError, r"where must be a boolean mask", id="bce-float-where"),
    pytest.param(jaxloss.hinge_loss, (F, I), {"where": I}, TypeError, r"where must be a boolean mask",
                 id="hinge-integer-where"),
    pytest.param(jaxloss.logistic_loss, (F, I), {"where": np.ones((5, 6), bool)}, ValueError,
                 r"where with shape \(5, 6\) does not broadcast to scores with shape \(5, 7\)", id="where-shape"),
    pytest.param(BCE, (F, F), {"label_smoothing": 1.5}, ValueError, r"label_smoothing must lie in \[0, 1\], got 1.5",
                 id="label_smoothing-above-one"),
    pytest.param(BCE, (F, F), {"label_smoothing": -0.1}, ValueError, r"label_smoothing must lie in \[0, 1\]",
                 id="label_smoothing-negative"),
    pytest.param(BCE, (F, F), {"pos_weight": -1.0}, ValueError, r"pos_weight must be >= 0", id="negative-pos_weight"),
    pytest.param(BCE, (F, F), {"pos_weight": np.ones(6, np.float32)}, ValueError,
                 r"pos_weight with shape \(6,\) does not broadcast to logits with shape \(5, 7\)",
                 id="pos_weight-shape"),
    pytest.param(BCE, (F, F), {"pos_weight": np.ones(7, np.complex64)}, TypeError,
                 r"pos_weight must be a floating-point array", id="complex-pos_weight"),
    pytest.param(jaxloss.logistic_loss, (F, I), {"base2": 1}, TypeError, r"base2 must be a Python bool",
                 id="base2-not-bool"),
    pytest.param(jaxloss.margin_ranking_loss, (F, F6, I), {}, ValueError,
                 r"x2 with shape \(5, 6\) must have the shape of x1, \(5, 7\)", id="x2-shape"),
    pytest.param(jaxloss.margin_ranking_loss, (I, F, I), {}, TypeError, r"x1 must be a floating-point array",
                 id="integer-x1"),
    pytest.param(jaxloss.margin_ranking_loss, (F, I, I), {}, TypeError, r"x2 must be a floating-point array",
                 id="integer-x2"),
    pytest.param(jaxloss.margin_ranking_loss, (F, F, I), {"margin": np.ones(6, np.float32)}, ValueError,
                 r"margin with shape \(6,\) does not broadcast to x1 with shape \(5, 7\)", id="margin-shape"),
    pytest.param(jaxloss.binary_cross_entropy, (I, F), {}, TypeError,
                 r"probabilities must be a floating-point array, got shape \(5, 7\), dtype int32",
                 id="integer-probabilities"),
    pytest.param(jaxloss.binary_cross_entropy, (F, F6), {}, ValueError,
                 r"labels with shape \(5, 6\) does not broadcast to probabilities with shape \(5, 7\)",
                 id="bce-probabilities-labels-shape"),
    pytest.param(jaxloss.perceptron_loss, (F, F.astype(np.complex64)), {}, TypeError, r"labels must be a real array",
                 id="perceptron-complex-labels"),
    pytest.param(jaxloss.hinge_embedding_loss, (I, I), {}, TypeError, r"inputs must be a floating-point array",
                 id="integer-inputs"),
    pytest.param(jaxloss.hinge_embedding_loss, (F, I), {"margin": np.ones(6, np.float32)}, ValueError,
                 r"margin with shape \(6,\) does not broadcast to inputs with shape \(5, 7\)",
                 id="hinge_embedding-margin-shape"),
    pytest.param(jaxloss.margin_ranking_loss, (F, F, I6), {}, ValueError,
                 r"y with shape \(5, 6\) does not broadcast to x1 with shape \(5, 7\)", id="y-shape"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    assert_bad_input_raises(fn, args, kwargs, error, match, jit)


@pytest.mark.parametrize(
    "option, match",
    [({"pos_weight": np.array([1.0, -1.0])}, r"pos_weight must be >= 0"),
     ({"label_smoothing": np.array([0.1, 1.1])}, r"label_smoothing must lie in \[0, 1\]")],
    ids=["pos_weight", "label_smoothing"],
)
def test_concrete_out_of_range_option_array_raises(option, match):
    assert_concrete_option_array_raises(BCE, option, match)


# ----------------------------------------------------------------------------- higher order


@parametrize_core
def test_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    """Away from kinks: the hand rule's second derivatives equal autodiff of the formula."""
    assert_hessian_and_hvp_match_reference(case, seed=13)


# ----------------------------------------------------------------------------- compiled memory


def _relu(z):
    return jnp.maximum(z, 0.0)


# loss: (one-line formula, inputs from a key, argnums of the gradient); benchmarks/catalogue.py's
# one-liners (BCE with PyTorch's clamp, which the benchmark's leaves out).
_ONE_LINERS = {
    "binary_cross_entropy": (
        lambda p, y: -(y * jnp.maximum(jnp.log(p), -100) + (1 - y) * jnp.maximum(jnp.log1p(-p), -100)),
        lambda k, s, d: (jax.random.uniform(k[0], s, d, 0.01, 0.99), jax.random.bernoulli(k[1], 0.5, s).astype(d)),
        (0,)),
    "margin_ranking_loss": (
        lambda a, b, y: _relu(-y * (a - b)),
        lambda k, s, d: (jax.random.normal(k[0], s, d), jax.random.normal(k[1], s, d),
                         (2 * jax.random.bernoulli(k[2], 0.5, s) - 1).astype(d)),
        (0, 1)),
    "hinge_embedding_loss": (
        lambda x, y: jnp.where(y == 1, x, _relu(1 - x)),
        lambda k, s, d: (jax.random.uniform(k[0], s, d, 0.0, 2.0),
                         (2 * jax.random.bernoulli(k[1], 0.5, s) - 1).astype(d)),
        (0,)),
}


@pytest.mark.parametrize("name", sorted(_ONE_LINERS))
def test_value_and_grad_of_the_mean_materialises_nothing_and_holds_at_most_the_one_liners_memory(name):
    """Issue 18: the compiled ``value_and_grad`` of the mean (float32 and bfloat16) keeps no
    full-size temporary (the forward fuses into the mean: temporaries under 1 KiB, a few scalar
    constants) and its footprint (temporaries + outputs) is at most that of autodiff of the
    one-line formula.  ``memory_analysis()`` is deterministic."""
    one_liner, inputs, argnums = _ONE_LINERS[name]
    for dtype in (jnp.float32, jnp.bfloat16):
        args = inputs(jax.random.split(jax.random.key(0), 3), (256, 256), dtype)
        (temp, ours), (_, theirs) = (mean_value_and_grad_memory(fn, args, argnums)
                                     for fn in (getattr(jaxloss, name), one_liner))
        assert temp <= 1024 and ours <= theirs, (dtype, temp, ours, theirs)
