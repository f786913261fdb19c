"""Classification losses on logits and scores.

Binary losses here are elementwise: one loss per score (the shape of ``scores`` /
``logits``), so a ``[batch, labels]`` array is multi-label classification.  The
margin-based ones (hinge, squared hinge, logistic / soft margin, square, perceptron,
margin ranking) take labels in {-1, 1} or in {0, 1}, integer, boolean or float (PyTorch
passes float ±1 tensors): any label ``> 0`` is the positive class, any other the
negative one.  Labels are discrete, so they get no derivative (their true derivative
is 0 almost everywhere); soft labels belong to :func:`sigmoid_binary_cross_entropy` and
:func:`binary_cross_entropy`.  :func:`hinge_embedding_loss` follows PyTorch's label rule
instead (see there).

Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian``
and forward-over-reverse Hessian-vector products through its hand-derived rule;
``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks
from jaxloss._math import opaque, signed_labels, softplus_pair, wide_tangent
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike


def _signed(labels):
    """{0, 1} or {-1, 1} labels as ±1.0 in a rule (the forwards use ``signed_labels``)."""
    return jnp.where(labels > 0, 1.0, -1.0)


def _margin(labels, scores):
    """``(y·s, 0, 1)`` for a margin forward, its constants opaque (see ``_math.opaque``)."""
    return (signed_labels(labels, scores.dtype) * scores, *opaque(scores.dtype, 0.0, 1.0))


def _margin_tangent(dphi):
    """Tangent rule of ``φ(y·s)`` for a margin loss φ: ``φ'(y·s)·y·ds``."""

    def tangent(p, t, out, res):
        y = _signed(p.labels)
        return tangent_sum((dphi(y * p.scores) * y, t.scores))

    return tangent


# ------------------------------------------------------------------ sigmoid_binary_cross_entropy


def _check_sigmoid_bce(logits, labels, pos_weight, label_smoothing, where):
    _checks.scores(logits, labels, where, name="logits", pos_weight=pos_weight)
    _checks.positive("pos_weight", pos_weight, allow_zero=True)
    _checks.in_unit_interval("label_smoothing", label_smoothing)


def _sigmoid_bce_tangent(p, t, out, res):
    x, pos_weight = p.logits, 1.0 if p.pos_weight is None else p.pos_weight
    y = p.labels * (1 - p.label_smoothing) + 0.5 * p.label_smoothing
    dx = jax.nn.sigmoid(x) * (pos_weight * y + 1 - y) - pos_weight * y
    dy = pos_weight * jax.nn.softplus(-x) - jax.nn.softplus(x)  # ∂ℓ/∂y'
    return tangent_sum(
        (dx, t.logits),
        (dy * (1 - p.label_smoothing), t.labels),
        (dy * (0.5 - p.labels), t.label_smoothing),
        (y * jax.nn.softplus(-x), t.pos_weight),
    )


