"""The catalogue: one entry per public loss.

Each entry names the loss, its family and what it matches in optax / PyTorch, and
knows how to make sample inputs (float32, away from the points where the loss has a
kink, so that finite differences mean something) and extreme inputs (values up to
1e4, exact zeros, empty masks).  ``tests/test_catalogue.py`` and
``python -m jaxloss verify`` run every entry through the same checks, so a new loss is
tested by adding its entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import angular, classification, contrastive, embedding, multiclass, regression
from jaxloss import segmentation
from jaxloss import sequence
# <<< new module imports >>>
from jaxloss import fused
from jaxloss import selfsupervised
from jaxloss import probabilistic

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

    fn: Callable
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

_SHAPE = (4, 3)
_HUGE = jnp.array([[-1e4, -1.0, 0.0], [1.0, 1e4, 0.5]], jnp.float32)


def _away_from_kinks(rng, kinks, shape=_SHAPE):
    """Values of both signs whose magnitudes keep at least 0.1 from every kink."""
    edges = np.sort(np.unique(np.concatenate([[0.0], np.abs(kinks), [3.0]])))
    gaps = [(lo + 0.1, hi - 0.1) for lo, hi in zip(edges[:-1], edges[1:]) if hi - lo > 0.3]
    pick = rng.integers(len(gaps), size=shape)
    lo, hi = np.array(gaps).T
    magnitude = rng.uniform(lo[pick], hi[pick])
    return magnitude * rng.choice([-1.0, 1.0], size=shape)


def _residual_pair(kinks=()):
    """(predictions, targets) whose residuals keep away from ``kinks``."""

    def sample(rng):
        targets = rng.standard_normal(_SHAPE)
        predictions = targets + _away_from_kinks(rng, kinks)
        return (jnp.float32(predictions), jnp.float32(targets)), {}

    return sample


def _with_options(sample, **options):
    def with_options(rng):
        args, kwargs = sample(rng)
        return args, {**kwargs, **options}

    return with_options


def _margin_scores(kinks=(1.0,)):
    """(scores, labels in {0, 1}) with margins y·s away from ``kinks``."""

    def sample(rng):
        labels = rng.integers(0, 2, size=_SHAPE)
        margins = _away_from_kinks(rng, kinks)
        return (jnp.float32(margins * np.where(labels > 0, 1, -1)), jnp.int32(labels)), {}

    return sample


def _soft_binary(rng):
    logits = 2 * rng.standard_normal(_SHAPE)
    labels = rng.uniform(size=_SHAPE)
    return (jnp.float32(logits), jnp.float32(labels)), {
        "pos_weight": jnp.float32(rng.uniform(0.5, 2.0, size=_SHAPE[-1])),
        "label_smoothing": jnp.float32(0.1),
    }


def _ranking(rng):
    """(x1, x2, y) with y·(x1 − x2) − margin away from 0, the corner."""
    y = rng.choice([-1, 1], size=_SHAPE)
    x2 = rng.standard_normal(_SHAPE)
    x1 = x2 + y * (0.3 + _away_from_kinks(rng, ()))
    return (jnp.float32(x1), jnp.float32(x2), jnp.int32(y)), {"margin": jnp.float32(0.3)}


_CLASSES = (4, 5)  # batch, classes


def _class_logits(rng, shape=_CLASSES):
    return jnp.float32(2 * rng.standard_normal(shape))


def _class_ids(rng, shape=_CLASSES):
    return jnp.int32(rng.integers(0, shape[-1], size=shape[:-1]))


def _soft_targets(rng, shape=_CLASSES):
    return jnp.float32(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]))


def _cross_entropy_ids(rng):
    return (_class_logits(rng), _class_ids(rng)), {
        "label_smoothing": jnp.float32(0.1),
        "z_loss": jnp.float32(0.05),
        "class_weights": jnp.float32(rng.uniform(0.5, 2.0, _CLASSES[-1])),
    }


def _cross_entropy_probabilities(rng):
    return (_class_logits(rng), _soft_targets(rng)), {"label_smoothing": jnp.float32(0.05)}


def _nll(rng):
    log_probs = jax.nn.log_softmax(_class_logits(rng))
    return (log_probs, _class_ids(rng)), {"class_weights": jnp.float32(rng.uniform(0.5, 2.0, _CLASSES[-1]))}


# Logits of ±1e4, a class masked with −inf (never the label), an empty where mask.
_HUGE_LOGITS = jnp.array([[1e4, -1e4, 0.0, -jnp.inf], [-1e4, 1e4, 1e4, -jnp.inf], [0.0, 0.0, 0.0, -jnp.inf]])
_LABELS_AWAY_FROM_MASKED = jnp.array([1, 0, 2])


def _extreme_classes():
    return [
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"class_weights": jnp.array([1.0, 2.0, 0.0, 1.0])}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((_HUGE_LOGITS, jax.nn.softmax(_HUGE_LOGITS)), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"z_loss": 1e-4}),
    ]


def _extreme_nll():
    return [((jax.nn.log_softmax(x), y), kw) for (x, y), kw in _extreme_classes()[:3]]


def _focal_binary(rng):
    """Soft labels inside (0, 1) (the label derivative's formula is one-sided at 0 and 1)."""
    logits = 2 * rng.standard_normal(_SHAPE)
    labels = rng.uniform(0.05, 0.95, size=_SHAPE)
    return (jnp.float32(logits), jnp.float32(labels)), {
        "alpha": jnp.float32(rng.uniform(0.2, 0.8, size=_SHAPE[-1])),
        "gamma": jnp.float32(1.5),
    }


def _extreme_focal_binary():
    labels = jnp.array([[1, 0, 1], [0, 1, 1]])
    return [
        ((_HUGE, labels), {}),
        ((-_HUGE, labels), {"gamma": 0.5}),
        # Hard float labels: p_t → 1 at ±1e4 with γ < 1, and the label derivative at 0 and 1.
        ((_HUGE, labels.astype(jnp.float32)), {"gamma": 0.5}),
        ((_HUGE, jnp.full(_HUGE.shape, 0.3)), {"alpha": None, "gamma": 0.5}),
        ((_HUGE, labels), {"where": jnp.zeros(_HUGE.shape, bool)}),
    ]


def _focal_classes(rng):
    return (_class_logits(rng), _class_ids(rng)), {
        "alpha": jnp.float32(rng.uniform(0.5, 2.0, _CLASSES[-1])),
        "gamma": jnp.float32(1.5),
    }


def _extreme_focal_classes():
    return [
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"alpha": jnp.array([1.0, 2.0, 0.0, 1.0]), "gamma": 0.5}),
        ((_HUGE_LOGITS, jnp.array([0, 1, 2])), {"gamma": 0.5}),  # row 0: p_y → 1 with γ < 1
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
    ]


