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
in their own dtype), float options given as integers (cast to the compute dtype),
class ids of any integer or boolean dtype (compared in int32), the ``where=`` mask
(broadcast to the losses' shape; masked entries give loss 0 and derivative exactly 0), and
the ``axis=`` option of the losses that reduce a class or feature axis (moved last before the
formula runs, so that ``[N, C, H, W]`` logits need no transpose).

:func:`check_gradients` compares any function's reverse- and forward-mode derivatives
with autodiff of a reference and with float64 central finite differences.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, ParamSpec, Protocol, TypeGuard, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.typing import DTypeLike

from jaxloss import _checks, _math
from jaxloss._gradcheck import GradientCheck as GradientCheck
from jaxloss._gradcheck import GradientRow as GradientRow
from jaxloss.types import ArrayLike, Axis
from jaxloss._gradcheck import check_gradients as check_gradients

__all__ = ["hand_derivative", "derived_loss", "Loss", "Args", "tangent_sum", "as_float_option", "as_ids", "float_dtype", "class_axes",
           "check_gradients", "GradientCheck", "GradientRow"]


P = ParamSpec("P")


class Loss(Protocol, Generic[P]):
    """A public loss, typed with its parameters (what :func:`hand_derivative` and
    :func:`derived_loss` return), and what it carries: ``reference``, the same loss by plain
    autodiff of the formula; ``class_axis`` and ``axis_tuples`` as declared."""

    __name__: str
    reference: Callable[P, jax.Array]
    class_axis: tuple[str, ...]
    axis_tuples: bool

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> jax.Array: ...


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


def tangent_sum(*terms: tuple[ArrayLike, ArrayLike | None]) -> jax.Array | None:
    """Sum ``partial * tangent`` over the pairs whose tangent is not zero.

    Tangent rules are written as a list of ``(partial derivative, tangent)`` pairs; a
    tangent of ``None`` (an integer argument, or one that is not being differentiated)
    contributes nothing and its partial is never built into the program.
    """
    total = None
    for partial, tangent in terms:
        if tangent is None:
            continue
        term = jnp.multiply(partial, tangent)
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
    integer_options: Sequence[str] = ("labels",),
    class_axis: Sequence[str] = (),
    axis_tuples: bool = False,
) -> Callable[[Callable[P, Any]], Loss[P]]:
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
      check: ``check(**arguments)``, run at trace time on the arguments before anything
        is upcast (float options and ids already normalised, as said below); raises
        ``ValueError``/``TypeError`` for bad input.
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
        masks positions of the first argument (the examples of a per-batch loss, the
        pixels of a segmentation loss): its leading axes but the last (features,
        classes), or all of them for a mask of its rank (``check`` says which the loss
        accepts).  The mechanism hands it to the forward and the rule broadcast to those
        axes, and they must zero the masked positions of the inputs and of their
        tangents themselves (``jnp.where`` before use), so that inf/NaN cannot leak.
      integer_options: the keyword-only arguments that hold ids or labels (integers).
        Every other keyword-only argument that is not static is a float option
        (margin, temperature, gamma...).
      class_axis: names of the arguments that carry the axis the loss reduces (classes,
        features), the first being the primary (the logits).  The forward then declares a
        keyword-only ``axis=-1`` as its first keyword-only parameter: the public function's
        static option (typed and documented where the loss is), which the forward never
        receives: it and the rule, written for the last axis, see every named argument with
        that axis moved last (see :func:`class_axes`).
        A named argument of the primary's rank is moved as the primary; a float or boolean
        one of lower rank (rank >= 1) broadcasts against the primary in the caller's layout,
        so it gets leading axes of size 1 and is moved too; an integer one of lower rank
        (class ids of the batch shape) and a scalar are passed as they are.  Arguments not
        named (per-class options ``[C]``, say) are never moved.  The losses are the
        primary's shape without the axis, in the caller's order, and ``where`` broadcasts
        against that; derivatives come back in the caller's layout (the move is a
        transpose outside the rule).
      axis_tuples: whether ``axis`` may also be a tuple of ints (moved last in the order
        given and flattened into one axis, as optax does) or None (every axis).  Class ids
        and per-class options ``[C]`` then index the flattened axis (optax's integer-label
        cross-entropy does the same).

    Arguments are normalised before ``check`` sees them.  Float options given as
    integers become floats, so that ``gamma=2`` means ``gamma=2.0``: Python and NumPy
    scalars become Python floats (weakly typed, NumPy float scalars too), integer arrays
    (traced ones under ``jit`` included) are cast to the compute dtype of the float
    inputs; float arrays keep their dtype and get their derivative.  Integer and boolean
    arrays among the inputs and the ``integer_options`` (ids, labels, paddings) are cast
    to int32, so that ids are compared in one dtype whatever the caller's (in uint8 a
    one-hot over 300 classes would wrap at 256; an int8 −100 would not match the ignore
    index).  After the check, ``where`` is broadcast to the shape it masks (the losses',
    or the positions above), so that every mask that broadcasts to it (a scalar,
    ``(1,)``, ``[N]``, and ``[N, 1]`` or ``[1, K]`` for ``[N, K]`` losses) means what
    the full mask means.  A mask that would broadcast to something bigger raises
    ``ValueError`` naming ``where`` and both shapes: ``[N, 1]`` for ``[N]`` losses is
    one (it would broadcast to ``[N, N]``).

    Returns:
      A decorator taking the forward formula and returning the public loss, with the
      plain-autodiff version attached as ``.reference`` (and ``.class_axis``,
      ``.axis_tuples`` as declared, which :mod:`jaxloss.checks` and the tests read).  If the forward has a
      ``where`` parameter, the mechanism applies it: masked entries give 0 and a
      derivative of exactly 0, even when their inputs hold inf or NaN (padding): the
      masked examples of the per-example arguments, and of their tangents, are set to 0
      before the formula and the rule run.
    """
    static, own = tuple(static), frozenset(own_precision)
    if where_of not in ("output", "inputs"):
        raise ValueError(f'where_of must be "output" or "inputs", got {where_of!r}.')

    def decorate(forward):
        signature = inspect.signature(forward)
        if class_axis:
            _check_declares_axis(signature, forward.__name__)
        parameters = tuple(n for n in signature.parameters if not (class_axis and n == "axis"))
        names = tuple(n for n in parameters if n not in static)
        # With where_of="inputs" the forward and the rule apply ``where`` themselves.
        masked = "where" in parameters and where_of == "output"
        inputs = tuple(n for n, q in signature.parameters.items() if q.kind == q.POSITIONAL_OR_KEYWORD)
        keyword = tuple(n for n in names if n not in inputs and n != "where")
        ids = tuple(n for n in keyword if n in integer_options)
        options = tuple(n for n in keyword if n not in integer_options)
        examples = tuple(per_example) if per_example is not None else inputs

        def bind(args, kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            axis = arguments.pop("axis") if class_axis else -1
            dtype = float_dtype(arguments[n] for n in inputs)
            arguments.update({n: as_float_option(arguments[n], dtype) for n in options})
            arguments.update({n: as_ids(arguments[n]) for n in inputs + ids})
            moved = _move_class_axis(arguments, class_axis, axis, axis_tuples) if class_axis else {}
            arguments.update(moved)
            if check is not None:
                try:
                    check(**arguments)
                except (TypeError, ValueError) as e:
                    if not moved:
                        raise
                    raise type(e)(f"{e} (Shapes as the loss sees them, with axis={axis!r} moved last.)") from None
            for n in static:
                _checks.hashable(n, arguments[n])
            if arguments.get("where") is not None:
                _checks.mask("where", arguments["where"])
                arguments["where"] = _broadcast_where(arguments["where"], positions(arguments))
            return tuple(arguments[n] for n in names), tuple((n, arguments[n]) for n in static)

        def positions(arguments):
            """The shape ``where`` masks, and what it is: the losses', or leading axes of the first argument."""
            if where_of == "inputs":
                shape = np.shape(arguments[parameters[0]])
                return shape[: max(np.ndim(arguments["where"]), len(shape) - 1)], f"the positions of {parameters[0]}"
            # Upcast as the forward sees them (a float32 scale on bfloat16 inputs, say).
            arrays = {n: v if n in own else _upcast(v) for n, v in arguments.items()
                      if isinstance(v, jax.Array | np.ndarray)}
            out = jax.eval_shape(lambda arrays: forward(**{**arguments, **arrays, "where": None}), arrays)
            return (out[0] if residuals else out).shape, "the losses"

        def arguments(values, static_kw):
            return Args(((n, v if n in own else _upcast(v)) for n, v in zip(names, values)),
                        **static_kw)

        def example_masks(p):
            """``where`` shaped for each per-example argument, or {} when unmasked."""
            return _example_masks(p, examples) if masked and p["where"] is not None else {}

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
        # The forward's parameters; the loss alone is returned (not the residuals).
        public.__signature__ = reference.__signature__ = signature.replace(return_annotation="jax.Array")
        public.reference = reference
        public.class_axis, public.axis_tuples = tuple(class_axis), axis_tuples
        return public

    return decorate