@hand_derivative(_sigmoid_bce_tangent, check=_check_sigmoid_bce)
def sigmoid_binary_cross_entropy(logits: Array, labels: Array, *, pos_weight: ArrayLike | None = None,
                                 label_smoothing: ArrayLike = 0.0, where: Array | None = None) -> jax.Array:
    r"""Binary cross-entropy on logits, elementwise, with positive-class weighting.

    With smoothed labels :math:`y' = y(1 - \varepsilon) + \varepsilon/2` and
    positive weight :math:`w`:

    .. math:: \ell = -w\,y'\log\sigma(x) - (1 - y')\log(1 - \sigma(x))
                   = w\,y'\operatorname{softplus}(-x) + (1 - y')\operatorname{softplus}(x).

    Derivatives (hand rule): ``∂ℓ/∂x = σ(x)(w y' + 1 − y') − w y'``;
    ``∂ℓ/∂y' = w·softplus(−x) − softplus(x)``, hence ``∂ℓ/∂y = (1 − ε)·∂ℓ/∂y'`` for
    float (soft) labels and ``∂ℓ/∂ε = (½ − y)·∂ℓ/∂y'``; ``∂ℓ/∂w = y'·softplus(−x)``.
    Everything goes through ``softplus`` and ``sigmoid``, so logits of ±1e4 give finite
    values and derivatives.

    Args:
      logits: float ``[...]``, any shape.
      labels: ``[...]`` targets in [0, 1] broadcasting to ``logits``: integer/boolean hard labels
        (no derivative) or float soft labels (differentiated).
      pos_weight: optional weight of the positive term, broadcasting to ``logits``
        (per class on the last axis, as in PyTorch); >= 0.
      label_smoothing: ε in [0, 1], as in ``optax.losses.sigmoid_binary_cross_entropy``'s
        recipe ``y(1 − ε) + ε/2``.
      where: optional boolean mask broadcasting to ``logits``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``logits.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.sigmoid_binary_cross_entropy(jnp.array([0.0, 1e4]), jnp.array([1, 0]))
      Array([6.931472e-01, 1.000000e+04], dtype=float32)

    References:
      ``optax.losses.sigmoid_binary_cross_entropy``;
      ``torch.nn.functional.binary_cross_entropy_with_logits(reduction="none")``
      (same ``pos_weight``).
    """
    # Constants opaque, so that XLA:CPU fuses this into the mean (see _math.opaque).
    zero, half, one = opaque(logits.dtype, 0.0, 0.5, 1.0)
    pos_weight = one if pos_weight is None else pos_weight
    y = labels * (one - label_smoothing) + half * label_smoothing
    # softplus(±x) share one exp and log1p (two softplus passes do not fuse on XLA:CPU).
    softplus, softplus_neg = softplus_pair(logits, zero)
    return pos_weight * y * softplus_neg + (one - y) * softplus


# ------------------------------------------------------------------ binary_cross_entropy

# PyTorch clamps each log at −100, so that probabilities of exactly 0 and 1 give a finite loss.
_LOG_FLOOR = -100.0
# PyTorch's backward divides by max(p(1 − p), ε) with this ε, a C float (1e-12 rounded to float32).
_BCE_EPSILON = float(np.float32(1e-12))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _clamped_log(shift, x):
    """``max(log(shift + x), −100)`` for ``shift`` 0 (``log x``) or 1 (``log1p x``): a maximum,
    no compare or select, so that XLA:CPU fuses the forward into the mean that follows it.  Its
    derivative (for ``.reference``) is ``1/(shift + x)`` where the log is above −100 and 0 where
    clamped, also at ``x = −shift``, where ``maximum``'s own derivative would be ``0·∞ = NaN``
    (a double ``where`` keeps ``1/0`` out, to every order).  NaN, the log of a value outside
    its domain, stays NaN."""
    return jnp.maximum(jnp.log1p(x) if shift else jnp.log(x), _LOG_FLOOR)


@_clamped_log.defjvp
def _clamped_log_jvp(shift, primals, tangents):
    (x,), (dx,) = primals, tangents
    out = _clamped_log(shift, x)
    clamped = out <= _LOG_FLOOR
    return out, jnp.where(clamped, 0.0, dx / jnp.where(clamped, 1.0, shift + x))


def _bce_logs(p):
    """``(max(log p, −100), max(log(1 − p), −100))``, as PyTorch computes them."""
    return _clamped_log(0, p), _clamped_log(1, -p)


def _check_bce(probabilities, labels, where):
    _checks.scores(probabilities, labels, where, name="probabilities")


def _bce_tangent(p, t, out, res):
    q, y = p.probabilities, p.labels
    log_q, log_not_q = _bce_logs(q)
    return tangent_sum(((q - y) / jnp.maximum(q * (1 - q), _BCE_EPSILON), t.probabilities),
                       (log_not_q - log_q, t.labels))


