"""Classification losses on logits and scores.

Binary losses here are elementwise: one loss per score (the shape of ``scores`` /
``logits``), so a ``[batch, labels]`` array is multi-label classification.  The
margin-based ones (hinge, squared hinge, logistic, square, margin ranking) take labels
in {-1, 1} or in {0, 1}: any label ``> 0`` is the positive class, any other the
negative one.  Labels are discrete, so they get no derivative (their true derivative
is 0 almost everywhere); soft labels belong to :func:`sigmoid_binary_cross_entropy`.

Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian``
and forward-over-reverse Hessian-vector products through its hand-derived rule;
``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._math import softplus_pair
from jaxloss.gradients import hand_derivative, tangent_sum


def _signed(labels):
    """{0, 1} or {-1, 1} labels as ±1.0: positive when the label is > 0."""
    return jnp.where(labels > 0, 1.0, -1.0)


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
def sigmoid_binary_cross_entropy(logits, labels, *, pos_weight=None, label_smoothing=0.0, where=None):
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
      logits: float array, any shape.
      labels: targets in [0, 1] broadcasting to ``logits``: integer/boolean hard labels
        (no derivative) or float soft labels (differentiated).
      pos_weight: optional weight of the positive term, broadcasting to ``logits``
        (per class on the last axis, as in PyTorch); >= 0.
      label_smoothing: ε in [0, 1], as in ``optax.losses.sigmoid_binary_cross_entropy``'s
        recipe ``y(1 − ε) + ε/2``.
      where: optional boolean mask broadcasting to ``logits``.

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
    pos_weight = 1.0 if pos_weight is None else pos_weight
    y = labels * (1 - label_smoothing) + 0.5 * label_smoothing
    # softplus(±x) share one exp and log1p (two softplus passes do not fuse on XLA:CPU).
    softplus, softplus_neg = softplus_pair(logits)
    return pos_weight * y * softplus_neg + (1 - y) * softplus


# ------------------------------------------------------------------ hinge_loss


def _hinge_step(z):
    return jnp.where(z < 1, -1.0, 0.0)


@hand_derivative(_margin_tangent(_hinge_step), check=_checks.scores)
def hinge_loss(scores, labels, *, where=None):
    r"""Hinge loss, elementwise: :math:`\ell = \max(0, 1 - y s)` with :math:`y = \pm 1`.

    Derivative: ``∂ℓ/∂s = −y`` where ``y·s < 1``, else 0.  At the corner ``y·s = 1`` the
    rule returns the subgradient 0, as ``jax.nn.relu`` does.

    Args:
      scores: float array of real-valued scores, any shape.
      labels: labels in {-1, 1} or {0, 1} (``> 0`` is positive), broadcasting to
        ``scores``; no derivative.
      where: optional boolean mask broadcasting to ``scores``.

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
    return jax.nn.relu(1 - _signed(labels) * scores)


# ------------------------------------------------------------------ squared_hinge_loss


def _squared_hinge_slope(z):
    return -2 * jax.nn.relu(1 - z)


@hand_derivative(_margin_tangent(_squared_hinge_slope), check=_checks.scores)
def squared_hinge_loss(scores, labels, *, where=None):
    r"""Squared hinge loss, elementwise: :math:`\ell = \max(0, 1 - y s)^2`.

    Derivative: ``∂ℓ/∂s = −2y·max(0, 1 − y s)``, continuous (0 at the corner ``y·s = 1``).

    Args:
      scores: float array, any shape.
      labels: labels in {-1, 1} or {0, 1}, broadcasting to ``scores``; no derivative.
      where: optional boolean mask broadcasting to ``scores``.

    Returns:
      ``scores.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.squared_hinge_loss(jnp.array([0.5, 2.0, 0.5]), jnp.array([1, 1, -1]))
      Array([0.25, 0.  , 2.25], dtype=float32)

    References:
      The L2-SVM loss (e.g. Rennie & Srebro, 2005); ``sklearn.svm.LinearSVC`` default.
    """
    return jnp.square(jax.nn.relu(1 - _signed(labels) * scores))


# ------------------------------------------------------------------ logistic_loss


def _logistic_tangent(p, t, out, res):
    y = _signed(p.labels)
    scale = 1 / jnp.log(2.0) if p.base2 else 1.0
    return tangent_sum((-y * jax.nn.sigmoid(-y * p.scores) * scale, t.scores))


def _check_logistic(scores, labels, base2, where):
    _checks.scores(scores, labels, where)
    if not isinstance(base2, bool):
        raise TypeError(f"base2 must be a Python bool, got {type(base2).__name__}.")


