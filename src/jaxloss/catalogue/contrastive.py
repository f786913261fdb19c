"""Catalogue entries: in-batch contrastive losses between two sides (blockwise and sharded forms)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import contrastive, paired_contrastive
from jaxloss.catalogue._common import Entry, with_negatives

_PAIRS = (6, 3)  # examples (even: the sharded check splits them in two), features


def _two_sides(**options):
    """(rows, columns) ``[6, 3]`` with each pair correlated; float options as float32 arrays.
    (Shifted, so that no row is parallel to the checker's random direction, drawn from the
    same seed: losses that normalise their inputs are flat along a row.)"""

    def sample(rng):
        x, y = rng.standard_normal(_PAIRS) + 0.3, rng.standard_normal(_PAIRS)
        kwargs = {k: v if isinstance(v, bool) else jnp.float32(v) for k, v in options.items()}
        return (jnp.float32(x), jnp.float32(y + 0.5 * x)), kwargs

    return sample


def _shard_with_negatives(fn, sharded=()):
    """The sharded form of a loss with extra negatives: the batch split into ``shards``, and
    the keyword arguments ``sharded`` too (negatives sharded as the batch is: multiple-negatives
    ranking); the others the same on every shard (queues: InfoNCE, CLIP)."""

    def shard(args, kwargs, shards, axis_name):
        split = lambda a: None if a is None else a.reshape((shards, -1) + a.shape[1:])  # noqa: E731
        names = ("where",) + tuple(sharded)
        local_kwargs = {k: split(kwargs[k]) for k in names if k in kwargs}
        rest = {k: v for k, v in kwargs.items() if k not in local_kwargs}

        def local(args, local_kwargs):
            return fn(*args, axis_name=axis_name, **local_kwargs, **rest)

        return jax.vmap(local, axis_name=axis_name)(tuple(map(split, args)), local_kwargs).reshape(-1)

    return shard


def _grouped(rng):
    embeddings = jnp.float32(rng.standard_normal(_PAIRS) + 0.3)
    return (embeddings, jnp.int32([0, 1, 0, 1, 0, 1])), {"temperature": jnp.float32(0.5)}


_HUGE = jnp.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [0.0, 0.0, 0.0], [-1e4, 1.0, 1.0]])


def _extreme_two_sides(**options):
    def extremes():
        return [((_HUGE, _HUGE), options),  # identical sides, huge logits, a zero vector
                ((_HUGE, -_HUGE), options),
                ((_HUGE, _HUGE[::-1]), {**options, "block_size": 3}),
                ((_HUGE, _HUGE), {**options, "where": jnp.zeros(4, bool)})]

    return extremes


def _extreme_negatives(**options):
    """The extremes of the pairs, with extra negatives: huge ones, per-row ones, masked ones."""

    def extremes():
        own = jnp.stack([_HUGE[::-1], -_HUGE], axis=1)  # [4, 2, 3]
        return _extreme_two_sides(**options)() + [
            ((_HUGE, _HUGE), {**options, "negatives": _HUGE[1:]}),
            ((_HUGE, _HUGE), {**options, "negatives": own, "block_size": 3}),
            ((_HUGE, _HUGE), {**options, "negatives": own, "negatives_where": jnp.zeros((4, 2), bool)}),
            ((_HUGE, _HUGE), {**options, "negatives": -_HUGE, "negatives_where": jnp.zeros(4, bool),
                              "where": jnp.zeros(4, bool)})]

    return extremes


def _extreme_queues(**options):
    """The extremes of the pairs, with extra negatives on both sides (CLIP): huge ones, and
    every one masked."""

    def extremes():
        masked = {"where": jnp.zeros(4, bool), "text_negatives_where": jnp.zeros(3, bool),
                  "image_negatives_where": jnp.zeros(4, bool)}
        return _extreme_two_sides(**options)() + [
            ((_HUGE, _HUGE), {**options, "text_negatives": _HUGE[1:], "image_negatives": -_HUGE}),
            ((_HUGE, -_HUGE), {**options, "text_negatives": -_HUGE, "image_negatives": _HUGE[::-1], "block_size": 3}),
            ((_HUGE, _HUGE), {**options, "text_negatives": _HUGE[1:], "image_negatives": _HUGE, **masked})]

    return extremes


def _extreme_info_nce(**options):
    """The extremes of the pairs, and positive keys given by labels, one of them ignored."""

    def extremes():
        labels = {**options, "labels": jnp.int32([2, -100, 0, 1])}
        return _extreme_negatives(**options)() + [((_HUGE, _HUGE[:3]), labels),
                                                  ((_HUGE, -_HUGE[1:]), {**labels, "block_size": 2})]

    return extremes


def _extreme_grouped():
    labels = jnp.int32([0, 0, 1, 2])  # anchors 2 and 3 have no positive
    return [((_HUGE, labels), {}), ((_HUGE, labels), {"temperature": 0.07, "block_size": 3}),
            ((_HUGE, jnp.int32([0, 0, 0, 0])), {}),  # no negatives
            ((_HUGE, labels), {"where": jnp.zeros(4, bool)})]


# ---------------------------------------------------------------- segmentation


ENTRIES: tuple[Entry, ...] = (
    Entry(contrastive.info_nce_loss, "contrastive",
          "",
          with_negatives(_two_sides(temperature=1.0)), _extreme_info_nce(temperature=0.07),
          blockwise=True, sharded=True, coupled=True, class_ids=(("labels", "keys", 0),),
          shard=_shard_with_negatives(contrastive.info_nce_loss)),
    Entry(paired_contrastive.multiple_negatives_ranking_loss, "contrastive",
          "sentence-transformers MultipleNegatives(Symmetric)RankingLoss (hard negatives: (anchor, positive, "
          "negative) triplets)",
          with_negatives(_two_sides(scale=2.0, symmetric=True)), _extreme_negatives(),
          blockwise=True, sharded=True, coupled=True,
          shard=_shard_with_negatives(paired_contrastive.multiple_negatives_ranking_loss,
                                      ("negatives", "negatives_where"))),
    Entry(contrastive.ntxent_loss, "contrastive",
          "optax.losses.ntxent (mean over positive pairs)",
          _grouped, _extreme_grouped,
          blockwise=True, sharded=True, coupled=True),
    Entry(paired_contrastive.clip_loss, "contrastive",
          "open_clip ClipLoss",
          with_negatives(_two_sides(logit_scale=0.7), text_negatives=2, image_negatives=4),
          _extreme_queues(logit_scale=4.6), blockwise=True, sharded=True, coupled=True,
          shard=_shard_with_negatives(paired_contrastive.clip_loss)),
    Entry(contrastive.sigmoid_contrastive_loss, "contrastive",
          "",
          _two_sides(temperature=2.0, bias=-1.0), _extreme_two_sides(temperature=10.0, bias=-10.0),
          blockwise=True, sharded=True, coupled=True),
)