@hand_derivative(_bce_tangent, check=_check_bce)
def binary_cross_entropy(probabilities: Array, labels: Array, *, where: Array | None = None) -> jax.Array:
    r"""Binary cross-entropy on probabilities, elementwise, as PyTorch computes it.

    With each log clamped at −100 (PyTorch's rule, so that ``p = 0`` or ``1`` gives a
    finite loss, at most 100 per unit of label):

    .. math:: \ell = -y \max(\log p, -100) - (1 - y)\max(\log(1 - p), -100).

    Derivatives (hand rule): ``∂ℓ/∂p = (p − y)/max(p(1 − p), ε)`` with PyTorch's
    ``ε = 1e-12``: the derivative of the formula, ``−y/p + (1 − y)/(1 − p)``, wherever
    ``p(1 − p) ≥ ε``, and PyTorch's bounded slope ``(p − y)/ε`` nearer 0 and 1 (in float32:
    at ``p = 0`` and ``1``), where the clamp may be active: ``p = 0`` gives ``−1e12`` for
    ``y = 1`` and 0 for ``y = 0``, as PyTorch.  ``.reference`` differentiates the clamped
    formula instead (0 for the clamped log, so 0 and 1 there).
    ``∂ℓ/∂y = max(log(1 − p), −100) − max(log p, −100)``, finite at ``p = 0`` and 1
    (PyTorch's target gradient ``−logit(p)`` is ±inf there).  Prefer
    :func:`sigmoid_binary_cross_entropy` on logits: it needs no clamp.

    Args:
      probabilities: float ``[...]`` of probabilities in [0, 1], any shape; a value outside
        gives NaN (PyTorch raises).
      labels: ``[...]`` targets in [0, 1] broadcasting to ``probabilities``: integer/boolean hard
        labels (no derivative) or float soft labels (differentiated).
      where: optional boolean mask broadcasting to ``probabilities``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``probabilities.shape`` losses.  PyTorch's elementwise ``weight`` multiplies them:
      ``weight * binary_cross_entropy(p, y)``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.binary_cross_entropy(jnp.array([0.5, 0.0, 1.0]), jnp.array([1.0, 1.0, 1.0]))
      Array([  0.6931472, 100.       ,  -0.       ], dtype=float32)

    References:
      ``torch.nn.functional.binary_cross_entropy(reduction="none")`` (per element, not
      reduced).
    """
    log_p, log_not_p = _bce_logs(probabilities)
    return (labels - 1) * log_not_p - labels * log_p


# ------------------------------------------------------------------ hinge_loss


def _hinge_step(z):
    return jnp.where(z < 1, -1.0, 0.0)


@hand_derivative(_margin_tangent(_hinge_step), check=_checks.scores)
def hinge_loss(scores: Array, labels: Array, *, where: Array | None = None) -> jax.Array:
    r"""Hinge loss, elementwise: :math:`\ell = \max(0, 1 - y s)` with :math:`y = \pm 1`.

    Derivative: ``∂ℓ/∂s = −y`` where ``y·s < 1``, else 0.  At the corner ``y·s = 1`` the
    rule returns the subgradient 0, as ``jax.nn.relu`` does.

    Args:
      scores: float ``[...]`` of real-valued scores, any shape.
      labels: ``[...]`` labels in {-1, 1} or {0, 1} (``> 0`` is positive), broadcasting to
        ``scores``; no derivative.
      where: optional boolean mask broadcasting to ``scores``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``scores.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.hinge_loss(jnp.array([0.5, 2.0, 0.5]), jnp.array([1, 1, 0]))
      Array([0.5, 0. , 1.5], dtype=float32)

    References:
      Cortes & Vapnik, "Support-vector networks", 1995.  ``optax.losses.hinge_loss``
      (which takes ±1 targets only).
    """
    z, zero, one = _margin(labels, scores)
    return jnp.maximum(one - z, zero)


# ------------------------------------------------------------------ perceptron_loss


def _perceptron_step(z):
    return jnp.where(z < 0, -1.0, 0.0)


