"""The public gradient checker: :func:`check_gradients` and its report.

Every comparison is strict: a derivative, a reference derivative or a finite-difference
quantity that holds a NaN or an infinity fails its row (it is never an error of 0), and an
argument holding ±inf or NaN (a masked logit) is differenced only along its finite
coordinates.  Arguments may be pytrees (dicts, lists, tuples, dataclasses, flax ``nnx``
state); each float leaf gets its own rows, named by its path.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("reverse", "forward", "hvp")
# Defaults by the dtype the check runs in: float64 (the default) or float32, for a function
# that computes in float32 inside (its derivatives cannot be float64).
TOLERANCES = {"float64": dict(rtol_autodiff=1e-6, rtol_fd=1e-5, step=1e-6),
              "float32": dict(rtol_autodiff=1e-4, rtol_fd=3e-2, step=1e-3)}
# Magnitudes below this (relative to the largest of the compared quantity) count as this
# much in the per-element relative error, so a rounding-level difference on an element
# that should be 0 is not an error of 100%.
FLOOR = {"float64": 1e-9, "float32": 1e-5}
math_inf = float("inf")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One derivative against one standard (``"autodiff"`` or ``"fd"``).

    Attributes:
      abs_error: ``max |ours − theirs|``.
      rel_error: that over ``max |theirs|`` (the global relative error).
      elementwise: ``max_i |ours_i − theirs_i| / max(|theirs_i|, floor · max |theirs|)``:
        each element against its own magnitude.
      worst: the index of the element where ``elementwise`` is reached.
      problem: what was not finite ("" when everything was), which fails the row.
    """

    abs_error: float
    rel_error: float
    elementwise: float
    worst: tuple[int, ...]
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class GradientRow:
    """One argument (a pytree leaf, named by its path) in one mode.

    ``mode`` is ``"reverse"`` (the VJP ``Jᵀw``), ``"forward"`` (the JVP ``Jv``) or
    ``"hvp"`` (``order=2``: the forward-over-reverse Hessian-vector product
    ``d/dε ∇⟨w, f⟩(x + εv)``).  ``autodiff`` is None when there was no reference.
    """

    argument: str
    mode: str
    autodiff: Comparison | None
    fd: Comparison | None
    ok: bool
    note: str = ""

    @property
    def rel_vs_autodiff(self) -> float | None:
        return None if self.autodiff is None else self.autodiff.rel_error

    @property
    def rel_vs_fd(self) -> float | None:
        return None if self.fd is None else self.fd.rel_error


@dataclasses.dataclass(frozen=True)
class GradientCheck:
    """Result of :func:`check_gradients`: one row per float leaf and mode."""

    rows: tuple[GradientRow, ...]
    rtol_autodiff: float
    rtol_fd: float
    dtype: str = "float64"
    has_reference: bool = True

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.ok for r in self.rows)

    def max_error(self, mode: str, against: str) -> float:
        """Largest global relative error of ``mode`` against ``"autodiff"`` or ``"fd"``
        (inf where a row's quantities were not finite; 0 when there are no such rows)."""
        errors = [getattr(r, against) for r in self.rows if r.mode == mode]
        return max((math_inf if c.problem else c.rel_error for c in errors if c is not None), default=0.0)

    def __repr__(self) -> str:
        lines = [f"GradientCheck(ok={self.ok}, dtype={self.dtype}, rtol autodiff={self.rtol_autodiff:g}, "
                 f"rtol fd={self.rtol_fd:g})"]
        if not self.has_reference:
            lines.append("no reference: only finite differences were compared (autodiff columns n/a)")
        if not self.rows:
            lines.append("no float argument to check")
        width = max([len(r.argument) for r in self.rows] + [8])
        lines.append(f"{'argument':<{width}} {'mode':<8} {'rel vs autodiff':>15} {'per element':>11} "
                     f"{'rel vs fd':>10} {'per element':>11}  ok  worst element")
        for r in self.rows:
            cells = [_cell(c, "rel_error", 15) + " " + _cell(c, "elementwise", 11) for c in (r.autodiff, r.fd)]
            worst = max((c for c in (r.autodiff, r.fd) if c is not None),
                        key=lambda c: c.elementwise, default=None)
            where = "" if worst is None or not worst.worst else str(worst.worst)
            lines.append(f"{r.argument:<{width}} {r.mode:<8} {cells[0]} {cells[1][5:]}  "
                         f"{'yes' if r.ok else 'NO ':<3} {where}" + (f"  {r.note}" if r.note else ""))
        return "\n".join(lines)



