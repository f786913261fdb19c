"""What hand_derivative gives every loss: ``where`` of every broadcasting shape, float options
given as integers, and class ids of every integer dtype (driven by the catalogue)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import _inputs, _verify, catalogue
from jaxloss.gradients import hand_derivative, tangent_sum

ENTRIES = pytest.mark.parametrize("entry", catalogue.ENTRIES, ids=lambda e: e.name)


def _value_and_grad(fn, args, kwargs):
    """The losses and the gradient of their sum w.r.t. the first argument."""
    losses, vjp = jax.vjp(lambda x: fn(x, *args[1:], **kwargs), args[0])
    return losses, vjp(jnp.ones_like(losses))[0]


def _assert_same(ours, theirs, rtol=0.0):
    """Equal arrays, finite, to ``rtol`` of each one's largest magnitude (0: bit for bit)."""
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b), initial=0.0), equal_nan=False)
        assert np.all(np.isfinite(a))


# ======================================================================= where of every shape


def _pattern(shape):
    """A mask of ``shape`` holding both True and False where it has two entries."""
    return np.arange(int(np.prod(shape))).reshape(shape) % 3 != 1


def _re_shape(shape) -> str:
    """A shape as a message prints it, escaped for a regular expression."""
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


def _broadcasts(mask_shape, shape) -> bool:
    try:
        return np.broadcast_shapes(mask_shape, shape) == shape
    except ValueError:
        return False


@pytest.mark.full
@ENTRIES
def test_every_where_shape_means_the_full_mask_or_is_rejected(entry):
    """For losses (or positions) of shape S: a (1,) True gives the unmasked result, a scalar
    False all zeros; [N], [N, 1] and, for rank >= 2, [N, 1...] and [1, K...]
    patterns give the result of the pattern broadcast to S, or raise a ValueError naming
    ``where`` and both shapes.  (One compiled program per entry.)"""
    args, kwargs = _verify.sample(entry)
    shape = tuple(_inputs.where_shape(entry, args, kwargs))
    patterns = []
    for s in dict.fromkeys([shape[:1], shape[:1] + (1,), shape[:1] + (1,) * (len(shape) - 1), (1,) + shape[1:]]):
        if s == shape or not s:
            continue
        if _broadcasts(s, shape):
            patterns.append(_pattern(s))
            continue
        if entry.family == "ranking" and s == shape[:1] + (1,):
            # where masks items [..., L] or lists [...]: [N, 1] is an item mask, every item of a
            # list at once, so it is the list mask [N].
            mask = _pattern(s)
            np.testing.assert_allclose(entry.fn(*args, **kwargs, where=mask),
                                       entry.fn(*args, **kwargs, where=mask.reshape(s[:1])), rtol=1e-6, equal_nan=False)
            continue
        with pytest.raises(ValueError, match=rf"where with shape {_re_shape(s)}.*{_re_shape(shape)}"):
            jax.eval_shape(lambda x: entry.fn(x, *args[1:], **kwargs, where=_pattern(s)), args[0])

    @jax.jit
    def run(x):
        def losses(where):
            return _value_and_grad(entry.fn, (x, *args[1:]), {**kwargs, "where": where})

        return ([losses(None), losses(np.ones((1,), bool)), losses(np.zeros((), bool))],
                [(losses(m), losses(np.broadcast_to(m, shape))) for m in patterns])

    (unmasked, one_true, false), pairs = run(args[0])
    _assert_same(one_true, unmasked, rtol=1e-6)
    for x in false:
        np.testing.assert_array_equal(x, 0.0)
    for mask, (ours, full) in zip(patterns, pairs):
        try:
            _assert_same(ours, full)
        except AssertionError as e:
            raise AssertionError(f"where of shape {mask.shape} against {shape}") from e