@hand_derivative(_margin_tangent(_perceptron_step), check=_checks.scores)
def perceptron_loss(scores: Array, labels: Array, *, where: Array | None = None) -> jax.Array:
    r"""Perceptron loss, elementwise: :math:`\ell = \max(0, -y s)` with :math:`y = \pm 1`.

    Derivative: ``∂ℓ/∂s = −y`` where ``y·s < 0``, else 0; at the corner ``s = 0`` the rule
    returns the subgradient 0 (autodiff of optax's ``jnp.maximum`` gives ``−y/2`` there).

    Args:
      scores: float ``[...]``, any shape.
      labels: ``[...]`` labels in {-1, 1} or {0, 1} (integer, boolean or float), broadcasting to
        ``scores``; no derivative.
      where: optional boolean mask broadcasting to ``scores``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``scores.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.perceptron_loss(jnp.array([0.5, -2.0, 0.5]), jnp.array([1, 1, 0]))
      Array([0. , 2. , 0.5], dtype=float32)

    References:
      Rosenblatt, "The perceptron", 1958.  ``optax.losses.perceptron_loss``, which takes
      ±1 targets only (its formula gives 0 for a label 0, read as −1 here).
    """
    z, zero, _ = _margin(labels, scores)
    return jnp.maximum(-z, zero)


# ------------------------------------------------------------------ squared_hinge_loss


def _squared_hinge_slope(z):
    return -2 * jax.nn.relu(1 - z)


@hand_derivative(_margin_tangent(_squared_hinge_slope), check=_checks.scores)
def squared_hinge_loss(scores: Array, labels: Array, *, where: Array | None = None) -> jax.Array:
    r"""Squared hinge loss, elementwise: :math:`\ell = \max(0, 1 - y s)^2`.

    Derivative: ``∂ℓ/∂s = −2y·max(0, 1 − y s)``, continuous (0 at the corner ``y·s = 1``).

    Args:
      scores: float ``[...]``, any shape.
      labels: ``[...]`` labels in {-1, 1} or {0, 1}, broadcasting to ``scores``; no derivative.
      where: optional boolean mask broadcasting to ``scores``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``scores.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.squared_hinge_loss(jnp.array([0.5, 2.0, 0.5]), jnp.array([1, 1, -1]))
      Array([0.25, 0.  , 2.25], dtype=float32)

    References:
      The L2-SVM loss (e.g. Rennie & Srebro, 2005); ``sklearn.svm.LinearSVC`` default.
    """
    z, zero, one = _margin(labels, scores)
    return jnp.square(jnp.maximum(one - z, zero))


# ------------------------------------------------------------------ logistic_loss


def _logistic_slope(z):
    return -jax.nn.sigmoid(-z)


def _logistic_tangent(p, t, out, res):
    dout = _margin_tangent(_logistic_slope)(p, t, out, res)
    return dout / jnp.log(2.0) if p.base2 and dout is not None else dout


def _check_logistic(scores, labels, base2, where):
    _checks.scores(scores, labels, where)
    if not isinstance(base2, bool):
        raise TypeError(f"base2 must be a Python bool, got {type(base2).__name__}.")


@hand_derivative(_logistic_tangent, static=("base2",), check=_check_logistic)
def logistic_loss(scores: Array, labels: Array, *, base2: bool = False, where: Array | None = None) -> jax.Array:
    r"""Logistic loss, elementwise: :math:`\ell = \log(1 + e^{-y s}) = \operatorname{softplus}(-y s)`.

    With ``base2=True`` the logarithm is base 2 (``ℓ / ln 2``), so that ``ℓ(0) = 1`` and
    the loss upper-bounds the 0-1 loss, as in the ERM literature.
    Derivative: ``∂ℓ/∂s = −y·σ(−y s)`` (divided by ``ln 2`` with ``base2``); finite for
    scores of ±1e4.  Equal to :func:`sigmoid_binary_cross_entropy` with labels in {0, 1}.

    Args:
      scores: float ``[...]``, any shape.
      labels: ``[...]`` labels in {-1, 1} or {0, 1} (integer, boolean or float), broadcasting to
        ``scores``; no derivative.
      base2: static; measure the loss in bits.
      where: optional boolean mask broadcasting to ``scores``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``scores.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.logistic_loss(jnp.array([0.0, 0.0]), jnp.array([1, -1]), base2=True)
      Array([1., 1.], dtype=float32)

    References:
      Bartlett, Jordan & McAuliffe, "Convexity, classification, and risk bounds", 2006.
      ``torch.nn.functional.soft_margin_loss(reduction="none")`` (natural log; also exported
      as ``jaxloss.soft_margin_loss``, the same function).
    """
    z, zero, _ = _margin(labels, scores)
    loss = jnp.maximum(-z, zero) + jnp.log1p(jnp.exp(jnp.minimum(z, -z)))
    return loss / jnp.log(2.0) if base2 else loss