def _cell(c: Comparison | None, field: str, width: int) -> str:
    if c is None:
        return f"{'n/a':>{width}}"
    if c.problem:
        return f"{'non-finite':>{width}}"
    return f"{getattr(c, field):>{width}.2e}"


# ------------------------------------------------------------------ pytree arguments


def _is_plain_dataclass(x) -> bool:
    """A dataclass instance JAX treats as a leaf (not registered as a pytree)."""
    return (dataclasses.is_dataclass(x) and not isinstance(x, type)
            and jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(x)))


_STATIC_LEAVES = (str, bytes, bool, int, enum.Enum, type(None), np.integer, np.bool_)


def _flatten(x, path: str):
    """``([(path, leaf), ...], rebuild)``: the leaves of ``x`` (a pytree, with unregistered
    dataclasses opened field by field) and a function that puts new leaves back."""
    if _is_plain_dataclass(x):
        names = [f.name for f in dataclasses.fields(x) if f.init]
        parts = [_flatten(getattr(x, n), f"{path}.{n}") for n in names]
        return _join(parts, lambda values: dataclasses.replace(x, **dict(zip(names, values))))
    flat, treedef = jax.tree_util.tree_flatten_with_path(x, is_leaf=lambda v: v is not x and _is_plain_dataclass(v))
    if jax.tree_util.treedef_is_leaf(treedef) and flat and flat[0][1] is x:
        return [(path, x)], lambda leaves: leaves[0]
    parts = [_flatten(leaf, path + jax.tree_util.keystr(key)) for key, leaf in flat]
    return _join(parts, functools.partial(jax.tree_util.tree_unflatten, treedef))


def _join(parts, build):
    leaves = [leaf for part, _ in parts for leaf in part]

    def rebuild(new):
        values, i = [], 0
        for part, sub in parts:
            values.append(sub(new[i:i + len(part)]))
            i += len(part)
        return build(values)

    return leaves, rebuild


def _kind(path: str, leaf) -> str:
    """"float" (checked), "static" (passed through) or a TypeError for what cannot be checked."""
    dtype = getattr(leaf, "dtype", None)
    if isinstance(leaf, float) or (dtype is not None and jnp.issubdtype(dtype, jnp.floating)):
        return "float"
    if isinstance(leaf, _STATIC_LEAVES) or callable(leaf) or (
            dtype is not None and (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_))):
        return "static"
    raise TypeError(f"check_gradients cannot check argument {path} of type {type(leaf).__name__}"
                    + (f" and dtype {dtype}" if dtype is not None else "")
                    + ": pass arrays of floats, integers or booleans, numbers, strings, or pytrees of them "
                      "(register other containers as pytrees, or close over them with functools.partial).")


# ------------------------------------------------------------------ comparisons


def _compare(ours, theirs, floor) -> Comparison:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    bad = [name for name, a in (("derivative", ours), ("standard", theirs)) if not np.all(np.isfinite(a))]
    if bad:
        a = ours if bad[0] == "derivative" else theirs
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0]) if a.ndim else ()
        count = int(np.sum(~np.isfinite(a)))
        return Comparison(math_inf, math_inf, math_inf, index,
                          f"{' and '.join(bad)} not finite ({count} of {a.size} elements, first at {index})")
    diff = np.abs(ours - theirs)
    scale = float(np.max(np.abs(theirs), initial=0.0))
    abs_error = float(np.max(diff, initial=0.0))
    rel = abs_error / scale if scale > 0 else (0.0 if abs_error == 0 else math_inf)
    per = diff / np.maximum(np.abs(theirs), max(floor * scale, np.finfo(np.float64).tiny))
    worst = np.unravel_index(int(np.argmax(per)), per.shape) if per.size else ()
    return Comparison(abs_error, rel, float(np.max(per, initial=0.0)), tuple(int(i) for i in worst))