def _poly1_probabilities(rng):
    return (_class_logits(rng), _soft_targets(rng)), {"epsilon": jnp.float32(2.0)}


def _extreme_poly1():
    return [
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"epsilon": 2.0}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"epsilon": -1.0}),
        ((_HUGE_LOGITS, jax.nn.softmax(_HUGE_LOGITS)), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
    ]


def _hinge_classes(rng):
    """(scores, class ids) for multiclass_hinge_loss with margin 0.6: scores on a 0.4 grid,
    distinct within an example and jittered by at most 0.04, so every hinge argument
    m − s_y + s_j keeps at least 0.12 from 0 and no two wrong classes tie for the max.
    p=2, so that the second-order checks see non-zero second derivatives."""
    grid = rng.permuted(np.broadcast_to(np.arange(_CLASSES[-1]), _CLASSES), axis=-1) - _CLASSES[-1] // 2
    scores = 0.4 * grid + rng.uniform(-0.04, 0.04, size=_CLASSES)
    return (jnp.float32(scores), _class_ids(rng)), {"margin": jnp.float32(0.6), "p": 2}


def _extreme_hinge_classes():
    # _HUGE_LOGITS: ±1e4, a −inf (masked) class, tied runner-ups; labels on a small and on the
    # largest scores.  All-zero scores with margin 0: every hinge at its corner, all tied.
    ww = {"kind": "weston_watkins"}
    top = jnp.array([0, 2, 0])
    corner = jnp.where(jnp.isinf(_HUGE_LOGITS), -jnp.inf, 0.0)
    return [
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {**ww, "p": 2}),
        ((_HUGE_LOGITS, top), {"p": 2}),
        ((_HUGE_LOGITS, top), ww),
        ((corner, _LABELS_AWAY_FROM_MASKED), {"margin": 0.0}),
        ((corner, _LABELS_AWAY_FROM_MASKED), {**ww, "margin": 0.0, "p": 2}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {**ww, "where": jnp.zeros(3, bool)}),
    ]


def _distributions(rng):
    """(log_predictions, targets): a log-softmax and a probability vector per example."""
    return (jax.nn.log_softmax(_class_logits(rng)), _soft_targets(rng)), {}


def _extreme_distributions():
    # Predictions from ±1e4 logits with class 3 masked (−inf); targets with exact zeros there
    # and where the predictions are finite.
    log_p, targets = jax.nn.log_softmax(_HUGE_LOGITS), jax.nn.softmax(_HUGE_LOGITS[::-1])
    return [
        ((log_p, targets), {}),
        ((log_p, jnp.log(targets)), {"log_targets": True}),  # log-targets of −inf
        ((log_p, targets), {"where": jnp.zeros(3, bool)}),
    ]


def _distillation(rng):
    return (_class_logits(rng), _class_logits(rng)), {
        "temperature": jnp.float32(rng.uniform(0.5, 4.0, _CLASSES[:-1]))}


def _extreme_distillation():
    # Both sides ±1e4 with class 3 masked (−inf) in both.
    return [
        ((_HUGE_LOGITS, _HUGE_LOGITS[::-1]), {}),
        ((_HUGE_LOGITS[::-1], _HUGE_LOGITS), {"temperature": jnp.float32([4.0, 0.5, 1.0])}),
        ((_HUGE_LOGITS, _HUGE_LOGITS), {"temperature": 0.5}),  # identical: loss 0
        ((_HUGE_LOGITS, _HUGE_LOGITS[::-1]), {"where": jnp.zeros(3, bool)}),
    ]