soft_margin_loss = logistic_loss  # PyTorch's name (torch.nn.functional.soft_margin_loss, reduction="none")


# ------------------------------------------------------------------ square_loss


def _square_slope(z):
    return -2 * (1 - z)


@hand_derivative(_margin_tangent(_square_slope), check=_checks.scores)
def square_loss(scores: Array, labels: Array, *, where: Array | None = None) -> jax.Array:
    r"""Square loss on the margin, elementwise: :math:`\ell = (1 - y s)^2`.

    Derivative: ``∂ℓ/∂s = −2y(1 − y s)``.  For ``y = ±1`` this equals ``(s − y)²``.

    Args:
      scores: float ``[...]``, any shape.
      labels: ``[...]`` labels in {-1, 1} or {0, 1}, broadcasting to ``scores``; no derivative.
      where: optional boolean mask broadcasting to ``scores``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``scores.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.square_loss(jnp.array([0.5, 2.0]), jnp.array([1, 0]))
      Array([0.25, 9.  ], dtype=float32)

    References:
      Rosasco et al., "Are loss functions all the same?", 2004.
    """
    z, _, one = _margin(labels, scores)
    return jnp.square(one - z)


# ------------------------------------------------------------------ margin_ranking_loss


def _check_margin_ranking(x1, x2, y, margin, where):
    _checks.scores(x1, y, where, name="x1", labels_name="y", margin=margin)
    _checks.float_array("x2", x2)
    if jnp.shape(x2) != jnp.shape(x1):
        raise ValueError(f"x2 with shape {jnp.shape(x2)} must have the shape of x1, {jnp.shape(x1)}.")


def _difference(a, b, like):
    """``a − b`` of two tangents, either of which may be None (zero), in the compute dtype of
    ``like`` (a bfloat16 difference would round); None if both are None."""
    a, b = wide_tangent(a, like), wide_tangent(b, like)
    if b is None:
        return a
    return -b if a is None else a - b


def _margin_ranking_tangent(p, t, out, res):
    # One partial times dx1 − dx2: the transpose gives x2's gradient as minus x1's.
    y = _signed(p.y)
    active = jnp.where(p.margin - y * (p.x1 - p.x2) > 0, 1.0, 0.0)
    return tangent_sum((-y * active, _difference(t.x1, t.x2, p.x1)), (active, t.margin))


