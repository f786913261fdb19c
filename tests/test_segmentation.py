"""Segmentation overlap losses against float64 references, optax, and their edge cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

LOSSES = ("soft_dice_loss", "jaccard_loss", "tversky_loss", "generalized_dice_loss")
SHAPE = (2, 4, 3, 3)  # [B, H, W, C]


def _close(a, b, rtol=1e-6, atol=1e-9):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


def _reference(name, x, targets, *, smooth=1.0, squared=False, class_weights=None, include_background=True,
               from_logits=None, where=None, alpha=0.5, beta=0.5):
    """The textbook formulas, class by class, in plain jnp (float64 under enable_x64)."""
    classes = x.shape[-1]
    keep = jnp.ones(x.shape[:-1], bool) if where is None else jnp.broadcast_to(where, x.shape[:-1])
    x = jnp.where(keep[..., None], x, 0.0)
    p = {None: lambda v: v, "softmax": lambda v: jax.nn.softmax(v, -1), "sigmoid": jax.nn.sigmoid}[from_logits](x)
    g = jax.nn.one_hot(targets, classes, dtype=x.dtype) if jnp.issubdtype(targets.dtype, jnp.integer) else targets
    p, g = jnp.where(keep[..., None], p, 0.0), jnp.where(keep[..., None], g, 0.0)
    axes = tuple(range(1, x.ndim - 1))
    inter = jnp.sum(p * g, axes)
    fp, fn = jnp.sum(p * (1 - g), axes), jnp.sum((1 - p) * g, axes)
    ps, gs = jnp.sum(p ** 2 if squared else p, axes), jnp.sum(g ** 2 if squared else g, axes)
    first = 0 if include_background else 1
    if name == "generalized_dice_loss":
        gsum = jnp.sum(g, axes)[:, first:]
        w = 1 / gsum ** 2
        finite = jnp.isfinite(w)
        w = jnp.where(finite, w, jnp.max(jnp.where(finite, w, 0.0), -1, keepdims=True))
        num = 2 * jnp.sum(w * inter[:, first:], -1) + smooth
        den = jnp.sum(w * (ps + gs)[:, first:], -1) + smooth
        return 1 - num / den
    if name == "soft_dice_loss":
        num, den = 2 * inter + smooth, ps + gs + smooth
    elif name == "jaccard_loss":
        num, den = inter + smooth, ps + gs - inter + smooth
    else:
        num, den = inter + smooth, inter + alpha * fp + beta * fn + smooth
    losses = (1 - num / den)[:, first:]
    w = jnp.ones(classes, x.dtype) if class_weights is None else class_weights
    w = w[first:]
    return jnp.sum(w * losses, -1) / jnp.sum(w)


def _inputs(seed, from_logits, ids):
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal(SHAPE)
    if from_logits is None:
        x = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    if ids:
        targets = rng.integers(0, SHAPE[-1], size=SHAPE[:-1]).astype(np.int32)
    else:
        t = np.exp(2 * rng.standard_normal(SHAPE))
        targets = t / t.sum(-1, keepdims=True)
    return x, targets


def _options(name, weighted):
    options = {"smooth": 0.7}
    if name == "tversky_loss":
        options.update(alpha=0.3, beta=0.9)
    if weighted and name != "generalized_dice_loss":
        options["class_weights"] = np.array([0.5, 1.0, 2.0])
    return options


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("from_logits", [None, "softmax", "sigmoid"], ids=str)
@pytest.mark.parametrize("ids", [True, False], ids=["class_ids", "probabilities"])
@pytest.mark.parametrize("variant", ["plain", "weighted", "no_background", "squared"])
def test_values_and_gradients_match_float64_reference(name, from_logits, ids, variant):
    if variant == "squared" and name != "soft_dice_loss":
        pytest.skip("squared is a soft_dice_loss option")
    fn = getattr(jaxloss, name)
    with jax.enable_x64(True):
        x, targets = _inputs(0, from_logits, ids)
        options = {k: jnp.asarray(v) for k, v in _options(name, variant == "weighted").items()}
        static = {"from_logits": from_logits, "include_background": variant != "no_background"}
        if variant == "squared":
            static["squared"] = True
        args = (jnp.asarray(x), jnp.asarray(targets))
        floats = {"predictions": args[0], **options}
        if not ids:
            floats["targets"] = args[1]

        def call(f):
            def loss(floats):
                a = (floats["predictions"], floats.get("targets", args[1]))
                kw = {k: v for k, v in floats.items() if k not in ("predictions", "targets")}
                return f(*a, **kw, **static)
            return loss

        ours, theirs = call(fn), call(lambda *a, **k: _reference(name, *a, **k))
        _close(ours(floats), theirs(floats))
        cot = jnp.asarray(np.random.default_rng(1).standard_normal(SHAPE[0]))
        g_ours = jax.vjp(ours, floats)[1](cot)[0]
        g_ref = jax.vjp(theirs, floats)[1](cot)[0]
        for k in floats:
            _close(g_ours[k], g_ref[k], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("weighted", [False, True])
def test_dice_and_tversky_and_jaccard_match_optax(weighted):
    x, targets = _inputs(2, "softmax", ids=True)
    x = jnp.float32(x)
    onehot = jax.nn.one_hot(targets, SHAPE[-1])
    w = jnp.array([0.5, 1.0, 2.0]) if weighted else jnp.ones(3)
    kw = {"class_weights": w} if weighted else {}

    def optax_mean(**o):  # optax per class, then our weighted mean over classes
        per_class = optax.losses.dice_loss(x, onehot, reduction="none", **o)
        return jnp.sum(w * per_class, -1) / jnp.sum(w)

    _close(jaxloss.soft_dice_loss(x, targets, smooth=2.0, from_logits="softmax", **kw), optax_mean(smooth=1.0),
           rtol=1e-5)
    _close(jaxloss.tversky_loss(x, targets, smooth=0.5, alpha=0.2, beta=0.8, from_logits="softmax", **kw),
           optax_mean(smooth=0.5, alpha=0.2, beta=0.8), rtol=1e-5)
    _close(jaxloss.jaccard_loss(x, onehot, smooth=1.0, from_logits="softmax", **kw),
           optax_mean(smooth=1.0, alpha=1.0, beta=1.0), rtol=1e-5)


def test_hand_computed_values():
    p = np.array([[[0.9, 0.1], [0.2, 0.8]]])
    labels = np.array([[0, 1]])
    # class 0: I = 0.9, P = 1.1, G = 1; class 1: I = 0.8, P = 0.9, G = 1.
    dice = 1 - ((1.8 + 1) / 3.1 + (1.6 + 1) / 2.9) / 2
    jac = 1 - (0.9 / 1.2 + 0.8 / 1.1) / 2
    _close(jaxloss.soft_dice_loss(jnp.float32(p), labels), [dice], rtol=1e-6)
    _close(jaxloss.jaccard_loss(jnp.float32(p), labels, smooth=0.0), [jac], rtol=1e-6)
    _close(jaxloss.soft_dice_loss(jnp.float32(p), labels, include_background=False), [1 - 2.6 / 2.9], rtol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_include_background_false_is_ignored_with_a_warning_for_a_single_class(name, x64):
    # A class axis of size 1 used to lose its only class: loss 0 and gradient 0, silently.
    fn = getattr(jaxloss, name)
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.standard_normal((2, 5, 1)))
    targets = jnp.asarray((rng.random((2, 5, 1)) < 0.5).astype(np.float64))
    options = {"smooth": 0.5, "from_logits": "sigmoid"}

    def loss(x, background):
        return jnp.sum(fn(x, targets, include_background=background, **options))

    with pytest.warns(UserWarning, match="include_background=False is ignored for a single class"):
        value = jax.jit(loss, static_argnums=1)(logits, False)
    want = _reference(name, logits, targets, **options)
    _close(value, jnp.sum(want), rtol=1e-12)
    assert value > 0.1
    v = jnp.asarray(rng.standard_normal(logits.shape))
    with pytest.warns(UserWarning):
        grad = jax.grad(loss)(logits, False)
        tangent = jax.jvp(lambda x: loss(x, False), (logits,), (v,))[1]
        hvp = jax.jvp(jax.grad(lambda x: loss(x, False)), (logits,), (v,))[1]
    ref = lambda x: jnp.sum(_reference(name, x, targets, **options))  # noqa: E731
    _close(grad, jax.grad(ref)(logits), rtol=1e-10, atol=1e-12)
    assert np.all(np.abs(np.asarray(grad)) > 0)
    _close(tangent, jax.jvp(ref, (logits,), (v,))[1], rtol=1e-10, atol=1e-12)
    _close(hvp, jax.jvp(jax.grad(ref), (logits,), (v,))[1], rtol=1e-8, atol=1e-10)
    _close(grad, jax.grad(loss)(logits, True), rtol=1e-12, atol=0)


def test_include_background_true_or_several_classes_do_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jaxloss.soft_dice_loss(jnp.full((1, 2, 1), 0.5), jnp.ones((1, 2, 1)))
        jaxloss.soft_dice_loss(jnp.full((1, 2, 2), 0.5), jnp.array([[0, 1]]), include_background=False)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_empty_class_gives_finite_loss_and_gradient(name, smooth):
    fn = getattr(jaxloss, name)
    p = np.zeros((1, 4, 3), np.float32)
    p[..., 0], p[..., 1] = 0.75, 0.25  # class 2 predicted nowhere
    targets = jnp.array([[0, 1, 0, 1]])  # and absent from the targets
    loss, grad = jax.value_and_grad(lambda p: fn(p, targets, smooth=smooth)[0])(jnp.asarray(p))
    assert jnp.isfinite(loss) and jnp.all(jnp.isfinite(grad))
    with jax.enable_x64(True):
        _close(loss, _reference(name, jnp.float64(p), targets, smooth=smooth) if smooth or name not in (
            "soft_dice_loss", "jaccard_loss", "tversky_loss") else _empty_as_zero(name, p, targets), rtol=1e-5)


def _empty_as_zero(name, p, targets):
    """With smooth = 0 the empty class's 0/0 counts as loss 0: the mean of the other two
    classes' losses and a 0."""
    both = _reference(name, jnp.float64(p[..., :2]), targets, smooth=0.0)
    return both * 2 / 3


