"""Classification losses: values, hand-derived derivatives, parity, kinks, labels, masks, dtypes, errors.

Values and derivatives are checked in float64 against NumPy formulas written here from
the docstrings; parity against optax and PyTorch; subgradients at corners are pinned.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import jaxloss

SHAPE = (5, 7)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------------------- helpers


def _is_float(x) -> bool:
    return isinstance(x, float) or (isinstance(x, np.ndarray | jax.Array) and jnp.issubdtype(x.dtype, jnp.floating))


def _float_args(a):
    """Copies of the differentiable arguments of a call, Python floats as 0-d arrays."""
    return {k: np.array(v, np.float64 if isinstance(v, float) else None) for k, v in a.items() if _is_float(v)}


def _sum_to(x, shape):
    """Reduce an elementwise derivative to the shape of a broadcast argument."""
    x = np.sum(x, axis=tuple(range(x.ndim - len(shape))))
    return np.sum(x, axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True).reshape(shape)


def _grads(fn, a, wrt=None):
    """Gradient of sum(fn(**a)) with respect to every float argument (or those in wrt)."""
    floats = _float_args(a) if wrt is None else {k: a[k] for k in wrt}
    return jax.jit(jax.grad(lambda f: jnp.sum(fn(**{**a, **f}))))(floats)


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


def _scored(**options):
    """Scores and ±1 integer labels with y·s at least 0.1 from the corner y·s = 1."""

    def make(rng, shape):
        z = rng.uniform(-2.0, 3.0, size=shape)
        z = np.where(np.abs(z - 1) < 0.1, z + 0.3, z)
        y = rng.choice([-1, 1], size=shape)
        return {"scores": z * y, "labels": y, **options}

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


def _margin_case(phi, dphi):
    """NumPy loss and derivative of φ(y·s)."""

    def ref(scores, labels, base2=False):
        return phi(_signed(labels) * scores) / (np.log(2.0) if base2 else 1.0)

    def dref(scores, labels, base2=False):
        y = _signed(labels)
        return {"scores": dphi(y * scores) * y / (np.log(2.0) if base2 else 1.0)}

    return ref, dref


_hinge = _margin_case(lambda z: np.maximum(0.0, 1 - z), lambda z: np.where(z < 1, -1.0, 0.0))
_squared_hinge = _margin_case(lambda z: np.maximum(0.0, 1 - z) ** 2, lambda z: -2 * np.maximum(0.0, 1 - z))
_logistic = _margin_case(lambda z: np.log1p(np.exp(-z)), lambda z: -1 / (1 + np.exp(z)))
_square = _margin_case(lambda z: (1 - z) ** 2, lambda z: -2 * (1 - z))


def _np_ranking(x1, x2, y, margin=0.0):
    return np.maximum(0.0, -_signed(y) * (x1 - x2) + margin)


def _np_ranking_d(x1, x2, y, margin=0.0):
    s = _signed(y)
    active = (margin - s * (x1 - x2) > 0).astype(np.float64)
    return {"x1": -s * active, "x2": s * active, "margin": active * np.ones_like(x1)}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    fn: Callable
    make: Callable  # (rng, shape) -> every argument by name
    ref: Callable  # NumPy float64 loss
    dref: Callable  # NumPy derivatives of each float argument, elementwise

    def __str__(self):
        return self.id


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
                                     "logistic-base2", "square", "margin_ranking-elementwise-margin"}]
parametrize_core = pytest.mark.parametrize("case", CORE, ids=str)
# Every kind of float argument (Python float option, 0-d, elementwise and broadcast arrays, hard and
# soft float labels), for the finite-difference checker, which is slow; the NumPy derivative test
# covers every case.
CHECKED = [c for c in CASES if c.id not in {"sigmoid_bce-int-labels", "sigmoid_bce-soft-labels",
                                            "sigmoid_bce-elementwise-pos_weight", "sigmoid_bce-float-label_smoothing",
                                            "logistic", "margin_ranking-default-margin"}]


# ----------------------------------------------------------------------------- values and derivatives


@parametrize_cases
def test_values_match_numpy_float64_reference(case, x64):
    a = case.make(np.random.default_rng(0), SHAPE)
    got = case.fn(**a)
    assert got.dtype == jnp.float64 and got.shape == SHAPE
    np.testing.assert_allclose(got, case.ref(**a), rtol=1e-12, atol=1e-15)
    arrays = {k: v for k, v in a.items() if isinstance(v, np.ndarray)}
    jitted = jax.jit(lambda arrays: case.fn(**{**a, **arrays}))(arrays)
    np.testing.assert_allclose(jitted, got, rtol=1e-14, atol=1e-15)


@parametrize_cases
def test_hand_derivative_matches_numpy_analytic_derivative(case, x64):
    a = case.make(np.random.default_rng(1), SHAPE)
    grads = _grads(case.fn, a)
    expected = case.dref(**a)
    assert set(grads) == set(_float_args(a)) and set(grads) <= set(expected)
    for name, g in grads.items():
        np.testing.assert_allclose(g, _sum_to(np.broadcast_to(expected[name], SHAPE), np.shape(a[name])),
                                   rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("case", CHECKED, ids=str)
def test_check_gradients_passes_for_every_float_argument(case):
    a = case.make(np.random.default_rng(2), SHAPE)
    check = jaxloss.check_gradients(case.fn, **a)
    assert {r.argument for r in check.rows} == set(_float_args(a))
    assert check.ok, repr(check)


# ----------------------------------------------------------------------------- label conventions


def _label_variants(signs):
    """The same labels as int ±1, int {0, 1}, bool, float ±1 and float {0, 1}."""
    return [signs, (signs > 0).astype(np.int32), signs > 0, signs.astype(np.float32),
            (signs > 0).astype(np.float32)]


@pytest.mark.parametrize(
    "fn", [jaxloss.hinge_loss, jaxloss.squared_hinge_loss, jaxloss.logistic_loss, jaxloss.square_loss],
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
    mine, optax_grads = _grads(ours, a), _grads(theirs, a)
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
    mine = _grads(BCE, {**a, "pos_weight": w}, wrt=("logits", "labels"))
    for k in mine:
        np.testing.assert_allclose(mine[k], grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_logistic_loss_matches_torch_soft_margin_loss(x64):
    a = _scored()(np.random.default_rng(8), SHAPE)
    values, grads = _torch_values_and_grads("soft_margin_loss", a, ("scores",))
    np.testing.assert_allclose(jaxloss.logistic_loss(**a), values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(_grads(jaxloss.logistic_loss, a)["scores"], grads["scores"], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("margin", [0.0, 0.5])
def test_margin_ranking_matches_torch(margin, x64):
    a = _ranked(margin)(np.random.default_rng(9), SHAPE)
    values, grads = _torch_values_and_grads("margin_ranking_loss", {k: a[k] for k in ("x1", "x2", "y")},
                                            ("x1", "x2"), margin=margin)
    np.testing.assert_allclose(jaxloss.margin_ranking_loss(**a), values, rtol=1e-12, atol=1e-15)
    mine = _grads(jaxloss.margin_ranking_loss, a, wrt=("x1", "x2"))
    for k in mine:
        np.testing.assert_allclose(mine[k], grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


# ----------------------------------------------------------------------------- corners


def _grads_and_jvp(fn, a, wrt):
    """Reverse-mode gradients of sum(fn) and the forward-mode derivative along all-ones."""
    primals = {k: jnp.asarray(a[k]) for k in wrt}
    ones = jax.tree.map(jnp.ones_like, primals)
    jv = jax.jit(lambda x: jax.jvp(lambda f: fn(**{**a, **f}), (x,), (ones,))[1])(primals)
    return _grads(fn, a, wrt), jv


@pytest.mark.parametrize("fn", [jaxloss.hinge_loss, jaxloss.squared_hinge_loss], ids=lambda f: f.__name__)
def test_subgradient_at_hinge_corner_is_zero(fn, x64):
    a = {"scores": np.array([1.0, -1.0, -1.0]), "labels": np.array([1, -1, 0])}  # y·s = 1 everywhere
    np.testing.assert_array_equal(fn(**a), 0.0)
    grads, jv = _grads_and_jvp(fn, a, ("scores",))
    np.testing.assert_array_equal(grads["scores"], 0.0)
    np.testing.assert_array_equal(jv, 0.0)


def test_margin_ranking_subgradient_at_corner_is_zero_for_x1_x2_and_margin(x64):
    # m − y(x1 − x2) = 0 in every entry.
    a = {"x1": np.array([1.5, 0.25, 2.0]), "x2": np.array([1.0, 0.75, 2.0]), "y": np.array([1, -1, 1]),
         "margin": np.array([0.5, 0.5, 0.0])}
    np.testing.assert_array_equal(jaxloss.margin_ranking_loss(**a), 0.0)
    grads, jv = _grads_and_jvp(jaxloss.margin_ranking_loss, a, ("x1", "x2", "margin"))
    for name, g in grads.items():
        np.testing.assert_array_equal(g, 0.0, err_msg=name)
    np.testing.assert_array_equal(jv, 0.0)


# ----------------------------------------------------------------------------- stability


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
    grads = _grads(BCE, a)
    assert set(grads) == {"logits", "labels", *options}
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
        want = _sum_to(np.broadcast_to(expected[name], x.shape), np.shape(g))
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
    g = _grads(jaxloss.logistic_loss, {"scores": scores, "labels": labels, "base2": base2})["scores"]
    np.testing.assert_allclose(g, np.array([0.0, -1.0, 1.0, 0.0]) / scale, rtol=1e-6, atol=1e-30)


# ----------------------------------------------------------------------------- where=


def _per_example(fn):
    """The arguments before the keyword-only options: inputs and targets, what where= masks."""
    return [n for n, q in inspect.signature(fn).parameters.items() if q.kind == q.POSITIONAL_OR_KEYWORD]


def _mask_params():
    """Every core case with an elementwise mask; two with a mask broadcast along the last axis."""
    for case in CORE:
        yield pytest.param(case, SHAPE, id=f"{case.id}-elementwise-mask")
    for case in CORE:
        if case.id in ("margin_ranking-elementwise-margin", "sigmoid_bce-all-options"):
            yield pytest.param(case, SHAPE[-1:], id=f"{case.id}-broadcast-mask")


@pytest.mark.parametrize("case, mask_shape", list(_mask_params()))
def test_masked_entries_have_zero_loss_and_exactly_zero_derivatives_even_when_nonfinite(case, mask_shape):
    """Masked examples of the per-example (positional) arguments hold inf/NaN padding;
    nothing of it reaches the value or any derivative."""
    a = {k: v.astype(np.float32) if _is_float(v) and np.ndim(v) else v
         for k, v in case.make(np.random.default_rng(10), SHAPE).items()}
    where = np.arange(np.prod(mask_shape)).reshape(mask_shape) % 3 != 0
    full = np.broadcast_to(where, SHAPE)
    clean = _float_args(a)
    dirty = _float_args(a)
    for name in _per_example(case.fn):
        if name in dirty:
            dirty[name][~full] = np.resize([np.inf, -np.inf, np.nan], (~full).sum())

    @jax.jit
    def run(dirty, clean):
        masked = lambda f: case.fn(**{**a, **f}, where=where)  # noqa: E731
        by_hand = lambda f: jnp.where(where, case.fn(**{**a, **f}), 0.0)  # noqa: E731
        _, jv = jax.jvp(masked, (dirty,), (jax.tree.map(jnp.ones_like, dirty),))
        grad = lambda g, f: jax.grad(lambda f: jnp.sum(g(f)))(f)  # noqa: E731
        return masked(dirty), case.fn(**{**a, **clean}), grad(masked, dirty), grad(by_hand, clean), jv

    loss, unmasked, grads, expected, jv = run(dirty, clean)
    np.testing.assert_array_equal(loss[~full], 0.0)
    np.testing.assert_allclose(loss[full], unmasked[full], rtol=1e-6)
    np.testing.assert_array_equal(jv[~full], 0.0)
    assert np.all(np.isfinite(jv))
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), name
        np.testing.assert_allclose(g, expected[name], rtol=1e-6, atol=1e-7, err_msg=name)
        if np.shape(g) == SHAPE:
            np.testing.assert_array_equal(g[~full], 0.0, err_msg=name)


# ----------------------------------------------------------------------------- dtypes


def _dtype_params():
    """bfloat16 for every core case; float16 for two."""
    for case in CORE:
        yield pytest.param(case, jnp.bfloat16, id=f"{case.id}-bfloat16")
    for case in CORE:
        if case.id in ("squared_hinge", "sigmoid_bce-all-options"):
            yield pytest.param(case, jnp.float16, id=f"{case.id}-float16")


@pytest.mark.parametrize("case, dtype", list(_dtype_params()))
def test_low_precision_inputs_give_float32_loss_and_own_dtype_gradients(case, dtype):
    a = case.make(np.random.default_rng(12), SHAPE)
    arrays = {k: v for k, v in a.items() if _is_float(v) and np.ndim(v)}
    low = {k: jnp.asarray(v, dtype) for k, v in arrays.items()}

    @jax.jit
    def run(low):
        up = jax.tree.map(lambda x: x.astype(jnp.float32), low)
        grad = lambda f: jax.grad(lambda f: jnp.sum(case.fn(**{**a, **f})))(f)  # noqa: E731
        return case.fn(**{**a, **low}), case.fn(**{**a, **up}), grad(low), grad(up)

    loss, loss32, grads, grads32 = run(low)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, loss32, rtol=1e-6)
    np.testing.assert_allclose(loss, case.ref(**a), rtol=0.05, atol=0.05)
    for name, g in grads.items():
        assert g.dtype == dtype, name
        np.testing.assert_allclose(g.astype(np.float32), grads32[name], rtol=1e-2, atol=1e-2, err_msg=name)


# ----------------------------------------------------------------------------- errors

F, I = np.ones(SHAPE, np.float32), np.ones(SHAPE, np.int32)
F6, I6 = np.ones((5, 6), np.float32), np.ones((5, 6), np.int32)
MARGIN_LOSSES = [jaxloss.hinge_loss, jaxloss.squared_hinge_loss, jaxloss.logistic_loss, jaxloss.square_loss]
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
    pytest.param(BCE, (F, F), {"pos_weight": np.ones(7, np.int32)}, TypeError,
                 r"pos_weight must be a floating-point array", id="integer-pos_weight"),
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
    pytest.param(jaxloss.margin_ranking_loss, (F, F, I6), {}, ValueError,
                 r"y with shape \(5, 6\) does not broadcast to x1 with shape \(5, 7\)", id="y-shape"),
]


def _call(fn, args, kwargs, jit):
    if not jit:
        return fn(*args, **kwargs)
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    return jax.jit(lambda args, arrays: fn(*args, **arrays, **static))(args, arrays)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    with pytest.raises(error, match=match):
        _call(fn, args, kwargs, jit)


@pytest.mark.parametrize(
    "option, match",
    [({"pos_weight": np.array([1.0, -1.0])}, r"pos_weight must be >= 0"),
     ({"label_smoothing": np.array([0.1, 1.1])}, r"label_smoothing must lie in \[0, 1\]")],
    ids=["pos_weight", "label_smoothing"],
)
def test_concrete_out_of_range_option_array_raises(option, match):
    with pytest.raises(ValueError, match=match):
        BCE(np.ones(2, np.float32), np.zeros(2, np.float32), **option)


# ----------------------------------------------------------------------------- higher order


@parametrize_core
def test_hessian_and_forward_over_reverse_hvp_match_reference(case, x64):
    """Away from kinks: the hand rule's second derivatives equal autodiff of the formula."""
    rng = np.random.default_rng(13)
    a = case.make(rng, (3, 4))
    floats = _float_args(a)
    v = {k: rng.normal(size=np.shape(x)) for k, x in floats.items()}
    first = next(iter(floats))  # predictions / logits / scores / x1

    @jax.jit
    def run(x):
        def both(fn):
            total = lambda f: jnp.sum(fn(**{**a, **f}))  # noqa: E731
            hessian = jax.hessian(lambda y: total({**x, first: y}))(x[first])
            return hessian, jax.jvp(jax.grad(total), (x,), (v,))[1]  # HVP in every float argument
        return both(case.fn), both(case.fn.reference)

    (hessian, hvp), (hessian_ref, hvp_ref) = run(floats)
    np.testing.assert_allclose(hessian, hessian_ref, rtol=1e-12, atol=1e-14)
    for name in floats:
        np.testing.assert_allclose(hvp[name], hvp_ref[name], rtol=1e-12, atol=1e-14, err_msg=name)
