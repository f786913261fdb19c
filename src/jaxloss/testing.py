"""Tools for testing your own losses: a gradient assertion and Hypothesis strategies.

Not imported by ``import jaxloss``; it needs the ``test`` extra (Hypothesis)::

    import jaxloss.testing

* :func:`assert_gradients` runs :func:`jaxloss.check_gradients` (second order by default)
  and raises ``AssertionError`` with the report's table when a row fails;
* :func:`logits_and_labels`, :func:`logits_and_targets`, :func:`predictions_and_targets`,
  :func:`embedding_pairs` and :func:`masks` draw the inputs jaxloss fuzzes its own losses
  with: typical values mixed with the edges where losses break (exact zeros, ties,
  duplicate rows, magnitudes of ``1e4`` and up to :func:`safe_max`, ``-inf`` logits of
  masked classes, all-False and all-True masks), as JAX arrays in float32, bfloat16 or
  float16.  Hypothesis shrinks a failure towards fewer edges and smaller values.

Each strategy takes its shapes as integers or strategies of integers, ``dtypes=``, and
``max_magnitude=`` (default :func:`safe_max` of the dtype).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from jax.typing import DTypeLike

import jaxloss
from jaxloss.gradients import GradientCheck

__all__ = ["assert_gradients", "safe_max", "logits_and_labels", "logits_and_targets",
           "predictions_and_targets", "embedding_pairs", "masks"]

DTYPES: tuple[DTypeLike, ...] = (jnp.float32, jnp.bfloat16, jnp.float16)
LARGE = 1e4  # the magnitude jaxloss's own fuzz scales inputs to
TYPICAL = 4.0  # values that are not edges lie in [-TYPICAL, TYPICAL]
ROW = 4096  # the longest row whose sum of squares stays finite at safe_max in float32


def assert_gradients(fn: Callable[..., jax.Array], *args: Any, order: int = 2, **kwargs: Any) -> GradientCheck:
    """Assert that ``fn``'s derivatives pass :func:`jaxloss.check_gradients`.

    The same call as ``check_gradients(fn, *args, order=order, **kwargs)``: ``reference=``,
    ``wrt=``, ``dtype=``, ``rtol_autodiff=``, ``rtol_fd=``, ``step=``, ``seed=`` and
    ``compile=`` are the checker's, every other keyword is ``fn``'s.  With ``order=2`` (the
    default) forward-over-reverse Hessian-vector products are checked as well as the reverse
    and forward first derivatives.

    Returns:
      The :class:`~jaxloss.gradients.GradientCheck` report, when every row passes.

    Raises:
      AssertionError: a row fails; the message is the report's table.

    Example:
      >>> import jax.numpy as jnp, jaxloss, jaxloss.testing
      >>> x, y = jnp.array([0.3, -2.0]), jnp.array([0.0, 0.5])
      >>> jaxloss.testing.assert_gradients(jaxloss.huber_loss, x, y, delta=1.0).ok
      True
    """
    report = jaxloss.check_gradients(fn, *args, order=order, **kwargs)
    if not report.ok:
        raise AssertionError(repr(report))
    return report


def safe_max(dtype: DTypeLike) -> float:
    """The largest magnitude the strategies draw for ``dtype`` by default.

    A quarter of the dtype's largest value (sums and differences of two entries stay
    finite in the dtype), and at most ``sqrt(max_float32 / ROW)`` (a row's sum of squares
    over up to ``ROW`` = 4096 entries stays finite in float32): about 2.9e17 for float32
    and bfloat16, 16376 for float16.  A loss that computes in float32 should stay finite
    up to here; pass ``max_magnitude=`` to a strategy to draw less.

    Example:
      >>> import jax.numpy as jnp
      >>> safe_max(jnp.float16)
      16376.0
    """
    return float(min(float(jnp.finfo(dtype).max) / 4, np.sqrt(float(jnp.finfo(jnp.float32).max) / ROW)))


def _strategy(x: Any) -> SearchStrategy[Any]:
    """``x`` if it is a strategy, else the strategy that always draws ``x``."""
    return x if isinstance(x, SearchStrategy) else st.just(x)


def _mask(draw, shape) -> np.ndarray:
    return draw(hnp.arrays(np.bool_, shape))


def _signed(x: np.ndarray, magnitude: float) -> np.ndarray:
    return np.where(x < 0, -magnitude, magnitude)


# Each edge maps (draw, x, bound) to x with the edge at some drawn entries or rows (x is
# float64, never all -inf along its last axis); applied in this order, so that ties are
# ties at the row's largest value and duplicate rows copy every other edge.
EDGES: dict[str, Callable[..., np.ndarray]] = {
    "zeros": lambda draw, x, bound: np.where(_mask(draw, x.shape), 0.0, x),
    "zero_rows": lambda draw, x, bound: np.where(_mask(draw, x.shape[:1] + (1,) * (x.ndim - 1)), 0.0, x),
    "large": lambda draw, x, bound: np.where(_mask(draw, x.shape), _signed(x, min(LARGE, bound)), x),
    "extreme": lambda draw, x, bound: np.where(_mask(draw, x.shape), _signed(x, bound), x),
    "ties": lambda draw, x, bound: np.where(_mask(draw, x.shape), np.max(x, axis=-1, keepdims=True), x),
    "neg_inf": lambda draw, x, bound: np.where(_keep_one_finite(_mask(draw, x.shape)), -np.inf, x),
    "duplicate_rows": lambda draw, x, bound: _duplicate_row(draw, x),
}


def _keep_one_finite(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its first entry cleared in every row (last axis) that it fills."""
    mask = mask.copy()
    mask[..., 0] &= ~np.all(mask, axis=-1)
    return mask