def _judge(name, mode, autodiff, fd, rtol_autodiff, rtol_fd, note=""):
    problems = [f"{against}: {c.problem}" for against, c in (("autodiff", autodiff), ("fd", fd))
                if c is not None and c.problem]
    ok = not problems
    if autodiff is not None:
        ok &= autodiff.rel_error <= rtol_autodiff and autodiff.elementwise <= rtol_autodiff
    if fd is not None:
        ok &= fd.rel_error <= rtol_fd
    return GradientRow(name, mode, autodiff, fd, bool(ok), "; ".join(problems + ([note] if note else [])))


# ------------------------------------------------------------------ the checker


def check_gradients(
    fn: Callable[..., Any],
    *args: Any,
    reference: Callable[..., Any] | None = None,
    wrt: Sequence[str | int] | None = None,
    order: int = 1,
    dtype: str = "float64",
    rtol_autodiff: float | None = None,
    rtol_fd: float | None = None,
    step: float | None = None,
    seed: int = 0,
    compile: bool = True,
    **kwargs: Any,
) -> GradientCheck:
    """Check ``fn``'s derivatives against autodiff of a reference and finite differences.

    For each float leaf ``x`` of the arguments (positional, keyword, Python floats and
    pytrees: dicts, lists, tuples, dataclasses, flax state; each leaf is a row named by its
    path, e.g. ``params['w']``), with a random direction ``v`` and a random output
    cotangent ``w``:

    * ``reverse``: the VJP ``Jᵀw`` against the reference's VJP (elementwise), and
      ``⟨Jᵀw, v⟩`` against ``⟨w, (f(x+hv) − f(x−hv))/2h⟩``;
    * ``forward``: the JVP ``Jv`` against the reference's JVP and the same central
      difference (a ``custom_vjp`` function has no forward mode: its row says so and passes);
    * ``hvp`` (``order=2``): the forward-over-reverse Hessian-vector product
      ``d/dε Jᵀ(x+εv)w`` against the reference's and against the central difference of the
      gradient ``(Jᵀ(x+hv)w − Jᵀ(x−hv)w)/2h``, as torch's ``gradgradcheck`` does (reverse over
      reverse for a ``custom_vjp``).  A last row, ``(all)``, moves every checked leaf at once,
      so mixed second derivatives are checked too.

    Every comparison reports the global relative error (``max|ours − theirs| / max|theirs|``)
    and the per-element one (each element against its own magnitude, floored at
    ``FLOOR[dtype]`` times the largest), with the index of the worst element.  A row fails
    when an error is above its tolerance, or when any compared quantity holds a NaN or an
    infinity.  Coordinates of ``x`` that are ±inf or NaN (a masked logit) are left out of
    the directions (``v = 0`` there) and of the step size, so the finite differences stay
    finite; the derivatives there are still compared with the reference.  Pick inputs away
    from kinks (hinge corners, ``|r| = delta``), where finite differences are meaningless.

    Args:
      fn: the function to check (any output pytree of float arrays).
      *args: its positional arguments.
      reference: a plainly differentiable version of ``fn``; defaults to ``fn.reference``
        (every jaxloss loss has one).  Without one only finite differences are compared
        and the autodiff columns read "n/a".
      wrt: which arguments to check (indices, names, or leaf paths); default every float leaf.
      order: 1, or 2 to add the ``hvp`` rows.
      dtype: ``"float64"`` (default: arguments are cast to float64, under
        ``jax.enable_x64``), or ``"float32"`` for a function that computes in float32
        inside, with looser default tolerances (:data:`TOLERANCES`).  A float64 check of
        a function whose derivatives come back in float32 raises a TypeError saying so.
      rtol_autodiff, rtol_fd, step: tolerances and the finite-difference step (relative to
        the largest finite magnitude of the leaf); defaults by ``dtype``.
      seed: seed for the random directions.
      compile: evaluate under ``jax.jit`` (fast); pass False for a function that cannot be
        traced with abstract inputs.
      **kwargs: keyword arguments of ``fn``.

    Returns:
      A :class:`GradientCheck`; ``.ok`` is true when every row passes (and there is one).

    Raises:
      TypeError: for an argument leaf that is neither an array, a number nor a string
        (register it as a pytree), and for the float64 / float32 mismatch above.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x, y = jnp.array([0.3, -2.0]), jnp.array([0.0, 0.5])
      >>> jaxloss.check_gradients(jaxloss.huber_loss, x, y, delta=1.0, order=2).ok
      True
    """
    if dtype not in TOLERANCES:
        raise ValueError(f'dtype must be "float64" or "float32", got {dtype!r}.')
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}.")
    defaults = TOLERANCES[dtype]
    rtol_autodiff = defaults["rtol_autodiff"] if rtol_autodiff is None else rtol_autodiff
    rtol_fd = defaults["rtol_fd"] if rtol_fd is None else rtol_fd
    step = defaults["step"] if step is None else step
    has_reference = reference is not None or hasattr(fn, "reference")
    reference = reference or getattr(fn, "reference", None)

    names = _positional_names(fn, len(args))
    leaves, rebuild = _flatten((list(args), dict(kwargs)), "")
    paths = [_leaf_name(path, names) for path, _ in leaves]
    kinds = [_kind(p, leaf) for p, (_, leaf) in zip(paths, leaves)]
    with jax.enable_x64(dtype == "float64"):
        cast = functools.partial(jnp.asarray, dtype=jnp.dtype(dtype))
        values = [cast(leaf) if kind == "float" else leaf for (_, leaf), kind in zip(leaves, kinds)]
        checked = [i for i, kind in enumerate(kinds) if kind == "float" and _wanted(paths[i], wrt, names)]
        call = _Caller(rebuild, values, checked, compile)
        rng = np.random.default_rng(seed)
        xs = [values[i] for i in checked]
        vs = [_direction(rng, x) for x in xs]
        out = jax.eval_shape(call.of(fn), xs)
        _check_output(out, dtype)
        ws = jax.tree_util.tree_map(lambda o: jnp.asarray(rng.standard_normal(o.shape), o.dtype), out)
        hs = [_step(x, step) for x in xs]
        study = _Study(call, fn, reference, xs, vs, ws, hs, FLOOR[dtype], rtol_autodiff, rtol_fd, dtype)
        rows = []
        for k, i in enumerate(checked):
            rows += study.first_order(paths[i], k)
        if order == 2:
            for k, i in enumerate(checked):
                rows.append(study.second_order(paths[i], [k]))
            if len(checked) > 1:
                rows.append(study.second_order("(all)", list(range(len(checked)))))
    return GradientCheck(tuple(rows), rtol_autodiff, rtol_fd, dtype, has_reference)


