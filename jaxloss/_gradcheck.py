"""The public gradient checker: :func:`check_gradients` and its report."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class GradientRow:
    """One argument in one mode: errors against autodiff and finite differences."""

    argument: str
    mode: str  # "reverse" or "forward"
    abs_vs_autodiff: float
    rel_vs_autodiff: float
    abs_vs_fd: float
    rel_vs_fd: float
    ok: bool
    note: str = ""


@dataclasses.dataclass(frozen=True)
class GradientCheck:
    """Result of :func:`check_gradients`: one row per float argument and mode."""

    rows: tuple[GradientRow, ...]
    rtol_autodiff: float
    rtol_fd: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def max_error(self, mode: str, against: str) -> float:
        """Largest relative error of ``mode`` against ``"autodiff"`` or ``"fd"``."""
        values = [getattr(r, f"rel_vs_{against}") for r in self.rows if r.mode == mode and not r.note]
        return max(values, default=0.0)

    def __repr__(self) -> str:
        head = f"{'argument':<20} {'mode':<8} {'rel vs autodiff':>16} {'rel vs fd':>12}  ok"
        lines = [f"GradientCheck(ok={self.ok}, rtol autodiff={self.rtol_autodiff:g}, "
                 f"rtol fd={self.rtol_fd:g})", head]
        for r in self.rows:
            if r.note:
                lines.append(f"{r.argument:<20} {r.mode:<8} {r.note}")
            else:
                lines.append(f"{r.argument:<20} {r.mode:<8} {r.rel_vs_autodiff:16.2e} "
                             f"{r.rel_vs_fd:12.2e}  {'yes' if r.ok else 'NO'}")
        return "\n".join(lines)


def _is_float(x) -> bool:
    if isinstance(x, float):
        return True
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating)


def _relative(err, scale):
    return float(err / max(scale, 1e-30)) if err > 0 else 0.0


def check_gradients(
    fn: Callable[..., jax.Array],
    *args,
    reference: Callable[..., jax.Array] | None = None,
    wrt: Sequence[str | int] | None = None,
    rtol_autodiff: float = 1e-6,
    rtol_fd: float = 1e-5,
    step: float = 1e-6,
    seed: int = 0,
    compile: bool = True,
    **kwargs,
) -> GradientCheck:
    """Check ``fn``'s derivatives in both modes against autodiff and finite differences.

    Everything runs in float64.  For each float argument ``x`` (positional, by index, or
    keyword, by name; Python floats included), with a random direction ``v`` and a
    random output cotangent ``w``:

    * reverse mode: the VJP ``Jᵀw`` of ``fn`` is compared elementwise with the VJP of
      ``reference`` (plain autodiff), and ``⟨Jᵀw, v⟩`` with ``⟨w, (f(x+hv) − f(x−hv))/2h⟩``;
    * forward mode: the JVP ``Jv`` is compared with the reference's JVP and with the
      same central difference.

    Errors are relative to the largest magnitude of the quantity compared.  A function
    without forward mode (a ``jax.custom_vjp``) gets a row saying so, which does not
    fail the check.  Pick inputs away from kinks (hinge corners, ``|r| = delta``) where
    finite differences are meaningless.

    Args:
      fn: the function to check; it must compute in its inputs' dtype (float64 here).
      *args: positional arguments of ``fn``.
      reference: a plainly differentiable version of ``fn``; defaults to
        ``fn.reference`` (every jaxloss loss has one), else ``fn`` itself, in which case
        only the finite-difference comparison is informative.
      wrt: which arguments to check (indices or names); default every float argument.
      rtol_autodiff, rtol_fd: relative tolerances for the two comparisons.
      step: finite-difference step, relative to the largest magnitude of the argument.
      seed: seed for the random directions.
      compile: evaluate under ``jax.jit`` (fast); pass False for a function that cannot
        be traced with abstract inputs.
      **kwargs: keyword arguments of ``fn``.

    Returns:
      A :class:`GradientCheck`; ``.ok`` is true when every row passes.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x, y = jnp.array([0.3, -2.0]), jnp.array([0.0, 0.5])
      >>> jaxloss.check_gradients(jaxloss.huber_loss, x, y, delta=1.0).ok
      True
    """
    reference = reference or getattr(fn, "reference", fn)
    with jax.enable_x64(True):
        to64 = lambda x: jnp.asarray(x, jnp.float64) if _is_float(x) else x  # noqa: E731
        args = [to64(a) for a in args]
        kwargs = {k: to64(v) for k, v in kwargs.items()}
        keys = [i for i, a in enumerate(args) if _is_float(a)] + [k for k, v in kwargs.items() if _is_float(v)]
        positional = _positional_names(fn, len(args))
        label = lambda k: positional[k] if isinstance(k, int) else k  # noqa: E731
        if wrt is not None:
            keys = [k for k in keys if k in wrt or label(k) in wrt]
        rng = np.random.default_rng(seed)
        rows = []
        for key in keys:
            x = args[key] if isinstance(key, int) else kwargs[key]

            def partial(f, x, key=key):
                if isinstance(key, int):
                    return f(*args[:key], x, *args[key + 1:], **kwargs)
                return f(*args, **{**kwargs, key: x})

            f = functools.partial(partial, fn)
            g = functools.partial(partial, reference)
            name = label(key)
            rows += _check_one(name, f, g, x, rng, step, rtol_autodiff, rtol_fd, compile)
    return GradientCheck(tuple(rows), rtol_autodiff, rtol_fd)


def _positional_names(fn, count):
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (names + [f"arg{i}" for i in range(len(names), count)])[:count]


def _check_one(name, f, g, x, rng, step, rtol_autodiff, rtol_fd, compile):
    def maybe_jit(fn, **static):
        return jax.jit(fn, **static) if compile else fn

    out = jax.eval_shape(f, x)
    v = jnp.asarray(rng.standard_normal(jnp.shape(x)))
    w = jnp.asarray(rng.standard_normal(out.shape))
    h = step * max(1.0, float(jnp.max(jnp.abs(x))))
    g_compiled = maybe_jit(g)
    fd = (g_compiled(x + h * v) - g_compiled(x - h * v)) / (2 * h)

    def row(mode, ours, theirs, ours_dir, fd_dir):
        abs_ad = float(jnp.max(jnp.abs(ours - theirs), initial=0.0))
        rel_ad = _relative(abs_ad, float(jnp.max(jnp.abs(theirs), initial=0.0)))
        abs_fd = float(jnp.max(jnp.abs(ours_dir - fd_dir), initial=0.0))
        rel_fd = _relative(abs_fd, float(jnp.max(jnp.abs(fd_dir), initial=0.0)))
        finite = bool(jnp.all(jnp.isfinite(ours)))
        return GradientRow(name, mode, abs_ad, rel_ad, abs_fd, rel_fd,
                           finite and rel_ad <= rtol_autodiff and rel_fd <= rtol_fd)

    vjp = maybe_jit(lambda fn, x, w: jax.vjp(fn, x)[1](w)[0], static_argnums=0)
    ct, ct_ref = vjp(f, x, w), vjp(g, x, w)
    rows = [row("reverse", ct, ct_ref, jnp.vdot(ct, v), jnp.vdot(w, fd))]
    jvp = maybe_jit(lambda fn, x, v: jax.jvp(fn, (x,), (v,))[1], static_argnums=0)
    try:
        jv = jvp(f, x, v)
    except TypeError as e:  # custom_vjp functions have no forward mode
        if "custom_vjp" not in str(e):
            raise
        rows.append(GradientRow(name, "forward", 0.0, 0.0, 0.0, 0.0, True, "skipped: no forward mode (custom_vjp)"))
        return rows
    rows.append(row("forward", jv, jvp(g, x, v), jv, fd))
    return rows