def derived_loss(fn: Callable[P, jax.Array], reference: Callable[..., jax.Array], *,
                 like: Loss | None = None) -> Loss[P]:
    """``fn``, a public loss written on top of another (optax's name with its defaults, a
    family of margins), as a :class:`Loss`: with ``reference`` as its ``.reference`` (the
    same call on the other loss's ``.reference``) and the ``class_axis`` and ``axis_tuples``
    of ``like``, the loss it calls (none without it)."""
    loss = cast(Loss[P], fn)
    loss.reference = reference
    loss.class_axis, loss.axis_tuples = (like.class_axis, like.axis_tuples) if like is not None else ((), False)
    return loss


def _check_declares_axis(signature, name):
    """Raise ``TypeError`` unless ``signature`` has ``axis`` as its first keyword-only parameter."""
    keyword = [n for n, q in signature.parameters.items() if q.kind == q.KEYWORD_ONLY]
    if keyword[:1] != ["axis"]:
        raise TypeError(f"{name}: a loss declared with class_axis takes axis= as its first keyword-only "
                        "parameter (the public option; the forward itself always sees -1).")


def class_axes(axis: Axis, shape: Sequence[int], *, tuples: bool = False, name: str = "logits") -> tuple[int, ...]:
    """The axes ``axis`` names in an array of ``shape`` (argument ``name``), as non-negative
    ints in the order given: an int, or (``tuples``) a tuple of ints or None (every axis).

    Raises ``ValueError`` naming ``axis`` and the shape for anything else, an axis out of
    range or a repeated one."""
    shape, ndim = tuple(shape), len(shape)
    allowed = "an int, a tuple of ints or None" if tuples else "an int"
    if axis is None and tuples:
        return tuple(range(ndim))
    given: tuple[int, ...]
    if _is_int(axis):
        given = (axis,)
    elif tuples and isinstance(axis, tuple) and len(axis) > 0 and all(_is_int(a) for a in axis):
        given = axis
    else:
        raise ValueError(f"axis must be {allowed} (static), got {axis!r}, for {name} with shape {shape}.")
    if any(not -ndim <= a < ndim for a in given):
        raise ValueError(f"axis={axis!r} is out of range for {name} with shape {shape} (rank {ndim}).")
    axes = tuple(int(a) % ndim for a in given)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis={axis!r} repeats an axis of {name} with shape {shape}.")
    return axes


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _move_class_axis(arguments, names, axis, tuples):
    """``{name: array}``: the arguments ``names`` with the axes ``axis`` of the first (the
    primary) moved last and flattened into one; see ``class_axis`` in :func:`hand_derivative`."""
    primary = arguments[names[0]]
    if not isinstance(primary, jax.Array | np.ndarray) or (_is_int(axis) and axis == -1):
        return {}  # the default moves nothing; the loss's check names a non-array or a scalar
    shape = primary.shape
    axes = class_axes(axis, shape, tuples=tuples, name=names[0])
    if axes == (len(shape) - 1,):
        return {}
    classes, moved = math.prod(shape[i] for i in axes), {}
    for n in names:
        x = arguments[n]
        if not isinstance(x, jax.Array | np.ndarray) or x.ndim == 0 or x.ndim > len(shape):
            continue
        if x.ndim < len(shape):
            if jnp.issubdtype(x.dtype, jnp.integer):
                continue  # class ids of the batch shape
            x = x.reshape((1,) * (len(shape) - x.ndim) + x.shape)
        if len(axes) > 1:  # the flattened axes must be whole
            full = tuple(shape[i] if i in axes else s for i, s in enumerate(x.shape))
            if not all(s in (1, f) for s, f in zip(x.shape, full)):
                raise ValueError(f"{n} with shape {arguments[n].shape} does not broadcast to {names[0]} with "
                                 f"shape {shape} over axis={axis!r}.")
            x = jnp.broadcast_to(x, full)
        x = jnp.moveaxis(x, axes, tuple(range(-len(axes), 0)))
        moved[n] = x if len(axes) == 1 else x.reshape(x.shape[: x.ndim - len(axes)] + (classes,))
    return moved


