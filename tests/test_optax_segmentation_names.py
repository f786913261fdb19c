"""optax's names dice_loss, binary_dice_loss, multiclass_generalized_dice_loss and ntxent: against
float64 NumPy references, optax's functions (values and gradients) and the gradient checker."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from jaxloss import _verify
from jaxloss.catalogue._common import Entry

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

RNG = np.random.default_rng(0)


def _close(a, b, rtol=2e-5, atol=1e-7):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               equal_nan=False)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _dice(p, g, smooth):
    """optax's Dice per class, summing over the axes between the first and the last: ``[B, C]``."""
    axes = tuple(range(1, p.ndim - 1))
    inter, ps, gs = (p * g).sum(axes), p.sum(axes), g.sum(axes)
    return 1 - (inter + smooth) / (0.5 * (ps + gs) + smooth)


def _binary_reference(x, g, smooth=1.0, apply_sigmoid=True):
    x, g = np.float64(x)[..., None], np.float64(g)[..., None]
    return _dice(_sigmoid(x) if apply_sigmoid else x, g, smooth)[:, 0]


def _generalized_reference(x, g, smooth=1.0, apply_softmax=True, ignore_background=False):
    x, g = np.float64(x), np.float64(g)
    inverse = 1 / (g.sum(tuple(range(g.ndim - 1))) ** 2 + 1e-7)
    w = len(inverse) * inverse / inverse.sum()
    losses = w * _dice(_softmax(x) if apply_softmax else x, g, smooth)
    return (losses[:, 1:] if ignore_background else losses).mean()


def _binary_inputs(shape):
    return jnp.float32(2 * RNG.standard_normal(shape)), jnp.float32(RNG.uniform(size=shape) < 0.5)


def _segmentation_inputs(shape=(3, 4, 5, 3)):
    return jnp.float32(2 * RNG.standard_normal(shape)), jnp.float32(jax.nn.one_hot(RNG.integers(0, 3, shape[:-1]), 3))


# ---------------------------------------------------------------- dice_loss


def _dice_reference(x, g, *, class_weights=None, smooth=1.0, alpha=0.5, beta=0.5, apply_softmax=True,
                    reduction="mean", ignore_background=False, axis=None):
    """optax's dice_loss from its formula in float64 NumPy (inputs already of one shape)."""
    x, g = np.float64(x), np.float64(g)
    if apply_softmax:
        x = _sigmoid(x) if x.shape[-1] == 1 else _softmax(x)
    axis = tuple(range(1, x.ndim - 1)) if axis is None else axis
    inter, ps, gs = (x * g).sum(axis), x.sum(axis), g.sum(axis)
    losses = 1 - (inter + smooth) / (inter + alpha * (ps - inter) + beta * (gs - inter) + smooth)
    if class_weights is not None:
        losses = losses * np.float64(class_weights)
    if ignore_background and x.shape[-1] > 1:
        losses = losses[..., 1:]
    return {"mean": lambda v: v.mean(-1), "sum": lambda v: v.sum(-1), "none": lambda v: v}[reduction](losses)


W = jnp.float32([0.5, 1.0, 2.0])
DICE_CASES = {  # name: (predictions shape, options); soft targets of the same shape
    "default": ((3, 4, 5, 3), {}),
    "tversky": ((3, 4, 5, 3), {"smooth": 0.5, "alpha": 0.3, "beta": 0.7}),
    "one_class_sigmoid": ((3, 4, 5, 1), {"smooth": 0.5}),
    "probabilities": ((3, 4, 5, 3), {"apply_softmax": False}),
    "class_weights": ((3, 4, 5, 3), {"class_weights": W}),
    "ignore_background": ((3, 4, 5, 3), {"ignore_background": True, "class_weights": W}),
    "sum": ((3, 4, 5, 3), {"reduction": "sum"}),
    "none": ((3, 4, 5, 3), {"reduction": "none"}),
    "none_ignore_background": ((3, 4, 5, 3), {"reduction": "none", "ignore_background": True}),
    "axis_tuple": ((3, 4, 5, 3), {"axis": (0, 2), "reduction": "none"}),
    "axis_int": ((3, 4, 5, 3), {"axis": -2}),
    "rank_2": ((6, 3), {}),
    "volume": ((2, 3, 4, 2, 4), {"smooth": 0.0, "alpha": 0.6, "beta": 0.2}),
}