def test_generalized_dice_weights_an_absent_class_like_the_largest_present_one():
    p = jnp.float32([[[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1]]])
    targets = jnp.array([[0, 1, 0]])  # G = (2, 1, 0): weights (1/4, 1, 1)
    inter = np.array([1.1, 0.7, 0.0])
    sums = np.array([1.3 + 2, 1.4 + 1, 0.3])
    w = np.array([0.25, 1.0, 1.0])
    _close(jaxloss.generalized_dice_loss(p, targets, smooth=0.0), [1 - 2 * (w @ inter) / (w @ sums)], rtol=1e-6)
    empty = jaxloss.generalized_dice_loss(p, jnp.zeros_like(p), smooth=0.0)  # no target mass at all
    _close(empty, [0.0])


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("from_logits", [None, "softmax"], ids=str)
def test_pixel_where_ignores_nan_padding(name, from_logits):
    fn = getattr(jaxloss, name)
    x, targets = _inputs(3, from_logits, ids=False)
    x, targets = jnp.float32(x), jnp.float32(targets)
    where = jnp.arange(4)[None, :, None] < jnp.array([2, 3])[:, None, None]  # rows kept per example
    where = jnp.broadcast_to(where, SHAPE[:-1])
    x_pad = jnp.where(where[..., None], x, jnp.nan)
    t_pad = jnp.where(where[..., None], targets, jnp.inf)

    def f(x, t):
        return jnp.sum(fn(x, t, from_logits=from_logits, where=where))

    losses = fn(x_pad, t_pad, from_logits=from_logits, where=where)
    gx, gt = jax.grad(f, argnums=(0, 1))(x_pad, t_pad)
    assert jnp.all(gx[~where] == 0) and jnp.all(gt[~where] == 0)
    assert jnp.all(jnp.isfinite(gx)) and jnp.all(jnp.isfinite(gt))
    for b, rows in enumerate((2, 3)):
        _close(losses[b], fn(x[b:b + 1, :rows], targets[b:b + 1, :rows], from_logits=from_logits)[0], rtol=1e-5)
    gt_rev = jax.jvp(lambda x: fn(x, t_pad, from_logits=from_logits, where=where), (x_pad,), (jnp.ones_like(x),))[1]
    assert jnp.all(jnp.isfinite(gt_rev))