def _extreme_pairs():
    zeros = jnp.zeros_like(_HUGE)
    return [
        ((_HUGE, zeros), {}),
        ((_HUGE, _HUGE), {}),  # residual exactly 0
        ((zeros, -_HUGE), {}),
        ((_HUGE, zeros), {"where": jnp.zeros(_HUGE.shape, bool)}),  # empty mask
    ]


def _extreme_scores():
    labels = jnp.array([[1, 0, 1], [0, 1, 1]])
    return [
        ((_HUGE, labels), {}),
        ((-_HUGE, labels), {}),
        ((_HUGE, labels), {"where": jnp.zeros(_HUGE.shape, bool)}),
    ]


def _extreme_soft_binary():
    soft = jnp.full(_HUGE.shape, 0.3)
    return _extreme_scores() + [
        ((_HUGE, soft), {"pos_weight": jnp.float32(3.0), "label_smoothing": 0.2}),
        ((-_HUGE, soft), {"pos_weight": jnp.float32(0.0)}),
    ]


def _extreme_ranking():
    y = jnp.array([[1, -1, 1], [-1, 1, 1]])
    return [
        ((_HUGE, -_HUGE, y), {"margin": 0.5}),
        ((_HUGE, _HUGE, y), {}),  # x1 = x2: at the corner with margin 0
        ((_HUGE, jnp.zeros_like(_HUGE), y), {"where": jnp.zeros(_HUGE.shape, bool)}),
    ]