def _dice_inputs(shape, options, seed=0):
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal(shape)
    if options.get("apply_softmax") is False:
        x = _softmax(x)
    g = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]) if shape[-1] > 1 else rng.uniform(size=shape)
    return jnp.float32(x), jnp.float32(g)


@pytest.mark.parametrize("case", list(DICE_CASES))
def test_dice_loss_matches_optax_and_reference_in_value_and_gradient(case):
    """optax's call under optax's name gives optax's numbers (it used to be the MONAI form,
    now soft_dice_loss: 1 − (2I + s)/(P + G + s) on probabilities, other numbers)."""
    shape, options = DICE_CASES[case]
    x, g = _dice_inputs(shape, options)
    ours = jaxloss.dice_loss(x, g, **options)
    theirs = optax.losses.dice_loss(x, g, **options)
    assert ours.shape == theirs.shape and ours.dtype == jnp.float32
    _close(ours, _dice_reference(x, g, **options))
    _close(ours, theirs)
    floats = {"x": x, "g": g, "smooth": jnp.float32(options.get("smooth", 1.0)),
              "alpha": jnp.float32(options.get("alpha", 0.5)), "beta": jnp.float32(options.get("beta", 0.5)),
              **({"class_weights": W} if "class_weights" in options else {})}
    static = {k: v for k, v in options.items() if k not in floats}
    cotangent = jnp.float32(RNG.standard_normal(ours.shape))

    def total(fn):
        def loss(f):
            options = {k: v for k, v in f.items() if k not in ("x", "g")}
            return jnp.sum(cotangent * fn(f["x"], f["g"], **options, **static))
        return loss

    grads, expected = jax.grad(total(jaxloss.dice_loss))(floats), jax.grad(total(optax.losses.dice_loss))(floats)
    for name in floats:
        _close(grads[name], expected[name], atol=1e-6)


def test_dice_loss_defaults_and_signature_are_optax():
    import inspect

    ours, theirs = (inspect.signature(f).parameters for f in (jaxloss.dice_loss, optax.losses.dice_loss))
    assert list(ours) == list(theirs) + ["where"]
    assert all(ours[n].default == theirs[n].default and ours[n].kind == theirs[n].kind for n in theirs)


@pytest.mark.parametrize("predictions, targets", [((2, 4, 5), (2, 4, 5, 1)), ((2, 4, 5, 1), (2, 4, 5))])
def test_dice_loss_adds_the_missing_class_axis_as_optax(predictions, targets):
    """optax's rank-adjusted inputs: the side of lower rank gets a class axis of size 1
    (sigmoid); boolean targets are taken as {0, 1} values."""
    x = jnp.float32(RNG.standard_normal(predictions))
    g = jnp.asarray(RNG.uniform(size=targets) < 0.4)
    ours = jaxloss.dice_loss(x, g)
    assert ours.shape == (2,)
    _close(ours, optax.losses.dice_loss(x, g))
    _close(ours, _dice_reference(x.reshape(2, 4, 5, 1), g.reshape(2, 4, 5, 1)))
    _close(jax.grad(lambda x: jnp.sum(jaxloss.dice_loss(x, g)))(x),
           jax.grad(lambda x: jnp.sum(optax.losses.dice_loss(x, g)))(x), atol=1e-6)


def test_dice_loss_is_soft_dice_loss_with_twice_the_smoothing():
    """The MONAI form 1 − (2I + s)/(P + G + s) with s = 2s' is optax's α = β = 0.5 ratio with s'."""
    x, g = _dice_inputs((3, 4, 5, 3), {})
    _close(jaxloss.dice_loss(x, g, smooth=0.3), jaxloss.soft_dice_loss(x, g, smooth=0.6, from_logits="softmax"))
    assert not np.allclose(jaxloss.dice_loss(x, g, smooth=0.3),
                           jaxloss.soft_dice_loss(x, g, smooth=0.3, from_logits="softmax"))


