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
      Array([0.12692805, 1.0986123 ], dtype=float32)

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


_HINGE_KINDS = ("crammer_singer", "weston_watkins")


def _check_multiclass_hinge(scores, labels, margin, kind, p, where):
    _check_classes(scores, labels, where, name="scores", margin=margin)
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
    label = _one_hot(p.labels, classes)
    m = jnp.asarray(p.margin)
    if p.kind == "crammer_singer":
        # z = m + max_{j≠y} s_j − s_y; the max's derivative is split evenly among ties.
        runner_up = res
        z = m + runner_up - _label_value(s, p.labels)
        tied = jnp.where(~label & (s == runner_up[..., None]), 1.0, 0.0)
        share = tied / jnp.maximum(jnp.sum(tied, axis=-1, keepdims=True), 1.0)
        slope = _multiclass_hinge_slope(z, p.p)
        ds = slope[..., None] * (share - label)  # ∂ℓ/∂s_j
        dm = slope
    else:
        # ℓ = Σ_{j≠y} max(0, z_j)^p / C with z_j = m − s_y + s_j.
        z = m[..., None] - _label_value(s, p.labels)[..., None] + s
        slope = jnp.where(label, 0.0, _multiclass_hinge_slope(z, p.p)) / max(classes, 1)
        dm = jnp.sum(slope, axis=-1)
        ds = slope - dm[..., None] * label  # ∂ℓ/∂s_j
    return tangent_sum((1.0, _class_sum((ds, t.scores))), (dm, t.margin))


@hand_derivative(_multiclass_hinge_tangent, static=("kind", "p"), check=_check_multiclass_hinge,
                 residuals=True)
def multiclass_hinge_loss(scores, labels, *, margin=1.0, kind="crammer_singer", p=1, where=None):
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
    and gets derivative 0; the label class's score must be finite.  An out-of-range
    label selects no class: its label score counts as 0 and every class counts as a
    wrong one.  Reverse mode keeps the inputs and, for Crammer–Singer, the runner-up
    score per example.

    Args:
      scores: float array ``[..., C]`` of class scores (logits), the class axis last.
      labels: integer class ids with the batch shape ``scores.shape[:-1]``; no derivative.
      margin: float >= 0, or a float array broadcasting to the batch shape
        (differentiated when traced).
      kind: static; ``"crammer_singer"`` or ``"weston_watkins"``.
      p: static; 1 (hinge) or 2 (squared hinge).
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
    label = _one_hot(labels, scores.shape[-1])
    m = jnp.asarray(margin)
    if kind == "crammer_singer":
        runner_up = jnp.max(jnp.where(label, -jnp.inf, scores), axis=-1, initial=-jnp.inf)
        hinge = jax.nn.relu(m + runner_up - _label_value(scores, labels))
        return (hinge if p == 1 else jnp.square(hinge)), runner_up
    hinges = jax.nn.relu(m[..., None] - _label_value(scores, labels)[..., None] + scores)
    hinges = hinges if p == 1 else jnp.square(hinges)
    return jnp.sum(jnp.where(label, 0.0, hinges), axis=-1) / max(scores.shape[-1], 1), ()


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
    log_p = -_minus_log_softmax(_soften_logits(p.student_logits, per_class), *res[0])
    log_q = -_minus_log_softmax(_soften_logits(p.teacher_logits, per_class), *res[1])
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
    statistics = _shifted_logsumexp(student), _shifted_logsumexp(teacher)
    log_q = -_minus_log_softmax(teacher, *statistics[1])
    kl = _kl_terms(jnp.exp(log_q), log_q, -_minus_log_softmax(student, *statistics[0]))
    return jnp.asarray(temperature) ** 2 * kl, statistics
