"""The checks ``python -m jaxloss verify`` runs on each catalogue entry, and its table."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.catalogue import Entry
from jaxloss.gradients import GradientCheck, check_gradients

# Relative error allowed for losses and gradients computed from low-precision inputs,
# against float64 on the same (already rounded) inputs.  Losses compute in float32;
# gradients come back in the input's dtype, so they carry its rounding.
PRECISION_RTOL = {jnp.float32: 1e-5, jnp.bfloat16: 1e-2, jnp.float16: 2e-3}


def sample(entry: Entry, seed: int = 0):
    return entry.sample(np.random.default_rng(seed))


def value_and_grad(entry: Entry, args, kwargs):
    """The losses and the gradient of their sum w.r.t. the first argument (compiled)."""

    @jax.jit
    def run(x, rest):
        losses, vjp = jax.vjp(lambda x: entry.fn(x, *rest, **kwargs), x)
        return losses, vjp(jnp.ones_like(losses))[0]

    return run(args[0], tuple(args[1:]))


def precision_error(entry: Entry, dtype, seed: int = 0) -> tuple[float, float]:
    """Max relative error of the losses and the gradient for ``dtype`` inputs."""
    args, kwargs = sample(entry, seed)
    low = [a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args]
    losses, grad = value_and_grad(entry, low, kwargs)
    if losses.dtype != jnp.promote_types(dtype, jnp.float32) or grad.dtype != dtype:
        return float("inf"), float("inf")
    with jax.enable_x64(True):
        wide = [a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in low]
        losses64, grad64 = value_and_grad(entry, wide, kwargs)
        rel = lambda a, b: float(jnp.max(jnp.abs(a.astype(jnp.float64) - b)) / max(float(jnp.max(jnp.abs(b))), 1e-30))  # noqa: E731
        return rel(losses, losses64), rel(grad, grad64)


@dataclasses.dataclass(frozen=True)
class Verdict:
    entry: Entry
    gradients: GradientCheck
    precision: dict  # dtype name -> (loss error, gradient error)

    @property
    def precision_ok(self) -> bool:
        return all(max(errs) <= PRECISION_RTOL[getattr(jnp, name)] for name, errs in self.precision.items())

    @property
    def ok(self) -> bool:
        return self.gradients.ok and self.precision_ok


def verify(entry: Entry, seed: int = 0) -> Verdict:
    args, kwargs = sample(entry, seed)
    gradients = check_gradients(entry.fn, *args, **kwargs)
    precision = {d.__name__: precision_error(entry, d, seed) for d in (jnp.float32, jnp.bfloat16)}
    return Verdict(entry, gradients, precision)


def table(verdicts: list[Verdict]) -> str:
    backend = jax.default_backend()
    head = ("| loss | family | backend | dtype | reverse vs autodiff | reverse vs FD | "
            "forward vs autodiff | forward vs FD | f32 / bf16 rel. error | ok |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for v in verdicts:
        g = v.gradients
        forward = [g.max_error("forward", a) for a in ("autodiff", "fd")]
        forward = [f"{e:.1e}" for e in forward] if v.entry.forward_mode else ["via .reference"] * 2
        low = " / ".join(f"{max(v.precision[d]):.1e}" for d in ("float32", "bfloat16"))
        lines.append(f"| {v.entry.name} | {v.entry.family} | {backend} | float64 | "
                     f"{g.max_error('reverse', 'autodiff'):.1e} | {g.max_error('reverse', 'fd'):.1e} | "
                     f"{forward[0]} | {forward[1]} | {low} | {'ok' if v.ok else 'FAIL'} |")
    return "\n".join(lines)