def _example_masks(p, examples):
    """``where`` (already of the losses' shape) extended over the trailing axes of each
    per-example argument whose leading axes are that shape: ``{name: mask}``."""
    keep = p["where"]
    shape = keep.shape
    return {n: keep.reshape(shape + (1,) * (p[n].ndim - len(shape)))
            for n in examples if isinstance(p[n], jax.Array | np.ndarray) and p[n].shape[: len(shape)] == shape}


def float_dtype(values: Iterable[Any]) -> np.dtype:
    """The dtype float options are cast to: the compute dtype of the float inputs."""
    floats = [v.dtype for v in values if isinstance(v, jax.Array | np.ndarray) and jnp.issubdtype(v.dtype, jnp.floating)]
    return _math.compute_dtype(jnp.result_type(*floats) if floats else jnp.result_type(float))


def as_float_option(x: Any, dtype: DTypeLike) -> Any:
    """A float option given as an integer, as a float: Python and NumPy integer scalars
    become Python floats (weakly typed, as if written ``2.0``), integer arrays (traced
    ones too) ``dtype``.  NumPy float scalars become Python floats too (a np.float64
    would otherwise make the loss float64 under x64); everything else is kept."""
    if isinstance(x, bool | np.bool_) or not isinstance(x, numbers.Real | np.ndarray | jax.Array):
        return x
    if not isinstance(x, np.ndarray | jax.Array):
        return float(x)
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.integer) else x


def as_ids(x: Any) -> Any:
    """Integer and boolean arrays (ids, labels, paddings) as int32; everything else kept."""
    if isinstance(x, jax.Array | np.ndarray) and (jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == bool):
        return jnp.asarray(x, jnp.int32)
    return x


def _broadcast_where(where, positions):
    """``where`` broadcast to ``positions = (shape, what)``; ValueError naming ``where``
    and both shapes if it would broadcast to something bigger."""
    shape, what = positions
    _checks.broadcasts_to("where", where, tuple(shape), what)
    return jnp.broadcast_to(where, shape)


def _zero_masked(args, masks):
    """Set the masked examples to 0, so inf or NaN padding cannot reach a value or a
    derivative: ``jnp.where``'s derivative at the masked entries is exactly 0."""
    zeroed = {n: jnp.where(m, args[n], 0) for n, m in masks.items() if args[n] is not None}
    return Args(args, **zeroed) if zeroed else args
