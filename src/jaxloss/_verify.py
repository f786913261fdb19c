"""The checks ``python -m jaxloss verify`` runs on each catalogue entry, and its table."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _inputs, _math, _textbook
from jaxloss.catalogue import BY_NAME, Entry
from jaxloss._gradcheck import TOLERANCES
from jaxloss.gradients import GradientCheck, check_gradients

# Relative error allowed for losses and gradients computed from low-precision inputs,
# against float64 on the same (already rounded) inputs.  Losses compute in float32;
# gradients come back in the input's dtype, so they carry its rounding.
PRECISION_RTOL = {jnp.float32: 1e-5, jnp.bfloat16: 1e-2, jnp.float16: 2e-3}
# Blockwise and sharded forms against the dense one, all in float32.
FORMS_RTOL = 1e-5


def sample(entry: Entry, seed: int = 0):
    return entry.sample(np.random.default_rng(seed))


def value_and_grad(entry: Entry, args, kwargs):
    """The losses and the gradient of their sum w.r.t. the first argument (compiled)."""

    @jax.jit
    def run(x, rest):
        losses, vjp = jax.vjp(lambda x: entry.fn(x, *rest, **kwargs), x)
        return losses, vjp(jnp.ones_like(losses))[0]

    return run(args[0], tuple(args[1:]))


def _relative(ours, theirs) -> float:
    """Largest difference over the largest magnitude, across pairs of arrays (losses,
    gradients...); inf where either holds a NaN or an infinity the other does not match."""
    def one(a, b):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if not np.array_equal(np.isfinite(a), np.isfinite(b)) or np.any(np.isnan(a) | np.isnan(b)):
            return float("inf")
        same = np.isfinite(b)
        return float(np.max(np.abs(a - b)[same], initial=0.0) / max(float(np.max(np.abs(b[same]), initial=0.0)), 1e-30))

    return max(one(a, b) for a, b in zip(ours, theirs))


def _sharded(entry: Entry, shards: int = 2):
    """The sharded form as a function of the dense arguments: the batch (every positional
    argument and ``where``) split into ``shards`` along its first axis and mapped with
    ``jax.vmap(..., axis_name=)``, which runs the same collectives as ``shard_map`` on one
    device.  A per-batch loss gives every shard the whole batch's loss: their mean is that
    loss.  An entry whose sharded form splits something else says how with ``entry.shard``."""
    split = lambda a: None if a is None else a.reshape((shards, -1) + a.shape[1:])  # noqa: E731

    def fn(*args, where=None, **kwargs):
        if entry.shard is not None:
            return entry.shard(args, {**kwargs, "where": where}, shards, "shards")
        local = lambda args, where: entry.fn(*args, axis_name="shards", where=where, **kwargs)  # noqa: E731
        losses = jax.vmap(local, axis_name="shards")(tuple(map(split, args)), split(where))
        return jnp.mean(losses) if entry.per_batch else losses.reshape(-1)

    return fn


# Block size of the blockwise forms' check: divides none of the samples' batch or vocabulary sizes.
FORM_BLOCK = 3


def form_errors(entry: Entry, seed: int = 0) -> dict[str, float]:
    """Relative difference from the dense form of the blockwise form (``block_size=3``) and of
    the sharded form (two shards), where the entry has them: the losses, the gradients with
    respect to every float argument and the Hessian-vector product along a random direction
    of all of them, with an uneven ``where`` mask (about 60% kept, not evenly over the shards)."""
    args, kwargs = sample(entry, seed)
    keep = np.random.default_rng(seed + 7).random(_inputs.where_shape(entry, args, kwargs)) < 0.6
    keep.reshape(-1)[:2], keep.reshape(-1)[-1] = True, False
    kwargs = {**kwargs, "where": jnp.asarray(keep)}
    dense = derivatives(entry.fn, args, kwargs, hvp=True, forward=entry.forward_mode, seed=seed)
    forms = {"blockwise": lambda *a, **k: entry.fn(*a, block_size=FORM_BLOCK, **k), "sharded": _sharded(entry)}
    return {name: _relative(_leaves(derivatives(
                forms[name], args, kwargs, hvp=True, forward=entry.forward_mode, seed=seed)), _leaves(dense))
            for name in ("blockwise", "sharded") if getattr(entry, name)}


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def precision_error(entry: Entry, dtype, seed: int = 0) -> tuple[float, float]:
    """Max relative error of the losses and the gradient for ``dtype`` inputs."""
    args, kwargs = sample(entry, seed)
    low = [a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args]
    losses, grad = value_and_grad(entry, low, kwargs)
    if losses.dtype != _math.compute_dtype(dtype) or grad.dtype != dtype:
        return float("inf"), float("inf")
    with jax.enable_x64(True):
        wide = [a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in low]
        losses64, grad64 = value_and_grad(entry, wide, kwargs)
        return _relative([losses.astype(jnp.float64)], [losses64]), _relative([grad.astype(jnp.float64)], [grad64])


# Per-row float32 precision (:func:`row_precision`): a loss's worst per-row relative error
# may be this many times that of autodiff of the textbook formula, or this floor.
PRECISION_FACTOR, PRECISION_FLOOR = 2.0, 1e-6


def _float_parts(args, kwargs):
    """The float array arguments: positions and keyword names."""
    is_float = lambda a: isinstance(a, jax.Array) and jnp.issubdtype(a.dtype, jnp.floating)  # noqa: E731
    return [i for i, a in enumerate(args) if is_float(a)], [k for k, v in kwargs.items() if is_float(v)]


def derivatives(fn, args, kwargs, *, hvp=False, forward=True, seed=0):
    """``fn``'s losses and the gradients of their sum w.r.t. every float array argument
    (positional ones first, then keyword ones); with ``hvp``, also the JVP of the losses
    (None without ``forward`` mode) and the Hessian-vector product of their sum (forward over
    reverse, or reverse over reverse without ``forward`` mode), both along a random direction
    moving every float argument (0 at their non-finite entries); compiled once per ``fn``,
    shapes, dtypes and non-array options, in the arguments' dtype."""
    positions, names = _float_parts(args, kwargs)
    floats = [args[i] for i in positions] + [kwargs[k] for k in names]
    rng = np.random.default_rng(seed + 11)
    direction = [jnp.where(jnp.isfinite(x), jnp.asarray(rng.standard_normal(x.shape), x.dtype), 0) for x in floats]
    is_array = lambda v: isinstance(v, jax.Array | np.ndarray)  # noqa: E731
    static = tuple(sorted((k, v) for k, v in kwargs.items() if not is_array(v)))
    arrays = {k: v for k, v in kwargs.items() if is_array(v) and k not in names}
    return _derivatives(fn, tuple(positions), tuple(names), static, hvp, forward, floats, direction, list(args),
                        arrays)