def _vicreg_reference(z1, z2, sim=25.0, std=25.0, cov=1.0, eps=1e-4):
    """VICReg in float64 NumPy from the paper's Algorithm 1 (unbiased statistics)."""
    z1, z2 = np.float64(z1), np.float64(z2)
    n, d = z1.shape
    loss = sim * np.mean((z1 - z2) ** 2)
    for z in (z1, z2):
        x = z - z.mean(0)
        c = x.T @ x / (n - 1)
        loss += std * np.mean(np.maximum(0.0, 1 - np.sqrt(np.diag(c) + eps)))
        loss += cov * np.sum((c - np.diag(np.diag(c))) ** 2) / d
    return loss


def test_vicreg_with_a_mask_of_one_entry_is_the_unmasked_loss():
    # Before the mechanism broadcast `where`, a (1,) mask counted one example: 5967 for 27.26.
    (z1, z2), _ = _verify.sample(catalogue.BY_NAME["vicreg_loss"])
    keep = np.arange(z1.shape[0]) % 3 != 1
    masks = (jnp.array([True]), True, np.ones(z1.shape[0], bool), jnp.array([False]), keep)

    @jax.jit
    def run(z1):
        return [jax.value_and_grad(lambda z: jaxloss.vicreg_loss(z, z2, where=m))(z1) for m in (None, *masks)]

    (unmasked, grad), *masked = run(z1)
    expected = _vicreg_reference(z1, z2)
    np.testing.assert_allclose(expected, 27.264898, rtol=1e-6)
    np.testing.assert_allclose(unmasked, expected, rtol=1e-5)
    for value, g in masked[:3]:
        np.testing.assert_allclose(value, expected, rtol=1e-5)
        np.testing.assert_allclose(g, grad, rtol=1e-5, atol=1e-6 * np.max(np.abs(grad)))
    np.testing.assert_array_equal(masked[3][0], 0.0)
    np.testing.assert_array_equal(masked[3][1], 0.0)
    # ... and a mask over the examples drops them from every statistic.
    np.testing.assert_allclose(masked[4][0], _vicreg_reference(z1[keep], z2[keep]), rtol=1e-5)
    np.testing.assert_array_equal(masked[4][1][~keep], 0.0)


def _info_nce_sample():
    """info_nce_loss's catalogue sample without its extra negatives (the reference below has none)."""
    (q, k), kwargs = _verify.sample(catalogue.BY_NAME["info_nce_loss"])
    return (q, k), {name: v for name, v in kwargs.items() if not name.startswith("negatives")}


def _info_nce_reference(q, k, temperature):
    s = np.float64(q) @ np.float64(k).T / temperature
    top = s.max(-1, keepdims=True)
    return (top[:, 0] + np.log(np.exp(s - top).sum(-1))) - np.diag(s)


def test_contrastive_losses_take_a_scalar_or_one_entry_mask():
    # Before, info_nce_loss and clip_loss raised a reshape error for these masks.
    (q, k), kwargs = _info_nce_sample()
    (x, y), clip_kwargs = _verify.sample(catalogue.BY_NAME["clip_loss"])
    masks = (None, True, jnp.array(True), jnp.array([True]))

    @jax.jit
    def run(q, x):
        return [(_value_and_grad(jaxloss.info_nce_loss, (q, k), {**kwargs, "where": m}),
                 _value_and_grad(jaxloss.clip_loss, (x, y), {**clip_kwargs, "where": m})) for m in masks]

    (info_nce, clip), *masked = run(q, x)
    np.testing.assert_allclose(info_nce[0], _info_nce_reference(q, k, float(kwargs["temperature"])), rtol=1e-5)
    for ours_info_nce, ours_clip in masked:
        _assert_same(ours_info_nce, info_nce, rtol=1e-6)
        _assert_same(ours_clip, clip, rtol=1e-6)


