"""The ``axis=`` option hand_derivative gives the losses that reduce a class or feature axis
(driven by the catalogue: every entry whose function has an ``axis`` parameter), and the
mechanism itself on a small cross-entropy declared here."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from jaxloss import _verify, catalogue, checks
from jaxloss.catalogue import Entry
from jaxloss.gradients import hand_derivative, tangent_sum

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

SUMMED_AXES = ("dice_loss",)  # optax's axis=: the axes summed over, not a class axis
AXIS_ENTRIES = [e for e in catalogue.ENTRIES
                if "axis" in inspect.signature(e.fn).parameters and e.name not in SUMMED_AXES]
TUPLE_ENTRIES = [e for e in AXIS_ENTRIES if getattr(e.fn, "axis_tuples", False)]


def _assert_close(ours, theirs, rtol=1e-5):
    """Equal pytrees of float32 arrays to ``rtol`` (relative, floored at ``rtol`` of each
    array's largest magnitude); NaN fails."""
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        atol = rtol * float(np.max(np.abs(b), initial=0.0))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=False)


def _arguments(entry, args, kwargs):
    bound = inspect.signature(entry.fn).bind(*args, **kwargs)
    return dict(bound.arguments)


def _carried(fn, arguments):
    """The arguments that carry the reduced axis: ``{name: rank-padded array}`` for the named
    arguments of the primary's rank and the float or boolean ones of lower rank (which broadcast)."""
    names = fn.class_axis
    rank = arguments[names[0]].ndim
    out = {}
    for n in names:
        x = arguments.get(n)
        if not isinstance(x, jax.Array) or x.ndim == 0 or (x.ndim < rank and jnp.issubdtype(x.dtype, jnp.integer)):
            continue
        out[n] = x.reshape((1,) * (rank - x.ndim) + x.shape)
    return out


def _floats(arguments):
    return {n: v for n, v in arguments.items() if isinstance(v, jax.Array) and jnp.issubdtype(v.dtype, jnp.floating)}


def _derivatives(fn, arguments, axis, tangents):
    """Losses, the gradient of their sum, a JVP and the HVP along ``tangents``, w.r.t. every
    float argument (a dict), for ``fn(**arguments, axis=axis)``."""
    floats = _floats(arguments)

    def losses(floats):
        return fn(**{**arguments, **floats}, axis=axis)

    def total(floats):
        return jnp.sum(losses(floats))

    out, jvp = jax.jvp(losses, (floats,), (tangents,))
    grads = jax.grad(total)(floats)
    hvp = jax.jvp(jax.grad(total), (floats,), (tangents,))[1]
    return out, grads, jvp, hvp


def _moved(tree, carried, position):
    """``tree`` (a dict by argument name) with the last axis of the carried arrays moved to ``position``."""
    return {n: jnp.moveaxis(v.reshape(carried[n].shape), -1, position) if n in carried else v
            for n, v in tree.items()}


def _stacked(entry):
    """Rank + 1 inputs: the positional arguments of two samples stacked on a new leading axis
    (keyword options are shared by the batch, so they broadcast as they are)."""
    (a, kwargs), (b, _) = _verify.sample(entry, 0), _verify.sample(entry, 1)
    return tuple(jnp.stack([x, y]) for x, y in zip(a, b)), kwargs


# No rank + 1 case for the losses of one batch of [examples, features] embeddings coupled across
# the batch, nor for the losses against class vectors (angular, centre and proxy losses: their
# class centres are shared, not stacked).
FIXED_RANK = {"info_nce_loss", "multiple_negatives_ranking_loss", "ntxent_loss", "clip_loss",
              "sigmoid_contrastive_loss", "barlow_twins_loss", "vicreg_loss",
              "angular_margin_loss", "arcface_loss", "cosface_loss", "sphereface_loss", "subcenter_arcface_loss",
              "center_loss", "proxy_nca_loss", "proxy_anchor_loss", "supervised_contrastive_loss",
              "multi_similarity_loss", "circle_loss", "lifted_structure_loss", "npair_loss"}


