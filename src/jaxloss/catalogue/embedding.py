"""Catalogue entries: embedding, metric-learning and angular-margin losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import angular, embedding, speaker
from jaxloss.catalogue._common import HUGE, Entry


_PAIRS = (4, 3)  # pairs / triplets, features


def _np_p_distance(u, v, p=2.0, eps=0.0):
    return np.sum(np.abs(u - v + eps) ** p, axis=-1) ** (1 / p)


def _contrastive(rng):
    """Pairs at distances in [0.3, 1.3] or [1.7, 2.8] (margin 1.5, the kink, is 0.2 away) with
    soft labels, so that both terms and every derivative are exercised."""
    x1 = rng.standard_normal(_PAIRS)
    u = rng.standard_normal(_PAIRS)
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    d = np.where(np.arange(_PAIRS[0]) % 2 == 0, rng.uniform(0.3, 1.3, _PAIRS[0]), rng.uniform(1.7, 2.8, _PAIRS[0]))
    x2 = x1 + d[:, None] * u
    y = rng.uniform(0.1, 0.9, _PAIRS[0])
    return (jnp.float32(x1), jnp.float32(x2), jnp.float32(y)), {"margin": jnp.float32(1.5)}


def _extreme_contrastive():
    zeros, hard, soft = jnp.zeros_like(HUGE), jnp.array([1, 0]), jnp.array([0.3, 0.7])
    return [
        ((HUGE, HUGE, hard), {}),  # d = 0 exactly
        ((HUGE, HUGE, soft), {"margin": 2.0}),
        ((HUGE, zeros, hard), {}),
        ((zeros, -HUGE, soft), {}),
        ((zeros, zeros, jnp.array([False, False])), {"margin": 2.0}),
        ((HUGE, zeros, soft), {"where": jnp.zeros(2, bool)}),
    ]


def _triplets(rng):
    """Triplets with p = 3, the distance swap, eps 0.01 and margin 0.5: d(a, n) and d(p, n) at
    least 0.1 apart, the hinge argument at least 0.1 from 0; the first triplet inactive.
    (p is a Python int: a static option, which the gradient checker must not make an array.)"""
    margin, eps, p = 0.5, 0.01, 3
    rows = []
    while len(rows) < _PAIRS[0]:
        a, pos, neg = rng.standard_normal((3, _PAIRS[1]))
        pos, neg = a + 0.8 * pos, a + 1.2 * neg
        d_ap, d_an, d_pn = (_np_p_distance(u, v, p, eps) for u, v in ((a, pos), (a, neg), (pos, neg)))
        hinge = d_ap - min(d_an, d_pn) + margin
        want_active = len(rows) > 0
        if abs(d_an - d_pn) > 0.1 and (hinge > 0.1 if want_active else hinge < -0.1):
            rows.append((a, pos, neg))
    a, pos, neg = (jnp.float32(np.stack(x)) for x in zip(*rows))
    return (a, pos, neg), {"margin": jnp.float32(margin), "eps": jnp.float32(eps), "p": p, "swap": True}


def _extreme_triplets():
    zeros = jnp.zeros_like(HUGE)
    exact = {"eps": 0.0}
    cases = [((HUGE, zeros, -HUGE), {}), ((HUGE, -HUGE, zeros), {"margin": 0.5})]
    for options in ({}, {"p": 1.0}, {"p": 1.5}, {"p": 3.0}, {"swap": True}, {"p": 3.0, "swap": True}):
        cases += [
            ((HUGE, HUGE, zeros), {**exact, **options}),  # d(a, p) = 0
            ((HUGE, zeros, HUGE), {**exact, **options}),  # d(a, n) = 0 (and d(p, n) ≠ 0)
            ((zeros, HUGE, HUGE), {**exact, **options}),  # d(p, n) = 0
            ((zeros, zeros, zeros), {**exact, **options}),  # every distance 0
        ]
    return cases + [((HUGE, zeros, -HUGE), {"where": jnp.zeros(2, bool)})]


def _cosine_pairs(rng):
    """Pairs with labels [1, −1, −1, 1] and margin 0.2; for y = −1 the cosine keeps 0.1 from the
    margin, above it in the second pair (active) and below it in the third (inactive)."""
    margin, rows = 0.2, []
    while len(rows) < _PAIRS[0]:
        x1, x2 = rng.standard_normal((2, _PAIRS[1]))
        cos = x1 @ x2 / np.sqrt((x1 @ x1 + 1e-12) * (x2 @ x2 + 1e-12))
        wanted = {1: cos > margin + 0.1, 2: cos < margin - 0.1}.get(len(rows), True)
        if wanted:
            rows.append((x1, x2, -1 if len(rows) in (1, 2) else 1))
    x1, x2, y = zip(*rows)
    return (jnp.float32(np.stack(x1)), jnp.float32(np.stack(x2)), jnp.int32(y)), {"margin": jnp.float32(margin)}


def _extreme_cosine():
    zeros, y = jnp.zeros_like(HUGE), jnp.array([1, -1])
    return [
        ((HUGE, HUGE, y), {}),  # cos = 1
        ((HUGE, 2 * HUGE, y), {"margin": 0.5}),
        ((HUGE, -HUGE, y), {"margin": -0.5}),  # cos = −1
        ((zeros, HUGE, y), {}),  # a zero vector
        ((zeros, zeros, y), {"margin": -0.5}),
        ((HUGE, -HUGE, jnp.float32(y)), {"margin": 0.5}),  # float ±1 labels, as torch passes them
        ((HUGE, -HUGE, y), {"where": jnp.zeros(2, bool)}),
    ]


# ---------------------------------------------------------------- embedding: batch triplets


_TRIPLET_BATCH = (8, 4)  # examples, features: four classes of two


def _batch_triplets(rng):
    """(embeddings [8, 4], labels [8]) for batch_triplet_loss with margin 1, mining="semihard":
    every label has a positive, and every anchor's distances (to its positive and its
    negatives) keep at least 0.05 apart and their hinge arguments d_ap − d_an + m at least
    0.05 from 0, so no selection flips and no hinge crosses its corner under finite
    differences or low-precision rounding.  Redrawn until it holds."""
    labels = np.repeat(np.arange(_TRIPLET_BATCH[0] // 2), 2)
    rng.shuffle(labels)
    same = labels[:, None] == labels[None, :]
    while True:
        x = 1.5 * rng.standard_normal(_TRIPLET_BATCH)
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        ok = True
        for a in range(len(x)):
            near = np.sort(d[a][np.arange(len(x)) != a])
            d_ap, d_an = d[a][same[a] & (np.arange(len(x)) != a)], d[a][~same[a]]
            hinge = d_ap[:, None] - d_an[None, :] + 1.0
            if np.min(np.diff(near)) < 0.05 or np.min(np.abs(hinge)) < 0.05:
                ok = False
                break
        if ok:
            return (jnp.float32(x), jnp.int32(labels)), {"margin": jnp.float32(1.0), "mining": "semihard"}


def _extreme_batch_triplets():
    labels = jnp.array([0, 0, 1, 1, 2, 2])
    huge = jnp.array([[1e4, -1e4], [1e4, 1e4], [-1e4, 0.0], [0.0, 1e4], [0.5, -1e4], [1e4, 0.0]])
    return [
        ((jnp.zeros((6, 2)), labels), {"mining": "semihard"}),  # identical: every distance 0
        ((jnp.ones((6, 2)), labels), {"mining": "hard"}),
        ((jnp.ones((6, 2)), labels), {"mining": "all"}),
        ((huge, labels), {"mining": "semihard"}),
        ((huge, labels), {"mining": "all", "distance": "squared"}),
        ((huge, labels), {"mining": "hard", "distance": "cosine"}),
        ((huge, jnp.array([0, 1, 2, 3, 0, 4])), {"mining": "semihard"}),  # anchors 1, 2, 3, 5: no positive
        ((huge, jnp.array([0, 0, 0, 0, 0, 0])), {"mining": "hard"}),  # no negative anywhere
        ((huge, labels), {"mining": "semihard", "where": jnp.zeros(6, bool)}),
    ]


# ---------------------------------------------------------------- angular margins

_ANGULAR = (4, 10, 3)  # batch, classes (even: two shards; not a multiple of the batch, which fuzzing resizes), features


def _angular(**options):
    """(embeddings, class_centers, labels) whose label-class cosines are 0.6, 0.3, −0.4, −0.97:
    away from ±1, from ArcFace's fallback threshold cos(π − 0.5) ≈ −0.878 (−0.97 lies past
    it) and from SphereFace's edges cos(jπ/m).  The labels are drawn first, so that no array
    here repeats check_gradients' random directions (a radial direction has derivative 0).
    Scales of 2 to 4 keep the float32 Hessians' rounding (they grow as s²) inside the
    elementwise tolerance of the second-order checks."""

    def sample(rng):
        n, c, d = _ANGULAR
        labels = rng.integers(0, c, size=n)
        centers = rng.standard_normal((c, d)) * rng.uniform(0.5, 2.0, (c, 1))
        c_hat = centers[labels] / np.linalg.norm(centers[labels], axis=-1, keepdims=True)
        other = rng.standard_normal((n, d))
        other -= np.sum(other * c_hat, axis=-1, keepdims=True) * c_hat
        other /= np.linalg.norm(other, axis=-1, keepdims=True)
        cos = np.array([0.6, 0.3, -0.4, -0.97])[:, None]
        embeddings = (cos * c_hat + np.sqrt(1 - cos**2) * other) * rng.uniform(0.5, 2.0, (n, 1))
        return (jnp.float32(embeddings), jnp.float32(centers), jnp.int32(labels)), dict(options)

    return sample


def _extreme_angular(**options):
    """An embedding equal to its centre (cos θ = 1) and one opposite (−1), a zero embedding,
    values of 1e4 along their centre, an ignored class id, blocks of 2 of the 5 classes (the
    last one overlapping) and an empty where mask."""

    def extremes():
        centers = jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [-1.0, -1.0, 0.0],
                             [1e4, -1e4, 1e4]])
        embeddings = jnp.array([[1.0, 0.0, 0.0], [0.0, -6.0, 0.0], [0.0, 0.0, 0.0], [1e4, -1e4, 1e4]])
        labels = jnp.array([0, 1, 2, 4])
        args = (embeddings, centers, labels)
        return [(args, {}), (args, dict(options)), ((-embeddings, centers, labels), dict(options)),
                ((embeddings, centers, labels.at[1].set(-100)), dict(options)),
                ((-embeddings, centers, labels), {**options, "block_size": 2}),
                (args, {**options, "where": jnp.zeros(4, bool)})]

    return extremes


def _shard_class_centers(fn):
    """The class-sharded form of an angular loss: the class centres split in ``shards`` along the
    classes, the embeddings and labels (global ids) on every shard; each shard returns the same
    losses."""

    def shard(args, kwargs, shards, axis_name):
        embeddings, centers, labels = args
        local = lambda c: fn(embeddings, c, labels, class_axis_name=axis_name, **kwargs)  # noqa: E731
        return jax.vmap(local, axis_name=axis_name)(jnp.stack(jnp.split(centers, shards)))[0]

    return shard


# ---------------------------------------------------------------- ge2e

_GE2E_SHAPE = (3, 3, 4)  # speakers, utterances, features


def _ge2e(rng):
    """Speakers around random centres, for kind="contrast": redrawn until every utterance's most
    similar other speaker leads the runner-up by 0.05 in cosine (no tie in the max)."""
    speakers, _, features = _GE2E_SHAPE
    for _ in range(100):
        centres = rng.standard_normal((speakers, 1, features))
        e = jnp.float32(centres + 0.6 * rng.standard_normal(_GE2E_SHAPE))
        cos = np.asarray(speaker._ge2e_parts(e, None).cos)
        others = np.where(np.eye(speakers, dtype=bool)[:, None, :], -np.inf, cos)
        top = np.sort(others, axis=-1)
        if np.all(top[..., -1] - top[..., -2] > 0.05):
            break
    return (e,), {"w": jnp.float32(3.0), "b": jnp.float32(-1.5), "kind": "contrast"}


def _extreme_ge2e():
    a = jnp.array([1.0, 2.0, 3.0])
    basis = jnp.eye(3)
    # Speaker 0 of `along`: one direction at three lengths, so each utterance equals its
    # exclusive centroid in direction (cos = 1).  `against`: a, −a, −a: cos = −1 for the first,
    # and the exclusive centroid of the others is (a − a)/2 = 0.  `zero`: a zero embedding.
    along = jnp.stack([jnp.stack([a, 2 * a, 0.5 * a]), basis])
    against = jnp.stack([jnp.stack([a, -a, -a]), basis])
    zero = jnp.stack([jnp.stack([a, jnp.zeros(3), 2 * a]), basis])
    huge = jnp.array([[[1e4, -1e4, 0.0], [1e4, 1e4, 1.0], [-1e4, 0.0, 1e4]],
                      [[0.0, 1e4, -1e4], [1e4, -1e4, 1e4], [1.0, 0.0, 0.0]]])
    paper = {"w": 10.0, "b": -5.0}
    return [((x,), {**paper, "kind": kind}) for x in (along, against, zero, huge)
            for kind in ("softmax", "contrast")] + [
        ((huge,), {**paper, "where": jnp.zeros(huge.shape[:-1], bool)}),
        ((huge,), {**paper, "kind": "contrast", "where": jnp.zeros(huge.shape[:-1], bool)}),
    ]


# ---------------------------------------------------------------- contrastive


ENTRIES: tuple[Entry, ...] = (
    Entry(embedding.contrastive_loss, "embedding",
          "",
          _contrastive, _extreme_contrastive),
    Entry(embedding.triplet_margin_loss, "embedding",
          "torch triplet_margin_loss; optax.losses.triplet_margin_loss (eps=0, even p)",
          _triplets, _extreme_triplets),
    Entry(embedding.cosine_embedding_loss, "embedding",
          "torch cosine_embedding_loss",
          _cosine_pairs, _extreme_cosine),
    Entry(embedding.batch_triplet_loss, "embedding",
          "pytorch_metric_learning TripletMarginLoss + BatchHardMiner (hard); tfa.losses.triplet_semihard_loss",
          _batch_triplets, _extreme_batch_triplets, coupled=True),
    Entry(angular.angular_margin_loss, "angular",
          "ArcFace paper's combined margin; straight_through=True: InsightFace arcface_torch CombinedMarginLoss",
          _angular(scale=jnp.float32(4.0), m1=2, m2=jnp.float32(0.2), m3=jnp.float32(0.1)),
          _extreme_angular(scale=jnp.float32(8.0), m1=2, m2=jnp.float32(0.2), m3=jnp.float32(0.1)),
          blockwise=True, sharded=True, shard=_shard_class_centers(angular.angular_margin_loss),
          class_ids=(("labels", "class_centers", 0),)),
    Entry(angular.arcface_loss, "angular",
          "pytorch_metric_learning ArcFaceLoss (margin in degrees); straight_through=True: InsightFace arcface_torch",
          _angular(scale=jnp.float32(4.0), margin=jnp.float32(0.5)), _extreme_angular(margin=0.5),
          blockwise=True, sharded=True, shard=_shard_class_centers(angular.arcface_loss),
          class_ids=(("labels", "class_centers", 0),)),
    Entry(angular.cosface_loss, "angular",
          "pytorch_metric_learning CosFaceLoss",
          _angular(scale=jnp.float32(4.0), margin=jnp.float32(0.35)), _extreme_angular(margin=0.35),
          blockwise=True, sharded=True, shard=_shard_class_centers(angular.cosface_loss),
          class_ids=(("labels", "class_centers", 0),)),
    Entry(angular.sphereface_loss, "angular",
          "pytorch_metric_learning SphereFaceLoss (scale = s·‖e‖)",
          _angular(scale=jnp.float32(2.0), margin=4), _extreme_angular(scale=64.0, margin=3),
          blockwise=True, sharded=True, shard=_shard_class_centers(angular.sphereface_loss),
          class_ids=(("labels", "class_centers", 0),)),
    Entry(speaker.ge2e_loss, "angular",
          "",
          _ge2e, _extreme_ge2e, coupled=True),
)