def _positional_names(fn, count):
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (names + [f"arg{i}" for i in range(len(names), count)])[:count]


def _leaf_name(path: str, names) -> str:
    """``[0][0]['w']`` (positional 0, key w) -> ``params['w']``; ``[1]['delta']`` -> ``delta``."""
    group, _, rest = path[1:].partition("]")
    head, _, tail = rest[1:].partition("]")
    head = names[int(head)] if group == "0" else head.strip("'")
    return head + tail


def _wanted(path, wrt, names) -> bool:
    if wrt is None:
        return True
    root = path.split("[")[0].split(".")[0]
    index = names.index(root) if root in names else None
    return any(w == path or w == root or (index is not None and w == index) for w in wrt)


def _direction(rng, x):
    """A random direction, 0 along the non-finite coordinates of ``x``."""
    v = jnp.asarray(rng.standard_normal(jnp.shape(x)), x.dtype)
    return jnp.where(jnp.isfinite(x), v, 0)


def _step(x, step):
    finite = jnp.abs(jnp.where(jnp.isfinite(x), x, 0))
    return step * max(1.0, float(jnp.max(finite, initial=0.0)))


def _check_output(out, dtype):
    for o in jax.tree_util.tree_leaves(out):
        if not jnp.issubdtype(o.dtype, jnp.floating):
            raise TypeError(f"check_gradients needs a float output, got {o.dtype}.")
        if jnp.dtype(o.dtype).itemsize < jnp.dtype(dtype).itemsize:
            raise TypeError(f"fn returned {o.dtype} for {dtype} inputs: it computes in lower precision inside, "
                            f'so its derivatives cannot be checked in {dtype}; call check_gradients(..., dtype="float32").')