@pytest.mark.parametrize("entry", AXIS_ENTRIES, ids=lambda e: e.name)
def test_the_fixed_rank_losses_are_those_that_refuse_a_batch_axis_more(entry):
    args, kwargs = _stacked(entry)
    if entry.name in FIXED_RANK:
        with pytest.raises(ValueError, match="must (be|have)"):
            jax.eval_shape(lambda *a: entry.fn(*a, **kwargs), *args)
    else:
        jax.eval_shape(lambda *a: entry.fn(*a, **kwargs), *args)


def _cases(entry):
    args, kwargs = _verify.sample(entry)
    yield "sample", (args, kwargs), 0
    if entry.name not in FIXED_RANK:
        stacked = _stacked(entry)
        yield "stacked", stacked, 0
        yield "stacked", stacked, 1


@pytest.mark.parametrize("entry", AXIS_ENTRIES, ids=lambda e: e.name)
def test_every_axis_option_is_the_mechanisms(entry):
    """``axis`` comes from hand_derivative's class_axis: static, -1 by default, the first
    keyword-only parameter, on the function and its reference alike."""
    assert getattr(entry.fn, "class_axis", ()), (
        f"{entry.name} takes axis= but does not declare class_axis (a wrapper copies its loss's .class_axis "
        f"and .axis_tuples)")
    for fn in (entry.fn, entry.fn.reference):
        parameters = inspect.signature(fn).parameters
        assert parameters["axis"].default == -1 and parameters["axis"].kind == inspect.Parameter.KEYWORD_ONLY
        first = next(n for n, q in parameters.items() if q.kind == q.KEYWORD_ONLY)
        assert first == "axis"


@pytest.mark.parametrize("entry", AXIS_ENTRIES, ids=lambda e: e.name)
def test_a_moved_axis_gives_the_last_axis_values_and_derivatives(entry):
    """The reduced axis moved to position 0 (and 1 for rank >= 3): the same losses, and the
    gradient, a JVP and an HVP row of the last-axis call moved to the same place."""
    for _, (args, kwargs), position in _cases(entry):
        arguments = _arguments(entry, args, kwargs)
        carried = _carried(entry.fn, arguments)
        rng = np.random.default_rng(1)
        tangents = {n: jnp.asarray(rng.standard_normal(v.shape), v.dtype) for n, v in _floats(arguments).items()}
        expected = _derivatives(entry.fn, arguments, -1, tangents)
        moved = {**arguments, **_moved(arguments, carried, position)}
        got = _derivatives(entry.fn, moved, position, _moved(tangents, carried, position))
        out, grads, jvp, hvp = expected
        _assert_close(got, (out, _moved(grads, carried, position), jvp, _moved(hvp, carried, position)))
        _assert_close(entry.fn.reference(**moved, axis=position), out)
        negative = position - arguments[entry.fn.class_axis[0]].ndim
        _assert_close(entry.fn(**moved, axis=negative), out)


@pytest.mark.parametrize("entry", TUPLE_ENTRIES, ids=lambda e: e.name)
def test_a_tuple_axis_is_the_flattened_last_axis(entry):
    """``axis=(1, 2)`` on ``[N, 2, D]`` inputs (two samples' carried arguments side by side)
    equals the last-axis call on them flattened to ``[N, 2·D]``, in value and in gradient;
    ``(2, 1)`` flattens in that order."""
    (a, kwargs), (b, _) = _verify.sample(entry, 0), _verify.sample(entry, 1)
    arguments, other = _arguments(entry, a, kwargs), _arguments(entry, b, kwargs)
    rank = arguments[entry.fn.class_axis[0]].ndim
    carried = _carried(entry.fn, arguments)
    for n in carried:
        if arguments[n].ndim == rank:
            arguments[n] = jnp.stack([arguments[n], other[n]], axis=-2)
    shape = arguments[entry.fn.class_axis[0]].shape

    def flattened(arguments, order):
        """The carried arguments with the axes ``order`` broadcast whole, moved last, flattened."""
        out = dict(arguments)
        for n in carried:
            x = arguments[n].reshape((1,) * (len(shape) - arguments[n].ndim) + arguments[n].shape)
            x = jnp.moveaxis(jnp.broadcast_to(x, x.shape[:1] + shape[1:]), order, (-2, -1))
            out[n] = x.reshape(x.shape[:1] + (-1,))
        return out

    classes = shape[-1]

    def per_class(order):
        """Per-class options ``[C]`` (class weights) for the flattened ``2·C`` classes."""
        spread = jnp.tile if order == (1, 2) else jnp.repeat
        return {n: spread(v, 2) for n, v in arguments.items()
                if n not in carried and getattr(v, "shape", None) == (classes,)}

    for axis, order in (((1, 2), (1, 2)), ((-2, -1), (1, 2)), ((2, 1), (2, 1))):
        def tuple_axis(floats, axis=axis, order=order):
            return entry.fn(**{**arguments, **per_class(order), **floats}, axis=axis)

        def last_axis(floats, order=order):
            return entry.fn(**flattened({**arguments, **per_class(order), **floats}, order))

        floats = {n: v for n, v in _floats(arguments).items() if n not in per_class(order)}
        _assert_close(tuple_axis(floats), last_axis(floats))
        _assert_close(*(jax.grad(lambda f, fn=fn: jnp.sum(fn(f)))(floats) for fn in (tuple_axis, last_axis)))