def test_a_column_mask_for_per_example_losses_is_rejected_naming_where():
    # [N, 1] against losses [N] would broadcast to [N, N]: rejected, not silently squeezed.
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 3))
    with pytest.raises(ValueError, match=r"where with shape \(4, 1\) does not broadcast to .* \(4,\)"):
        jaxloss.negative_cosine_similarity(x, y, where=jnp.ones((4, 1), bool))
    # The mechanism's own check, for a loss without a check of its own.
    with pytest.raises(ValueError, match=r"where with shape \(4, 1, 1\) does not broadcast to the losses with "
                                         r"shape \(4, 3\)"):
        _square(x, where=jnp.ones((4, 1, 1), bool))
    np.testing.assert_array_equal(_square(x, where=np.array([[True], [False], [True], [False]])),
                                  [[1.0] * 3, [0.0] * 3, [1.0] * 3, [0.0] * 3])


@hand_derivative(lambda p, t, out, res: tangent_sum((2 * p.x, t.x)))
def _square(x, *, where=None):
    """``x²``, elementwise: a loss with no check of its own."""
    return x**2


# ======================================================================= float options as integers


def _float_scalar_options(kwargs):
    """The keyword options of a sample that are float scalars, rounded to a non-zero integer
    of their sign (0 stays 0), as Python ints."""
    out = {}
    for name, value in kwargs.items():
        if isinstance(value, float) or (isinstance(value, jax.Array | np.ndarray) and value.ndim == 0
                                        and jnp.issubdtype(value.dtype, jnp.floating)):
            v = float(value)
            out[name] = round(v) or int(np.sign(v))
    return out


@pytest.mark.full
@pytest.mark.parametrize("entry", catalogue.ENTRIES, ids=lambda e: e.name)
def test_float_options_given_as_integers_equal_the_float_ones(entry):
    """Every float scalar option of the sample, rounded to an integer, given as a Python int, a
    np.int64 and an int32 argument of ``jit``, against the same value as a Python float and
    as a float32 argument.  (One compiled program per entry.)"""
    args, kwargs = _verify.sample(entry)
    options = _float_scalar_options(kwargs)
    if not options:
        pytest.skip("no float scalar option in the sample")

    @jax.jit
    def run(float32, int32):
        def losses(given):
            return entry.fn(*args, **{**kwargs, **given})

        return [losses({k: float(v) for k, v in options.items()}), losses(float32), losses(options),
                losses({k: np.int64(v) for k, v in options.items()}), losses(int32)]

    expected, *given = run({k: jnp.float32(v) for k, v in options.items()}, {k: jnp.int32(v) for k, v in options.items()})
    assert np.all(np.isfinite(expected))
    for losses in given:
        assert losses.dtype == expected.dtype
        np.testing.assert_allclose(losses, expected, rtol=1e-6, atol=1e-6 * np.max(np.abs(expected)), equal_nan=False)


def _sigmoid_focal_reference(x, y, alpha, gamma):
    """torchvision's sigmoid focal loss in float64, and its derivative w.r.t. gamma."""
    x, y = np.float64(x), np.float64(y)
    p = 1 / (1 + np.exp(-x))
    ce = np.logaddexp(0, x) - x * y
    p_t = p * y + (1 - p) * (1 - y)
    loss = (alpha * y + (1 - alpha) * (1 - y)) * ce * (1 - p_t) ** gamma
    return loss, loss * np.log(1 - p_t)


FOCAL_X = jnp.array([[-2.0, -0.5, 0.3], [1.2, 2.5, -1.0]])
FOCAL_Y = jnp.array([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])