# ---------------------------------------------------------------- embedding: pairs and triplets

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
    zeros, hard, soft = jnp.zeros_like(_HUGE), jnp.array([1, 0]), jnp.array([0.3, 0.7])
    return [
        ((_HUGE, _HUGE, hard), {}),  # d = 0 exactly
        ((_HUGE, _HUGE, soft), {"margin": 2.0}),
        ((_HUGE, zeros, hard), {}),
        ((zeros, -_HUGE, soft), {}),
        ((zeros, zeros, jnp.array([False, False])), {"margin": 2.0}),
        ((_HUGE, zeros, soft), {"where": jnp.zeros(2, bool)}),
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
    zeros = jnp.zeros_like(_HUGE)
    exact = {"eps": 0.0}
    cases = [((_HUGE, zeros, -_HUGE), {}), ((_HUGE, -_HUGE, zeros), {"margin": 0.5})]
    for options in ({}, {"p": 1.0}, {"p": 1.5}, {"p": 3.0}, {"swap": True}, {"p": 3.0, "swap": True}):
        cases += [
            ((_HUGE, _HUGE, zeros), {**exact, **options}),  # d(a, p) = 0
            ((_HUGE, zeros, _HUGE), {**exact, **options}),  # d(a, n) = 0 (and d(p, n) ≠ 0)
            ((zeros, _HUGE, _HUGE), {**exact, **options}),  # d(p, n) = 0
            ((zeros, zeros, zeros), {**exact, **options}),  # every distance 0
        ]
    return cases + [((_HUGE, zeros, -_HUGE), {"where": jnp.zeros(2, bool)})]


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
    zeros, y = jnp.zeros_like(_HUGE), jnp.array([1, -1])
    return [
        ((_HUGE, _HUGE, y), {}),  # cos = 1
        ((_HUGE, 2 * _HUGE, y), {"margin": 0.5}),
        ((_HUGE, -_HUGE, y), {"margin": -0.5}),  # cos = −1
        ((zeros, _HUGE, y), {}),  # a zero vector
        ((zeros, zeros, y), {"margin": -0.5}),
        ((_HUGE, -_HUGE, y), {"where": jnp.zeros(2, bool)}),
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

_ANGULAR = (4, 5, 3)  # batch, classes, features


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
    values of 1e4 along their centre, and an empty where mask."""

    def extremes():
        centers = jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [-1.0, -1.0, 0.0],
                             [1e4, -1e4, 1e4]])
        embeddings = jnp.array([[1.0, 0.0, 0.0], [0.0, -6.0, 0.0], [0.0, 0.0, 0.0], [1e4, -1e4, 1e4]])
        labels = jnp.array([0, 1, 2, 4])
        args = (embeddings, centers, labels)
        return [(args, {}), (args, dict(options)), ((-embeddings, centers, labels), dict(options)),
                (args, {**options, "where": jnp.zeros(4, bool)})]

    return extremes


# ---------------------------------------------------------------- ge2e

_GE2E_SHAPE = (3, 3, 4)  # speakers, utterances, features


def _ge2e(rng):
    """Speakers around random centres, for kind="contrast": redrawn until every utterance's most
    similar other speaker leads the runner-up by 0.05 in cosine (no tie in the max)."""
    speakers, _, features = _GE2E_SHAPE
    for _ in range(100):
        centres = rng.standard_normal((speakers, 1, features))
        e = jnp.float32(centres + 0.6 * rng.standard_normal(_GE2E_SHAPE))
        cos = np.asarray(angular._ge2e_parts(e, None).cos)
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


def _grouped(rng):
    return (jnp.float32(rng.standard_normal(_PAIRS) + 0.3), jnp.int32([0, 1, 0, 1, 0, 1])), {"temperature": jnp.float32(0.5)}


def _extreme_two_sides(**options):
    def extremes():
        huge = jnp.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [0.0, 0.0, 0.0], [-1e4, 1.0, 1.0]])
        return [((huge, huge), options),  # identical sides, huge logits, a zero vector
                ((huge, -huge), options),
                ((huge, huge[::-1]), {**options, "block_size": 3}),
                ((huge, huge), {**options, "where": jnp.zeros(4, bool)})]

    return extremes


def _extreme_grouped():
    huge = jnp.array([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [0.0, 0.0, 0.0], [-1e4, 1.0, 1.0]])
    labels = jnp.int32([0, 0, 1, 2])  # anchors 2 and 3 have no positive
    return [((huge, labels), {}), ((huge, labels), {"temperature": 0.07, "block_size": 3}),
            ((huge, jnp.int32([0, 0, 0, 0])), {}),  # no negatives
            ((huge, labels), {"where": jnp.zeros(4, bool)})]


# ---------------------------------------------------------------- segmentation

_SEGMENTATION_SHAPE = (2, 3, 3, 3)  # [B, H, W, C]


def _segmentation(from_logits, ids=False, **options):
    """(predictions, targets) of a 3×3 image with 3 classes: logits (or probabilities
    when ``from_logits`` is None) and class ids or soft targets; float32 options."""

    def sample(rng):
        x = 2 * rng.standard_normal(_SEGMENTATION_SHAPE)
        if from_logits is None:
            x = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
        if ids:
            targets = jnp.int32(rng.integers(0, _SEGMENTATION_SHAPE[-1], size=_SEGMENTATION_SHAPE[:-1]))
        else:
            t = np.exp(2 * rng.standard_normal(_SEGMENTATION_SHAPE))
            targets = jnp.float32(t / t.sum(-1, keepdims=True))
        static = {} if from_logits is None else {"from_logits": from_logits}  # None: the default
        return (jnp.float32(x), targets), {**static, **{k: jnp.float32(v) for k, v in options.items()}}

    return sample


def _extreme_segmentation(from_logits, **options):
    """Logits of ±1e4, a class absent from targets and predictions (an empty mask) with
    smooth 0 and 1, and NaN padding at masked pixels, all pixels masked included."""

    def extremes():
        huge = np.zeros(_SEGMENTATION_SHAPE, np.float32)
        huge[..., 0], huge[..., 1], huge[..., 2] = 1e4, -1.0, -1e4
        huge[1, 0] = [-1e4, 1e4, -1e4]
        ids = jnp.int32(np.arange(9).reshape(1, 3, 3).repeat(2, 0) % 2)  # class 2 absent
        probs = np.zeros(_SEGMENTATION_SHAPE, np.float32)
        probs[..., 0], probs[..., 1] = 0.7, 0.3  # class 2 predicted nowhere
        x = jnp.float32(probs if from_logits is None else huge)
        soft = jnp.float32(np.asarray(jax.nn.one_hot(ids, 3)))
        nan = jnp.where(jnp.arange(3)[None, :, None, None] == 0, jnp.nan, x)
        rows = np.arange(3)[None, :, None] > 0
        out = []
        for smooth in (0.0, 1.0):
            kw = {"from_logits": from_logits, "smooth": jnp.float32(smooth), **options}
            out += [((x, ids), kw), ((x, soft), kw),
                    ((nan, ids), {**kw, "where": jnp.asarray(np.broadcast_to(rows, ids.shape))}),
                    ((nan, soft), {**kw, "where": jnp.zeros(ids.shape, bool)})]
        return out

    return extremes


# ---------------------------------------------------------------- sequence


def _ctc(rng):
    """CTC inputs [B=4, T=6, K=4], labels N=2: padded frames (lengths 4 to 6) and labels (one
    sequence has a single label), ids in [1, K) away from the blank 0; always feasible.
    (Four sequences, not three: the shared where-mask check's mask keeps only the fourth.)"""
    batch, frames, classes, n = 4, 6, 4, 2
    logits = rng.standard_normal((batch, frames, classes))
    frame_lengths = np.array([frames, *rng.integers(4, frames + 1, batch - 1)])
    label_lengths = np.array([n, 1, n, n])
    labels = rng.integers(1, classes, (batch, n))
    labels[2, 1] = labels[2, 0]  # a repeat: needs a blank between
    logit_paddings = np.arange(frames)[None] >= frame_lengths[:, None]
    label_paddings = np.arange(n)[None] >= label_lengths[:, None]
    return (jnp.float32(logits), jnp.float32(logit_paddings), jnp.int32(labels), jnp.float32(label_paddings)), {}


def _extreme_ctc():
    # Logits of ±1e4; sequence 1 is impossible (labels (1, 1) need 3 frames, it has 2).
    huge = jnp.asarray(1e4 * np.sign(np.random.default_rng(0).standard_normal((3, 6, 4))), jnp.float32)
    logit_paddings = jnp.float32([[0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    labels, label_paddings = jnp.int32([[1, 2], [1, 1], [3, 3]]), jnp.float32([[0, 0], [0, 0], [0, 1]])
    impossible = (huge, logit_paddings, labels, label_paddings)
    feasible = (huge, logit_paddings, labels.at[1].set(2), label_paddings.at[1].set(1.0))
    return [(feasible, {}),
            (impossible, {"zero_infinity": True}),
            (impossible, {"where": jnp.array([True, False, True])}),  # the +inf masked out
            (feasible, {"where": jnp.zeros(3, bool)})]


# <<< issue 10 samples >>>
def _linear_classes(rng):
    """(hidden [4, 3], weight [3, 6], labels [4]) and a bias [6]: logits ``hidden @ weight + bias``."""
    hidden, weight = rng.standard_normal((4, 3)), rng.standard_normal((3, 6))
    return (jnp.float32(hidden), jnp.float32(weight), jnp.int32(rng.integers(0, 6, 4))), {
        "bias": jnp.float32(rng.standard_normal(6)),
        "label_smoothing": jnp.float32(0.1),
        "z_loss": jnp.float32(0.02),
    }


def _extreme_linear_classes():
    (hidden, weight, labels), kw = _linear_classes(np.random.default_rng(0))
    huge = hidden.at[0].multiply(1e4).at[1].set(0.0)  # logits near ±1e4, and all-equal logits
    return [((huge, weight, labels), kw),
            ((huge, weight, labels), {"z_loss": 1e-4, "block_size": 2}),
            ((huge, weight, labels), {"where": jnp.zeros(4, bool)})]


def _vocabulary_axis(arguments):
    """The axis of ``weight`` that counts the classes, by ``weight_layout``."""
    return 1 if arguments["weight_layout"] == "hv" else 0


def _shard_classes(args, kwargs, shards, axis_name):
    """The vocabulary-parallel form: the classes (weight's columns and the bias) split in
    ``shards``; every shard gets all tokens and returns the same losses."""
    (hidden, weight, labels), bias = args, kwargs["bias"]
    split = lambda x, axis: jnp.stack(jnp.split(x, shards, axis=axis))  # noqa: E731
    rest = {k: v for k, v in kwargs.items() if k != "bias"}
    local = lambda w, b: fused.linear_softmax_cross_entropy(  # noqa: E731
        hidden, w, labels, bias=b, vocab_axis_name=axis_name, **rest)
    return jax.vmap(local, axis_name=axis_name)(split(weight, 1), split(bias, 0))[0]


# <<< issue 11 probabilistic samples >>>

# ---------------------------------------------------------------- probabilistic


def _gaussian_posterior(rng):
    """(mean, log_variance) ``[4, 3]``; a prior mean and log-variance per latent dimension."""
    return (jnp.float32(rng.standard_normal(_SHAPE)), jnp.float32(rng.uniform(-2, 2, _SHAPE))), {
        "prior_mean": jnp.float32(0.5 * rng.standard_normal(_SHAPE[-1])),
        "prior_log_variance": jnp.float32(rng.uniform(-1, 1, _SHAPE[-1]))}


def _extreme_gaussian_posterior():
    # Means of ±1e4 and log-variances of ±50 on either side; a mean equal to its prior's.
    mean = jnp.array([[1e4, -1e4, 0.0], [0.0, 1.0, -1.0]])
    log_variance = jnp.array([[50.0, -50.0, 0.0], [-50.0, 50.0, 0.0]])
    return [((mean, log_variance), {}),
            ((mean, log_variance), {"prior_log_variance": 50.0}),
            ((mean, jnp.zeros_like(mean)), {"prior_mean": mean, "prior_log_variance": jnp.array([50.0, -50.0, 0.0])}),
            ((mean, log_variance), {"where": jnp.zeros(2, bool)})]


def _gaussian_nll(rng):
    """(mean, target, variance) ``[4, 3]``, variances in [0.2, 3], well above ``eps``."""
    target = rng.standard_normal(_SHAPE)
    mean = target + rng.standard_normal(_SHAPE)
    return (jnp.float32(mean), jnp.float32(target), jnp.float32(rng.uniform(0.2, 3.0, _SHAPE))), {"full": True}


def _extreme_gaussian_nll():
    # Residuals of 1e4 over variances of 0 (clamped to eps) and 1e4; one variance per example.
    zeros, variance = jnp.zeros_like(_HUGE), jnp.array([[0.0, 1e-9, 1e4], [1.0, 0.0, 2.0]])
    return [((_HUGE, zeros, variance), {}),
            ((_HUGE, zeros, jnp.array([0.0, 1e4])), {"full": True}),
            ((_HUGE, _HUGE, zeros), {}),  # residual 0, variance 0
            ((_HUGE, zeros, variance), {"where": jnp.zeros(_HUGE.shape, bool)})]


def _poisson(rng):
    """(log rates, float counts) ``[4, 3]`` with ``full``: counts away from the Stirling
    term's switch at 1."""
    counts = np.where(rng.random(_SHAPE) < 0.5, rng.uniform(0.0, 0.8, _SHAPE), rng.uniform(1.3, 5.0, _SHAPE))
    return (jnp.float32(rng.uniform(-2.0, 2.0, _SHAPE)), jnp.float32(counts)), {"full": True}


def _extreme_poisson():
    # Log-rates down to −1e4 and up to 80 (e^80 fits float32); rates of 0 and 1e4; counts of 0.
    log_rates, counts = jnp.array([[-1e4, -50.0, 0.0], [50.0, 80.0, 1.0]]), jnp.array([[0.0, 3.0, 0.0], [1e4, 0.0, 1.0]])
    rates = jnp.array([[0.0, 0.0, 1e4], [1e-30, 5.0, 0.0]])
    return [((log_rates, counts), {"full": True}),
            ((rates, counts), {"log_input": False, "full": True}),
            ((rates, counts[::-1]), {"log_input": False}),
            ((log_rates, counts), {"where": jnp.zeros(_HUGE.shape, bool)})]


def _quantiles(rng):
    """(predictions ``[4, 3]`` for the quantiles 0.1, 0.5, 0.9, targets ``[4]``), every
    residual at least 0.1 from 0, the kink."""
    targets = rng.standard_normal(_SHAPE[0])
    predictions = targets[:, None] + _away_from_kinks(rng, ())
    return (jnp.float32(predictions), jnp.float32(targets)), {"quantiles": jnp.float32([0.1, 0.5, 0.9])}


def _extreme_quantiles():
    quantiles = {"quantiles": jnp.array([0.1, 0.5, 0.9])}
    return [((_HUGE, jnp.array([0.0, 1e4])), quantiles),
            ((_HUGE, _HUGE), quantiles),  # every residual 0
            ((_HUGE, jnp.array([-1e4, 1e4])), {"quantiles": 0.5}),
            ((_HUGE, jnp.zeros(2)), {**quantiles, "where": jnp.zeros(2, bool)})]

# <<< issue 11 self-supervised samples >>>

# ---------------------------------------------------------------- self-supervised

_VIEWS = (8, 4)  # examples (even: the sharded check splits them in two), features


def _with_std(x, scales):
    """``x`` with each feature centred and rescaled to the unbiased standard deviation ``scales``."""
    x = x - x.mean(0)
    return x / x.std(0, ddof=1) * scales


def _two_views(**options):
    """(z1, z2) ``[8, 4]``, correlated, with per-feature standard deviations away from 1
    (VICReg's hinge kink); float options as float32 arrays."""

    def sample(rng):
        z1 = _with_std(rng.standard_normal(_VIEWS), [0.5, 0.8, 1.3, 2.0]) + rng.standard_normal(_VIEWS[1])
        z2 = _with_std(z1 + 0.7 * rng.standard_normal(_VIEWS), [0.6, 1.4, 0.7, 1.8])
        return (jnp.float32(z1), jnp.float32(z2)), {k: jnp.float32(v) for k, v in options.items()}

    return sample


def _extreme_views():
    huge = jnp.array([[1e4, 0.0, 1.0], [-1e4, 0.0, 2.0], [1e4, 0.0, 3.0], [0.0, 0.0, 4.0]])  # a collapsed feature
    same = jnp.broadcast_to(jnp.array([1.0, -2.0, 0.5]), (4, 3))  # identical rows: every feature collapsed
    zeros = jnp.zeros((4, 3))
    return [((huge, huge[::-1]), {}), ((huge, -huge), {}), ((same, huge), {}), ((same, same), {}),
            ((zeros, zeros), {}), ((huge[:1], same[:1]), {}),  # one example
            ((huge, same), {"where": jnp.array([False, True, False, False])}),
            ((huge, huge), {"where": jnp.zeros(4, bool)})]


def _predictions_and_targets(rng):
    p = rng.standard_normal((5, 3)) + 0.3
    return (jnp.float32(p), jnp.float32(0.5 * p + rng.standard_normal((5, 3)))), {}


def _extreme_cosine_similarity():
    zeros = jnp.zeros_like(_HUGE)
    return [((_HUGE, _HUGE), {}), ((_HUGE, -2 * _HUGE), {}), ((zeros, _HUGE), {}), ((_HUGE, zeros), {}),
            ((zeros, zeros), {}), ((_HUGE, zeros), {"where": jnp.zeros(2, bool)})]


def _dino(rng):
    """Student ``[4, 3, 5]`` (3 views), teacher ``[4, 2, 5]`` (the student's first 2 views,
    perturbed), centre ``[5]``; temperatures that keep the softmaxes informative."""
    student = 2 * rng.standard_normal((4, 3, 5))
    teacher = student[:, :2] + 0.5 * rng.standard_normal((4, 2, 5))
    return (jnp.float32(student), jnp.float32(teacher)), {
        "center": jnp.float32(0.3 * rng.standard_normal(5)),
        "student_temperature": jnp.float32(0.5), "teacher_temperature": jnp.float32(0.3)}


def _extreme_dino():
    huge = jnp.array([[[1e4, -1e4, 0.0], [0.0, 1e4, 1e4], [-1e4, 0.0, 0.0]],
                      [[0.0, 0.0, 0.0], [1e4, 1e4, 1e4], [1e4, -1e4, 1e4]]])
    center = jnp.array([1e4, 0.0, -1e4])
    return [((huge, huge[:, :2]), {"center": jnp.zeros(3)}),  # default temperatures 0.1 and 0.04
            ((huge, -huge[:, 1:]), {"center": center}),
            ((huge, huge[:, :2]), {"center": center, "student_temperature": 1e-3, "teacher_temperature": 1e-3}),
            ((huge, huge[:, :2]), {"center": center, "where": jnp.zeros(2, bool)})]


# ---------------------------------------------------------------- the entries

ENTRIES: tuple[Entry, ...] = (
    Entry(regression.squared_error, "regression",
          "optax.losses.squared_error; torch mse_loss",
          _residual_pair(), _extreme_pairs),
    Entry(regression.absolute_error, "regression",
          "torch l1_loss",
          _residual_pair(), _extreme_pairs),
    Entry(regression.huber_loss, "regression",
          "optax.losses.huber_loss; torch huber_loss",
          _with_options(_residual_pair((1.3,)), delta=jnp.float32(1.3)), _extreme_pairs),
    Entry(regression.smooth_l1_loss, "regression",
          "torch smooth_l1_loss",
          _with_options(_residual_pair((0.7,)), beta=jnp.float32(0.7)), _extreme_pairs),
    Entry(regression.log_cosh, "regression",
          "optax.losses.log_cosh",
          _residual_pair(), _extreme_pairs),
    Entry(classification.sigmoid_binary_cross_entropy, "binary",
          "optax.losses.sigmoid_binary_cross_entropy; torch binary_cross_entropy_with_logits",
          _soft_binary, _extreme_soft_binary),
    Entry(classification.hinge_loss, "binary",
          "optax.losses.hinge_loss",
          _margin_scores(), _extreme_scores),
    Entry(classification.squared_hinge_loss, "binary",
          "",
          _margin_scores(), _extreme_scores),
    Entry(classification.logistic_loss, "binary",
          "torch soft_margin_loss",
          _margin_scores(()), _extreme_scores),
    Entry(classification.square_loss, "binary",
          "",
          _margin_scores(()), _extreme_scores),
    Entry(classification.margin_ranking_loss, "binary",
          "torch margin_ranking_loss",
          _ranking, _extreme_ranking),
    Entry(multiclass.softmax_cross_entropy, "multiclass",
          "optax.losses.softmax_cross_entropy(_with_integer_labels); torch cross_entropy",
          _cross_entropy_ids, _extreme_classes, class_ids=(("labels", "logits", -1),)),
    Entry(multiclass.nll_loss, "multiclass",
          "torch nll_loss",
          _nll, _extreme_nll, class_ids=(("labels", "log_probs", -1),)),
    Entry(multiclass.sigmoid_focal_loss, "binary",
          "torchvision.ops.sigmoid_focal_loss; optax.losses.sigmoid_focal_loss",
          _focal_binary, _extreme_focal_binary),
    Entry(multiclass.softmax_focal_loss, "multiclass",
          "",
          _focal_classes, _extreme_focal_classes, class_ids=(("labels", "logits", -1),)),
    Entry(multiclass.poly1_cross_entropy, "multiclass",
          "optax.losses.poly_loss_cross_entropy",
          _poly1_probabilities, _extreme_poly1, class_ids=(("labels", "logits", -1),)),
    Entry(multiclass.multiclass_hinge_loss, "multiclass",
          "optax.losses.multiclass_hinge_loss (crammer_singer); torch multi_margin_loss (weston_watkins)",
          _hinge_classes, _extreme_hinge_classes, class_ids=(("labels", "scores", -1),)),
    Entry(multiclass.kl_divergence, "multiclass",
          "optax.losses.kl_divergence(_with_log_targets); torch kl_div",
          _distributions, _extreme_distributions),
    Entry(multiclass.distillation_loss, "multiclass",
          "",
          _distillation, _extreme_distillation),
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
          class_ids=(("labels", "class_centers", 0),)),
    Entry(angular.arcface_loss, "angular",
          "pytorch_metric_learning ArcFaceLoss (margin in degrees); straight_through=True: InsightFace arcface_torch",
          _angular(scale=jnp.float32(4.0), margin=jnp.float32(0.5)), _extreme_angular(margin=0.5),
          class_ids=(("labels", "class_centers", 0),)),
    Entry(angular.cosface_loss, "angular",
          "pytorch_metric_learning CosFaceLoss",
          _angular(scale=jnp.float32(4.0), margin=jnp.float32(0.35)), _extreme_angular(margin=0.35),
          class_ids=(("labels", "class_centers", 0),)),
    Entry(angular.sphereface_loss, "angular",
          "pytorch_metric_learning SphereFaceLoss (scale = s·‖e‖)",
          _angular(scale=jnp.float32(2.0), margin=4), _extreme_angular(scale=64.0, margin=3),
          class_ids=(("labels", "class_centers", 0),)),
    Entry(angular.ge2e_loss, "angular",
          "",
          _ge2e, _extreme_ge2e, coupled=True),
    Entry(contrastive.info_nce_loss, "contrastive",
          "",
          _two_sides(temperature=1.0), _extreme_two_sides(temperature=0.07),
          blockwise=True, sharded=True, coupled=True),
    Entry(contrastive.multiple_negatives_ranking_loss, "contrastive",
          "sentence-transformers MultipleNegatives(Symmetric)RankingLoss",
          _two_sides(scale=2.0, symmetric=True), _extreme_two_sides(),
          blockwise=True, sharded=True, coupled=True),
    Entry(contrastive.ntxent_loss, "contrastive",
          "optax.losses.ntxent (mean over positive pairs)",
          _grouped, _extreme_grouped,
          blockwise=True, sharded=True, coupled=True),
    Entry(contrastive.clip_loss, "contrastive",
          "open_clip ClipLoss",
          _two_sides(logit_scale=0.7), _extreme_two_sides(logit_scale=4.6),
          blockwise=True, sharded=True, coupled=True),
    Entry(contrastive.sigmoid_contrastive_loss, "contrastive",
          "",
          _two_sides(temperature=2.0, bias=-1.0), _extreme_two_sides(temperature=10.0, bias=-10.0),
          blockwise=True, sharded=True, coupled=True),
    Entry(segmentation.dice_loss, "segmentation",
          "optax.losses.dice_loss (smooth 2s); MONAI DiceLoss",
          _segmentation("softmax", class_weights=[0.5, 1.0, 2.0], smooth=0.5),
          _extreme_segmentation("softmax"), pixel_where=True, class_ids=(("targets", "predictions", -1),)),
    Entry(segmentation.jaccard_loss, "segmentation",
          "optax.losses.dice_loss (alpha = beta = 1)",
          _segmentation("softmax", ids=True, smooth=0.5), _extreme_segmentation("softmax"), pixel_where=True,
          class_ids=(("targets", "predictions", -1),)),
    Entry(segmentation.tversky_loss, "segmentation",
          "optax.losses.dice_loss (alpha, beta); MONAI TverskyLoss",
          _segmentation("sigmoid", alpha=0.3, beta=0.7, smooth=0.5),
          _extreme_segmentation("sigmoid", alpha=0.3, beta=0.7), pixel_where=True,
          class_ids=(("targets", "predictions", -1),)),
    Entry(segmentation.generalized_dice_loss, "segmentation",
          "MONAI GeneralizedDiceLoss",
          _segmentation(None, smooth=0.5), _extreme_segmentation(None), pixel_where=True,
          class_ids=(("targets", "predictions", -1),)),
    Entry(sequence.ctc_loss, "sequence",
          "optax.ctc_loss; torch ctc_loss",
          _ctc, _extreme_ctc, class_ids=(("labels", "logits", -1),)),
    # <<< issue 10 entries >>>
    Entry(fused.linear_softmax_cross_entropy, "multiclass",
          "optax.losses.softmax_cross_entropy_with_integer_labels(h @ w + b); torch cross_entropy; "
          "Cut Cross-Entropy / Liger fused linear CE",
          _linear_classes, _extreme_linear_classes, blockwise=True, sharded=True, shard=_shard_classes,
          class_ids=(("labels", "weight", _vocabulary_axis),)),
    Entry(fused.linear_softmax_cross_entropy_mean, "multiclass",
          "mean of the above; Liger fused linear CE (gradient in the forward)",
          _linear_classes, _extreme_linear_classes, forward_mode=False, blockwise=True, per_batch=True,
          class_ids=(("labels", "weight", _vocabulary_axis),)),
    # <<< issue 11 probabilistic entries >>>
    Entry(probabilistic.gaussian_kl_divergence, "probabilistic",
          "torch.distributions.kl_divergence(Normal, Normal).sum(-1)",
          _gaussian_posterior, _extreme_gaussian_posterior),
    Entry(probabilistic.gaussian_nll_loss, "probabilistic",
          "torch gaussian_nll_loss (GaussianNLLLoss)",
          _gaussian_nll, _extreme_gaussian_nll),
    Entry(probabilistic.poisson_nll_loss, "probabilistic",
          "torch poisson_nll_loss (PoissonNLLLoss)",
          _poisson, _extreme_poisson),
    Entry(regression.quantile_loss, "regression",
          "pytorch_forecasting QuantileLoss (halved, summed over quantiles)",
          _quantiles, _extreme_quantiles),
    # <<< issue 11 self-supervised entries >>>
    Entry(selfsupervised.barlow_twins_loss, "self-supervised",
          "facebookresearch/barlowtwins BarlowTwins (BatchNorm1d eps)",
          _two_views(lambda_=0.3, eps=1e-3), _extreme_views, sharded=True, per_batch=True),
    Entry(selfsupervised.vicreg_loss, "self-supervised",
          "facebookresearch/vicreg VICReg (variance term not halved: the paper's Algorithm 1)",
          _two_views(sim_coeff=2.0, std_coeff=3.0, cov_coeff=1.5, eps=1e-3), _extreme_views,
          sharded=True, per_batch=True),
    Entry(selfsupervised.negative_cosine_similarity, "self-supervised",
          "SimSiam D(p, z); BYOL's loss is 2 + 2·this",
          _predictions_and_targets, _extreme_cosine_similarity),
    Entry(selfsupervised.dino_loss, "self-supervised",
          "facebookresearch/dino DINOLoss (its value is the batch mean)",
          _dino, _extreme_dino),
)

BY_NAME: dict[str, Entry] = {e.name: e for e in ENTRIES}


def markdown_table() -> str:
    """The README's table of losses, generated from the entries."""
    yes = lambda flag: "yes" if flag else "–"  # noqa: E731
    lines = ["| loss | family | returns | matches | hand rule (verified) | forward mode | blockwise | sharded |",
             "|---|---|---|---|---|---|---|---|"]
    for e in ENTRIES:
        matches = e.matches.replace("; ", "<br>") or "–"
        mode = "custom_jvp" if e.forward_mode else "custom_vjp"
        returns = "one per batch" if e.per_batch else "per example"
        lines.append(f"| `{e.name}` | {e.family} | {returns} | {matches} | {mode} | {yes(e.forward_mode)} | "
                     f"{yes(e.blockwise)} | {yes(e.sharded)} |")
    return "\n".join(lines)
