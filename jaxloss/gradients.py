"""Hand-derived derivative rules, and the public gradient checker.

A jaxloss loss is written once, as its plain forward formula, and paired with a
hand-derived tangent rule (a JVP, linear in the tangents).  :func:`hand_derivative`
turns the pair into

* the public function: a :func:`jax.custom_jvp` whose derivatives come from the rule.
  JAX obtains reverse mode by transposing the rule, so ``jit``, ``vmap``, ``grad``,
  ``jvp``, ``hessian``, grad-of-grad and forward-over-reverse Hessian-vector products
  all work.  The tangent computation runs under :func:`jax.checkpoint`: reverse mode
  keeps only the inputs and the small per-example statistics the forward returns as
  residuals, and recomputes everything else in the backward pass;
* ``fn.reference``: the same forward code differentiated by plain autodiff.

The mechanism also owns what every loss shares: trace-time input checks, computing in
at least float32 (low-precision inputs are upcast inside; their gradients come back
in their own dtype), and the ``where=`` mask (masked entries give loss 0 and
derivative exactly 0).

:func:`check_gradients` compares any function's reverse- and forward-mode derivatives
with autodiff of a reference and with float64 central finite differences.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxloss import _checks, _math
from jaxloss._gradcheck import GradientCheck as GradientCheck
from jaxloss._gradcheck import GradientRow as GradientRow
from jaxloss._gradcheck import check_gradients as check_gradients

__all__ = ["hand_derivative", "Args", "tangent_sum", "check_gradients", "GradientCheck", "GradientRow"]


class Args(dict):
    """The bound arguments of a loss, by name, with attribute access (``p.logits``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _upcast(x):
    """Float arrays below float32 are computed in float32; everything else is kept."""
    if isinstance(x, jax.Array | np.ndarray) and jnp.issubdtype(x.dtype, jnp.floating):
        return x.astype(_math.compute_dtype(x.dtype))
    return x


def _is_zero_tangent(t) -> bool:
    return t is None or isinstance(t, SymbolicZero) or getattr(t, "dtype", None) == jax.dtypes.float0


def tangent_sum(*terms):
    """Sum ``partial * tangent`` over the pairs whose tangent is not zero.

    Tangent rules are written as a list of ``(partial derivative, tangent)`` pairs; a
    tangent of ``None`` (an integer argument, or one that is not being differentiated)
    contributes nothing and its partial is never built into the program.
    """
    total = None
    for partial, tangent in terms:
        if tangent is None:
            continue
        term = partial * tangent
        total = term if total is None else total + term
    return total


def hand_derivative(
    tangent: Callable[..., Any],
    *,
    static: Sequence[str] = (),
    check: Callable[..., None] | None = None,
    residuals: bool = False,
    per_example: Sequence[str] | None = None,
    own_precision: Sequence[str] = (),
    where_of: str = "output",
):
    """Declare a loss as its forward formula plus a hand-derived tangent rule.

    Args:
      tangent: ``tangent(p, t, out, res) -> dout``.  ``p`` holds every argument by name
        (floats upcast to at least float32), ``t`` their tangents (``None`` where the
        tangent is zero or the argument is not a float), ``out`` the loss and ``res``
        the residuals the forward returned.  It must be linear in ``t`` and written in
        differentiable ``jnp`` so that higher derivatives work; it runs under
        :func:`jax.checkpoint`.
      static: names of options that change the program (strings, booleans, integer
        sizes).  They must be hashable and get no derivative.  Every other argument is
        traced, and float ones are differentiated.
      check: ``check(**arguments)``, run at trace time on the raw arguments before
        anything is upcast; raises ``ValueError``/``TypeError`` for bad input.
      residuals: when true the forward returns ``(loss, residuals)``, the small
        per-example statistics the rule needs (a log-sum-exp, say); otherwise it
        returns the loss alone.
      per_example: names of the arguments whose leading axes are the examples (what
        ``where`` masks); default: the parameters before the keyword-only options,
        which the design contract reserves for inputs and targets.
      own_precision: names of float arguments handed to the forward and the rule in their
        own dtype instead of upcast: the loss computes them in at least float32 itself,
        upcasting inside each pass that reads them.  For large low-precision inputs this
        keeps XLA from materialising a float32 copy, which XLA:CPU does for an upcast read
        by more than one pass (a maximum and a sum, say).
      where_of: ``"output"`` (default): ``where`` is a per-example mask of the loss's
        shape, applied by the mechanism as described below.  ``"inputs"``: ``where``
        masks positions of the inputs (the pixels of a segmentation loss, say); the
        mechanism only checks that it is boolean and hands it to the forward and the
        rule untouched, which must zero the masked positions of the inputs and of their
        tangents themselves (``jnp.where`` before use), so that inf/NaN cannot leak.

    Returns:
      A decorator taking the forward formula and returning the public loss, with the
      plain-autodiff version attached as ``.reference``.  If the forward has a
      ``where`` parameter, the mechanism applies it: masked entries give 0 and a
      derivative of exactly 0, even when their inputs hold inf or NaN (padding): the
      masked examples of the per-example arguments, and of their tangents, are set to 0
      before the formula and the rule run.
    """
    static, own_precision = tuple(static), frozenset(own_precision)
    if where_of not in ("output", "inputs"):
        raise ValueError(f'where_of must be "output" or "inputs", got {where_of!r}.')

    def decorate(forward):
        signature = inspect.signature(forward)
        names = tuple(n for n in signature.parameters if n not in static)
        # With where_of="inputs" the forward and the rule apply ``where`` themselves.
        masked = "where" in signature.parameters and where_of == "output"
        examples = tuple(per_example) if per_example is not None else tuple(
            n for n, q in signature.parameters.items() if q.kind == q.POSITIONAL_OR_KEYWORD)

        def bind(args, kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            if check is not None:
                check(**arguments)
            if "where" in arguments:
                _checks.mask("where", arguments["where"])
            for n in static:
                _checks.hashable(n, arguments[n])
            return tuple(arguments[n] for n in names), tuple((n, arguments[n]) for n in static)

        def arguments(values, static_kw):
            return Args(((n, v if n in own_precision else _upcast(v)) for n, v in zip(names, values)),
                        **static_kw)

        def example_masks(p):
            """``where`` shaped for each per-example argument, or {} when unmasked."""
            return _example_masks(forward, p, examples) if masked and p["where"] is not None else {}

        def evaluate(static_kw, values):
            p = arguments(values, static_kw)
            p = _zero_masked(p, example_masks(p))
            result = forward(**p)
            out, res = result if residuals else (result, ())
            return mask(p, out), res

        def mask(p, x):
            return x if not masked or p["where"] is None else jnp.where(p["where"], x, 0)

        @functools.lru_cache(maxsize=None)
        def build(static_items):
            static_kw = dict(static_items)

            @jax.custom_jvp
            def fn(*values):
                return evaluate(static_kw, values)[0]

            @jax.checkpoint
            def linear(values, tangents, out, res):
                p = arguments(values, static_kw)
                masks = example_masks(p)
                p, t = _zero_masked(p, masks), _zero_masked(Args(zip(names, tangents)), masks)
                dout = tangent(p, t, out, res)
                dout = jnp.zeros_like(out) if dout is None else jnp.broadcast_to(dout, out.shape)
                return mask(p, dout.astype(out.dtype))

            def rule(primals, tangents):
                out, res = evaluate(static_kw, primals)
                tangents = tuple(None if _is_zero_tangent(t) else t for t in tangents)
                return out, linear(primals, tangents, out, res)

            fn.defjvp(rule, symbolic_zeros=True)
            return fn

        @functools.wraps(forward)
        def public(*args, **kwargs):
            values, static_items = bind(args, kwargs)
            return build(static_items)(*values)

        @functools.wraps(forward)
        def reference(*args, **kwargs):
            values, static_items = bind(args, kwargs)
            return evaluate(dict(static_items), values)[0]

        reference.__doc__ = f"``{forward.__name__}`` differentiated by plain autodiff of its formula."
        public.reference = reference
        public.tangent_rule = tangent
        return public

    return decorate


def _example_masks(forward, p, examples):
    """``where`` broadcast to the loss's shape and extended over the trailing axes of each
    per-example argument whose leading axes are that shape: ``{name: mask}``."""
    arrays = {k: v for k, v in p.items() if isinstance(v, jax.Array)}
    out = jax.eval_shape(lambda arrays: forward(**{**p, **arrays}), arrays)
    shape = (out[0] if isinstance(out, tuple) else out).shape
    keep = jnp.broadcast_to(p["where"], shape)
    return {n: keep.reshape(shape + (1,) * (arrays[n].ndim - len(shape)))
            for n in examples if n in arrays and arrays[n].shape[: len(shape)] == shape}


def _zero_masked(args, masks):
    """Set the masked examples to 0, so inf or NaN padding cannot reach a value or a
    derivative: ``jnp.where``'s derivative at the masked entries is exactly 0."""
    zeroed = {n: jnp.where(m, args[n], 0) for n, m in masks.items() if args[n] is not None}
    return Args(args, **zeroed) if zeroed else args