def test_dice_loss_where_leaves_pixels_out():
    """A pixel mask over ``[B, H, W]``: NaN padding gets gradient exactly 0 and each example's
    loss is optax's on its unmasked pixels."""
    x, g = _dice_inputs((2, 4, 5, 3), {})
    where = jnp.asarray(RNG.uniform(size=(2, 4, 5)) < 0.6)
    padded = jnp.where(where[..., None], x, jnp.nan), jnp.where(where[..., None], g, jnp.inf)
    options = {"smooth": 0.5, "alpha": 0.3, "beta": 0.7}
    losses = jaxloss.dice_loss(*padded, where=where, **options)
    grads = jax.grad(lambda *a: jnp.sum(jaxloss.dice_loss(*a, where=where, **options)), (0, 1))(*padded)
    for grad in grads:
        assert jnp.all(grad[~where] == 0) and np.all(np.isfinite(grad))
    for b in range(2):
        keep = np.asarray(where[b])
        _close(losses[b], optax.losses.dice_loss(x[b][keep][None], g[b][keep][None], **options)[0])
    unmasked = jax.grad(lambda x: jnp.sum(jaxloss.dice_loss(x, g, where=where, **options)))(x)
    _close(grads[0], unmasked, atol=1e-7)
    full = jnp.broadcast_to(where[:1], where.shape)
    _close(jaxloss.dice_loss(x, g, where=where[:1]), jaxloss.dice_loss(x, g, where=full))


def test_dice_loss_empty_class_with_no_smoothing_is_zero_not_nan():
    x = jnp.float32(np.broadcast_to([0.7, 0.3, 0.0], (2, 4, 3)))
    g = jnp.float32(np.broadcast_to([1.0, 0.0, 0.0], (2, 4, 3)))
    options = {"smooth": 0.0, "apply_softmax": False, "reduction": "none"}
    losses, theirs = jaxloss.dice_loss(x, g, **options), optax.losses.dice_loss(x, g, **options)
    assert np.isnan(theirs[:, 2]).all()
    _close(losses[:, 2], [0.0, 0.0])
    _close(losses[:, :2], theirs[:, :2])
    grad = jax.grad(lambda x: jnp.sum(jaxloss.dice_loss(x, g, smooth=0.0, apply_softmax=False)))(x)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("call, error, words", [
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 2))), ValueError,
     ["predictions", "targets", "(2, 4, 3)", "(2, 4, 2)"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3), jnp.int32), jnp.zeros((2, 4, 3))), TypeError, ["predictions"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3), jnp.complex64)), TypeError, ["targets"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), axis=-1), ValueError, ["axis", "class"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), axis=(1, 3)), ValueError,
     ["axis", "out of range"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), axis=[1]), ValueError, ["axis"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), reduction="avg"), ValueError,
     ["reduction", "avg"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), class_weights=jnp.ones(2)), ValueError,
     ["class_weights", "(2,)", "(3,)"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), where=jnp.ones((2, 3), bool)), ValueError,
     ["where", "(2, 3)", "(2, 4)"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), where=jnp.ones((2, 4))), TypeError,
     ["where"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), smooth=-1.0), ValueError, ["smooth"]),
    (lambda: jaxloss.dice_loss(jnp.zeros((2, 4, 3)), jnp.zeros((2, 4, 3)), class_weights=jnp.float32([1, -1, 1])),
     ValueError, ["class_weights", ">= 0"]),
])
def test_dice_loss_bad_inputs_raise_naming_the_argument(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


# ---------------------------------------------------------------- binary_dice_loss


@pytest.mark.parametrize("shape", [(4, 5, 6), (4, 30), (7,)])
@pytest.mark.parametrize("channel", ["none", "both", "predictions", "targets"])
def test_binary_dice_matches_optax_and_reference(shape, channel):
    x, g = _binary_inputs(shape)
    xs = x[..., None] if channel in ("both", "predictions") else x
    gs = g[..., None] if channel in ("both", "targets") else g
    ours = jaxloss.binary_dice_loss(xs, gs, smooth=0.5)
    assert ours.shape == shape[:1]
    _close(ours, _binary_reference(x.reshape(shape), g.reshape(shape), 0.5))
    _close(ours, optax.losses.binary_dice_loss(xs, gs, smooth=0.5))
    grads = jax.grad(lambda *a: jnp.sum(jaxloss.binary_dice_loss(*a, smooth=0.5)), (0, 1))(xs, gs)
    expected = jax.grad(lambda *a: jnp.sum(optax.losses.binary_dice_loss(*a, smooth=0.5)), (0, 1))(xs, gs)
    for ours, theirs in zip(grads, expected):
        _close(ours, theirs, atol=1e-6)


def test_binary_dice_on_probabilities_is_optax_on_their_logits():
    """``apply_sigmoid=False`` takes σ(x): optax's own check accepts only probabilities of 1 there."""
    x, g = _binary_inputs((3, 4, 4, 1))
    ours = jaxloss.binary_dice_loss(jax.nn.sigmoid(x), g, apply_sigmoid=False)
    _close(ours, optax.losses.binary_dice_loss(x, g))
    _close(ours, _binary_reference(_sigmoid(np.float64(x[..., 0])), g[..., 0], apply_sigmoid=False))


def test_binary_dice_where_leaves_pixels_out():
    x, g = _binary_inputs((2, 6))
    where = jnp.array([[True] * 4 + [False] * 2, [True] * 6])
    losses, grad = jax.value_and_grad(lambda x: jnp.sum(jaxloss.binary_dice_loss(x, g, where=where)))(
        jnp.where(where, x, jnp.nan))
    assert jnp.all(grad[~where] == 0) and np.all(np.isfinite(grad))
    _close(jaxloss.binary_dice_loss(x, g, where=where)[0], _binary_reference(x[:1, :4], g[:1, :4]))


def test_binary_dice_rejects_integer_targets():
    with pytest.raises((TypeError, ValueError), match="targets"):
        jaxloss.binary_dice_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3), jnp.int32))