@pytest.mark.parametrize("entry", AXIS_ENTRIES, ids=lambda e: e.name)
def test_bad_axis_values_raise_naming_axis_and_the_shape(entry):
    args, kwargs = _verify.sample(entry)
    shape = tuple(_arguments(entry, args, kwargs)[entry.fn.class_axis[0]].shape)
    bad = [len(shape), -len(shape) - 1, 1.0, "0", [0], True]
    bad += [(0, 0), ()] if entry.fn.axis_tuples else [(0,), None]
    for axis in bad:
        with pytest.raises(ValueError, match=rf"axis.*{str(shape).replace('(', '.').replace(')', '.')}"):
            jax.eval_shape(lambda *a: entry.fn(*a, **kwargs, axis=axis), *args)


# ======================================================================= against optax


def test_triplet_margin_loss_with_a_channel_axis_is_optax():
    rng = np.random.default_rng(0)
    a, p, n = (jnp.float32(rng.standard_normal((3, 4, 5, 2))) for _ in range(3))
    ours = jaxloss.triplet_margin_loss(a, p, n, eps=0.0, margin=0.5, axis=1)
    theirs = optax.losses.triplet_margin_loss(a, p, n, axis=1, norm_degree=2, eps=0.0, margin=0.5)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, equal_nan=False)
    assert ours.shape == (3, 5, 2)


def test_cosine_losses_over_a_tuple_axis_are_optax_cosine_similarity():
    rng = np.random.default_rng(0)
    x, y = (jnp.float32(rng.standard_normal((3, 4, 5, 2))) for _ in range(2))
    theirs = optax.losses.cosine_similarity(x, y, axis=(1, 3))
    np.testing.assert_allclose(-jaxloss.negative_cosine_similarity(x, y, axis=(1, 3)), theirs, rtol=1e-5,
                               atol=1e-6, equal_nan=False)
    np.testing.assert_allclose(jaxloss.cosine_embedding_loss(x, y, jnp.ones((3, 5), int), axis=(3, 1)), 1 - theirs,
                               rtol=1e-5, atol=1e-6, equal_nan=False)
    every = optax.losses.cosine_similarity(x, y, axis=None)
    np.testing.assert_allclose(-jaxloss.negative_cosine_similarity(x, y, axis=None), every, rtol=1e-5)


def test_softmax_cross_entropy_on_nchw_logits_is_optax():
    rng = np.random.default_rng(0)
    logits = jnp.float32(3 * rng.standard_normal((2, 5, 3, 4)))
    probabilities = jax.nn.softmax(jnp.float32(rng.standard_normal((2, 5, 3, 4))), axis=1)
    ids = jnp.int32(rng.integers(0, 5, (2, 3, 4)))
    np.testing.assert_allclose(jaxloss.softmax_cross_entropy(logits, probabilities, axis=1),
                               optax.losses.softmax_cross_entropy(logits, probabilities, axis=1), rtol=1e-5,
                               atol=1e-6, equal_nan=False)
    np.testing.assert_allclose(jaxloss.softmax_cross_entropy(logits, ids, axis=1),
                               optax.losses.softmax_cross_entropy_with_integer_labels(logits, ids, axis=1),
                               rtol=1e-5, atol=1e-6, equal_nan=False)
    ours = jax.grad(lambda x: jnp.sum(jaxloss.softmax_cross_entropy(x, ids, axis=1)))(logits)
    theirs = jax.grad(lambda x: jnp.sum(optax.losses.softmax_cross_entropy_with_integer_labels(x, ids, axis=1)))(
        logits)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, equal_nan=False)