def _duplicate_row(draw, x: np.ndarray) -> np.ndarray:
    if x.shape[0] < 2:
        return x
    source = draw(st.integers(0, x.shape[0] - 1))
    target = draw(st.integers(0, x.shape[0] - 2))
    target += target >= source  # any row but the source
    x = x.copy()
    x[target] = x[source]
    return x


@st.composite
def _edged(draw, shape: tuple[int, ...], bound: float, kinds: Sequence[str]) -> np.ndarray:
    """A float64 array of ``shape``: values in [-TYPICAL, TYPICAL] (float32 numbers),
    with the edges of a drawn subset of ``kinds`` (names in :data:`EDGES`)."""
    x = draw(hnp.arrays(np.float64, shape, elements=st.floats(-TYPICAL, TYPICAL, width=32)))
    chosen = draw(st.sets(st.sampled_from(tuple(kinds))))
    for kind in EDGES:
        if kind in chosen:
            x = EDGES[kind](draw, x, bound)
    return x


def _setup(draw, dtypes: Sequence[DTypeLike], max_magnitude: float | None) -> tuple[Any, float]:
    dtype = draw(st.sampled_from(tuple(dtypes)))
    return dtype, safe_max(dtype) if max_magnitude is None else min(max_magnitude, safe_max(dtype))


def _finite_index(draw, finite: np.ndarray) -> np.ndarray:
    """For each row of the boolean ``finite`` [N, C], a drawn column where it is True."""
    columns = [np.flatnonzero(row) for row in finite]
    return np.array([c[draw(st.integers(0, len(c) - 1))] for c in columns], np.int32)


LOGIT_EDGES = ("zeros", "zero_rows", "large", "extreme", "ties", "neg_inf", "duplicate_rows")


def _logits(draw, batch, classes, dtypes, max_magnitude, masked_classes) -> tuple[Any, np.ndarray]:
    """The dtype, and float64 logits [N, C] with :data:`LOGIT_EDGES` (no ``-inf`` unless
    ``masked_classes``)."""
    dtype, bound = _setup(draw, dtypes, max_magnitude)
    shape = (draw(_strategy(batch)), draw(_strategy(classes)))
    kinds = [k for k in LOGIT_EDGES if masked_classes or k != "neg_inf"]
    return dtype, draw(_edged(shape, bound, kinds))