def test_sigmoid_focal_gamma_as_python_numpy_or_traced_integer():
    expected, _ = _sigmoid_focal_reference(FOCAL_X, FOCAL_Y, 0.25, 2.0)
    for gamma in (2, np.int64(2), np.int32(2), np.float64(2.0), jnp.int32(2), jnp.uint8(2)):
        np.testing.assert_allclose(jaxloss.sigmoid_focal_loss(FOCAL_X, FOCAL_Y, alpha=0.25, gamma=gamma), expected, rtol=1e-6)
    # The case that raised TypeError: an int32 tracer under jit.
    jitted = jax.jit(lambda g: jaxloss.sigmoid_focal_loss(FOCAL_X, FOCAL_Y, alpha=0.25, gamma=g))(2)
    np.testing.assert_allclose(jitted, expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda a: jaxloss.sigmoid_focal_loss(FOCAL_X, FOCAL_Y, alpha=a))(jnp.int8(1)),
                               _sigmoid_focal_reference(FOCAL_X, FOCAL_Y, 1.0, 2.0)[0], rtol=1e-6)


def test_a_float_option_given_as_a_float_keeps_its_derivative():
    total = lambda g: jnp.sum(jaxloss.sigmoid_focal_loss(FOCAL_X, FOCAL_Y, alpha=0.25, gamma=g))  # noqa: E731
    grad, tangent, second = jax.jit(lambda g: (jax.grad(total)(g), jax.jvp(total, (g,), (1.0,))[1],
                                               jax.jvp(jax.grad(total), (g,), (1.0,))[1]))(1.5)
    _, dgamma = _sigmoid_focal_reference(FOCAL_X, FOCAL_Y, 0.25, 1.5)
    np.testing.assert_allclose(grad, dgamma.sum(), rtol=1e-5)
    np.testing.assert_allclose(tangent, dgamma.sum(), rtol=1e-5)
    # Second order against central differences of the float64 derivative.
    h = 1e-4
    expected = (_sigmoid_focal_reference(FOCAL_X, FOCAL_Y, 0.25, 1.5 + h)[1].sum()
                - _sigmoid_focal_reference(FOCAL_X, FOCAL_Y, 0.25, 1.5 - h)[1].sum()) / (2 * h)
    np.testing.assert_allclose(second, expected, rtol=1e-4)


def test_integer_options_take_the_compute_dtype_of_the_inputs(x64):
    x32, y32 = FOCAL_X.astype(jnp.float32), FOCAL_Y.astype(jnp.float32)
    # A NumPy float64 scalar or integer option does not make a float32 loss float64 ...
    for gamma in (np.float64(2.0), np.int64(2), 2, jnp.int64(2)):
        assert jaxloss.sigmoid_focal_loss(x32, y32, gamma=gamma).dtype == jnp.float32
    # ... and with float64 inputs an integer option is cast to float64, exactly.
    x64_, y64 = FOCAL_X.astype(jnp.float64), FOCAL_Y.astype(jnp.float64)
    out = jax.jit(lambda g: jaxloss.sigmoid_focal_loss(x64_, y64, alpha=0.25, gamma=g))(jnp.int64(2))
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(out, _sigmoid_focal_reference(FOCAL_X, FOCAL_Y, 0.25, 2.0)[0], rtol=1e-12)


def test_labels_given_as_an_option_stay_integer_ids():
    (q, k), kwargs = _info_nce_sample()
    labels = np.array([2, 0, 1, 5, 4, 3])
    expected = _info_nce_reference(q, k[labels], float(kwargs["temperature"]))
    for dtype in (np.int8, np.uint8, np.int16, np.int32):
        np.testing.assert_allclose(jaxloss.info_nce_loss(q, k, **kwargs, labels=labels.astype(dtype)), expected,
                                   rtol=1e-5)


# ======================================================================= ids of every integer dtype

ID_DTYPES = (jnp.int8, jnp.uint8, jnp.int16, jnp.uint16, jnp.int32, jnp.int64, jnp.bool_)


def _holds(values: np.ndarray, dtype) -> bool:
    if dtype == jnp.bool_:
        return bool(np.all((values == 0) | (values == 1)))
    info = jnp.iinfo(dtype)
    return bool(np.all((values >= info.min) & (values <= info.max)))


