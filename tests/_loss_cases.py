"""Shared machinery for the per-family loss tests (test_regression.py, test_classification.py).

A test module describes its losses as a table of `Case`s (the loss, a maker of its arguments and
NumPy float64 references for the value and each derivative) and runs the checks here on them:
values and derivatives against the references, the finite-difference checker, where= masks
over inf/NaN padding, low-precision dtypes, trace-time input errors and second derivatives.

Imported as `_loss_cases`: tests/ has no __init__.py, so pytest puts tests/ on sys.path.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

SHAPE = (5, 7)


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    fn: Callable
    make: Callable  # (rng, shape) -> every argument by name
    ref: Callable  # NumPy float64 loss
    dref: Callable  # NumPy derivatives of each float argument, elementwise

    def __str__(self):
        return self.id


# ----------------------------------------------------------------------------- helpers


def mean_value_and_grad_memory(fn, args, argnums=0) -> tuple[int, int]:
    """``(temporaries, temporaries + outputs)`` in bytes of the compiled ``value_and_grad`` of
    ``mean(fn(*args))`` w.r.t. ``argnums`` (``args``: arrays or ``jax.ShapeDtypeStruct``s);
    ``memory_analysis()`` is deterministic.  Skips on a backend without it."""
    objective = jax.value_and_grad(lambda *a: jnp.mean(fn(*a)), argnums=argnums)
    analysis = jax.jit(objective).lower(*args).compile().memory_analysis()
    if analysis is None:
        pytest.skip("memory_analysis() is not available on this backend")
    return analysis.temp_size_in_bytes, analysis.temp_size_in_bytes + analysis.output_size_in_bytes


def is_float(x) -> bool:
    return isinstance(x, float) or (isinstance(x, np.ndarray | jax.Array) and jnp.issubdtype(x.dtype, jnp.floating))


def float_arguments(a):
    """Copies of the differentiable arguments of a call, Python floats as 0-d arrays."""
    return {k: np.array(v, np.float64 if isinstance(v, float) else None) for k, v in a.items() if is_float(v)}


def sum_to_shape(x, shape):
    """Reduce an elementwise derivative to the shape of a broadcast argument."""
    x = np.sum(x, axis=tuple(range(x.ndim - len(shape))))
    return np.sum(x, axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True).reshape(shape)


def gradients_of_sum(fn, a, wrt=None):
    """Gradient of sum(fn(**a)) with respect to every float argument (or those in wrt)."""
    floats = float_arguments(a) if wrt is None else {k: a[k] for k in wrt}
    return jax.jit(jax.grad(lambda f: jnp.sum(fn(**{**a, **f}))))(floats)


def gradients_and_jvp(fn, a, wrt):
    """Reverse-mode gradients of sum(fn) and the forward-mode derivative along all-ones."""
    primals = {k: jnp.asarray(a[k]) for k in wrt}
    ones = jax.tree.map(jnp.ones_like, primals)
    jv = jax.jit(lambda x: jax.jvp(lambda f: fn(**{**a, **f}), (x,), (ones,))[1])(primals)
    return gradients_of_sum(fn, a, wrt), jv


def per_example_arguments(fn):
    """The arguments before the keyword-only options: inputs and targets, what where= masks."""
    return [n for n, q in inspect.signature(fn).parameters.items() if q.kind == q.POSITIONAL_OR_KEYWORD]


def call_eager_or_jitted(fn, args, kwargs, jit):
    """fn(*args, **kwargs); under jit, the positional and array keyword arguments are traced."""
    if not jit:
        return fn(*args, **kwargs)
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    return jax.jit(lambda args, arrays: fn(*args, **arrays, **static))(args, arrays)


# ----------------------------------------------------------------------------- parametrizations


def mask_params(core: Iterable[Case], broadcast_ids: Iterable[str]):
    """Every core case with an elementwise mask; those named in broadcast_ids also with a mask
    broadcast along the last axis."""
    core, broadcast_ids = list(core), tuple(broadcast_ids)
    params = [pytest.param(case, SHAPE, id=f"{case.id}-elementwise-mask") for case in core]
    params += [pytest.param(case, SHAPE[-1:], id=f"{case.id}-broadcast-mask") for case in core
               if case.id in broadcast_ids]
    return params


def low_precision_params(core: Iterable[Case], float16_ids: Iterable[str]):
    """bfloat16 for every core case; float16 for those named in float16_ids."""
    core, float16_ids = list(core), tuple(float16_ids)
    params = [pytest.param(case, jnp.bfloat16, id=f"{case.id}-bfloat16") for case in core]
    params += [pytest.param(case, jnp.float16, id=f"{case.id}-float16") for case in core if case.id in float16_ids]
    return params


# ----------------------------------------------------------------------------- checks


def assert_values_match_numpy_reference(case: Case, seed: int, *, trace_python_scalars: bool):
    """float64 values equal case.ref eagerly and under jit (run it with x64 enabled).

    Under jit the array arguments are traced; Python scalars too when trace_python_scalars,
    else (for options that must stay Python values, like a bool) they are closed over.
    """
    a = case.make(np.random.default_rng(seed), SHAPE)
    got = case.fn(**a)
    assert got.dtype == jnp.float64 and got.shape == SHAPE
    np.testing.assert_allclose(got, case.ref(**a), rtol=1e-12, atol=1e-15)
    traced = a if trace_python_scalars else {k: v for k, v in a.items() if isinstance(v, np.ndarray)}
    jitted = jax.jit(lambda traced: case.fn(**{**a, **traced}))(traced)
    np.testing.assert_allclose(jitted, got, rtol=1e-14, atol=1e-15)


def assert_hand_derivative_matches_numpy_derivative(case: Case, seed: int):
    """The gradient of every float argument equals case.dref, summed to the argument's shape
    (run it with x64 enabled)."""
    a = case.make(np.random.default_rng(seed), SHAPE)
    grads = gradients_of_sum(case.fn, a)
    expected = case.dref(**a)
    assert set(grads) == set(float_arguments(a)) and set(grads) <= set(expected)
    for name, g in grads.items():
        np.testing.assert_allclose(g, sum_to_shape(np.broadcast_to(expected[name], SHAPE), np.shape(a[name])),
                                   rtol=1e-12, atol=1e-14, err_msg=name)


def assert_check_gradients_passes_for_every_float_argument(case: Case, seed: int):
    a = case.make(np.random.default_rng(seed), SHAPE)
    check = jaxloss.check_gradients(case.fn, **a)
    assert {r.argument for r in check.rows} == set(float_arguments(a))
    assert check.ok, repr(check)


def assert_masked_entries_zero(case: Case, mask_shape, seed: int):
    """Masked examples of the per-example (positional) arguments hold inf/NaN padding;
    nothing of it reaches the value or any derivative: masked losses, tangents and
    gradients are exactly zero, unmasked ones those of the loss without where=."""
    a = {k: v.astype(np.float32) if is_float(v) and np.ndim(v) else v
         for k, v in case.make(np.random.default_rng(seed), SHAPE).items()}
    where = np.arange(np.prod(mask_shape)).reshape(mask_shape) % 3 != 0
    full = np.broadcast_to(where, SHAPE)
    clean = float_arguments(a)
    dirty = float_arguments(a)
    for name in per_example_arguments(case.fn):
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


def assert_low_precision_gives_float32_loss_and_own_dtype_gradients(case: Case, dtype, seed: int):
    """Array arguments in dtype: the loss is float32 and equals the float32 loss, gradients keep
    dtype and agree with the float32 ones."""
    a = case.make(np.random.default_rng(seed), SHAPE)
    arrays = {k: v for k, v in a.items() if is_float(v) and np.ndim(v)}
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


def assert_bad_input_raises(fn, args, kwargs, error, match, jit: bool):
    with pytest.raises(error, match=match):
        call_eager_or_jitted(fn, args, kwargs, jit)


def assert_concrete_option_array_raises(fn, option, match):
    """An out-of-range entry in a concrete option array raises ValueError on a 2-example call."""
    with pytest.raises(ValueError, match=match):
        fn(np.ones(2, np.float32), np.zeros(2, np.float32), **option)


def assert_hessian_and_hvp_match_reference(case: Case, seed: int):
    """Away from kinks: the hand rule's second derivatives equal autodiff of the formula
    (case.fn.reference): the Hessian in the first float argument and forward-over-reverse
    Hessian-vector products in all of them (run it with x64 enabled)."""
    rng = np.random.default_rng(seed)
    a = case.make(rng, (3, 4))
    floats = float_arguments(a)
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