# ---------------------------------------------------------------- multiclass_generalized_dice_loss


@pytest.mark.parametrize("ignore_background", [False, True])
@pytest.mark.parametrize("apply_softmax", [True, False])
def test_generalized_dice_matches_optax_and_reference(ignore_background, apply_softmax):
    x, g = _segmentation_inputs()
    if not apply_softmax:
        x = jax.nn.softmax(x)
    g = g.at[..., 1].mul(0.3).at[..., 0].add(g[..., 1] * 0.7)  # soft targets, unbalanced classes
    kw = {"smooth": 0.5, "apply_softmax": apply_softmax, "ignore_background": ignore_background}
    ours = jaxloss.multiclass_generalized_dice_loss(x, g, **kw)
    assert ours.shape == ()
    _close(ours, _generalized_reference(x, g, **kw))
    _close(ours, optax.losses.multiclass_generalized_dice_loss(x, g, **kw))
    grads = jax.grad(lambda *a: jaxloss.multiclass_generalized_dice_loss(*a, **kw), (0, 1))(x, g)
    expected = jax.grad(lambda *a: optax.losses.multiclass_generalized_dice_loss(*a, **kw), (0, 1))(x, g)
    for ours, theirs in zip(grads, expected):
        _close(ours, theirs, atol=1e-6)


def test_generalized_dice_of_one_class_is_sigmoid_dice():
    x, g = _binary_inputs((3, 8, 1))
    _close(jaxloss.multiclass_generalized_dice_loss(x, g), optax.losses.multiclass_generalized_dice_loss(x, g))
    _close(jaxloss.multiclass_generalized_dice_loss(x, g), _binary_reference(x[..., 0], g[..., 0]).mean())


def test_generalized_dice_where_leaves_examples_out_of_the_weights_and_mean():
    x, g = _segmentation_inputs((4, 3, 3, 3))
    where = jnp.array([True, False, True, True])
    loss, grad = jax.value_and_grad(lambda x: jaxloss.multiclass_generalized_dice_loss(x, g, where=where))(
        jnp.where(where[:, None, None, None], x, jnp.nan))
    assert jnp.all(grad[~where] == 0) and np.all(np.isfinite(grad))
    _close(loss, optax.losses.multiclass_generalized_dice_loss(x[where], g[where]))


def test_generalized_dice_rejects_class_ids():
    with pytest.raises((TypeError, ValueError), match="targets"):
        jaxloss.multiclass_generalized_dice_loss(jnp.zeros((2, 3, 3)), jnp.zeros((2, 3), jnp.int32))