INTEGER_ENTRIES = [e for e in catalogue.ENTRIES
                   if any(jnp.issubdtype(jnp.result_type(a), jnp.integer) for a in _verify.sample(e)[0])]


@pytest.mark.full
@pytest.mark.parametrize("entry", INTEGER_ENTRIES, ids=lambda e: e.name)
def test_ids_of_every_integer_dtype_give_the_int32_value_and_gradient(entry, x64):
    args, kwargs = _verify.sample(entry)
    integer = [i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.integer)]
    values = [np.asarray(args[i]) for i in integer]
    assert all(np.all(v < 128) for v in values)
    dtypes = [d for d in ID_DTYPES if all(_holds(v, d) for v in values)]
    assert {jnp.int8, jnp.int16, jnp.int32, jnp.int64} <= set(dtypes)

    def with_dtype(x, dtype):
        cast = {i: v.astype(dtype) for i, v in zip(integer, values)}
        return (x, *(cast.get(i, a) for i, a in enumerate(args) if i))

    # The ids are constants of the program: XLA folds their casts and shares the copies.
    results = jax.jit(lambda x: [_value_and_grad(entry.fn, with_dtype(x, d), kwargs) for d in dtypes])(args[0])
    expected = results[dtypes.index(jnp.int32)]
    for dtype, result in zip(dtypes, results):
        try:
            _assert_same(result, expected)
        except AssertionError as e:
            raise AssertionError(f"ids of dtype {jnp.dtype(dtype).name}") from e


def test_uint8_labels_past_255_classes_put_the_gradient_on_their_class():
    # Before, the one-hot was built in uint8: class 261 wrapped to 5 and took label 5's gradient.
    logits = jnp.zeros((2, 300))
    labels = {"int32": jnp.array([5, 255], jnp.int32), "uint8": jnp.array([5, 255], jnp.uint8)}
    results = jax.jit(lambda x: {k: _value_and_grad(jaxloss.softmax_cross_entropy, (x, y), {})
                                 for k, y in labels.items()})(logits)
    expected = np.full((2, 300), 1 / 300) - np.eye(300)[[5, 255]]
    for losses, grad in results.values():
        np.testing.assert_allclose(losses, np.log(300), rtol=1e-6)
        np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
        assert np.argmin(grad[0]) == 5


def test_int8_minus_100_is_ignored_like_the_int32_one():
    # Before, the class iota was built in int8: class 156 wrapped to −100 and matched it.
    logits = jnp.linspace(-2.0, 2.0, 600).reshape(2, 300)
    fns = (jaxloss.softmax_focal_loss, jaxloss.softmax_cross_entropy)
    results = jax.jit(lambda x: [[_value_and_grad(fn, (x, jnp.array([-100, 5], dtype)), {})
                                  for dtype in (jnp.int8, jnp.int32)] for fn in fns])(logits)
    for (int8, int32) in results:
        _assert_same(int8, int32)
        np.testing.assert_array_equal(int8[0][0], 0.0)
        np.testing.assert_array_equal(int8[1][0], 0.0)
        assert int8[0][1] > 0


def test_where_shape_is_found_with_inputs_upcast_as_the_forward_sees_them():
    """bfloat16 embeddings with a float32 option and a mask: the forward run to find the
    losses' shape gets the inputs upcast, as every other run of it does (a scan carry of
    bfloat16 zeros met float32 logits)."""
    rng = np.random.default_rng(0)
    x, y = (jnp.asarray(rng.standard_normal((6, 3)), jnp.bfloat16) for _ in range(2))
    where = jnp.array([False, True, True, True, False, False])
    losses = jaxloss.clip_loss(x, y, logit_scale=jnp.float32(0.5), where=where)
    assert losses.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(losses)))
    np.testing.assert_allclose(losses, jaxloss.clip_loss(x.astype(jnp.float32), y.astype(jnp.float32),
                                                         logit_scale=jnp.float32(0.5), where=where), rtol=1e-5)