@functools.partial(jax.jit, static_argnums=range(6))
def _derivatives(fn, positions, names, static, hvp, forward, floats, direction, args, arrays):
    def total(floats):
        a, kw = list(args), {**dict(static), **arrays}
        for i, x in zip(positions, floats[: len(positions)]):
            a[i] = x
        kw.update(zip(names, floats[len(positions):]))
        losses = fn(*a, **kw)
        return jnp.sum(losses), losses

    grads, losses = jax.grad(total, has_aux=True)(floats)
    if not hvp:
        return losses, grads
    grad = lambda floats: jax.grad(total, has_aux=True)(floats)[0]  # noqa: E731
    if forward:
        jvp = jax.jvp(lambda f: total(f)[1], (floats,), (direction,))[1]
        return losses, grads, jvp, jax.jvp(grad, (floats,), (direction,))[1]
    return losses, grads, None, jax.grad(lambda f: sum(jnp.vdot(g, d) for g, d in zip(grad(f), direction)))(floats)


def _per_row_error(ours, exact) -> float:
    """Worst per-row relative error: each row (leading index; each element of a vector of
    losses) against its own largest magnitude, floored at 1e-6 of the array's largest."""
    ours, exact = np.asarray(ours, np.float64), np.asarray(exact, np.float64)
    rows = lambda x: x.reshape(-1, 1) if x.ndim <= 1 else x.reshape(x.shape[0], -1)  # noqa: E731
    diff, scale = np.max(np.abs(rows(ours) - rows(exact)), axis=1), np.max(np.abs(rows(exact)), axis=1)
    floor = max(1e-6 * float(np.max(scale, initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.max(diff / np.maximum(scale, floor), initial=0.0))


@dataclasses.dataclass(frozen=True)
class RowPrecision:
    """Worst per-row relative errors of float32 values and gradients against float64: the
    loss's (``value``, ``gradient``) and autodiff of the textbook formula's; ``negative``:
    the loss returned a negative float32 value where every float64 value is ≥ 0."""

    value: float
    gradient: float
    textbook_value: float
    textbook_gradient: float
    negative: bool

    @property
    def ok(self) -> bool:
        allowed = lambda textbook: max(PRECISION_FACTOR * textbook, PRECISION_FLOOR)  # noqa: E731
        return (not self.negative and self.value <= allowed(self.textbook_value)
                and self.gradient <= allowed(self.textbook_gradient))


def row_precision(entry: Entry, args, kwargs) -> RowPrecision:
    """:class:`RowPrecision` of ``entry`` at float32 inputs ``args, kwargs``; the exact values
    are the textbook formula's (or the loss's own, without one) in float64."""
    textbook = _textbook.TEXTBOOK.get(entry.name, entry.fn.reference)
    ours, grads = derivatives(entry.fn, args, kwargs)
    book, book_grads = derivatives(textbook, args, kwargs)
    with jax.enable_x64(True):
        wide = lambda x: x.astype(jnp.float64) if isinstance(x, jax.Array) and jnp.issubdtype(  # noqa: E731
            x.dtype, jnp.floating) else x
        exact, exact_grads = derivatives(textbook, [wide(a) for a in args], {k: wide(v) for k, v in kwargs.items()})
        exact, exact_grads = np.asarray(exact), [np.asarray(g) for g in exact_grads]
    # Gradients with rows only: a scalar option's gradient is a sum over the whole batch, whose
    # rounding is that of the summation order, not of any row's formula.
    worst = lambda a, b: max((_per_row_error(x, y) for x, y in zip(a, b) if np.ndim(y)), default=0.0)  # noqa: E731
    return RowPrecision(_per_row_error(ours, exact), worst(grads, exact_grads),
                        _per_row_error(book, exact), worst(book_grads, exact_grads),
                        bool(np.all(exact >= 0) and np.any(np.asarray(ours) < 0)))


def precision_cases(entry: Entry, seed: int = 0):
    """The inputs the precision column is measured on: the sample, and the easy batches."""
    easy = _textbook.EASY.get(entry.name)
    return [sample(entry, seed)] + (easy(np.random.default_rng(seed)) if easy else [])


@dataclasses.dataclass(frozen=True)
class Verdict:
    entry: Entry
    gradients: GradientCheck
    precision: dict  # dtype name -> (loss error, gradient error)
    forms: dict  # "blockwise" / "sharded" -> relative difference from the dense form
    rows: tuple[RowPrecision, ...]  # per-row float32 precision on each of precision_cases

    @property
    def precision_ok(self) -> bool:
        return all(max(errs) <= PRECISION_RTOL[getattr(jnp, name)] for name, errs in self.precision.items())

    @property
    def ok(self) -> bool:
        return (self.gradients.ok and self.precision_ok and all(r.ok for r in self.rows)
                and all(e <= FORMS_RTOL for e in self.forms.values()))


def verify(entry: Entry, seed: int = 0) -> Verdict:
    args, kwargs = sample(entry, seed)
    gradients = check_gradients(entry.fn, *args, order=2, **kwargs)
    precision = {d.__name__: precision_error(entry, d, seed) for d in (jnp.float32, jnp.bfloat16)}
    rows = tuple(row_precision(entry, a, k) for a, k in precision_cases(entry, seed))
    return Verdict(entry, gradients, precision, form_errors(entry, seed), rows)


def verify_row(name: str, seed: int = 0) -> tuple[str, bool]:
    """:func:`verify` of the catalogue entry ``name``: its table row and whether it is ok
    (what a ``verify --jobs`` worker process sends back)."""
    v = verify(BY_NAME[name], seed)
    return table_row(v), v.ok


TABLE_HEAD = ("| loss | family | backend | dtype | reverse vs autodiff | reverse vs FD | forward vs autodiff | "
              "forward vs FD | HVP vs autodiff / FD | f32 / bf16 rel. error | f32 per-row value / gradient "
              "(textbook) | blockwise / sharded vs dense | ok |")
TABLE_RULE = "|" + "---|" * (TABLE_HEAD.count("|") - 1)


def table_row(v: Verdict) -> str:
    """One loss's row of :func:`table` (``verify`` prints each as it finishes)."""
    g = v.gradients
    errors = [g.max_error("forward", a) for a in ("autodiff", "fd")]
    forward = [f"{e:.1e}" for e in errors] if v.entry.forward_mode else ["via .reference"] * 2
    hvp = " / ".join(f"{g.max_error('hvp', a):.1e}" for a in ("autodiff", "fd"))
    low = " / ".join(f"{max(v.precision[d]):.1e}" for d in ("float32", "bfloat16"))
    worst = lambda field: max(getattr(r, field) for r in v.rows)  # noqa: E731
    rows = (f"{worst('value'):.1e} / {worst('gradient'):.1e} "
            f"({worst('textbook_value'):.1e} / {worst('textbook_gradient'):.1e})"
            + (" negative" if any(r.negative for r in v.rows) else ""))
    forms = " / ".join(f"{v.forms[f]:.1e}" if f in v.forms else "–" for f in ("blockwise", "sharded"))
    return (f"| {v.entry.name} | {v.entry.family} | {jax.default_backend()} | float64 | "
            f"{g.max_error('reverse', 'autodiff'):.1e} | {g.max_error('reverse', 'fd'):.1e} | "
            f"{forward[0]} | {forward[1]} | {hvp} | {low} | {rows} | {forms} | {'ok' if v.ok else 'FAIL'} |")


def table(verdicts: list[Verdict]) -> str:
    return "\n".join([TABLE_HEAD, TABLE_RULE] + [table_row(v) for v in verdicts])


def legend() -> str:
    """What the columns of :func:`table` measure and the tolerance each must meet for ``ok``."""
    f64 = TOLERANCES["float64"]
    low = ", ".join(f"{np.dtype(d).name} {t:g}" for d, t in PRECISION_RTOL.items())
    return "\n".join([
        "Columns (largest relative error over every differentiated argument; ok needs all of them within):",
        f"  reverse / forward / HVP vs autodiff: the hand rule against plain autodiff of the formula, "
        f"float64, <= {f64['rtol_autodiff']:g}",
        f"  ... vs FD: against central finite differences in float64 (step {f64['step']:g}), <= {f64['rtol_fd']:g}",
        f"  f32 / bf16 rel. error: loss and gradient from low-precision inputs against float64 on the same "
        f"rounded inputs, <= {low}",
        f"  f32 per-row value / gradient (textbook): worst row's relative error in float32 against float64, "
        f"<= max({PRECISION_FACTOR:g} x the textbook formula's own error in brackets, {PRECISION_FLOOR:g})",
        f"  blockwise / sharded vs dense: the streaming forms against the dense one in float32, <= {FORMS_RTOL:g}",
    ])
