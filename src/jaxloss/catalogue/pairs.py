"""Catalogue entries: Pair-based metric-learning losses (pairs.py): a batch of embeddings and class labels."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxloss import pairs, supcon
from jaxloss.catalogue._common import Entry, with_negatives

_LABELS = np.array([0, 1, 2, 0, 1, 0, 1, 3])  # anchors 2 and 7 have no positive
_SHAPE = (8, 4)  # examples, features


def _batch(away=None, **options):
    """(embeddings [8, 4], labels [8]) with the options as float32 scalars (booleans and strings
    as they are).  Shifted off the origin, so that no row is parallel to the checker's random
    direction (a normalised row is flat along itself).  ``away(cosines, same)`` -> bool:
    redrawn until the loss's kinks (relu corners, mined selections) are at least 0.05 away."""

    def sample(rng):
        while True:
            x = rng.standard_normal(_SHAPE) + 0.3
            x_hat = x / np.linalg.norm(x, axis=-1, keepdims=True)
            if away is None or away(x_hat @ x_hat.T, _LABELS[:, None] == _LABELS[None, :]):
                break
        kwargs = {k: v if isinstance(v, bool | str) else jnp.float32(v) for k, v in options.items()}
        return (jnp.float32(x), jnp.int32(_LABELS)), kwargs

    return sample


def _mining_away(epsilon):
    """Every pair at least 0.05 from the multi-similarity miner's thresholds."""

    def away(s, same):
        eye = np.eye(len(s), dtype=bool)
        pos, neg = same & ~eye, ~same
        hardest_neg = np.max(np.where(neg, s, -np.inf), axis=-1, keepdims=True)
        easiest_pos = np.min(np.where(pos, s, np.inf), axis=-1, keepdims=True)
        gaps = np.concatenate([np.abs(s - epsilon - hardest_neg)[pos], np.abs(s + epsilon - easiest_pos)[neg]])
        return bool(np.all(gaps[np.isfinite(gaps)] > 0.05))

    return away


def _circle_away(margin):
    """Every negative's cosine at least 0.05 from −margin, the corner of its weight."""
    return lambda s, same: bool(np.all(np.abs(s + margin)[~same] > 0.05))


def _lifted_away(neg_margin, pos_margin):
    """Every anchor (with a positive) at least 0.05 from the corner of the hinge."""

    def away(s, same):
        d = np.sqrt(np.maximum(2 - 2 * s, 0))
        pos, neg = same & ~np.eye(len(s), dtype=bool), ~same
        lse = lambda z, keep: np.log(np.sum(np.where(keep, np.exp(z), 0.0), axis=-1))  # noqa: E731
        with np.errstate(divide="ignore"):  # the anchor without a positive: −inf, left out below
            total = lse(d - pos_margin, pos) + lse(neg_margin - d, neg)
        return bool(np.all(np.abs(total[pos.any(-1)]) > 0.05))

    return away


_HUGE = jnp.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [0.0, 0.0, 0.0], [-1e4, 1.0, 1.0], [1e4, 0.0, -1e4],
                   [1.0, 2.0, 3.0]])


def _extremes(**options):
    """Huge values, a zero vector and duplicates (distance 0); anchors without a positive; a
    batch with one label (no negatives); an empty mask."""

    def extremes():
        labels = jnp.int32([0, 0, 1, 1, 0, 2])
        cases = [((_HUGE, labels), options), ((-_HUGE, jnp.int32([0, 1, 2, 3, 4, 5])), options),
                 ((_HUGE, jnp.zeros(6, jnp.int32)), options), ((jnp.zeros((6, 3)), labels), options),
                 ((jnp.ones((6, 3)), labels), options),
                 ((_HUGE, labels), {**options, "where": jnp.zeros(6, bool)})]
        return cases + [((_HUGE, labels), {**options, "distance": "euclidean"})] if "distance" in options else cases

    return extremes


def _extremes_with_queue(**options):
    """The extremes, and extra negatives: huge ones, duplicates of examples (distance 0), a zero
    vector, all masked; the only negatives of a batch with one label."""

    def extremes():
        queue = {**options, "negatives": _HUGE[::-1]}
        return _extremes(**options)() + [
            ((_HUGE, jnp.int32([0, 0, 1, 1, 0, 2])), queue),
            ((_HUGE, jnp.zeros(6, jnp.int32)), {**queue, "block_size": 4}),
            ((_HUGE, jnp.int32([0, 0, 1, 1, 0, 2])), {**queue, "negatives_where": jnp.zeros(6, bool)}),
            ((_HUGE, jnp.int32([0, 0, 1, 1, 0, 2])), {**queue, "distance": "euclidean"})]

    return extremes


ENTRIES: tuple[Entry, ...] = (
    Entry(supcon.supervised_contrastive_loss, "metric-learning",
          "pytorch_metric_learning SupConLoss",
          with_negatives(_batch(temperature=0.5), negatives=3),
          _extremes_with_queue(temperature=0.1, distance="cosine"),
          coupled=True, blockwise=True, sharded=True),
    Entry(pairs.multi_similarity_loss, "metric-learning",
          "pytorch_metric_learning MultiSimilarityLoss (+ MultiSimilarityMiner: mining=True)",
          _batch(_mining_away(0.1), alpha=2.0, beta=5.0, base=0.5, mining=True, epsilon=0.1),
          _extremes(alpha=2.0, beta=50.0, base=0.5, mining=True, distance="cosine"), coupled=True),
    Entry(pairs.circle_loss, "metric-learning",
          "pytorch_metric_learning CircleLoss",
          _batch(_circle_away(0.4), margin=0.4, gamma=2.0), _extremes(margin=0.25, gamma=256.0), coupled=True),
    Entry(pairs.lifted_structure_loss, "metric-learning",
          "pytorch_metric_learning GeneralizedLiftedStructureLoss",
          _batch(_lifted_away(1.2, 0.1), neg_margin=1.2, pos_margin=0.1),
          _extremes(neg_margin=1.0, pos_margin=0.0, distance="cosine"), coupled=True),
    Entry(pairs.npair_loss, "metric-learning",
          "pytorch_metric_learning NPairsLoss",
          _batch(), _extremes(distance="cosine"), coupled=True),
)
