"""Multi-class classification losses on logits ``[..., classes]``.

Each returns one loss per example: the batch shape, the class axis (the last) reduced,
except :func:`sigmoid_focal_loss`, which is elementwise like the binary losses and sits
here beside :func:`softmax_focal_loss`, with which it shares its focal terms.
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

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._math import softplus_pair
from jaxloss._softmax import (
    IGNORE_INDEX,
    check_ignore_index,
    class_ids,
    cofactor,
    counted_only,
    label_logit,
    label_shifted_logsumexp,
    label_value,
    loud,
    minus_log_softmax,
    one_hot,
    shifted_logsumexp,
    smoothing,
    times_nonzero,
    z_loss_tangent,
)
from jaxloss._softmax import z_loss as z_loss_term
from jaxloss.classification import _check_scores
from jaxloss.gradients import hand_derivative, tangent_sum

# ------------------------------------------------------------------ shared helpers


def _check_classes(logits, labels, where=None, *, name="logits", probabilities=False, ignore_index=None,
                   **options):
    """Logits ``[..., C]``; integer labels of the batch shape (or, with
    ``probabilities``, float targets of the logits' shape); options broadcasting to
    the batch shape, or per class (``[C]``) where named ``class_weights``."""
    _checks.float_array(name, logits)
    shape = jnp.shape(logits)
    if len(shape) < 1:
        raise ValueError(f"{name} must have a class axis (rank >= 1), got shape {shape}.")
    labels_dtype = jnp.result_type(labels)
    if jnp.issubdtype(labels_dtype, jnp.integer):
        if jnp.shape(labels) != shape[:-1]:
            raise ValueError(f"integer labels (class ids) must have the batch shape of {name}, "
                             f"{shape[:-1]}, got shape {jnp.shape(labels)}.")
    elif probabilities and jnp.issubdtype(labels_dtype, jnp.floating):
        if jnp.shape(labels) != shape:
            raise ValueError(f"float labels (probability targets) must have the shape of {name}, "
                             f"{shape}, got shape {jnp.shape(labels)}; pass class ids as integers.")
    else:
        kinds = "integer class ids or float probability targets" if probabilities else "integer class ids"
        raise TypeError(f"labels must be {kinds}, got {_checks._describe(labels)}.")
    check_ignore_index(ignore_index)
    _checks.broadcasts_to("where", where, shape[:-1], f"the batch shape of {name}")
    for option, value in options.items():
        if option == "class_weights":
            _checks.float_option(option, value, shape[-1:], f"the class axis of {name}")
            _checks.positive(option, value, allow_zero=True)
        else:
            _checks.float_option(option, value, shape[:-1], f"the batch shape of {name}")


def _gather_class(v, labels, shape):
    """``v[..., labels]`` for an array ``v`` broadcasting to ``shape`` (a per-class option or
    a tangent); ``None`` stays ``None``."""
    return None if v is None else label_value(jnp.broadcast_to(v, shape), labels)


def _label_weight(class_weights, ids, counted, x):
    """``w_y``, the weight of each example's label class for logits ``x``: 0 for an example
    that does not count (an ignored or invalid id), else 1 without class weights."""
    if class_weights is None:
        return counted.astype(x.dtype)
    return jnp.where(counted, _gather_class(class_weights, ids, x.shape), 0.0)


def _class_sum(*terms):
    """``Σ_c partial_c · tangent_c`` over the class axis, for the non-zero tangents."""
    total = tangent_sum(*terms)
    return None if total is None else jnp.sum(total, axis=-1)


def _per_example(option):
    """A per-example option (or its tangent) lined up against ``[..., C]`` arrays."""
    return None if option is None else jnp.asarray(option)[..., None]


# ------------------------------------------------------------------ softmax_cross_entropy


def _check_cross_entropy(logits, labels, label_smoothing, z_loss, class_weights, ignore_index, where):
    _check_classes(logits, labels, where, probabilities=True, ignore_index=ignore_index,
                   class_weights=class_weights, label_smoothing=label_smoothing, z_loss=z_loss)
    _checks.in_unit_interval("label_smoothing", label_smoothing)
    _checks.positive("z_loss", z_loss, allow_zero=True)


def _smoothed(label_smoothing):
    """Whether label smoothing is on: anything but a constant 0 (which adds no term)."""
    return not (isinstance(label_smoothing, int | float) and label_smoothing == 0)


def _id_targets(label_smoothing, counted, classes):
    """The smoothed targets of class ids, ``ỹ = keep·onehot(y) + dense``, as the per-example
    pair ``(dense, keep) = (ε/C, 1 − ε)``, both 0 on an example that does not count."""
    return tuple(jnp.where(counted, v, 0.0) for v in smoothing(jnp.asarray(label_smoothing), classes))


def _class_weights(logits, class_weights):
    return jnp.ones(logits.shape[-1]) if class_weights is None else class_weights


def _targets_loss(a, nll):
    """``Σ_c a_c·(lse − x_c)``: a class of weight ``a_c = 0`` adds 0, also where its logit is −inf."""
    return jnp.sum(times_nonzero(a, nll), axis=-1)


def _probability_tangent(p, t, x, res):
    """The rule of :func:`softmax_cross_entropy` for probability targets ``y``."""
    w, nll = _class_weights(x, p.class_weights), minus_log_softmax(x, *res)  # nll: +inf at a −inf logit
    eps = _per_example(p.label_smoothing)
    dense = (1 - eps) * p.labels + eps / x.shape[-1]
    a = w * dense
    nll_a = cofactor(a, nll)  # ∂ℓ/∂a_c: 0 at a class of no weight or mass and logit −inf
    z_factor, per_z = z_loss_tangent(res[0] + res[1], p.z_loss, t.z_loss)
    per_class = _class_sum(
        ((jnp.sum(a, axis=-1) + z_factor)[..., None] * jnp.exp(-nll) - a, t.logits),
        ((1 - eps) * w * nll_a, t.labels),
        (w * (1 / x.shape[-1] - p.labels) * nll_a, _per_example(t.label_smoothing)),
        (dense * nll_a, t.class_weights),
    )
    return tangent_sum((1.0, per_class), (1.0, per_z))


def _id_tangent(p, t, x, res):
    """The rule of :func:`softmax_cross_entropy` for class ids: every partial is 0 (a select,
    never 0·inf) on an example that does not count, and NaN on an invalid id."""
    classes, (shift, lse) = x.shape[-1], res
    ids, counted, _ = class_ids(p.labels, classes, p.ignore_index)
    w, nll = _class_weights(x, p.class_weights), minus_log_softmax(x, shift, lse)
    dense, keep = _id_targets(p.label_smoothing, counted, classes)
    w_label = _label_weight(p.class_weights, ids, counted, x)
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
    per_class = _class_sum(
        (total[..., None] * jnp.exp(-nll) - a - onehot_b, t.logits),
        (jnp.where(counted, 1 / classes, 0.0)[..., None] * w * nll_a, _per_example(t.label_smoothing)),
        (dense[..., None] * nll_a, t.class_weights),
    )
    per_label = tangent_sum(
        (-w_label * nll_b, t.label_smoothing),
        (keep * nll_b, _gather_class(t.class_weights, ids, x.shape)),
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
        eps = _per_example(label_smoothing)
        a = w * ((1 - eps) * labels + eps / logits.shape[-1])
        loss = _targets_loss(a, minus_log_softmax(logits.astype(lse.dtype), shift, lse))
        z_term = z_loss_term(shift + lse, z_loss)
        return (loss if z_term is None else loss + z_term), (shift, lse)
    ids, counted, invalid = class_ids(labels, logits.shape[-1], ignore_index)
    shift, lse = label_shifted_logsumexp(logits, ids)
    dense, keep = _id_targets(label_smoothing, counted, logits.shape[-1])
    b = keep * _label_weight(class_weights, ids, counted, logits)
    loss = times_nonzero(b, lse - (label_logit(logits, ids) - shift))
    if _smoothed(label_smoothing):
        loss = loss + _targets_loss(w * dense[..., None], minus_log_softmax(logits.astype(lse.dtype), shift, lse))
    z_term = z_loss_term(shift + lse, counted_only(z_loss, counted))
    return loud(loss if z_term is None else loss + z_term, invalid), (shift, lse)


# ------------------------------------------------------------------ nll_loss


def _check_nll(log_probs, labels, class_weights, ignore_index, where):
    _check_classes(log_probs, labels, where, name="log_probs", ignore_index=ignore_index,
                   class_weights=class_weights)


def _nll_tangent(p, t, out, res):
    ids, counted, _ = class_ids(p.labels, p.log_probs.shape[-1], p.ignore_index)
    gather = lambda v: _gather_class(v, ids, p.log_probs.shape)  # noqa: E731
    w_label = _label_weight(p.class_weights, ids, counted, p.log_probs)
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
    w_label = _label_weight(class_weights, ids, counted, log_probs)
    return loud(jnp.where(counted, times_nonzero(w_label, -label_value(log_probs, ids)), 0.0), invalid)


# ------------------------------------------------------------------ focal losses


def _focal_terms(logits, labels):
    """``(y, ce, log_u)``: the labels as floats (hard ones: ``labels > 0``), the binary
    cross-entropy ``ce = y·softplus(−x) + (1 − y)·softplus(x)`` and
    ``log_u = log(1 − p_t) = log(y·σ(−x) + (1 − y)·σ(x))``, both exact for any logit."""
    if not jnp.issubdtype(labels.dtype, jnp.floating):
        y = (labels > 0).astype(logits.dtype)
        loss_sp, focal_sp = softplus_pair(logits * (1 - 2 * y))  # softplus(∓x) for y = 1, 0
        return y, loss_sp, -focal_sp
    y = labels
    sp_pos, sp_neg = softplus_pair(logits)
    ce = y * sp_neg + (1 - y) * sp_pos
    # log(y·e^a + (1 − y)·e^b) with a = −softplus(x), b = −softplus(−x), shifted by the
    # larger exponent among the terms of nonzero weight.  The other exponent is capped at
    # 80 so that a term of weight 0 stays 0 (not 0·inf), and autodiff of this formula
    # (``.reference``) gets the label derivative right at y = 0 and 1 for |x| < 80.
    a, b = -sp_pos, -sp_neg
    m = jax.lax.stop_gradient(jnp.where(y == 0, b, jnp.where(y == 1, a, jnp.maximum(a, b))))
    log_u = m + jnp.log(y * jnp.exp(jnp.minimum(a - m, 80.0)) + (1 - y) * jnp.exp(jnp.minimum(b - m, 80.0)))
    return y, ce, log_u


def _softplus_over_sigmoid(z):
    """``softplus(z)/σ(z)``, between 1 (z → −∞) and about ``z`` (z → +∞), for any ``z``."""
    t = jnp.exp(-jnp.abs(z))
    safe = jnp.where(t > 0, t, 1.0)
    small = jnp.where(t > 0, jnp.log1p(safe) / safe, 1.0)  # log1p(t)/t → 1 as t → 0
    return (1 + t) * jnp.where(z >= 0, z + jnp.log1p(t), small)


def _focal_slope(x, y, r, ce, weight, gamma):
    """``∂/∂x`` of ``ce·(1 − p_t)^γ`` for the binary terms of ``_focal_terms``:
    ``u^γ·[σ(x) − y + γ·ce·(σ(−x) − r)]`` with ``r = y·σ(−x)/(1 − p_t)``, each difference
    written so that it is exact for hard labels (``y = r ∈ {0, 1}``)."""
    sx, snx = jax.nn.sigmoid(x), jax.nn.sigmoid(-x)
    return weight * ((1 - y) * sx - y * snx + gamma * ce * ((1 - r) * snx - r * sx))


def _check_sigmoid_focal(logits, labels, alpha, gamma, where):
    _check_scores(logits, labels, where, name="logits", alpha=alpha, gamma=gamma)
    _checks.in_unit_interval("alpha", alpha)
    _checks.positive("gamma", gamma, allow_zero=True)


def _focal_ratio(x, y, log_u, labels):
    """``r = y·σ(−x)/(1 − p_t) = σ(logit(y) − x)`` in [0, 1]; exactly 0 at y = 0 and 1 at y = 1
    (``y`` itself for hard labels)."""
    if not jnp.issubdtype(labels.dtype, jnp.floating):
        return y
    softplus_x, _ = softplus_pair(x)
    log_y = jnp.log(jnp.where(y > 0, y, 1.0))
    return jnp.where(y > 0, jnp.exp(log_y - softplus_x - log_u), 0.0)


def _focal_alpha(alpha, y):
    return 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)


def _focal_label_slope(x, labels, alpha, gamma):
    """``∂ℓ/∂y = α_t·u^γ·[−x + γ·(ce/u)·(σ(−x) − σ(x))] + (2α − 1)·ce·u^γ``, with
    ``ce/u = r·g(−x) + (1 − r)·g(x)`` and ``g = softplus/σ``: finite for every finite x."""
    y, ce, log_u = _focal_terms(x, labels)
    w, r = jnp.exp(gamma * log_u), _focal_ratio(x, y, log_u, labels)
    ratio = r * _softplus_over_sigmoid(-x) + (1 - r) * _softplus_over_sigmoid(x)
    # At γ = 0 the ratio's own derivative is left out of γ·ratio (it is multiplied by 0, and
    # ∂r/∂y ~ eˣ overflows for soft labels at 0 or 1 and large logits: 0·∞ would be NaN);
    # the derivative with respect to γ keeps the ratio.
    ratio = jnp.where(gamma == 0, jax.lax.stop_gradient(ratio), ratio)
    focusing = gamma * ratio * (jax.nn.sigmoid(-x) - jax.nn.sigmoid(x))
    slope = _focal_alpha(alpha, y) * w * (focusing - x)
    return slope if alpha is None else slope + (2 * alpha - 1) * ce * w


def _sigmoid_focal_tangent(p, t, out, res):
    x, gamma = p.logits, p.gamma
    y, ce, log_u = _focal_terms(x, p.labels)
    w = jnp.exp(gamma * log_u)  # (1 − p_t)^γ
    a = _focal_alpha(p.alpha, y)
    dlabels = None
    if t.labels is not None:
        # Where u^γ underflows to 0 the label slope is 0; it is evaluated at x = 0 there, so
        # that its own derivative (second order) holds no inf·0 from the overflowing 1/u.
        alive = w > 0
        dlabels = jnp.where(alive, _focal_label_slope(jnp.where(alive, x, 0.0), p.labels, p.alpha, gamma), 0.0)
    return tangent_sum(
        (a * _focal_slope(x, y, _focal_ratio(x, y, log_u, p.labels), ce, w, gamma), t.logits),
        (dlabels, t.labels),
        ((2 * y - 1) * ce * w, t.alpha),
        (a * ce * w * log_u, t.gamma),
    )


@hand_derivative(_sigmoid_focal_tangent, check=_check_sigmoid_focal)
def sigmoid_focal_loss(logits, labels, *, alpha=0.25, gamma=2.0, where=None):
    r"""Sigmoid focal loss, elementwise: a binary cross-entropy scaled down where it is small.

    With :math:`p = \sigma(x)`, :math:`p_t = p y + (1 - p)(1 - y)` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`:

    .. math:: \ell = \alpha_t\,(1 - p_t)^\gamma\,\mathrm{BCE}(x, y),
       \qquad \mathrm{BCE}(x, y) = y\operatorname{softplus}(-x) + (1 - y)\operatorname{softplus}(x),

    and :math:`\alpha_t = 1` with ``alpha=None``.  The focal factor is computed in log
    space, :math:`(1 - p_t)^\gamma = e^{\gamma L}` with :math:`L = \log(1 - p_t) =
    \log(y\,\sigma(-x) + (1 - y)\,\sigma(x))` (``−softplus(±x)`` for hard labels), so it
    never evaluates :math:`0^{\gamma - 1}`: values and derivatives are finite for any
    ``gamma >= 0`` (0.5 included) and logits of ±1e4, also where :math:`p_t` rounds to 1.

    Derivatives (hand rule), with :math:`u = 1 - p_t` and
    :math:`r = y\sigma(-x)/u = \sigma(\operatorname{logit} y - x)`:
    ``∂ℓ/∂x = α_t·u^γ·[σ(x) − y + γ·BCE·(σ(−x) − r)]``;
    ``∂ℓ/∂y = α_t·u^γ·[−x + γ·(BCE/u)·(σ(−x) − σ(x))] + (2α − 1)·BCE·u^γ`` for float
    (soft) labels, where ``BCE/u = r·g(−x) + (1 − r)·g(x)`` with ``g = softplus/σ``
    (between 1 and about ``1 + |x|``); ``∂ℓ/∂α = (2y − 1)·BCE·u^γ``;
    ``∂ℓ/∂γ = ℓ·log(1 − p_t)``.  No factor :math:`u^{\gamma - 1}` appears, so for
    ``gamma < 1`` nothing blows up as :math:`p_t \to 1`: since :math:`u \ge
    \min(\sigma(x), \sigma(-x)) > 0`, every derivative is bounded for bounded logits,
    at labels 0 and 1 too, where ``∂ℓ/∂y`` is the one-sided derivative (the formula's
    analytic value there).  Where :math:`u` underflows (|x| beyond ~100 on the right
    side, in float32) the derivatives are their limits, 0.  ``gamma = 0`` gives
    :math:`\alpha_t`-weighted BCE.

    Args:
      logits: float array, any shape.
      labels: targets broadcasting to ``logits``: integer/boolean hard labels (``> 0`` is
        the positive class; no derivative) or float soft labels in [0, 1]
        (differentiated; not checked, values outside give NaN).
      alpha: weight of the positive class in [0, 1], a float or an array broadcasting to
        ``logits`` (differentiated when traced), or ``None`` for no weighting.
      gamma: focusing exponent >= 0, a float or an array broadcasting to ``logits``
        (differentiated when traced).
      where: optional boolean mask broadcasting to ``logits``.

    Returns:
      ``logits.shape`` losses (``reduction="none"``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.sigmoid_focal_loss(jnp.array([0.0, 2.0, -1e4]), jnp.array([1, 1, 1]))
      Array([4.3321699e-02, 4.5089063e-04, 2.5000000e+03], dtype=float32)

    References:
      Lin et al., "Focal Loss for Dense Object Detection", 2017.
      ``torchvision.ops.sigmoid_focal_loss(reduction="none")`` (same defaults, α = 0.25
      and γ = 2; torchvision turns the weighting off with ``alpha=-1``, here it is
      ``alpha=None``); ``optax.losses.sigmoid_focal_loss`` (whose ``alpha`` defaults to
      ``None``).
    """
    y, ce, log_u = _focal_terms(logits, labels)
    loss = ce * jnp.exp(gamma * log_u)
    if alpha is None:
        return loss
    return (alpha * y + (1 - alpha) * (1 - y)) * loss


def _check_softmax_focal(logits, labels, alpha, gamma, ignore_index, where):
    _check_classes(logits, labels, where, ignore_index=ignore_index, gamma=gamma)
    _checks.float_option("alpha", alpha, jnp.shape(logits)[-1:], "the class axis of logits")
    _checks.positive("alpha", alpha, allow_zero=True)
    _checks.positive("gamma", gamma, allow_zero=True)


def _label_margin(logits, ids, counted, others=None):
    """``(label, valid, d, (m, s))``: the one-hot label mask; whether the example counts
    and has some other class with a finite logit; the shifted log-sum-exp of the
    other classes, ``lse_{c≠y} x_c = m + s`` (computed unless given); and the label's
    margin over them, ``d = (x_y − m) − s`` (0 where not valid)."""
    label = one_hot(ids, logits.shape[-1])
    valid = counted & jnp.any(~label & (logits > -jnp.inf), axis=-1)
    if others is None:
        # Rows without a valid margin get zeros, so that no row is all −inf.
        others = shifted_logsumexp(jnp.where(valid[..., None], jnp.where(label, -jnp.inf, logits), 0.0))
    m, s = others
    d = jnp.where(valid, (label_value(logits, ids) - m) - s, 0.0)
    return label, valid, d, (m, s)


def _softmax_focal_tangent(p, t, out, others):
    x, gamma = p.logits, p.gamma
    ids, counted, _ = class_ids(p.labels, x.shape[-1], p.ignore_index)
    label, valid, d, (m, s) = _label_margin(x, ids, counted, others)
    focal_sp, ce = softplus_pair(d)  # −log(1 − p_y), −log p_y
    log_u = -focal_sp
    w = jnp.where(valid, jnp.exp(gamma * log_u), 0.0)  # (1 − p_y)^γ
    gather = lambda v: _gather_class(v, ids, x.shape)  # noqa: E731
    a = 1.0 if p.alpha is None else gather(p.alpha)
    # ∂ℓ/∂d (its limit −α_y where the label's logit is −inf, ce = +inf), and
    # ∂d/∂x_c = [c = y] − q_c with q the softmax of the other classes.
    dd = a * _focal_slope(d, 1.0, 1.0, jnp.where(ce < jnp.inf, ce, 0.0), w, gamma)
    keep = valid[..., None] & ~label
    q = jnp.where(keep, jnp.exp(jnp.where(keep, (x - m[..., None]) - s[..., None], 0.0)), 0.0)
    return tangent_sum(
        (dd, gather(t.logits)),
        (-dd, _class_sum((q, t.logits))),
        (cofactor(a, ce * w), gather(t.alpha)),
        (times_nonzero(log_u, a * ce * w), t.gamma),
    )


@hand_derivative(_softmax_focal_tangent, static=("ignore_index",), check=_check_softmax_focal, residuals=True)
def softmax_focal_loss(logits, labels, *, alpha=None, gamma=2.0, ignore_index=IGNORE_INDEX, where=None):
    r"""Multi-class (softmax) focal loss per example, with integer class ids.

    With :math:`p = \operatorname{softmax}(x)` and the label class :math:`y`:

    .. math:: \ell = -\alpha_y\,(1 - p_y)^\gamma \log p_y ,

    with :math:`\alpha_y = 1` when ``alpha`` is ``None``.  It is computed from the margin
    of the label over the other classes, :math:`d = x_y - \operatorname{lse}_{c \ne y}(x_c)`:
    :math:`-\log p_y = \operatorname{softplus}(-d)` and :math:`\log(1 - p_y) =
    -\operatorname{softplus}(d)`, so it is the binary focal loss of :math:`d` with a
    positive label.  Both logarithms are exact for any margin (``log1p(−p_y)`` would round
    to ``log 0`` once ``p_y`` rounds to 1), so values and derivatives are finite for any
    ``gamma >= 0`` (0.5 included) when :math:`p_y \to 1`, for logits of ±1e4 and for
    classes masked with −inf (other than the label).  ``gamma = 0`` gives
    :func:`softmax_cross_entropy` with ``class_weights=alpha``.

    Derivatives (hand rule), with :math:`u = 1 - p_y = \sigma(-d)` and
    :math:`q_c = p_c/(1 - p_y)` for :math:`c \ne y` (:math:`q_y = 0`):
    ``∂ℓ/∂x_c = ∂ℓ/∂d·([c = y] − q_c)`` with
    ``∂ℓ/∂d = −α_y·u^γ·[σ(−d) + γ·softplus(−d)·σ(d)]``;
    ``∂ℓ/∂α_c = [c = y]·(−log p_y)·u^γ``; ``∂ℓ/∂γ = ℓ·log(1 − p_y)``.  Reverse mode keeps
    the logits and the per-example maximum and log-sum-exp of the other classes.

    A label whose logit is −inf gives loss +inf, as in cross-entropy (its logits
    derivative is finite: ``−α_y`` at the label, ``α_y·q_c`` elsewhere).  An example with
    no other class (one class, or every other logit −inf) has ``p_y = 1`` and loss 0, and
    so does an id equal to ``ignore_index``; all their derivatives are 0.  Any other id
    outside ``[0, C)`` gives NaN (ids are compared in int32).

    Args:
      logits: float array ``[..., C]``.
      labels: integer class ids of the batch shape ``logits.shape[:-1]``; no derivative.
      alpha: optional per-class weights ``[C]`` (or a scalar), >= 0, differentiated when
        traced; ``None`` weighs every class 1.
      gamma: focusing exponent >= 0, a float or an array of the batch shape
        (differentiated when traced).
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      Losses of the batch shape ``logits.shape[:-1]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -jnp.inf], [0.0, 0.0, 0.0], [1e4, -1e4, 0.0]])
      >>> jaxloss.softmax_focal_loss(logits, jnp.array([0, 2, 0]), gamma=0.5)
      Array([0.04382288, 0.89701325, 0.        ], dtype=float32)

    The common PyTorch multi-class focal losses (e.g. mmocr's ``FocalLoss``) compute
    ``nll_loss((1 − p)^γ·log_softmax(x), y, weight=alpha)``: the same per-example losses
    with ``reduction="none"``; their default weighted mean divides by the summed label
    weights, which is ``jaxloss.reduce.ratio(losses, alpha[jnp.where(mask, labels, 0)], where=mask)``
    with ``mask = labels != ignore_index``.

    References:
      Lin et al., "Focal Loss for Dense Object Detection", 2017 (the α-balanced focal
      loss, applied to the softmax probability of the label class).  PyTorch
      implementations as above (open-mmlab's mmocr ``FocalLoss``, ``ignore_index``
      included); ``kornia.losses.focal_loss`` with a scalar ``alpha``.
    """
    ids, counted, invalid = class_ids(labels, logits.shape[-1], ignore_index)
    _, valid, d, others = _label_margin(logits, ids, counted)
    focal_sp, ce = softplus_pair(d)
    focal = ce * jnp.exp(-gamma * focal_sp)
    if alpha is not None:
        focal = times_nonzero(label_value(jnp.broadcast_to(alpha, logits.shape), ids), focal)
    return loud(jnp.where(valid, focal, 0.0), invalid), others


# ------------------------------------------------------------------ poly1_cross_entropy


def _check_poly1(logits, labels, epsilon, ignore_index, where):
    _check_classes(logits, labels, where, probabilities=True, ignore_index=ignore_index, epsilon=epsilon)


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
            (slope, _class_sum((softmax, t.logits))),
            (-slope, gather),
            (jnp.where(counted, -jnp.expm1(-nll_y), 0.0), t.epsilon),
        )
    y, e = labels, _per_example(eps)
    p_t = jnp.sum(y * softmax, axis=-1, keepdims=True)
    # As in softmax_cross_entropy, a target's derivative at a class ruled out (logit −inf)
    # is +inf; the rule returns 0 there for a class the targets give no mass.
    dlabels = jnp.where((y == 0) & jnp.isinf(nll), 0.0, nll - e * jnp.expm1(-nll))
    return _class_sum(
        (jnp.sum(y, axis=-1, keepdims=True) * softmax - y - e * softmax * (y - p_t), t.logits),
        (dlabels, t.labels),
        (-y * jnp.expm1(-nll), _per_example(t.epsilon)),
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


_HINGE_KINDS = ("crammer_singer", "weston_watkins")


def _check_multiclass_hinge(scores, labels, margin, kind, p, ignore_index, where):
    _check_classes(scores, labels, where, name="scores", ignore_index=ignore_index, margin=margin)
    _checks.positive("margin", margin, allow_zero=True)
    if not isinstance(kind, str) or kind not in _HINGE_KINDS:
        raise ValueError(f"kind must be 'crammer_singer' or 'weston_watkins', got {kind!r}.")
    if not isinstance(p, int) or isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be the int 1 (hinge) or 2 (squared hinge), got {p!r}.")


def _multiclass_hinge_slope(z, p):
    """``d max(0, z)^p / dz``, with 0 at the corner ``z = 0`` (as ``jax.nn.relu``)."""
    return jnp.where(z > 0, 1.0, 0.0) if p == 1 else 2 * jax.nn.relu(z)


def _multiclass_hinge_tangent(p, t, out, res):
    # Subgradients autodiff would not pick: 0 at the corners; ties split evenly.
    s, classes = p.scores, p.scores.shape[-1]
    ids, counted, _ = class_ids(p.labels, classes, p.ignore_index)
    label = one_hot(ids, classes)
    m = jnp.asarray(p.margin)
    if p.kind == "crammer_singer":
        # z = m + max_{j≠y} s_j − s_y; the max's derivative is split evenly among ties.
        runner_up = res
        z = m + runner_up - label_value(s, ids)
        tied = jnp.where(~label & (s == runner_up[..., None]), 1.0, 0.0)
        share = tied / jnp.maximum(jnp.sum(tied, axis=-1, keepdims=True), 1.0)
        slope = jnp.where(counted, _multiclass_hinge_slope(z, p.p), 0.0)
        ds = slope[..., None] * (share - label)  # ∂ℓ/∂s_j
        dm = slope
    else:
        # ℓ = Σ_{j≠y} max(0, z_j)^p / C with z_j = m − s_y + s_j.
        z = m[..., None] - label_value(s, ids)[..., None] + s
        slope = jnp.where(label | ~counted[..., None], 0.0, _multiclass_hinge_slope(z, p.p)) / max(classes, 1)
        dm = jnp.sum(slope, axis=-1)
        ds = slope - dm[..., None] * label  # ∂ℓ/∂s_j
    return tangent_sum((1.0, _class_sum((ds, t.scores))), (dm, t.margin))


@hand_derivative(_multiclass_hinge_tangent, static=("kind", "p", "ignore_index"), check=_check_multiclass_hinge,
                 residuals=True)
def multiclass_hinge_loss(scores, labels, *, margin=1.0, kind="crammer_singer", p=1, ignore_index=IGNORE_INDEX,
                          where=None):
    r"""Multi-class hinge loss on scores ``[..., C]``: Crammer–Singer or Weston–Watkins.

    With :math:`y` the label class and margin :math:`m`:

    * ``kind="crammer_singer"`` (default), the hinge on the runner-up class:

      .. math:: \ell = \max\bigl(0,\; m + \max_{j \ne y} s_j - s_y\bigr)^p;

    * ``kind="weston_watkins"``, one hinge per wrong class, divided by the number of
      classes :math:`C` as PyTorch does (``torch.nn.functional.multi_margin_loss``
      divides by ``x.size(-1)``, the class count, not by :math:`C - 1`):

      .. math:: \ell = \frac{1}{C} \sum_{j \ne y} \max(0,\; m - s_y + s_j)^p.

    ``p = 2`` is the squared hinge.  Derivatives (hand rule), with the hinge slope
    :math:`g(z) = [z > 0]` for ``p = 1`` and :math:`2\max(0, z)` for ``p = 2``:
    Crammer–Singer, with :math:`z = m + \max_{j \ne y} s_j - s_y`:
    ``∂ℓ/∂s_j = g(z)·(w_j − [j = y])`` and ``∂ℓ/∂m = g(z)``, where :math:`w_j` is 1 for
    the runner-up class; when several wrong classes tie for the maximum, the rule splits
    the derivative evenly among them (``w_j = 1/k`` for each of the ``k`` tied classes:
    the average of the subgradients, itself a subgradient, and what autodiff of
    ``jnp.max`` gives).  Weston–Watkins, with :math:`z_j = m - s_y + s_j`:
    ``∂ℓ/∂s_j = g(z_j)/C`` for ``j ≠ y``, ``∂ℓ/∂s_y = −Σ_{j≠y} g(z_j)/C`` and
    ``∂ℓ/∂m = Σ_{j≠y} g(z_j)/C``.  At a hinge corner (``z = 0``) the rule returns the
    subgradient 0, as ``jax.nn.relu`` and PyTorch do.

    A score of ``-inf`` for a wrong class (a masked-out class) contributes 0 to the loss
    and gets derivative 0; the label class's score must be finite.  An id equal to
    ``ignore_index`` gives loss 0 and derivative exactly 0; any other id outside
    ``[0, C)`` gives NaN (ids are compared in int32).  Reverse mode keeps the inputs and,
    for Crammer–Singer, the runner-up
    score per example.

    Args:
      scores: float array ``[..., C]`` of class scores (logits), the class axis last.
      labels: integer class ids with the batch shape ``scores.shape[:-1]``; no derivative.
      margin: float >= 0, or a float array broadcasting to the batch shape
        (differentiated when traced).
      kind: static; ``"crammer_singer"`` or ``"weston_watkins"``.
      p: static; 1 (hinge) or 2 (squared hinge).
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      ``scores.shape[:-1]`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores, labels = jnp.array([[1.0, 2.0, 0.5], [3.0, 0.0, 1.0]]), jnp.array([0, 0])
      >>> jaxloss.multiclass_hinge_loss(scores, labels)
      Array([2., 0.], dtype=float32)
      >>> jaxloss.multiclass_hinge_loss(scores, labels, kind="weston_watkins", p=2)
      Array([1.4166667, 0.       ], dtype=float32)

    References:
      Crammer & Singer, "On the algorithmic implementation of multiclass kernel-based
      vector machines", JMLR 2001.  Weston & Watkins, "Support vector machines for
      multi-class pattern recognition", ESANN 1999.  ``kind="weston_watkins"`` matches
      ``torch.nn.functional.multi_margin_loss(reduction="none", p=p, margin=margin)``
      (without its ``weight``); the default (Crammer–Singer, margin 1, p=1) matches
      ``optax.losses.multiclass_hinge_loss``.
    """
    ids, counted, invalid = class_ids(labels, scores.shape[-1], ignore_index)
    label = one_hot(ids, scores.shape[-1])
    m = jnp.asarray(margin)
    if kind == "crammer_singer":
        runner_up = jnp.max(jnp.where(label, -jnp.inf, scores), axis=-1, initial=-jnp.inf)
        hinge = jax.nn.relu(m + runner_up - label_value(scores, ids))
        return loud(jnp.where(counted, hinge if p == 1 else jnp.square(hinge), 0.0), invalid), runner_up
    hinges = jax.nn.relu(m[..., None] - label_value(scores, ids)[..., None] + scores)
    hinges = hinges if p == 1 else jnp.square(hinges)
    loss = jnp.sum(jnp.where(label | ~counted[..., None], 0.0, hinges), axis=-1) / max(scores.shape[-1], 1)
    return loud(loss, invalid), ()


# ------------------------------------------------------------------ kl_divergence, distillation_loss


def _check_distributions(first, x, second, y, where, **options):
    """Two float arrays ``[..., C]`` of the same shape; ``where`` and float options
    broadcasting to the batch shape, the options > 0 where concrete."""
    _checks.float_array(first, x)
    _checks.float_array(second, y)
    shape = jnp.shape(x)
    if len(shape) < 1:
        raise ValueError(f"{first} must have a class axis (rank >= 1), got shape {shape}.")
    if jnp.shape(y) != shape:
        raise ValueError(f"{second} with shape {jnp.shape(y)} must have the shape of {first}, {shape}.")
    _checks.broadcasts_to("where", where, shape[:-1], f"the batch shape of {first}")
    for option, value in options.items():
        _checks.float_option(option, value, shape[:-1], f"the batch shape of {first}")
        _checks.positive(option, value)


def _kl_terms(weights, log_weights, log_predictions):
    """``Σ_c w_c (log w_c − lp_c)`` over the class axis, with ``0·log 0 = 0``: a class whose
    weight is exactly 0 adds exactly 0, also where ``lp`` is −inf, and its selects keep
    inf and NaN out of every derivative of the sum."""
    present = weights != 0
    log_w, lp = jnp.where(present, log_weights, 0), jnp.where(present, log_predictions, 0)
    return jnp.sum(jnp.where(present, weights * (log_w - lp), 0), axis=-1)


def _kl_weights(targets, log_targets):
    """The target probabilities and their logarithms (log 0 read as 0, never used)."""
    if log_targets:
        return jnp.exp(targets), targets
    return targets, jnp.log(jnp.where(targets != 0, targets, 1))


def _check_kl(log_predictions, targets, log_targets, where):
    _check_distributions("log_predictions", log_predictions, "targets", targets, where)
    if not isinstance(log_targets, bool):
        raise TypeError(f"log_targets must be a Python bool, got {type(log_targets).__name__}.")


def _kl_tangent(p, t, out, res):
    w, log_w = _kl_weights(p.targets, p.log_targets)
    present = w != 0
    dw = jnp.where(present, log_w - jnp.where(present, p.log_predictions, 0) + 1, 0)  # ∂ℓ/∂t, 0 at t = 0
    return _class_sum((-w, t.log_predictions), (w * dw if p.log_targets else dw, t.targets))


@hand_derivative(_kl_tangent, static=("log_targets",), check=_check_kl)
def kl_divergence(log_predictions, targets, *, log_targets=False, where=None):
    r"""Kullback-Leibler divergence of predictions from targets, per example over the class axis.

    .. math:: \ell = \sum_c t_c (\log t_c - \log p_c), \qquad 0 \log 0 = 0,

    with ``log_predictions`` = :math:`\log p` and ``targets`` = :math:`t` (or, with
    ``log_targets=True``, ``targets`` = :math:`\log t`, and
    :math:`\ell = \sum_c e^{\log t_c}(\log t_c - \log p_c)`).  Neither side has to be
    normalised; the loss is ``torch.nn.functional.kl_div(reduction="none")`` summed over
    the last axis.

    Derivatives (hand rule): ``∂ℓ/∂log p_c = −t_c``; ``∂ℓ/∂t_c = log t_c − log p_c + 1``
    (with ``log_targets``: ``∂ℓ/∂log t_c = t_c (log t_c − log p_c + 1)``).  A class with
    ``t_c = 0`` exactly contributes 0 and is treated as absent: both its derivatives are
    0, also where ``log p_c = −inf`` (a class masked out of the predictions).  For the
    targets that is a convention: the true derivative ``log t_c + 1 − log p_c`` tends to
    −inf as ``t_c → 0⁺`` and no finite subgradient exists; 0 is finite, does not push
    the target away from the class, and is the exact limit of the log-target derivative
    (``t_c (…) → 0``).  ``optax.losses.kl_divergence`` and PyTorch give NaN there.  A
    class with ``t_c > 0`` and ``log p_c = −inf`` gives a loss of +inf.

    Args:
      log_predictions: float array ``[..., C]``, log-probabilities of the predicted
        distribution (e.g. ``jax.nn.log_softmax(logits)``); −inf where a class is
        impossible.
      targets: float array of the same shape: target probabilities (>= 0; negative ones
        give NaN), or log-probabilities with ``log_targets=True``.
      log_targets: static; ``targets`` are given as log-probabilities (−inf for 0).
      where: optional boolean mask broadcasting to the batch shape ``[...]``.

    Returns:
      Losses of the batch shape ``log_predictions.shape[:-1]``, float32 for
      lower-precision inputs.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> log_p = jax.nn.log_softmax(jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, -jnp.inf]]))
      >>> jaxloss.kl_divergence(log_p, jnp.array([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]]))
      Array([0.07795289, 0.        ], dtype=float32)

    References:
      Kullback & Leibler, "On information and sufficiency", 1951.
      ``torch.nn.functional.kl_div(reduction="none").sum(-1)`` (``log_target`` as here);
      ``optax.losses.kl_divergence`` and ``optax.losses.kl_divergence_with_log_targets``.
    """
    return _kl_terms(*_kl_weights(targets, log_targets), log_predictions)


def _soften_logits(logits, temperature):
    """``logits / T`` along the class axis; −inf (masked) classes stay −inf with no
    ``inf·0`` in any derivative with respect to ``T``."""
    masked = logits == -jnp.inf
    return jnp.where(masked, -jnp.inf, jnp.where(masked, 0, logits) / temperature)


def _check_distillation(student_logits, teacher_logits, temperature, where):
    _check_distributions("student_logits", student_logits, "teacher_logits", teacher_logits, where,
                         temperature=temperature)


def _distillation_tangent(p, t, out, res):
    # Both log-softmaxes from the stored (max, log-sum-exp) pairs, exact at logits of ±1e4.
    temperature = jnp.asarray(p.temperature)
    per_class = _per_example(temperature)
    log_p = -minus_log_softmax(_soften_logits(p.student_logits, per_class), *res[0])
    log_q = -minus_log_softmax(_soften_logits(p.teacher_logits, per_class), *res[1])
    probs, teacher = jnp.exp(log_p), jnp.exp(log_q)
    kl = out / temperature**2  # K per example (0 where masked by where=)
    present = teacher != 0
    log_q = jnp.where(present, log_q, 0)
    gap = jnp.where(present, log_q - jnp.where(present, log_p, 0), 0)  # log q − log p where q > 0
    centred = teacher * (gap - kl[..., None])  # ∂KL/∂(teacher / T)
    log_p = jnp.where(log_p > -jnp.inf, log_p, 0)  # −inf only at a student-masked class, where p_c = 0
    dtemperature = temperature * (2 * kl - jnp.sum((probs - teacher) * log_p + centred * log_q, axis=-1))
    dlogits = _class_sum((per_class * (probs - teacher), t.student_logits), (per_class * centred, t.teacher_logits))
    return tangent_sum((1.0, dlogits), (dtemperature, t.temperature))


@hand_derivative(_distillation_tangent, check=_check_distillation, residuals=True)
def distillation_loss(student_logits, teacher_logits, *, temperature=1.0, where=None):
    r"""Knowledge-distillation loss: KL(teacher ‖ student) on temperature-softened logits.

    With :math:`p = \operatorname{softmax}(s/T)` (student) and
    :math:`q = \operatorname{softmax}(u/T)` (teacher),

    .. math:: \ell = T^2 \sum_c q_c (\log q_c - \log p_c) = T^2\,\mathrm{KL}(q \,\|\, p).

    The factor :math:`T^2` keeps the gradient's scale independent of ``T``.

    Derivatives (hand rule), with :math:`K = \mathrm{KL}(q\|p)` and
    :math:`d_c = \log q_c - \log p_c`: ``∂ℓ/∂s = T(p − q)``;
    ``∂ℓ/∂u = T·q ⊙ (d − K)`` (the teacher is differentiated too: its gradient sums to 0
    over the classes but is not 0); ``∂ℓ/∂T = T(2K − ⟨p − q, log p⟩ − ⟨q ⊙ (d − K), log q⟩)``
    (``= (2ℓ − ⟨∂ℓ/∂s, s⟩ − ⟨∂ℓ/∂u, u⟩)/T``, written with log-probabilities so that it
    does not depend on the logits' offset).  Reverse mode keeps only the logits and the
    per-example maximum and log-sum-exp of each side, and recomputes both softmaxes; no
    ``[..., C]`` array is stored.

    Logits of ±1e4 give finite values and derivatives.  Classes masked with −inf in both
    logits at the same positions contribute 0, and all derivatives there are 0; a row
    with every class −inf must be masked with ``where``.  A class that is −inf for the
    student only, where the teacher has mass, gives a loss of +inf (the student rules
    out what the teacher predicts); the student's gradient stays finite, the teacher's
    and the temperature's are not.  Where only the teacher has −inf, the class simply
    has ``q_c = 0``.

    Args:
      student_logits: float array ``[..., C]``.
      teacher_logits: float array of the same shape (differentiated; wrap it in
        ``jax.lax.stop_gradient`` for a frozen teacher).
      temperature: float > 0, or a float array broadcasting to the batch shape ``[...]``
        (differentiated when traced).
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      Losses of the batch shape ``student_logits.shape[:-1]``, float32 for
      lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.distillation_loss(jnp.array([[1.0, 2.0, 3.0], [1.0, 1.0, -jnp.inf]]),
      ...                           jnp.array([[3.0, 2.0, 1.0], [2.0, 0.0, -jnp.inf]]), temperature=2.0)
      Array([1.2806268 , 0.44377655], dtype=float32)

    References:
      Hinton, Vinyals & Dean, "Distilling the knowledge in a neural network", 2015.
      ``T**2 * optax.losses.kl_divergence(jax.nn.log_softmax(s / T), jax.nn.softmax(u / T))``;
      ``T**2 * torch.nn.functional.kl_div(log_softmax(s / T), softmax(u / T), reduction="none").sum(-1)``.
    """
    per_class = _per_example(temperature)
    student, teacher = _soften_logits(student_logits, per_class), _soften_logits(teacher_logits, per_class)
    statistics = shifted_logsumexp(student), shifted_logsumexp(teacher)
    log_q = -minus_log_softmax(teacher, *statistics[1])
    kl = _kl_terms(jnp.exp(log_q), log_q, -minus_log_softmax(student, *statistics[0]))
    return jnp.asarray(temperature) ** 2 * kl, statistics