@hand_derivative(_logistic_tangent, static=("base2",), check=_check_logistic)
def logistic_loss(scores, labels, *, base2=False, where=None):
    r"""Logistic loss, elementwise: :math:`\ell = \log(1 + e^{-y s}) = \operatorname{softplus}(-y s)`.

    With ``base2=True`` the logarithm is base 2 (``ℓ / ln 2``), so that ``ℓ(0) = 1`` and
    the loss upper-bounds the 0-1 loss, as in the ERM literature.
    Derivative: ``∂ℓ/∂s = −y·σ(−y s)`` (divided by ``ln 2`` with ``base2``); finite for
    scores of ±1e4.  Equal to :func:`sigmoid_binary_cross_entropy` with labels in {0, 1}.

    Args:
      scores: float array, any shape.
      labels: labels in {-1, 1} or {0, 1}, broadcasting to ``scores``; no derivative.
      base2: static; measure the loss in bits.
      where: optional boolean mask broadcasting to ``scores``.

    Returns:
      ``scores.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.logistic_loss(jnp.array([0.0, 0.0]), jnp.array([1, -1]), base2=True)
      Array([1., 1.], dtype=float32)

    References:
      Bartlett, Jordan & McAuliffe, "Convexity, classification, and risk bounds", 2006.
      ``torch.nn.functional.soft_margin_loss(reduction="none")`` (natural log).
    """
    loss = jax.nn.softplus(-_signed(labels) * scores)
    return loss / jnp.log(2.0) if base2 else loss


# ------------------------------------------------------------------ square_loss


def _square_slope(z):
    return -2 * (1 - z)


@hand_derivative(_margin_tangent(_square_slope), check=_checks.scores)
def square_loss(scores, labels, *, where=None):
    r"""Square loss on the margin, elementwise: :math:`\ell = (1 - y s)^2`.

    Derivative: ``∂ℓ/∂s = −2y(1 − y s)``.  For ``y = ±1`` this equals ``(s − y)²``.

    Args:
      scores: float array, any shape.
      labels: labels in {-1, 1} or {0, 1}, broadcasting to ``scores``; no derivative.
      where: optional boolean mask broadcasting to ``scores``.

    Returns:
      ``scores.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.square_loss(jnp.array([0.5, 2.0]), jnp.array([1, 0]))
      Array([0.25, 9.  ], dtype=float32)

    References:
      Rosasco et al., "Are loss functions all the same?", 2004.
    """
    return jnp.square(1 - _signed(labels) * scores)


# ------------------------------------------------------------------ margin_ranking_loss


def _check_margin_ranking(x1, x2, y, margin, where):
    _checks.scores(x1, y, where, name="x1", labels_name="y", margin=margin)
    _checks.float_array("x2", x2)
    if jnp.shape(x2) != jnp.shape(x1):
        raise ValueError(f"x2 with shape {jnp.shape(x2)} must have the shape of x1, {jnp.shape(x1)}.")


def _margin_ranking_tangent(p, t, out, res):
    y = _signed(p.y)
    active = jnp.where(p.margin - y * (p.x1 - p.x2) > 0, 1.0, 0.0)
    return tangent_sum((-y * active, t.x1), (y * active, t.x2), (active, t.margin))


@hand_derivative(_margin_ranking_tangent, check=_check_margin_ranking)
def margin_ranking_loss(x1, x2, y, *, margin=0.0, where=None):
    r"""Margin ranking loss, elementwise: :math:`\ell = \max(0, -y(x_1 - x_2) + m)`.

    ``y = 1`` asks for ``x1`` to rank above ``x2`` by at least the margin, ``y = −1`` the
    reverse.  Derivatives, with ``a = [m − y(x1 − x2) > 0]``: ``∂ℓ/∂x1 = −y·a``,
    ``∂ℓ/∂x2 = y·a``, ``∂ℓ/∂m = a``.  At the corner (``a``'s argument exactly 0) the
    rule returns the subgradient 0; PyTorch's ``clamp_min`` passes the full gradient
    there instead.

    Args:
      x1, x2: float arrays of the same shape, the two scores.
      y: labels in {-1, 1} (or {0, 1}, 0 meaning −1), broadcasting to ``x1``; no derivative.
      margin: float or array broadcasting to ``x1`` (differentiated when traced).
      where: optional boolean mask broadcasting to ``x1``.

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
    return jax.nn.relu(margin - _signed(y) * (x1 - x2))
