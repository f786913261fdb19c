"""Multi-class classification losses on logits ``[..., classes]``.

Each returns one loss per example: the batch shape, the class axis (the last) reduced.
Labels are integer class ids of the batch shape or, where a loss says so, probability
targets of the logits' shape.  Out-of-range class ids cannot raise inside ``jit``: an
id outside ``[0, classes)`` selects no class (its label logit counts as 0).

Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian``
and forward-over-reverse Hessian-vector products through its hand-derived rule, which
keeps only the inputs and per-example statistics (a log-sum-exp) for reverse mode and
recomputes the softmax there; ``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss.gradients import hand_derivative, tangent_sum


# ------------------------------------------------------------------ shared helpers


def _check_classes(logits, labels, where=None, *, name="logits", probabilities=False, **options):
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
    _checks.broadcasts_to("where", where, shape[:-1], f"the batch shape of {name}")
    for option, value in options.items():
        if option == "class_weights":
            _checks.float_option(option, value, shape[-1:], f"the class axis of {name}")
            _checks.positive(option, value, allow_zero=True)
        else:
            _checks.float_option(option, value, shape[:-1], f"the batch shape of {name}")


def _one_hot(labels, classes):
    """Boolean ``[..., C]`` mask of the label class (all False for an out-of-range id).

    Built from an iota comparison rather than a gather, so XLA fuses it into the
    reductions over the class axis and its transpose is a select, not a scatter.
    """
    return labels[..., None] == jax.lax.broadcasted_iota(labels.dtype, (1,) * labels.ndim + (classes,), labels.ndim)


def _label_value(x, labels):
    """``x[..., labels]`` along the last axis (0 for an id outside ``[0, C)``).

    A gather, whose transpose scatters one value per example into the gradient, so
    reverse mode never builds a ``[..., C]`` one-hot.
    """
    picked = jnp.take_along_axis(x, labels[..., None], axis=-1, mode="fill", fill_value=0,
                                 wrap_negative_indices=False)
    return picked[..., 0]


def _class_sum(*terms):
    """``Σ_c partial_c · tangent_c`` over the class axis, for the non-zero tangents."""
    total = tangent_sum(*terms)
    return None if total is None else jnp.sum(total, axis=-1)


def _per_example(option):
    """A per-example option (or its tangent) lined up against ``[..., C]`` arrays."""
    return None if option is None else jnp.asarray(option)[..., None]


def _times_nonzero(a, b):
    """``a·b``, with 0 wherever ``a`` is 0 even if ``b`` is infinite (a class whose logit
    is −inf and to which the targets give no mass)."""
    return jnp.where(a == 0, 0.0, a * b)


def _shifted_logsumexp(x):
    """The row maximum ``m`` (0 where the row is all −inf) and ``log Σ_c exp(x_c − m)``.

    Losses work with ``x − m`` so that ``lse − x_c`` is computed from small numbers: for
    logits near 1e4 the unshifted difference loses every digit below ~1e-3.
    """
    m = jax.lax.stop_gradient(jnp.max(x, axis=-1))
    m = jnp.where(jnp.isfinite(m), m, 0)
    return m, jnp.log(jnp.sum(jnp.exp(x - m[..., None]), axis=-1))


def _minus_log_softmax(x, shift, lse):
    """``lse(x) − x_c`` per class (+inf for a logit of −inf) from the shifted statistics."""
    return lse[..., None] - (x - shift[..., None])


# ------------------------------------------------------------------ softmax_cross_entropy


def _check_cross_entropy(logits, labels, label_smoothing, class_weights, where):
    _check_classes(logits, labels, where, probabilities=True, class_weights=class_weights,
                   label_smoothing=label_smoothing)
    _checks.in_unit_interval("label_smoothing", label_smoothing)


def _smoothed_targets(logits, labels, label_smoothing):
    """The smoothed targets ``ỹ = (1 − ε)·y + ε/C``, split as ``ỹ = dense + keep·onehot(y)``
    so that class ids never become a ``[..., C]`` one-hot: for ids ``dense = ε/C`` and
    ``keep = 1 − ε``; for probabilities ``dense = ỹ`` and ``keep = None``."""
    eps = _per_example(label_smoothing)
    classes = logits.shape[-1]
    if jnp.issubdtype(labels.dtype, jnp.integer):
        return jnp.broadcast_to(eps / classes, logits.shape), 1 - eps[..., 0]
    return (1 - eps) * labels + eps / classes, None


def _class_weights(logits, class_weights):
    return jnp.ones(logits.shape[-1]) if class_weights is None else class_weights


def _softmax_cross_entropy_tangent(p, t, out, res):
    x, labels, classes = p.logits, p.labels, p.logits.shape[-1]
    dense, keep = _smoothed_targets(x, labels, p.label_smoothing)
    w = _class_weights(x, p.class_weights)
    nll = _minus_log_softmax(x, *res)  # +inf for a class with logit −inf
    a = w * dense
    t_eps = _per_example(t.label_smoothing)
    per_class = [(w * nll / classes, t_eps), (_times_nonzero(dense, nll), t.class_weights)]
    if keep is None:  # probability targets
        eps = _per_example(p.label_smoothing)
        # A target's derivative is (1 − ε)·w·nll: +inf at a class ruled out (logit −inf);
        # the rule returns 0 there for a class the targets give no mass.
        dlabels = jnp.where((labels == 0) & jnp.isinf(nll), 0.0, (1 - eps) * w * nll)
        per_class += [(dlabels, t.labels), (-_times_nonzero(labels * w, nll), t_eps)]
        total, per_label = jnp.sum(a, axis=-1), None
    else:  # class ids: the label class's terms, gathered
        w_label, nll_label = _label_value(jnp.broadcast_to(w, x.shape), labels), _label_value(nll, labels)
        b = keep * w_label
        total = jnp.sum(a, axis=-1) + b
        gather = lambda v: None if v is None else _label_value(jnp.broadcast_to(v, x.shape), labels)  # noqa: E731
        per_label = tangent_sum(
            (-b, gather(t.logits)),
            (-w_label * nll_label, t.label_smoothing),
            (_times_nonzero(keep, nll_label), gather(t.class_weights)),
        )
    per_class.append((total[..., None] * jnp.exp(-nll) - a, t.logits))
    return tangent_sum((1.0, _class_sum(*per_class)), (1.0, per_label))


@hand_derivative(_softmax_cross_entropy_tangent, check=_check_cross_entropy, residuals=True)
def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, class_weights=None, where=None):
    r"""Softmax cross-entropy per example, with class ids or probability targets.

    With smoothed targets :math:`\tilde y = (1 - \varepsilon) y + \varepsilon / C` (``y``
    one-hot for class ids) and class weights :math:`w` (1 when not given):

    .. math:: \ell = \sum_c w_c \tilde y_c \,(\operatorname{lse}(x) - x_c)
                   = A\,\operatorname{lse}(x) - \sum_c a_c x_c,
       \qquad a_c = w_c \tilde y_c,\; A = \sum_c a_c .

    Derivatives (hand rule): ``∂ℓ/∂x_c = A·softmax(x)_c − a_c``;
    ``∂ℓ/∂y_c = (1 − ε)·w_c·(lse − x_c)`` for probability targets;
    ``∂ℓ/∂ε = Σ_c w_c (lse − x_c)(1/C − y_c)``; ``∂ℓ/∂w_c = ỹ_c (lse − x_c)``.
    Reverse mode keeps only the logits and the per-example maximum and log-sum-exp, and
    recomputes the softmax; no ``[..., C]`` array is stored.

    Logits of ±1e4 are exact, and a class with logit −inf (masked out) costs nothing as
    long as the targets give it no mass: its term, its softmax and its derivatives are 0.
    With ``label_smoothing > 0`` such a class receives ε/C of the target mass, so the loss
    is +inf, as in optax and PyTorch.  A class id outside ``[0, C)`` selects no class, so
    with no smoothing it gives loss 0 (like PyTorch's ``ignore_index=-100``); leave such
    examples out of the mean with ``where=labels >= 0``.

    PyTorch's weighted ``reduction="mean"`` divides by the summed weight of the unmasked
    targets, not by their count.  The per-example losses here are weighted as PyTorch's
    ``reduction="none"`` ones, and :func:`jaxloss.reduce.ratio` gives its mean::

        losses = softmax_cross_entropy(logits, labels, class_weights=w, where=mask)
        loss = jaxloss.reduce.ratio(losses, w[labels], where=mask)

    Args:
      logits: float array ``[..., C]``.
      labels: integer class ids of the batch shape ``logits.shape[:-1]`` (no derivative),
        or float probability targets of the shape of ``logits`` (differentiated).
      label_smoothing: ε in [0, 1]; a float or an array of the batch shape.
      class_weights: optional float weights ``[C]``, >= 0 (differentiated when traced).
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      Losses of the batch shape ``logits.shape[:-1]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -jnp.inf], [0.0, 0.0, 0.0]])
      >>> jaxloss.softmax_cross_entropy(logits, jnp.array([0, 2]))
      Array([0.126928 , 1.0986123], dtype=float32)

    References:
      ``optax.losses.softmax_cross_entropy`` and
      ``optax.losses.softmax_cross_entropy_with_integer_labels``;
      ``torch.nn.functional.cross_entropy(reduction="none")`` (``weight``,
      ``label_smoothing``, class ids or probabilities); Szegedy et al., "Rethinking the
      Inception Architecture", 2016 (label smoothing).
    """
    shift, lse = _shifted_logsumexp(logits)
    shifted = logits - shift[..., None]
    dense, keep = _smoothed_targets(logits, labels, label_smoothing)
    w = _class_weights(logits, class_weights)
    a = w * dense
    loss = jnp.sum(a, axis=-1) * lse - jnp.sum(_times_nonzero(a, shifted), axis=-1)
    if keep is not None:  # class ids
        b = keep * _label_value(jnp.broadcast_to(w, logits.shape), labels)
        loss = loss + b * lse - _times_nonzero(b, _label_value(shifted, labels))
    return loss, (shift, lse)


# ------------------------------------------------------------------ nll_loss


def _check_nll(log_probs, labels, class_weights, where):
    _check_classes(log_probs, labels, where, name="log_probs", class_weights=class_weights)


def _nll_tangent(p, t, out, res):
    gather = lambda v: None if v is None else _label_value(jnp.broadcast_to(v, p.log_probs.shape), p.labels)  # noqa: E731
    w = _class_weights(p.log_probs, p.class_weights)
    return tangent_sum((-gather(w), gather(t.log_probs)), (-gather(p.log_probs), gather(t.class_weights)))


@hand_derivative(_nll_tangent, check=_check_nll)
def nll_loss(log_probs, labels, *, class_weights=None, where=None):
    r"""Negative log-likelihood of the label class, per example: :math:`\ell = -w_y \log p_y`.

    Derivatives (hand rule): ``∂ℓ/∂(log p)_c = −w_y·[c = y]`` and
    ``∂ℓ/∂w_c = −log p_y·[c = y]``.  Other classes may hold −inf (probability 0): they
    are never read.  A class id outside ``[0, C)`` gives loss 0 (PyTorch's
    ``ignore_index``); PyTorch's weighted mean is
    ``jaxloss.reduce.ratio(losses, class_weights[labels], where=mask)``.

    Args:
      log_probs: float array ``[..., C]`` of log-probabilities (e.g. ``jax.nn.log_softmax``).
      labels: integer class ids of the batch shape; no derivative.
      class_weights: optional float weights ``[C]``, >= 0 (differentiated when traced).
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      Losses of the batch shape ``log_probs.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> log_probs = jnp.log(jnp.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]]))
      >>> jaxloss.nll_loss(log_probs, jnp.array([0, 2]), class_weights=jnp.array([1.0, 1.0, 2.0]))
      Array([0.6931472 , 0.71334994], dtype=float32)

    References:
      ``torch.nn.functional.nll_loss(reduction="none")`` (with ``weight``).
    """
    w = _class_weights(log_probs, class_weights)
    return -_label_value(jnp.broadcast_to(w, log_probs.shape), labels) * _label_value(log_probs, labels)


# ------------------------------------------------------------------ focal losses

# ------------------------------------------------------------------ poly1_cross_entropy

# ------------------------------------------------------------------ multiclass_hinge_loss

# ------------------------------------------------------------------ kl_divergence, distillation_loss
