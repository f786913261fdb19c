"""What a catalogue entry holds, and the sample helpers several families share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from jaxloss.gradients import Loss

Inputs = tuple[tuple, dict]


@dataclasses.dataclass(frozen=True)
class Entry:
    """A public loss and what the shared checks need to know about it.

    Attributes:
      fn: the public loss (with ``fn.reference``).
      family: the module it belongs to, as the docs group them.
      matches: the optax / PyTorch functions it agrees with (or "").
      sample: ``sample(rng) -> (args, kwargs)``: float32 inputs away from kinks.  The
        positional arguments are arrays with a leading batch axis; keyword arguments
        are options shared by the batch.
      extremes: ``extremes() -> [(args, kwargs), ...]``: inputs at the edges (huge
        values, exact zeros, empty masks) whose values and gradients must be finite.
      forward_mode: false for a ``custom_vjp`` loss, whose forward mode goes through
        ``fn.reference``.
      blockwise, sharded: whether the loss has a blockwise and a sharded form.
      coupled: whether the examples interact (in-batch negatives, mining, centroids), so
        that ``where`` leaves a masked example out of the others' losses too: the unmasked
        losses are those of the batch without it.
      pixel_where: whether ``where`` masks positions of the inputs (the pixels
        ``args[0].shape[:-1]`` of a segmentation loss) instead of examples: a masked pixel
        gets derivative 0 and the loss equals that of the example without the pixel.
      class_ids: the integer arguments that hold class ids, as ``(argument, counted_by,
        axis)``: the valid ids lie in ``[0, counted_by.shape[axis])``; ``axis`` may be a
        function of the bound arguments (by name) where an option moves it.  ``jaxloss.checks``
        checks them at run time (an id equal to a ``blank_id`` option is invalid too, and
        positions whose ``label_paddings`` are set are skipped); ``verify --inputs`` passes
        them as floats.
      per_batch: whether the loss is defined on the whole batch only and returns one
        number (Barlow Twins, VICReg): ``where`` then removes masked examples from the
        batch statistics, and the per-example checks do not apply.
      shard: for a sharded form that does not split the examples (the vocabulary-parallel
        cross-entropy splits the classes), ``shard(args, kwargs, shards, axis_name) ->
        losses``: the losses of the dense ``args`` computed by the sharded form under
        ``jax.vmap(..., axis_name=axis_name)`` over ``shards`` pieces; None: split every
        argument's leading (example) axis.
    """

    fn: Loss
    family: str
    matches: str
    sample: Callable[[np.random.Generator], Inputs]
    extremes: Callable[[], list[Inputs]]
    forward_mode: bool = True
    blockwise: bool = False
    sharded: bool = False
    coupled: bool = False
    pixel_where: bool = False
    class_ids: tuple[tuple[str, str, int | Callable[[dict], int]], ...] = ()
    per_batch: bool = False
    shard: Callable | None = None

    @property
    def name(self) -> str:
        return self.fn.__name__


# ---------------------------------------------------------------- sample inputs

SHAPE = (4, 3)
HUGE = jnp.array([[-1e4, -1.0, 0.0], [1.0, 1e4, 0.5]], jnp.float32)


def away_from_kinks(rng, kinks, shape=SHAPE):
    """Values of both signs whose magnitudes keep at least 0.1 from every kink."""
    edges = np.sort(np.unique(np.concatenate([[0.0], np.abs(kinks), [3.0]])))
    gaps = [(lo + 0.1, hi - 0.1) for lo, hi in zip(edges[:-1], edges[1:]) if hi - lo > 0.3]
    pick = rng.integers(len(gaps), size=shape)
    lo, hi = np.array(gaps).T
    magnitude = rng.uniform(lo[pick], hi[pick])
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


def with_options(sample, **options):
    """``sample`` with ``options`` added to its keyword arguments."""

    def sampled(rng):
        args, kwargs = sample(rng)
        return args, {**kwargs, **options}

    return sampled


# ---------------------------------------------------------------- logits over classes

CLASSES = (4, 5)  # batch, classes


def with_negatives(sample, **counts):
    """``sample`` with extra negatives: for each ``name=count`` (default ``negatives=4``),
    ``[count, D]`` of them (``D`` the first argument's last axis) and their mask
    ``{name}_where`` (the last one masked out), drawn after the sample in that order."""
    counts = counts or {"negatives": 4}

    def sampled(rng):
        args, kwargs = sample(rng)
        for name, count in counts.items():
            kwargs = {**kwargs, name: jnp.float32(rng.standard_normal((count, args[0].shape[-1])) - 0.3),
                      f"{name}_where": jnp.arange(count) < count - 1}
        return args, kwargs

    return sampled


def class_logits(rng, shape=CLASSES):
    return jnp.float32(2 * rng.standard_normal(shape))


def class_ids(rng, shape=CLASSES):
    return jnp.int32(rng.integers(0, shape[-1], size=shape[:-1]))


def soft_targets(rng, shape=CLASSES):
    return jnp.float32(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]))


HUGE_LOGITS = jnp.array([[1e4, -1e4, 0.0, -jnp.inf], [-1e4, 1e4, 1e4, -jnp.inf], [0.0, 0.0, 0.0, -jnp.inf]])
LABELS_AWAY_FROM_MASKED = jnp.array([1, 0, 2])