def test_pixel_where_broadcasts_over_the_batch():
    x, targets = _inputs(4, None, ids=True)
    where = jnp.array([True, True, False, True])[:, None]  # [H, 1] broadcasting to [B, H, W]
    full = jnp.broadcast_to(where, SHAPE[:-1])
    x = jnp.float32(x)
    _close(jaxloss.soft_dice_loss(x, targets, where=where), jaxloss.soft_dice_loss(x, targets, where=full))


X, IDS = jnp.zeros((2, 3, 3)), jnp.zeros((2, 3), jnp.int32)  # [B, pixels, C] and class ids


@pytest.mark.parametrize("call, error, words", [
    (lambda: jaxloss.soft_dice_loss(X, jnp.zeros((2, 4), jnp.int32)), ValueError, ["targets", "(2, 3)", "(2, 4)"]),
    (lambda: jaxloss.soft_dice_loss(X, jnp.zeros((2, 3, 2))), ValueError, ["targets", "(2, 3, 3)", "(2, 3, 2)"]),
    (lambda: jaxloss.soft_dice_loss(X, jnp.zeros((2, 3), jnp.complex64)), TypeError, ["targets", "complex64"]),
    (lambda: jaxloss.soft_dice_loss(jnp.zeros((2, 3), jnp.int32), jnp.zeros((2,), jnp.int32)), TypeError,
     ["predictions"]),
    (lambda: jaxloss.soft_dice_loss(jnp.zeros((3,)), jnp.zeros((3,))), ValueError, ["predictions", "rank"]),
    (lambda: jaxloss.soft_dice_loss(X, IDS, from_logits="relu"), ValueError, ["from_logits"]),
    (lambda: jaxloss.soft_dice_loss(X, IDS, where=jnp.ones((2, 4), bool)), ValueError, ["where", "(2, 4)", "(2, 3)"]),
    (lambda: jaxloss.soft_dice_loss(X, IDS, where=jnp.ones((2, 3))), TypeError, ["where"]),
    (lambda: jaxloss.soft_dice_loss(X, IDS, class_weights=jnp.ones(2)), ValueError, ["class_weights", "(2,)", "(3,)"]),
    (lambda: jaxloss.tversky_loss(X, IDS, alpha=-1.0), ValueError, ["alpha"]),
    (lambda: jaxloss.jaccard_loss(X, IDS, smooth=-1.0), ValueError, ["smooth"]),
    (lambda: jaxloss.generalized_dice_loss(X, IDS, smooth=jnp.ones(2)), ValueError, ["smooth"]),
])
def test_bad_inputs_raise_naming_the_argument_and_shapes(call, error, words):
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_channel_first_predictions_take_axis_1():
    """PyTorch/MONAI's [B, C, H, W] with integer targets [B, H, W], ignored pixels and a
    pixel mask: ``axis=1`` gives the channel-last losses and the gradient in the caller's layout."""
    rng = np.random.default_rng(7)
    logits = jnp.float32(rng.standard_normal((2, 3, 4, 5)))  # [B, C, H, W]
    targets = jnp.int32(rng.integers(0, 3, (2, 4, 5))).at[0, 1, 2].set(-100)
    where = jnp.ones((2, 4, 5), bool).at[1, 3, 4].set(False)
    for loss in (jaxloss.soft_dice_loss, jaxloss.jaccard_loss, jaxloss.tversky_loss, jaxloss.generalized_dice_loss):
        def first(x, loss=loss):
            return loss(x, targets, from_logits="softmax", axis=1, where=where)

        def last(x, loss=loss):
            return loss(jnp.moveaxis(x, 1, -1), targets, from_logits="softmax", where=where)

        np.testing.assert_allclose(first(logits), last(logits), rtol=1e-6, equal_nan=False)
        g_first, g_last = (jax.grad(lambda x, f=f: jnp.sum(f(x)))(logits) for f in (first, last))
        assert g_first.shape == logits.shape
        np.testing.assert_allclose(g_first, g_last, rtol=1e-5, atol=1e-7, equal_nan=False)