# ---------------------------------------------------------------- derivatives


CASES = [
    (jaxloss.dice_loss, _dice_inputs((3, 4, 4, 3), {}), {"smooth": 0.5, "alpha": 0.3, "beta": 0.7,
                                                         "class_weights": W}),
    (jaxloss.dice_loss, _dice_inputs((3, 4, 4, 1), {}), {"smooth": 0.5}),
    (jaxloss.dice_loss, _dice_inputs((3, 4, 4, 3), {}), {"reduction": "none", "ignore_background": True,
                                                         "axis": (0, 2)}),
    (jaxloss.dice_loss, _dice_inputs((3, 4, 4, 3), {"apply_softmax": False}), {"apply_softmax": False,
                                                                               "reduction": "sum"}),
    (jaxloss.binary_dice_loss, _binary_inputs((3, 4, 4)), {"smooth": jnp.float32(0.5)}),
    (jaxloss.binary_dice_loss, _binary_inputs((3, 4, 1)), {"apply_sigmoid": False}),
    (jaxloss.multiclass_generalized_dice_loss, _segmentation_inputs(), {"smooth": jnp.float32(0.5)}),
    (jaxloss.multiclass_generalized_dice_loss, _segmentation_inputs(), {"ignore_background": True}),
    (jaxloss.multiclass_generalized_dice_loss, _segmentation_inputs(), {"apply_softmax": False}),
]


@pytest.mark.parametrize("fn, args, kwargs", CASES)
def test_derivatives_forward_reverse_and_order_2(fn, args, kwargs):
    x, g = args
    if (kwargs.get("apply_sigmoid") is False or kwargs.get("apply_softmax") is False) and fn is not jaxloss.dice_loss:
        x = jax.nn.sigmoid(x) if fn is jaxloss.binary_dice_loss else jax.nn.softmax(x)
    g = jnp.float32(0.1 + 0.8 * np.asarray(g))  # soft targets: every target gets a derivative
    result = jaxloss.check_gradients(fn, x, g, order=2, **kwargs)
    assert result.ok, result
    assert {r.mode for r in result.rows} == {"reverse", "forward", "hvp"}
    tangent = jnp.float32(RNG.standard_normal(x.shape))
    value, jvp = jax.jvp(lambda x: fn(x, g, **kwargs), (x,), (tangent,))
    ref_value, ref_jvp = jax.jvp(lambda x: fn.reference(x, g, **kwargs), (x,), (tangent,))
    _close(value, ref_value)
    _close(jvp, ref_jvp, atol=1e-6)


def test_softmax_rule_keeps_bfloat16_gradients_as_precise_as_autodiff():
    """The softmax tangent is cast to float32 once: reverse mode used to round each of its two
    terms to bfloat16 before summing them (gradient error 1.2e-2 against autodiff's 2.4e-3)."""
    x, _ = _segmentation_inputs((4, 3, 3, 3))
    g = jnp.float32(RNG.dirichlet(np.ones(3), size=(4, 3, 3)))

    def sample(rng):
        return (x, g), {"smooth": jnp.float32(0.5), "from_logits": "softmax", "class_weights": jnp.float32([0.5, 1, 2])}

    ours = _verify.precision_error(Entry(jaxloss.soft_dice_loss, "", "", sample, list), jnp.bfloat16)[1]
    autodiff = _verify.precision_error(Entry(jaxloss.soft_dice_loss.reference, "", "", sample, list), jnp.bfloat16)[1]
    assert ours <= 1.5 * autodiff


# ---------------------------------------------------------------- ntxent


def test_ntxent_is_ntxent_loss_and_optax_is_its_positive_weighted_mean():
    assert jaxloss.ntxent is jaxloss.ntxent_loss
    x = jnp.float32(RNG.standard_normal((8, 5)))
    labels = jnp.array([0, 0, 1, 1, 1, 2, 3, 3])
    positives = jnp.sum(labels[:, None] == labels[None], axis=-1) - 1
    losses = jaxloss.ntxent(x, labels)
    _close(jaxloss.reduce.mean(losses, weights=jnp.float32(positives)), optax.losses.ntxent(x, labels))
