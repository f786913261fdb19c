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

from jaxloss import angular, classification, embedding, multiclass, regression

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
    """

    fn: Callable
    family: str
    matches: str
    sample: Callable[[np.random.Generator], Inputs]
    extremes: Callable[[], list[Inputs]]
    forward_mode: bool = True
    blockwise: bool = False
    sharded: bool = False

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


# ---------------------------------------------------------------- embedding: batch triplets


# ---------------------------------------------------------------- angular margins


# ---------------------------------------------------------------- ge2e


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
          _cross_entropy_ids, _extreme_classes),
    Entry(multiclass.nll_loss, "multiclass",
          "torch nll_loss",
          _nll, _extreme_nll),
    Entry(multiclass.sigmoid_focal_loss, "binary",
          "torchvision.ops.sigmoid_focal_loss; optax.losses.sigmoid_focal_loss",
          _focal_binary, _extreme_focal_binary),
    Entry(multiclass.softmax_focal_loss, "multiclass",
          "",
          _focal_classes, _extreme_focal_classes),
    Entry(multiclass.poly1_cross_entropy, "multiclass",
          "optax.losses.poly_loss_cross_entropy",
          _poly1_probabilities, _extreme_poly1),
    Entry(multiclass.multiclass_hinge_loss, "multiclass",
          "optax.losses.multiclass_hinge_loss (crammer_singer); torch multi_margin_loss (weston_watkins)",
          _hinge_classes, _extreme_hinge_classes),
    Entry(multiclass.kl_divergence, "multiclass",
          "optax.losses.kl_divergence(_with_log_targets); torch kl_div",
          _distributions, _extreme_distributions),
    Entry(multiclass.distillation_loss, "multiclass",
          "",
          _distillation, _extreme_distillation),
    # entries: embedding pairs and triplets
    # entries: embedding batch triplets
    # entries: angular margins
    # entries: ge2e
)

BY_NAME: dict[str, Entry] = {e.name: e for e in ENTRIES}


def markdown_table() -> str:
    """The README's table of losses, generated from the entries."""
    yes = lambda flag: "yes" if flag else "–"  # noqa: E731
    lines = ["| loss | family | matches | hand rule (verified) | forward mode | blockwise | sharded |",
             "|---|---|---|---|---|---|---|"]
    for e in ENTRIES:
        matches = e.matches.replace("; ", "<br>") or "–"
        mode = "custom_jvp" if e.forward_mode else "custom_vjp"
        lines.append(f"| `{e.name}` | {e.family} | {matches} | {mode} | {yes(e.forward_mode)} | "
                     f"{yes(e.blockwise)} | {yes(e.sharded)} |")
    return "\n".join(lines)