# ======================================================================= the mechanism on a toy loss


def _toy_tangent(p, t, out, res):
    w = jnp.ones(p.logits.shape[-1]) if p.class_weights is None else p.class_weights
    targets = jax.nn.one_hot(p.labels, p.logits.shape[-1]) if p.labels.dtype == jnp.int32 else p.labels
    dlogits = jnp.sum(w * targets, axis=-1, keepdims=True) * jax.nn.softmax(p.logits) - w * targets
    return tangent_sum((1.0, None if t.logits is None else jnp.sum(dlogits * t.logits, axis=-1)),
                       (1.0, None if t.labels is None else -jnp.sum(w * jax.nn.log_softmax(p.logits) * t.labels, -1)))


@hand_derivative(_toy_tangent, class_axis=("logits", "labels"))
def _toy_cross_entropy(logits, labels, *, axis=-1, class_weights=None, where=None):
    """``Σ_c w_c y_c (lse − x_c)``, y one-hot for ids: the test's own cross-entropy (``axis`` is
    the public option; the forward, written for the last axis, never receives it)."""
    w = jnp.ones(logits.shape[-1]) if class_weights is None else class_weights
    targets = jax.nn.one_hot(labels, logits.shape[-1]) if labels.dtype == jnp.int32 else labels
    return -jnp.sum(w * targets * jax.nn.log_softmax(logits), axis=-1)


