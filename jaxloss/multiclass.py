"""Multi-class classification losses on logits ``[..., classes]``.

Each returns one loss per example: the batch shape, the class axis (the last) reduced.
Labels are integer class ids of the batch shape or, where a loss says so, probability
targets of the logits' shape.  Class ids are compared in int32 whatever their dtype.  Out-of-range
ids cannot raise inside ``jit``: an id equal to ``ignore_index`` (PyTorch's −100 by default;
``None`` ignores nothing) gives loss 0 and derivative exactly 0 with respect to every
argument, and any other id outside ``[0, classes)`` gives NaN, loss and derivatives, as optax
does (:func:`jaxloss.checks.checked` names it).

Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian``
and forward-over-reverse Hessian-vector products through its hand-derived rule, which
keeps only the inputs and per-example statistics (a log-sum-exp) for reverse mode and
recomputes the softmax there; ``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._softmax import (
    IGNORE_INDEX, check_classes, class_ids, class_sum, cofactor, counted_only, gather_class,
    id_targets, label_logit, label_shifted_logsumexp, label_value, label_weight, loud, minus_log_softmax, one_hot,
    per_example, shifted_logsumexp, smoothed, times_nonzero, z_loss_tangent,
)
from jaxloss._softmax import z_loss as z_loss_term
from jaxloss.gradients import hand_derivative, tangent_sum


# ------------------------------------------------------------------ softmax_cross_entropy


def _check_cross_entropy(logits, labels, label_smoothing, z_loss, class_weights, ignore_index, where):
    check_classes(logits, labels, where, probabilities=True, ignore_index=ignore_index,
                  class_weights=class_weights, label_smoothing=label_smoothing, z_loss=z_loss)
    _checks.in_unit_interval("label_smoothing", label_smoothing)
    _checks.positive("z_loss", z_loss, allow_zero=True)




def _class_weights(logits, class_weights):
    return jnp.ones(logits.shape[-1]) if class_weights is None else class_weights


def _targets_loss(a, nll):
    """``Σ_c a_c·(lse − x_c)``: a class of weight ``a_c = 0`` adds 0, also where its logit is −inf."""
    return jnp.sum(times_nonzero(a, nll), axis=-1)


def _probability_tangent(p, t, x, res):
    """The rule of :func:`softmax_cross_entropy` for probability targets ``y``."""
    w, nll = _class_weights(x, p.class_weights), minus_log_softmax(x, *res)  # nll: +inf at a −inf logit
    eps = per_example(p.label_smoothing)
    dense = (1 - eps) * p.labels + eps / x.shape[-1]
    a = w * dense
    nll_a = cofactor(a, nll)  # ∂ℓ/∂a_c: 0 at a class of no weight or mass and logit −inf
    z_factor, per_z = z_loss_tangent(res[0] + res[1], p.z_loss, t.z_loss)
    per_class = class_sum(
        ((jnp.sum(a, axis=-1) + z_factor)[..., None] * jnp.exp(-nll) - a, t.logits),
        ((1 - eps) * w * nll_a, t.labels),
        (w * (1 / x.shape[-1] - p.labels) * nll_a, per_example(t.label_smoothing)),
        (dense * nll_a, t.class_weights),
    )
    return tangent_sum((1.0, per_class), (1.0, per_z))


def _id_tangent(p, t, x, res):
    """The rule of :func:`softmax_cross_entropy` for class ids: every partial is 0 (a select,
    never 0·inf) on an example that does not count, and NaN on an invalid id."""
    classes, (shift, lse) = x.shape[-1], res
    ids, counted, _ = class_ids(p.labels, classes, p.ignore_index)
    w, nll = _class_weights(x, p.class_weights), minus_log_softmax(x, shift, lse)
    dense, keep = id_targets(p.label_smoothing, counted, classes)
    w_label = label_weight(p.class_weights, ids, counted, x)
    b, a = keep * w_label, w * dense[..., None]
    nll_b = cofactor(b, lse - (label_logit(p.logits, ids) - shift))
    z_factor, per_z = z_loss_tangent(shift + lse, counted_only(p.z_loss, counted), counted_only(t.z_loss, counted))
    # A = Σ_c a_c + b = (ε/C)·Σ_c w_c + (1 − ε)·w_y per example, not a sum over classes.
    # The label term −b goes in through a select in the one elementwise pass that
    # writes the gradient (a gather's transpose would scatter into it afterwards, which
    # for low-precision logits needs a float32 [..., C] buffer).
    total = b + dense * jnp.sum(w, axis=-1) + z_factor
    onehot_b = jnp.where(one_hot(ids, classes), b[..., None], 0.0)
    nll_a = cofactor(a, nll)
    per_class = class_sum(
        (total[..., None] * jnp.exp(-nll) - a - onehot_b, t.logits),
        (jnp.where(counted, 1 / classes, 0.0)[..., None] * w * nll_a, per_example(t.label_smoothing)),
        (dense[..., None] * nll_a, t.class_weights),
    )
    per_label = tangent_sum(
        (-w_label * nll_b, t.label_smoothing),
        (keep * nll_b, gather_class(t.class_weights, ids, x.shape)),
    )
    return tangent_sum((1.0, per_class), (1.0, per_label), (1.0, per_z))


def _softmax_cross_entropy_tangent(p, t, out, res):
    # The logits come in their own dtype (own_precision): upcast here, in the one
    # elementwise pass that reads them.
    x = p.logits.astype(res[1].dtype)
    integer = jnp.issubdtype(p.labels.dtype, jnp.integer)
    return (_id_tangent if integer else _probability_tangent)(p, t, x, res)


@hand_derivative(_softmax_cross_entropy_tangent, static=("ignore_index",), check=_check_cross_entropy,
                 residuals=True, own_precision=("logits",))
def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, z_loss=0.0, class_weights=None,
                          ignore_index=IGNORE_INDEX, where=None):
    r"""Softmax cross-entropy per example, with class ids or probability targets.

    With smoothed targets :math:`\tilde y = (1 - \varepsilon) y + \varepsilon / C` (``y``
    one-hot for class ids) and class weights :math:`w` (1 when not given):

    .. math:: \ell = \sum_c w_c \tilde y_c \,(\operatorname{lse}(x) - x_c)
                   + \lambda \operatorname{lse}(x)^2
                   = A\,\operatorname{lse}(x) - \sum_c a_c x_c + \lambda \operatorname{lse}(x)^2,
       \qquad a_c = w_c \tilde y_c,\; A = \sum_c a_c ,

    where the last term is PaLM's z-loss (``z_loss=λ``, 0 by default).  A class of weight
    :math:`a_c = 0` adds 0, also where :math:`x_c = -\infty` (0·∞ is read as 0).

    Derivatives (hand rule): ``∂ℓ/∂x_c = (A + 2λ·lse)·softmax(x)_c − a_c``;
    ``∂ℓ/∂λ = lse²``;
    ``∂ℓ/∂y_c = (1 − ε)·w_c·(lse − x_c)`` for probability targets;
    ``∂ℓ/∂ε = Σ_c w_c (lse − x_c)(1/C − y_c)``; ``∂ℓ/∂w_c = ỹ_c (lse − x_c)``, each term of
    weight ``w_c = 0`` or target ``ỹ_c = 0`` taken as 0 where ``lse − x_c`` is +inf.
    Reverse mode keeps only the logits and two per-example statistics, a shift and the
    log-sum-exp shifted by it, and recomputes the softmax; no ``[..., C]`` array is stored.
    For class ids the shift is the label logit (which saves a pass finding the row
    maximum), unless some row's loss exceeds ~88 in float32, when the batch is redone
    shifted by the maximum.  Lower-precision logits are computed in float32 inside each
    pass that reads them, with no float32 copy of the logits.

    Logits of ±1e4 are exact, and a class with logit −inf (masked out) costs nothing as
    long as the targets give it no mass: its term, its softmax and its derivatives are 0.
    With ``label_smoothing > 0`` such a class receives ε/C of the target mass, so the loss
    is +inf, as in optax and PyTorch (unless its class weight is 0).

    Class ids are compared in int32.  An id equal to ``ignore_index`` gives loss 0 — the
    smoothing and z-loss terms included — and derivative exactly 0 with respect to every
    argument; any other id outside ``[0, C)`` gives NaN, loss and derivatives.  PyTorch's
    weighted ``reduction="mean"`` divides by the summed weight of the counted targets
    (not ignored, not masked), not by their count.  The per-example losses here are
    weighted as PyTorch's ``reduction="none"`` ones, and :func:`jaxloss.reduce.ratio`
    gives its mean::

        mask = labels != -100
        losses = softmax_cross_entropy(logits, labels, class_weights=w, where=mask)
        loss = jaxloss.reduce.ratio(losses, w[jnp.where(mask, labels, 0)], where=mask)

    Args:
      logits: float array ``[..., C]``.
      labels: integer class ids of the batch shape ``logits.shape[:-1]`` (no derivative),
        or float probability targets of the shape of ``logits`` (differentiated).
      label_smoothing: ε in [0, 1]; a float or an array of the batch shape.
      z_loss: λ >= 0, the weight of ``lse(x)²`` (PaLM uses 1e-4); a float or an array of
        the batch shape.  The class weights do not scale it.
      class_weights: optional float weights ``[C]``, >= 0 (differentiated when traced).
      ignore_index: static; the class id that marks an example to ignore, an int (−100 by
        default, as in PyTorch) or ``None`` (every id outside ``[0, C)`` is invalid).
        Unused with probability targets.
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      Losses of the batch shape ``logits.shape[:-1]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -jnp.inf], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
      >>> jaxloss.softmax_cross_entropy(logits, jnp.array([0, 2, -100]))
      Array([0.12692805, 1.0986123 , 0.        ], dtype=float32)

    References:
      ``optax.losses.softmax_cross_entropy`` and
      ``optax.losses.softmax_cross_entropy_with_integer_labels``;
      ``torch.nn.functional.cross_entropy(reduction="none")`` (``weight``,
      ``label_smoothing``, ``ignore_index``, class ids or probabilities); Szegedy et al.,
      "Rethinking the Inception Architecture", 2016 (label smoothing); Chowdhery et al.,
      "PaLM: Scaling Language Modeling with Pathways", 2022, §5 (z-loss; optax issue #64).
    """
    # Nothing of shape [..., C] is formed but the passes of the max and Σ exp: the label
    # logit is gathered, and the smoothing term Σ_c a_c (x_c − m) is left out for a
    # constant ε = 0 (the default).
    w = _class_weights(logits, class_weights)
    if not jnp.issubdtype(labels.dtype, jnp.integer):  # probability targets
        shift, lse = shifted_logsumexp(logits)
        eps = per_example(label_smoothing)
        a = w * ((1 - eps) * labels + eps / logits.shape[-1])
        loss = _targets_loss(a, minus_log_softmax(logits.astype(lse.dtype), shift, lse))
        z_term = z_loss_term(shift + lse, z_loss)
        return (loss if z_term is None else loss + z_term), (shift, lse)
    ids, counted, invalid = class_ids(labels, logits.shape[-1], ignore_index)
    shift, lse = label_shifted_logsumexp(logits, ids)
    dense, keep = id_targets(label_smoothing, counted, logits.shape[-1])
    b = keep * label_weight(class_weights, ids, counted, logits)
    loss = times_nonzero(b, lse - (label_logit(logits, ids) - shift))
    if smoothed(label_smoothing):
        loss = loss + _targets_loss(w * dense[..., None], minus_log_softmax(logits.astype(lse.dtype), shift, lse))
    z_term = z_loss_term(shift + lse, counted_only(z_loss, counted))
    return loud(loss if z_term is None else loss + z_term, invalid), (shift, lse)


# ------------------------------------------------------------------ nll_loss


def _check_nll(log_probs, labels, class_weights, ignore_index, where):
    check_classes(log_probs, labels, where, name="log_probs", ignore_index=ignore_index,
                  class_weights=class_weights)


def _nll_tangent(p, t, out, res):
    ids, counted, _ = class_ids(p.labels, p.log_probs.shape[-1], p.ignore_index)
    gather = lambda v: gather_class(v, ids, p.log_probs.shape)  # noqa: E731
    w_label = label_weight(p.class_weights, ids, counted, p.log_probs)
    nll = jnp.where(counted, cofactor(w_label, -gather(p.log_probs)), 0.0)  # ∂ℓ/∂w_y
    return tangent_sum((-w_label, gather(t.log_probs)), (nll, gather(t.class_weights)))


@hand_derivative(_nll_tangent, static=("ignore_index",), check=_check_nll)
def nll_loss(log_probs, labels, *, class_weights=None, ignore_index=IGNORE_INDEX, where=None):
    r"""Negative log-likelihood of the label class, per example: :math:`\ell = -w_y \log p_y`.

    Derivatives (hand rule): ``∂ℓ/∂(log p)_c = −w_y·[c = y]`` and
    ``∂ℓ/∂w_c = −log p_y·[c = y]``.  Other classes may hold −inf (probability 0): they
    are never read; a label class of weight 0 adds 0 even where its ``log p`` is −inf.
    An id equal to ``ignore_index`` gives loss 0 and derivative exactly 0; any other id
    outside ``[0, C)`` gives NaN (ids are compared in int32).  PyTorch's weighted mean is
    ``jaxloss.reduce.ratio(losses, class_weights[jnp.where(mask, labels, 0)], where=mask)``
    with ``mask = labels != ignore_index``.

    Args:
      log_probs: float array ``[..., C]`` of log-probabilities (e.g. ``jax.nn.log_softmax``).
      labels: integer class ids of the batch shape; no derivative.
      class_weights: optional float weights ``[C]``, >= 0 (differentiated when traced).
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      Losses of the batch shape ``log_probs.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> log_probs = jnp.log(jnp.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [0.1, 0.2, 0.7]]))
      >>> jaxloss.nll_loss(log_probs, jnp.array([0, 2, -100]), class_weights=jnp.array([1.0, 1.0, 2.0]))
      Array([0.6931472 , 0.71334994, 0.        ], dtype=float32)

    References:
      ``torch.nn.functional.nll_loss(reduction="none")`` (with ``weight`` and ``ignore_index``).
    """
    ids, counted, invalid = class_ids(labels, log_probs.shape[-1], ignore_index)
    w_label = label_weight(class_weights, ids, counted, log_probs)
    return loud(jnp.where(counted, times_nonzero(w_label, -label_value(log_probs, ids)), 0.0), invalid)




def _check_poly1(logits, labels, epsilon, ignore_index, where):
    check_classes(logits, labels, where, probabilities=True, ignore_index=ignore_index, epsilon=epsilon)


def _poly1_tangent(p, t, out, res):
    x, labels, eps = p.logits, p.labels, p.epsilon
    nll = minus_log_softmax(x, *res)  # −log p_c, +inf for a class with logit −inf
    softmax = jnp.exp(-nll)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        # ℓ = f(nll_y) with f(z) = z − ε·expm1(−z), f' = 1 + ε·p_y; ∂nll_y/∂x_c = p_c − [c = y].
        ids, counted, _ = class_ids(labels, x.shape[-1], p.ignore_index)
        nll_y = label_value(nll, ids)
        slope = jnp.where(counted, 1 + eps * jnp.exp(-nll_y), 0.0)
        gather = None if t.logits is None else label_value(t.logits, ids)
        return tangent_sum(
            (slope, class_sum((softmax, t.logits))),
            (-slope, gather),
            (jnp.where(counted, -jnp.expm1(-nll_y), 0.0), t.epsilon),
        )
    y, e = labels, per_example(eps)
    p_t = jnp.sum(y * softmax, axis=-1, keepdims=True)
    # As in softmax_cross_entropy, a target's derivative at a class ruled out (logit −inf)
    # is +inf; the rule returns 0 there for a class the targets give no mass.
    dlabels = jnp.where((y == 0) & jnp.isinf(nll), 0.0, nll - e * jnp.expm1(-nll))
    return class_sum(
        (jnp.sum(y, axis=-1, keepdims=True) * softmax - y - e * softmax * (y - p_t), t.logits),
        (dlabels, t.labels),
        (-y * jnp.expm1(-nll), per_example(t.epsilon)),
    )


@hand_derivative(_poly1_tangent, static=("ignore_index",), check=_check_poly1, residuals=True)
def poly1_cross_entropy(logits, labels, *, epsilon=1.0, ignore_index=IGNORE_INDEX, where=None):
    r"""Poly-1 cross-entropy (PolyLoss) per example: cross-entropy plus ε·(1 − p_t).

    With targets :math:`y` (one-hot for class ids) and :math:`p = \operatorname{softmax}(x)`:

    .. math:: \ell = \sum_c y_c\,\bigl(-\log p_c + \varepsilon\,(1 - p_c)\bigr)
                   = \mathrm{CE}(x, y) + \varepsilon\,(1 - p_t),
       \qquad p_t = \sum_c y_c p_c ,

    the second form for targets summing to 1 (class ids, probability targets).  ε is the
    first coefficient of the loss's expansion in :math:`(1 - p_t)^j`: the paper
    recommends ε = 2 on ImageNet and ε = −1 for detection; ε >= −1 keeps the loss
    decreasing in :math:`p_t` (not checked, any real ε is accepted).  ``epsilon = 0`` is
    :func:`softmax_cross_entropy`.

    Derivatives (hand rule), with :math:`A = \sum_c y_c`:
    ``∂ℓ/∂x_c = A·p_c − y_c − ε·p_c·(y_c − p_t)`` (for class ids
    ``(1 + ε p_y)(p_c − [c = y])``); ``∂ℓ/∂y_c = −log p_c + ε·(1 − p_c)`` for probability
    targets (0 at a class with logit −inf and target 0); ``∂ℓ/∂ε = Σ_c y_c (1 − p_c)``.
    Reverse mode keeps the logits and the per-example maximum and log-sum-exp and
    recomputes the softmax.  Logits of ±1e4 and classes masked with −inf (given no
    target mass) are handled as in :func:`softmax_cross_entropy`, and so are class ids:
    an id equal to ``ignore_index`` gives loss 0 and derivative exactly 0, any other id
    outside ``[0, C)`` gives NaN.

    Args:
      logits: float array ``[..., C]``.
      labels: integer class ids of the batch shape ``logits.shape[:-1]`` (no derivative),
        or float probability targets of the shape of ``logits`` (differentiated).
      epsilon: ε, a float or an array of the batch shape (differentiated when traced);
        may be negative.
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.  Unused with probability targets.
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      Losses of the batch shape ``logits.shape[:-1]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -jnp.inf], [0.0, 0.0, 0.0]])
      >>> jaxloss.poly1_cross_entropy(logits, jnp.array([0, 2]))
      Array([0.24613097, 1.765279  ], dtype=float32)

    References:
      Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
      Functions", ICLR 2022.  ``optax.losses.poly_loss_cross_entropy``: the same values
      and derivatives for the same targets (``Σ_c y_c (1 − p_c)`` is optax's form, also
      for targets that do not sum to 1).  optax takes float (one-hot) targets only,
      defaults to ε = 2 and its ``where`` masks classes; here class ids are accepted, ε
      defaults to 1 (the paper's Poly-1 baseline) and ``where`` masks examples.
    """
    shift, lse = shifted_logsumexp(logits)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        ids, counted, invalid = class_ids(labels, logits.shape[-1], ignore_index)
        nll_y = lse - label_value(logits - shift[..., None], ids)
        loss = loud(jnp.where(counted, nll_y - epsilon * jnp.expm1(-nll_y), 0.0), invalid)
    else:
        nll = minus_log_softmax(logits, shift, lse)
        loss = jnp.sum(times_nonzero(labels, nll), axis=-1) - epsilon * jnp.sum(labels * jnp.expm1(-nll), axis=-1)
    return loss, (shift, lse)


# ------------------------------------------------------------------ multiclass_hinge_loss
