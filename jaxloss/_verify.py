"""The checks ``python -m jaxloss verify`` runs on each catalogue entry, and its table."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _math
from jaxloss.catalogue import Entry
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
    """Largest difference over the largest magnitude, across (losses, gradient) pairs."""
    return max(float(jnp.max(jnp.abs(a - b)) / max(float(jnp.max(jnp.abs(b))), 1e-30)) for a, b in zip(ours, theirs))


def sharded_value_and_grad(entry: Entry, args, kwargs, shards: int = 2):
    """:func:`value_and_grad` of the sharded form: the batch split into ``shards`` along its
    first axis and mapped with ``jax.vmap(..., axis_name=)``, which runs the same
    collectives as ``shard_map`` on one device.  A per-batch loss gives every shard the
    whole batch's loss: their mean is that loss (and its gradient the whole batch's).
    An entry whose sharded form splits something else says how with ``entry.shard``."""
    split = lambda a: a.reshape((shards, -1) + a.shape[1:])  # noqa: E731

    @jax.jit
    def run(x, rest):
        def local(x, *rest):
            return entry.fn(x, *rest, axis_name="shards", **kwargs)

        def losses_of(x):
            if entry.shard is not None:
                return entry.shard((x, *rest), kwargs, shards, "shards")
            losses = jax.vmap(local, axis_name="shards")(split(x), *map(split, rest))
            return jnp.mean(losses) if entry.per_batch else losses.reshape(-1)

        losses, vjp = jax.vjp(losses_of, x)
        return losses, vjp(jnp.ones_like(losses))[0]

    return run(args[0], tuple(args[1:]))


def form_errors(entry: Entry, seed: int = 0) -> dict[str, float]:
    """Relative difference from the dense form (losses and gradient) of the blockwise form
    (``block_size=2``) and of the sharded form (two shards), where the entry has them."""
    args, kwargs = sample(entry, seed)
    dense = value_and_grad(entry, args, kwargs)
    errors = {}
    if entry.blockwise:
        errors["blockwise"] = _relative(value_and_grad(entry, args, {**kwargs, "block_size": 2}), dense)
    if entry.sharded:
        errors["sharded"] = _relative(sharded_value_and_grad(entry, args, kwargs), dense)
    return errors


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


@dataclasses.dataclass(frozen=True)
class Verdict:
    entry: Entry
    gradients: GradientCheck
    precision: dict  # dtype name -> (loss error, gradient error)
    forms: dict  # "blockwise" / "sharded" -> relative difference from the dense form

    @property
    def precision_ok(self) -> bool:
        return all(max(errs) <= PRECISION_RTOL[getattr(jnp, name)] for name, errs in self.precision.items())

    @property
    def ok(self) -> bool:
        return self.gradients.ok and self.precision_ok and all(e <= FORMS_RTOL for e in self.forms.values())


def verify(entry: Entry, seed: int = 0) -> Verdict:
    args, kwargs = sample(entry, seed)
    gradients = check_gradients(entry.fn, *args, **kwargs)
    precision = {d.__name__: precision_error(entry, d, seed) for d in (jnp.float32, jnp.bfloat16)}
    return Verdict(entry, gradients, precision, form_errors(entry, seed))


def table(verdicts: list[Verdict]) -> str:
    backend = jax.default_backend()
    head = ("| loss | family | backend | dtype | reverse vs autodiff | reverse vs FD | "
            "forward vs autodiff | forward vs FD | f32 / bf16 rel. error | blockwise / sharded vs dense | ok |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for v in verdicts:
        g = v.gradients
        forward = [g.max_error("forward", a) for a in ("autodiff", "fd")]
        forward = [f"{e:.1e}" for e in forward] if v.entry.forward_mode else ["via .reference"] * 2
        low = " / ".join(f"{max(v.precision[d]):.1e}" for d in ("float32", "bfloat16"))
        forms = " / ".join(f"{v.forms[f]:.1e}" if f in v.forms else "–" for f in ("blockwise", "sharded"))
        lines.append(f"| {v.entry.name} | {v.entry.family} | {backend} | float64 | "
                     f"{g.max_error('reverse', 'autodiff'):.1e} | {g.max_error('reverse', 'fd'):.1e} | "
                     f"{forward[0]} | {forward[1]} | {low} | {forms} | {'ok' if v.ok else 'FAIL'} |")
    return "\n".join(lines)