def _numpy_cross_entropy(logits, targets, w, axis):
    """float64 NumPy: ``Σ_c w_c y_c (lse − x_c)`` over ``axis``."""
    x = np.asarray(logits, np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    log_softmax = x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    shape = [1] * x.ndim
    shape[axis] = -1
    return -np.sum(np.reshape(w, shape) * targets * log_softmax, axis=axis)


def test_nchw_ids_stay_in_the_batch_shape_and_per_class_options_stay_put():
    rng = np.random.default_rng(0)
    logits = jnp.float32(2 * rng.standard_normal((2, 4, 3, 5)))
    ids = jnp.int32(rng.integers(0, 4, (2, 3, 5)))
    w = jnp.float32(rng.uniform(0.5, 2.0, 4))
    one_hot = np.moveaxis(np.eye(4)[np.asarray(ids)], -1, 1)
    got = _toy_cross_entropy(logits, ids, class_weights=w, axis=1)
    np.testing.assert_allclose(got, _numpy_cross_entropy(logits, one_hot, w, 1), rtol=1e-5, equal_nan=False)
    where = jnp.asarray(rng.random((2, 1, 5)) < 0.5)
    np.testing.assert_array_equal(_toy_cross_entropy(logits, ids, class_weights=w, axis=1, where=where),
                                  jnp.where(where, got, 0.0))


def test_hessian_and_grad_of_grad_through_a_moved_axis():
    """jax.hessian and forward-over-reverse come back in the caller's layout, equal to autodiff."""
    rng = np.random.default_rng(1)
    logits = jnp.float32(rng.standard_normal((2, 3, 4)))
    targets = jax.nn.softmax(jnp.float32(rng.standard_normal((2, 3, 4))), axis=1)
    for fn in (_toy_cross_entropy, _toy_cross_entropy.reference):
        def total(x, y, fn=fn):
            return jnp.sum(fn(x, y, axis=1))

        def plain(x, y):
            return -jnp.sum(y * jax.nn.log_softmax(x, axis=1))

        for argnums in (0, 1, (0, 1)):
            _assert_close(jax.hessian(total, argnums)(logits, targets), jax.hessian(plain, argnums)(logits, targets))
        tangent = jnp.float32(rng.standard_normal(logits.shape))
        _assert_close(jax.jvp(jax.grad(total), (logits, targets), (tangent, targets))[1],
                      jax.jvp(jax.grad(plain), (logits, targets), (tangent, targets))[1])


def test_axis_is_static_under_jit_and_a_traced_axis_is_refused():
    logits, ids = jnp.zeros((2, 3, 4)), jnp.zeros((2, 4), jnp.int32)
    loss = jax.jit(_toy_cross_entropy, static_argnames="axis")
    np.testing.assert_allclose(loss(logits, ids, axis=1), np.full((2, 4), np.log(3.0)), rtol=1e-6)
    with pytest.raises(ValueError, match="axis"):
        jax.jit(lambda a: _toy_cross_entropy(logits, ids, axis=a))(1)


def test_an_int_only_loss_refuses_a_tuple_axis():
    with pytest.raises(ValueError, match=r"axis must be an int.*\(2, 3, 4\)"):
        _toy_cross_entropy(jnp.zeros((2, 3, 4)), jnp.zeros((2,), jnp.int32), axis=(1, 2))


@pytest.mark.parametrize("forward", [lambda logits, *, where=None: logits,
                                     lambda logits, *, where=None, axis=-1: logits,
                                     lambda logits, axis=-1: logits], ids=["none", "not-first", "positional"])
def test_a_forward_without_a_first_keyword_only_axis_is_refused(forward):
    with pytest.raises(TypeError, match="first keyword-only"):
        hand_derivative(_toy_tangent, class_axis=("logits",))(forward)


def test_the_forward_never_receives_axis():
    seen = []

    def forward(logits, *, axis=-1):
        seen.append(axis)
        return jnp.sum(logits, axis=-1)

    loss = hand_derivative(_toy_tangent, class_axis=("logits",))(forward)
    np.testing.assert_array_equal(loss(jnp.ones((2, 3)), axis=0), [2.0, 2.0, 2.0])
    assert seen and set(seen) == {-1}


def test_lower_rank_float_arguments_broadcast_in_the_callers_layout():
    """gaussian_kl_divergence on ``[N, D, H]`` means with axis=1: a ``[D, 1]`` prior log-variance
    and a scalar prior mean broadcast as they would against the means themselves."""
    rng = np.random.default_rng(2)
    mean, log_variance = (jnp.float32(rng.standard_normal((3, 4, 2))) for _ in range(2))
    prior = jnp.float32(rng.uniform(-1, 1, (4, 1)))
    got = jaxloss.gaussian_kl_divergence(mean, log_variance, prior_mean=0.5, prior_log_variance=prior, axis=1)
    mu, lv, plv = (np.asarray(v, np.float64) for v in (mean, log_variance, prior))
    expected = 0.5 * np.sum(np.exp(lv - plv) - 1 - (lv - plv) + (mu - 0.5) ** 2 / np.exp(plv), axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=False)


def test_checked_reads_ids_and_masks_along_the_moved_axis(monkeypatch):
    """jaxloss.checks counts the classes on ``axis`` and skips the masked examples' logits there."""
    entry = Entry(_toy_cross_entropy, "test", "", lambda rng: ((), {}), lambda: [],
                  class_ids=(("labels", "logits", -1),))
    monkeypatch.setitem(catalogue.BY_NAME, entry.name, entry)
    logits = jnp.zeros((2, 5, 3))  # five classes on axis 1
    loss = checks.checked(_toy_cross_entropy)
    loss(logits, jnp.array([[4, 0, 1], [2, 3, 4]]), axis=1)
    with pytest.raises(Exception, match=r"labels\[1, 2\] = 5 is outside \[0, 5\)"):
        loss(logits, jnp.array([[4, 0, 1], [2, 3, 5]]), axis=1)
    where = jnp.array([[True, True, False], [True, True, True]])
    nan = logits.at[0, 1, 2].set(jnp.nan)
    loss(nan, jnp.zeros((2, 3), jnp.int32), axis=1, where=where)
    with pytest.raises(Exception, match=r"logits\[0, 1, 2\] = nan is not finite"):
        loss(nan, jnp.zeros((2, 3), jnp.int32), axis=1)


def test_a_check_failing_on_moved_inputs_says_the_axis_was_moved():
    with pytest.raises(ValueError, match=r"x2 with shape \(2, 5, 3\).*axis=1 moved last"):
        jaxloss.contrastive_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 5)), jnp.zeros((2, 4)), axis=1)
    with pytest.raises(ValueError, match=r"x2 with shape \(2, 3, 5\)") as raised:
        jaxloss.contrastive_loss(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 5)), jnp.zeros((2, 3)))
    assert "moved" not in str(raised.value)