@hand_derivative(_margin_ranking_tangent, check=_check_margin_ranking)
def margin_ranking_loss(x1: Array, x2: Array, y: Array, *, margin: ArrayLike = 0.0,
                        where: Array | None = None) -> jax.Array:
    r"""Margin ranking loss, elementwise: :math:`\ell = \max(0, -y(x_1 - x_2) + m)`.

    ``y = 1`` asks for ``x1`` to rank above ``x2`` by at least the margin, ``y = −1`` the
    reverse.  Derivatives, with ``a = [m − y(x1 − x2) > 0]``: ``∂ℓ/∂x1 = −y·a``,
    ``∂ℓ/∂x2 = y·a``, ``∂ℓ/∂m = a``.  At the corner (``a``'s argument exactly 0) the
    rule returns the subgradient 0; PyTorch's ``clamp_min`` passes the full gradient
    there instead.

    Args:
      x1, x2: float ``[...]`` of the same shape, the two scores.
      y: ``[...]`` labels in {-1, 1} (or {0, 1}, 0 meaning −1), broadcasting to ``x1``; no derivative.
      margin: float or array broadcasting to ``x1`` (differentiated when traced).
      where: optional boolean mask broadcasting to ``x1``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``x1.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.margin_ranking_loss(jnp.array([1.0, 1.0]), jnp.array([0.0, 0.0]),
      ...                             jnp.array([1, -1]), margin=0.5)
      Array([0. , 1.5], dtype=float32)

    References:
      ``torch.nn.functional.margin_ranking_loss(reduction="none")``.
    """
    z, zero, _ = _margin(y, x1 - x2)
    # The margin opaque too: a constant one would be shared with the rule's and materialised.
    return jnp.maximum(jax.lax.optimization_barrier(margin) - z, zero)


# ------------------------------------------------------------------ hinge_embedding_loss


def _check_hinge_embedding(inputs, labels, margin, where):
    _checks.scores(inputs, labels, where, name="inputs", margin=margin)


def _hinge_embedding_tangent(p, t, out, res):
    similar = p.labels > 0
    active = jnp.where(similar, 0.0, jnp.where(p.margin - p.inputs > 0, 1.0, 0.0))
    return tangent_sum((jnp.where(similar, 1.0, -active), t.inputs), (active, t.margin))


@hand_derivative(_hinge_embedding_tangent, check=_check_hinge_embedding)
def hinge_embedding_loss(inputs: Array, labels: Array, *, margin: ArrayLike = 1.0,
                         where: Array | None = None) -> jax.Array:
    r"""Hinge embedding loss, elementwise, as ``torch.nn.functional.hinge_embedding_loss``.

    ``inputs`` are usually distances between pairs (e.g. an L1 distance):

    .. math:: \ell = \begin{cases} x & y = 1 \\ \max(0, m - x) & y = -1 \end{cases}.

    Derivatives: ``∂ℓ/∂x = 1`` for ``y = 1``, ``−[m − x > 0]`` for ``y = −1``; ``∂ℓ/∂m =
    [m − x > 0]`` for ``y = −1``.  At the corner ``x = m`` the rule returns the subgradient
    0; PyTorch's ``clamp_min`` passes the full slope (−1) there.

    Args:
      inputs: float ``[...]``, any shape.
      labels: ``[...]`` labels in {1, −1} (or {1, 0}: ``> 0`` is similar, anything else dissimilar),
        integer, boolean or float, broadcasting to ``inputs``; no derivative.
      margin: m, a float or an array broadcasting to ``inputs`` (differentiated when traced);
        any real, as in PyTorch.
      where: optional boolean mask broadcasting to ``inputs``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``inputs.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.hinge_embedding_loss(jnp.array([0.3, 0.3, 2.0]), jnp.array([1, -1, -1]))
      Array([0.3, 0.7, 0. ], dtype=float32)

    References:
      ``torch.nn.functional.hinge_embedding_loss(reduction="none")``: the same values for
      labels ±1.  PyTorch gives ``x + max(0, m − x)`` for any other label (its two terms are
      ``[y ≠ −1]·x`` and ``[y ≠ 1]·max(0, m − x)``); here a label ``≤ 0`` is −1, as in
      :func:`margin_ranking_loss` and :func:`jaxloss.cosine_embedding_loss`.
    """
    # ``y·∞`` picks a side with minima and maxima, no compare or select (exact for any input,
    # ±inf included), and the constants and the margin are opaque: XLA:CPU fuses this into the mean.
    zero, inf = opaque(inputs.dtype, 0.0, math.inf)
    side = signed_labels(labels, inputs.dtype) * inf
    dissimilar = jnp.maximum(jax.lax.optimization_barrier(margin) - inputs, zero)
    return jnp.maximum(jnp.minimum(inputs, side), jnp.minimum(dissimilar, -side))