class _Caller:
    """``fn`` as a function of the checked leaves only (the rest closed over)."""

    def __init__(self, rebuild, values, checked, compile):
        self.rebuild, self.values, self.checked, self.compile = rebuild, values, checked, compile

    def of(self, f):
        def call(xs):
            values = list(self.values)
            for i, x in zip(self.checked, xs):
                values[i] = x
            args, kwargs = self.rebuild(values)
            return f(*args, **kwargs)

        return call

    def jit(self, f, **static):
        return jax.jit(f, **static) if self.compile else f


def _vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _ravel(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return leaves[0] if len(leaves) == 1 else jnp.concatenate([jnp.ravel(x) for x in leaves])


def _no_forward_mode(error: Exception) -> bool:
    return isinstance(error, TypeError) and "custom_vjp" in str(error)


def _clear_dtype_errors(dtype):
    """Re-raise JAX's raw dtype complaints about a custom rule as a TypeError that says what to do."""

    def wrap(fn):
        @functools.wraps(fn)
        def wrapped(*a, **k):
            try:
                return fn(*a, **k)
            except (TypeError, ValueError) as e:
                if "dtype" in str(e) and "custom" in str(e).lower() and dtype == "float64":
                    raise TypeError("the function's derivative rule returned a dtype other than its float64 "
                                    "inputs (it computes in float32 inside?): call "
                                    'check_gradients(..., dtype="float32"). JAX said: ' + str(e)) from e
                raise

        return wrapped

    return wrap


@dataclasses.dataclass
class _Study:
    """The derivatives of ``fn`` and its reference at the checked leaves ``xs``."""

    call: _Caller
    fn: Callable
    reference: Callable | None
    xs: list
    vs: list
    ws: Any
    hs: list
    floor: float
    rtol_autodiff: float
    rtol_fd: float
    dtype: str

    def __post_init__(self):
        guard = _clear_dtype_errors(self.dtype)
        jit = self.call.jit
        # Every leaf's cotangent from one VJP (each is the transposed rule's own component).
        self.vjp = guard(jit(lambda f, xs, w: jax.vjp(f, xs)[1](w)[0], static_argnums=0))
        # One program per function for every leaf's JVP (and below, HVP): the direction moves the
        # leaves asked for and is zero on the others, so only values change between rows.
        self.jvp = guard(jit(lambda f, xs, dxs: jax.jvp(f, (xs,), (dxs,))[1], static_argnums=0))
        self.value = jit(lambda f, xs: f(xs), static_argnums=0)
        self.f = self.call.of(self.fn)
        self.g = None if self.reference is None else self.call.of(self.reference)
        self.grad = jit(self._gradient(self.f))  # compiled once: the HVP rows difference it
        self._cotangents: dict[int, list] = {}
        self._hvps: dict[int, tuple[Callable, str]] = {}

    def _along(self, ks):
        """The direction moving the leaves ``ks`` (along ``vs``), zero on the others."""
        return [v if k in ks else jnp.zeros_like(v) for k, v in enumerate(self.vs)]

    def _cotangent(self, f, k):
        """``Jᵀw`` of ``f`` (``self.f`` or ``self.g``) w.r.t. leaf ``k``, all leaves computed once."""
        if id(f) not in self._cotangents:
            self._cotangents[id(f)] = self.vjp(f, self.xs, self.ws)
        return self._cotangents[id(f)][k]

    def _fd(self, k):
        h, v = self.hs[k], self.vs[k]
        plus, minus = self.value(self.f, _put(self.xs, k, self.xs[k] + h * v)), self.value(
            self.f, _put(self.xs, k, self.xs[k] - h * v))
        return jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * h), plus, minus)

    def first_order(self, name, k):
        fd = self._fd(k)
        ct = self._cotangent(self.f, k)
        ref = None if self.g is None else _compare(ct, self._cotangent(self.g, k), self.floor)
        fd_dir = _vdot(self.ws, fd)
        rows = [_judge(name, "reverse", ref, _compare(jnp.vdot(ct, self.vs[k]), fd_dir, self.floor),
                       self.rtol_autodiff, self.rtol_fd)]
        try:
            jv = self.jvp(self.f, self.xs, self._along([k]))
        except TypeError as e:
            if not _no_forward_mode(e):
                raise
            rows.append(GradientRow(name, "forward", None, None, True, "skipped: no forward mode (custom_vjp)"))
            return rows
        ref = None if self.g is None else _compare(_ravel(jv), _ravel(self.jvp(self.g, self.xs, self._along([k]))),
                                                   self.floor)
        rows.append(_judge(name, "forward", ref, _compare(_ravel(jv), _ravel(fd), self.floor),
                           self.rtol_autodiff, self.rtol_fd))
        return rows

    def _gradient(self, f):
        """``xs -> Jᵀw`` for every checked leaf."""
        return lambda xs: jax.vjp(f, xs)[1](self.ws)[0]

    def _hvp(self, f, ks):
        """Forward over reverse along :meth:`_along` ``(ks)``, one compiled program per ``f``."""
        dxs = self._along(ks)
        if id(f) not in self._hvps:
            grad = self._gradient(f)
            forward = self.call.jit(lambda xs, dxs: jax.jvp(grad, (xs,), (dxs,))[1])
            try:
                hvp = forward(self.xs, dxs)
            except TypeError as e:
                if not _no_forward_mode(e):
                    raise
                # A custom_vjp: reverse over reverse, d/dxs ⟨Jᵀw, dxs⟩.
                self._hvps[id(f)] = (self.call.jit(lambda xs, dxs: jax.grad(lambda xs: _vdot(grad(xs), dxs))(xs)),
                                     "reverse over reverse (custom_vjp)")
            else:
                self._hvps[id(f)] = (forward, "")
                return hvp, ""
        hvp_of, note = self._hvps[id(f)]
        return hvp_of(self.xs, dxs), note

    def second_order(self, name, ks):
        guard = _clear_dtype_errors(self.dtype)
        ours, note = guard(self._hvp)(self.f, ks)
        pick = lambda tree: _ravel([tree[k] for k in ks])  # noqa: E731
        ref = None if self.g is None else _compare(pick(ours), pick(guard(self._hvp)(self.g, ks)[0]), self.floor)
        h = min(self.hs[k] for k in ks)
        shift = lambda sign: [x + sign * h * v if k in ks else x  # noqa: E731
                              for k, (x, v) in enumerate(zip(self.xs, self.vs))]
        fd = jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * h), self.grad(shift(1)), self.grad(shift(-1)))
        return _judge(name, "hvp", ref, _compare(pick(ours), pick(fd), self.floor),
                      self.rtol_autodiff, self.rtol_fd, note)


def _put(xs, k, x):
    return [x if j == k else y for j, y in enumerate(xs)]