@st.composite
def logits_and_labels(
    draw,
    batch: int | SearchStrategy[int] = st.integers(1, 8),
    classes: int | SearchStrategy[int] = st.integers(2, 10),
    dtypes: Sequence[DTypeLike] = DTYPES,
    max_magnitude: float | None = None,
    masked_classes: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Logits ``[N, C]`` and class ids ``[N]`` (int32, in ``[0, C)``) for a classification loss.

    The logits mix typical values with exact zeros (entries and rows), ``±1e4`` and
    ``±max_magnitude`` (default :func:`safe_max` of the dtype), ties at a row's maximum,
    duplicate rows, and ``-inf`` entries (masked classes: never a whole row, never the
    label).  A correct cross-entropy is finite on every draw (``-log_softmax`` at the
    label is at most ``2 * max_magnitude + log C``); one that also weighs the other
    classes' log-probabilities (label smoothing) is +inf at a masked class: pass
    ``masked_classes=False`` to leave ``-inf`` out.

    Args:
      batch, classes: ``N`` and ``C``, as integers or strategies.
      dtypes: the float dtypes the logits are drawn in.
      max_magnitude: the largest finite ``|logit|``, at most :func:`safe_max`.
      masked_classes: whether logits may be ``-inf``.

    Returns:
      A strategy of ``(logits, labels)``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> from hypothesis import given, settings
      >>> @settings(max_examples=5, deadline=None, database=None)
      ... @given(logits_and_labels(batch=3))
      ... def test_cross_entropy_is_finite(inputs):
      ...     logits, labels = inputs
      ...     assert jnp.all(jnp.isfinite(jaxloss.softmax_cross_entropy(logits, labels)))
      >>> test_cross_entropy_is_finite()
    """
    dtype, logits = _logits(draw, batch, classes, dtypes, max_magnitude, masked_classes)
    labels = _finite_index(draw, np.isfinite(logits))
    return jnp.asarray(logits, dtype), jnp.asarray(labels)


@st.composite
def logits_and_targets(
    draw,
    batch: int | SearchStrategy[int] = st.integers(1, 8),
    classes: int | SearchStrategy[int] = st.integers(2, 10),
    dtypes: Sequence[DTypeLike] = DTYPES,
    max_magnitude: float | None = None,
    masked_classes: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Logits ``[N, C]`` (as :func:`logits_and_labels`) and probability targets ``[N, C]``.

    Each row of targets sums to 1 (up to rounding in the dtype, which both share) and
    is 0 wherever the logit is ``-inf``; rows have exact zeros, and some are one-hot.

    Args:
      batch, classes: ``N`` and ``C``, as integers or strategies.
      dtypes: the float dtypes the logits and targets are drawn in.
      max_magnitude: the largest finite ``|logit|``, at most :func:`safe_max`.
      masked_classes: whether logits may be ``-inf``.

    Returns:
      A strategy of ``(logits, targets)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from hypothesis import given, settings
      >>> @settings(max_examples=5, deadline=None, database=None)
      ... @given(logits_and_targets(dtypes=(jnp.float32,)))
      ... def test_targets_are_distributions(inputs):
      ...     logits, targets = inputs
      ...     assert jnp.allclose(targets.sum(-1), 1.0) and jnp.all(targets >= 0)
      >>> test_targets_are_distributions()
    """
    dtype, logits = _logits(draw, batch, classes, dtypes, max_magnitude, masked_classes)
    finite = np.isfinite(logits)
    weights = draw(hnp.arrays(np.float64, logits.shape, elements=st.floats(0.0, 1.0)))
    weights = np.where(_mask(draw, logits.shape) | ~finite, 0.0, weights)
    one_hot = _mask(draw, (logits.shape[0], 1)) | (np.sum(weights, axis=-1, keepdims=True) == 0)
    hot = np.arange(logits.shape[1]) == _finite_index(draw, finite)[:, None]
    weights = np.where(one_hot, hot, weights)
    targets = weights / np.sum(weights, axis=-1, keepdims=True)
    return jnp.asarray(logits, dtype), jnp.asarray(targets, dtype)


@st.composite
def predictions_and_targets(
    draw,
    shape: tuple[int, ...] | SearchStrategy[tuple[int, ...]] = hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
    dtypes: Sequence[DTypeLike] = DTYPES,
    max_magnitude: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Predictions and targets of one shape, for a regression or elementwise loss.

    Both mix typical values with exact zeros, ``±1e4``, ``±max_magnitude`` and duplicate
    rows (along the leading axis); at some entries the target equals the prediction
    exactly (zero residual), and sometimes at all of them.

    Args:
      shape: the shape, or a strategy of shapes (at least one axis).
      dtypes: the float dtypes both are drawn in.
      max_magnitude: the largest ``|value|``, at most :func:`safe_max`.  A squared loss
        of the residual overflows float32 past about 1e19: pass a bound below that.

    Returns:
      A strategy of ``(predictions, targets)``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> from hypothesis import given, settings
      >>> @settings(max_examples=5, deadline=None, database=None)
      ... @given(predictions_and_targets(shape=(4,), max_magnitude=1e4))
      ... def test_huber_is_finite(inputs):
      ...     assert jnp.all(jnp.isfinite(jaxloss.huber_loss(*inputs)))
      >>> test_huber_is_finite()
    """
    dtype, bound = _setup(draw, dtypes, max_magnitude)
    drawn: tuple[int, ...] = draw(_strategy(shape))
    kinds = ("zeros", "large", "extreme", "duplicate_rows")
    predictions = draw(_edged(drawn, bound, kinds))
    targets = draw(_edged(drawn, bound, kinds))
    equal = np.ones(drawn, bool) if draw(st.booleans()) else _mask(draw, drawn)
    targets = np.where(equal, predictions, targets)
    return jnp.asarray(predictions, dtype), jnp.asarray(targets, dtype)


PAIRS = ("independent", "identical", "near", "zero")


@st.composite
def embedding_pairs(
    draw,
    batch: int | SearchStrategy[int] = st.integers(1, 8),
    dim: int | SearchStrategy[int] = st.integers(1, 16),
    dtypes: Sequence[DTypeLike] = DTYPES,
    max_magnitude: float | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Anchors and positives ``[N, D]`` for an embedding, metric or contrastive loss.

    Anchors mix typical values with exact zeros (entries and whole zero vectors),
    ``±1e4``, ``±max_magnitude`` (huge norms) and duplicate rows.  Each positive is,
    by a drawn choice per row, an independent vector (with the same edges), the anchor
    itself, a near-duplicate (the anchor plus noise of a few units in the last place of
    the dtype, relative to the row's largest entry), or the zero vector.

    Args:
      batch, dim: ``N`` and ``D``, as integers or strategies.
      dtypes: the float dtypes both are drawn in.
      max_magnitude: the largest ``|entry|``, at most :func:`safe_max` (whose rows' squared
        norms stay finite in float32).

    Returns:
      A strategy of ``(anchors, positives)``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> from hypothesis import given, settings
      >>> @settings(max_examples=5, deadline=None, database=None)
      ... @given(embedding_pairs(dim=3))
      ... def test_cosine_is_finite(pair):
      ...     anchors, positives = pair
      ...     y = jnp.ones(anchors.shape[0], jnp.int32)
      ...     assert jnp.all(jnp.isfinite(jaxloss.cosine_embedding_loss(anchors, positives, y)))
      >>> test_cosine_is_finite()
    """
    dtype, bound = _setup(draw, dtypes, max_magnitude)
    shape = (draw(_strategy(batch)), draw(_strategy(dim)))
    kinds = ("zeros", "zero_rows", "large", "extreme", "duplicate_rows")
    anchors = draw(_edged(shape, bound, kinds))
    independent = draw(_edged(shape, bound, kinds))
    noise = draw(hnp.arrays(np.float64, shape, elements=st.floats(-4.0, 4.0)))
    scale = np.maximum(np.max(np.abs(anchors), axis=-1, keepdims=True), 1.0) * float(jnp.finfo(dtype).eps)
    near = np.clip(anchors + noise * scale, -bound, bound)
    pair = np.array(draw(st.lists(st.sampled_from(PAIRS), min_size=shape[0], max_size=shape[0])))[:, None]
    positives = np.select([pair == "independent", pair == "identical", pair == "near"],
                          [independent, anchors, near], 0.0)
    return jnp.asarray(anchors, dtype), jnp.asarray(positives, dtype)


@st.composite
def masks(draw, shape: tuple[int, ...] | SearchStrategy[tuple[int, ...]]) -> jax.Array:
    """Boolean ``where`` masks of ``shape``: all False, all True, or a drawn mixture.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> from hypothesis import given, settings
      >>> @settings(max_examples=5, deadline=None, database=None)
      ... @given(masks((4,)))
      ... def test_mean_is_finite(where):
      ...     assert jnp.isfinite(jaxloss.reduce.mean(jnp.arange(4.0), where=where))
      >>> test_mean_is_finite()
    """
    drawn: tuple[int, ...] = draw(_strategy(shape))
    kind = draw(st.sampled_from(("mixed", "all_false", "all_true")))
    if kind == "mixed":
        return jnp.asarray(_mask(draw, drawn))
    return jnp.full(drawn, kind == "all_true")
