"""README's "Coming from optax / torch" table, checked row by row.

Each row names an optax / torch call and the jaxloss call that gives the same numbers.  Every
row must have a pair registered here under the same two cells (``@pair``), every pair a row,
every optax.losses function and torch.nn.functional loss a row, and each pair must give the
same numbers on the sample inputs below (torch in float64, jaxloss in float32).
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp

import jaxloss
from _peer import J

pytestmark = pytest.mark.full  # the full tier: pytest --full

torch = pytest.importorskip("torch")
F = torch.nn.functional

SECTION = "## Coming from optax / torch"
TORCH_LOSSES = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "cosine_embedding_loss", "cross_entropy",
                "ctc_loss", "gaussian_nll_loss", "hinge_embedding_loss", "huber_loss", "kl_div", "l1_loss",
                "margin_ranking_loss", "mse_loss", "multi_margin_loss", "multilabel_margin_loss",
                "multilabel_soft_margin_loss", "nll_loss", "poisson_nll_loss", "smooth_l1_loss", "soft_margin_loss",
                "triplet_margin_loss", "triplet_margin_with_distance_loss"]


def table_rows():
    """``{peer call: jaxloss call}`` from the README section (``–`` where there is none)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        peer, ours = (cell[1:-1] if cell.startswith("`") else cell for cell in cells[:2])
        assert peer not in rows, f"two rows for {peer}"
        rows[peer] = ours
    return rows


PAIRS = {}


def pair(peer, ours):
    """Registers ``fn() -> (peer's numbers, jaxloss's numbers)`` for the row ``peer | ours``."""
    def register(fn):
        PAIRS[peer] = (ours, fn)
        return fn
    return register


# ------------------------------------------------------------------ sample inputs

rng = np.random.default_rng(0)
X = rng.normal(size=(4, 5)).astype(np.float32)  # logits / scores, 5 classes
Y = np.array([0, 3, 1, 4])  # class ids
T = rng.dirichlet(np.ones(5), size=4).astype(np.float32)  # probability targets
LOGP = np.asarray(jax.nn.log_softmax(X))
CLASS_MASK = np.array([[1, 1, 0, 1, 1], [1, 0, 1, 1, 1], [1, 1, 1, 1, 0], [0, 1, 1, 1, 1]], bool)
P, Q = rng.normal(size=(2, 6)).astype(np.float32)  # predictions, targets
B = rng.normal(size=(3, 4)).astype(np.float32)  # binary logits
BY = (rng.uniform(size=(3, 4)) > 0.5).astype(np.float32)  # {0, 1} labels
SIGNS = 2 * BY - 1
PROBS = rng.uniform(0.05, 0.95, size=(3, 4)).astype(np.float32)
W = rng.uniform(0.2, 2.0, size=5).astype(np.float32)  # class weights
A, POS, NEG = rng.normal(size=(3, 4, 3)).astype(np.float32)  # embeddings
PAIR_SIGNS = np.array([1.0, -1.0, 1.0, -1.0], np.float32)
SEG = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
SEG_T = np.asarray(jax.nn.one_hot(rng.integers(0, 3, size=(2, 4, 4)), 3))
SEG_B = rng.normal(size=(2, 4, 4)).astype(np.float32)
SEG_BT = (rng.uniform(size=(2, 4, 4)) > 0.5).astype(np.float32)
IGNORED = np.array([0, -100, 1, 4])  # one ignored id
CTC_X = rng.normal(size=(2, 6, 4)).astype(np.float32)
CTC_Y = np.array([[1, 2, 0], [3, 3, 1]])
CTC_XP = np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], np.float32)
CTC_YP = np.array([[0, 0, 1], [0, 0, 0]], np.float32)


def t64(a):
    return torch.tensor(np.asarray(a, np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating) else a)


def np_(value):
    return value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


# ------------------------------------------------------------------ optax.losses

@pair("optax.losses.binary_dice_loss(x, t, smooth=s)", "jaxloss.binary_dice_loss(x, t, smooth=s)")
def _():
    return optax.losses.binary_dice_loss(SEG_B, SEG_BT, smooth=0.5), J.binary_dice_loss(SEG_B, SEG_BT, smooth=0.5)


@pair("optax.losses.convex_kl_divergence(logp, t)", "jaxloss.convex_kl_divergence(logp, t)")
def _():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.losses.convex_kl_divergence(LOGP, T), J.convex_kl_divergence(LOGP, T)


@pair("optax.losses.cosine_distance(p, t, where=m)", "jaxloss.cosine_distance(p, t, feature_mask=m)")
def _():
    return (optax.losses.cosine_distance(X, T, where=CLASS_MASK),
            J.cosine_distance(X, T, feature_mask=CLASS_MASK))


@pair("optax.losses.cosine_similarity(p, t, where=m)", "jaxloss.cosine_similarity(p, t, feature_mask=m)")
def _():
    return (optax.losses.cosine_similarity(X, T, where=CLASS_MASK),
            J.cosine_similarity(X, T, feature_mask=CLASS_MASK))


@pair("optax.losses.ctc_loss(x, xp, y, yp)", "jaxloss.ctc_loss(x, xp, y, yp)")
def _():
    return optax.losses.ctc_loss(CTC_X, CTC_XP, CTC_Y, CTC_YP), J.ctc_loss(CTC_X, CTC_XP, CTC_Y, CTC_YP)


@pair("optax.losses.ctc_loss_with_forward_probs(x, xp, y, yp)", "jaxloss.ctc_loss_with_forward_probs(x, xp, y, yp)")
def _():
    flat = lambda outputs: np.concatenate([np.ravel(o) for o in outputs])  # noqa: E731
    return (flat(optax.losses.ctc_loss_with_forward_probs(CTC_X, CTC_XP, CTC_Y, CTC_YP)),
            flat(J.ctc_loss_with_forward_probs(CTC_X, CTC_XP, CTC_Y, CTC_YP)))


@pair("optax.losses.dice_loss(x, t, smooth=s, alpha=a, beta=b)", "jaxloss.dice_loss(x, t, smooth=s, alpha=a, beta=b)")
def _():
    return (optax.losses.dice_loss(SEG, SEG_T, smooth=0.5, alpha=0.3, beta=0.7),
            J.dice_loss(SEG, SEG_T, smooth=0.5, alpha=0.3, beta=0.7))


@pair("optax.losses.generalized_kl_divergence(logp, t, where=m)",
      "jaxloss.generalized_kl_divergence(logp, t, class_mask=m)")
def _():
    return (optax.losses.generalized_kl_divergence(LOGP, T, where=CLASS_MASK),
            J.generalized_kl_divergence(LOGP, T, class_mask=CLASS_MASK))


@pair("optax.losses.hinge_loss(s, y)", "jaxloss.hinge_loss(s, y)")
def _():
    return optax.losses.hinge_loss(B, SIGNS), J.hinge_loss(B, SIGNS)


@pair("optax.losses.huber_loss(p, t, delta=d)", "jaxloss.huber_loss(p, t, delta=d)")
def _():
    return optax.losses.huber_loss(P, Q, delta=0.7), J.huber_loss(P, Q, delta=0.7)


@pair("optax.losses.kl_divergence(logp, t, where=m)", "jaxloss.kl_divergence(logp, t, class_mask=m)")
def _():
    return (optax.losses.kl_divergence(LOGP, T, where=CLASS_MASK),
            J.kl_divergence(LOGP, T, class_mask=CLASS_MASK))


@pair("optax.losses.kl_divergence_with_log_targets(logp, logt)",
      "jaxloss.kl_divergence_with_log_targets(logp, logt)")
def _():
    return (optax.losses.kl_divergence_with_log_targets(LOGP, np.log(T)),
            J.kl_divergence_with_log_targets(LOGP, np.log(T)))


@pair("optax.losses.l2_loss(p, t)", "jaxloss.l2_loss(p, t)")
def _():
    return optax.losses.l2_loss(P, Q), J.l2_loss(P, Q)


@pair("optax.losses.log_cosh(p, t)", "jaxloss.log_cosh(p, t)")
def _():
    return optax.losses.log_cosh(P, Q), J.log_cosh(P, Q)


@pair("optax.losses.make_fenchel_young_loss(f)(s, y)", "jaxloss.make_fenchel_young_loss(f)(s, y)")
def _():
    return (jax.vmap(optax.losses.make_fenchel_young_loss(logsumexp))(X, T),
            jaxloss.make_fenchel_young_loss(logsumexp)(X, T))


@pair("optax.losses.multiclass_generalized_dice_loss(x, t)", "jaxloss.multiclass_generalized_dice_loss(x, t)")
def _():
    return optax.losses.multiclass_generalized_dice_loss(SEG, SEG_T), J.multiclass_generalized_dice_loss(SEG, SEG_T)


@pair("optax.losses.multiclass_hinge_loss(s, y)", "jaxloss.multiclass_hinge_loss(s, y)")
def _():
    return optax.losses.multiclass_hinge_loss(X, Y), J.multiclass_hinge_loss(X, Y)


@pair("optax.losses.multiclass_perceptron_loss(s, y)", "jaxloss.multiclass_perceptron_loss(s, y)")
def _():
    return optax.losses.multiclass_perceptron_loss(X, Y), J.multiclass_perceptron_loss(X, Y)


@pair("optax.losses.multiclass_sparsemax_loss(s, y)", "jaxloss.multiclass_sparsemax_loss(s, y)")
def _():
    return optax.losses.multiclass_sparsemax_loss(X, Y), J.multiclass_sparsemax_loss(X, Y)


@pair("optax.losses.ntxent(x, y, temperature=T)",
      "jaxloss.reduce.mean(jaxloss.ntxent(x, y, temperature=T), weights=k)")
def _():
    labels = np.array([0, 1, 0, 1, 1])
    embeddings = np.concatenate([A, NEG[:1]])
    positives = (np.sum(labels[:, None] == labels[None, :], axis=1) - 1).astype(np.float32)
    return (optax.losses.ntxent(embeddings, labels, temperature=0.5),
            jaxloss.reduce.mean(J.ntxent(embeddings, labels, temperature=0.5), weights=positives))


@pair("optax.losses.perceptron_loss(s, y)", "jaxloss.perceptron_loss(s, y)")
def _():
    return optax.losses.perceptron_loss(B, SIGNS), J.perceptron_loss(B, SIGNS)


@pair("optax.losses.poly_loss_cross_entropy(x, t, epsilon=e, where=m)",
      "jaxloss.poly_loss_cross_entropy(x, t, epsilon=e, class_mask=m)")
def _():
    return (optax.losses.poly_loss_cross_entropy(X, T, epsilon=1.5, where=CLASS_MASK),
            J.poly_loss_cross_entropy(X, T, epsilon=1.5, class_mask=CLASS_MASK))


@pair("optax.losses.ranking_softmax_loss(x, y)", "jaxloss.reduce.mean(jaxloss.ranking_softmax_loss(x, y))")
def _():
    return optax.losses.ranking_softmax_loss(X, T), jaxloss.reduce.mean(J.ranking_softmax_loss(X, T))


@pair("optax.losses.safe_softmax_cross_entropy(x, t)", "jaxloss.safe_softmax_cross_entropy(x, t)")
def _():
    logits = X.copy()
    logits[0, 2] = -np.inf
    targets = T.copy()
    targets[0] = [0.5, 0.5, 0.0, 0.0, 0.0]
    return optax.losses.safe_softmax_cross_entropy(logits, targets), J.safe_softmax_cross_entropy(logits, targets)


@pair("optax.losses.sigmoid_binary_cross_entropy(x, y)", "jaxloss.sigmoid_binary_cross_entropy(x, y)")
def _():
    return optax.losses.sigmoid_binary_cross_entropy(B, BY), J.sigmoid_binary_cross_entropy(B, BY)


@pair("optax.losses.sigmoid_focal_loss(x, y, alpha=a, gamma=g)", "jaxloss.sigmoid_focal_loss(x, y, alpha=a, gamma=g)")
def _():
    theirs = [optax.losses.sigmoid_focal_loss(B, BY, alpha=a, gamma=1.5) for a in (None, 0.25)]
    ours = [J.sigmoid_focal_loss(B, BY, alpha=a, gamma=1.5) for a in (None, 0.25)]
    theirs.append(optax.losses.sigmoid_focal_loss(B, BY))
    ours.append(J.sigmoid_focal_loss(B, BY))
    return np.stack(theirs), np.stack(ours)


@pair("optax.losses.smooth_labels(t, a, where=m)", "jaxloss.smooth_labels(t, a, class_mask=m)")
def _():
    return optax.losses.smooth_labels(T, 0.2, where=CLASS_MASK), J.smooth_labels(T, 0.2, class_mask=CLASS_MASK)


@pair("optax.losses.softmax_cross_entropy(x, t, where=m)", "jaxloss.softmax_cross_entropy(x, t, class_mask=m)")
def _():
    return (optax.losses.softmax_cross_entropy(X, T, where=CLASS_MASK),
            J.softmax_cross_entropy(X, T, class_mask=CLASS_MASK))


@pair("optax.losses.softmax_cross_entropy_with_integer_labels(x, y, where=m)",
      "jaxloss.softmax_cross_entropy_with_integer_labels(x, y, class_mask=m)")
def _():
    mask = CLASS_MASK | jax.nn.one_hot(Y, 5).astype(bool)  # the label class kept
    return (optax.losses.softmax_cross_entropy_with_integer_labels(X, Y, where=mask),
            J.softmax_cross_entropy_with_integer_labels(X, Y, class_mask=mask))


@pair("optax.losses.sparsemax_loss(x, y)", "jaxloss.sparsemax_loss(x, y)")
def _():
    return optax.losses.sparsemax_loss(B, BY), J.sparsemax_loss(B, BY)


@pair("optax.losses.squared_error(p, t)", "jaxloss.squared_error(p, t)")
def _():
    return optax.losses.squared_error(P, Q), J.squared_error(P, Q)


@pair("optax.losses.triplet_margin_loss(a, p, n, eps=0)", "jaxloss.triplet_margin_loss(a, p, n, eps=0)")
def _():
    return optax.losses.triplet_margin_loss(A, POS, NEG, eps=0), J.triplet_margin_loss(A, POS, NEG, eps=0)


# ------------------------------------------------------------------ torch.nn.functional

@pair("F.binary_cross_entropy(p, y, weight=w)", "w * jaxloss.binary_cross_entropy(p, y)")
def _():
    w = W[:4]
    return (F.binary_cross_entropy(t64(PROBS), t64(BY), weight=t64(w), reduction="none"),
            w * J.binary_cross_entropy(PROBS, BY))


@pair("F.binary_cross_entropy_with_logits(x, y, pos_weight=q)",
      "jaxloss.sigmoid_binary_cross_entropy(x, y, pos_weight=q)")
def _():
    q = W[:4]
    return (F.binary_cross_entropy_with_logits(t64(B), t64(BY), pos_weight=t64(q), reduction="none"),
            J.sigmoid_binary_cross_entropy(B, BY, pos_weight=q))


@pair("F.cosine_embedding_loss(a, b, y, margin=m)", "jaxloss.cosine_embedding_loss(a, b, y, margin=m)")
def _():
    return (F.cosine_embedding_loss(t64(A), t64(POS), t64(PAIR_SIGNS), margin=0.2, reduction="none"),
            J.cosine_embedding_loss(A, POS, PAIR_SIGNS, margin=0.2))


@pair("F.cross_entropy(x, y, weight=w, ignore_index=i, label_smoothing=e)",
      "jaxloss.softmax_cross_entropy(x, y, class_weights=w, ignore_index=i, label_smoothing=e, axis=1)")
def _():
    x = np.moveaxis(SEG, -1, 1)  # [N, C, h, w]
    y = np.argmax(SEG_T, -1)
    y[0, 0, 0] = 2
    w = W[:3]
    return (F.cross_entropy(t64(x), t64(y), weight=t64(w), ignore_index=2, label_smoothing=0.1, reduction="none"),
            J.softmax_cross_entropy(x, y, class_weights=w, ignore_index=2, label_smoothing=0.1, axis=1))


@pair('F.cross_entropy(x, y, weight=w, ignore_index=i, reduction="mean")',
      "jaxloss.reduce.ratio(jaxloss.softmax_cross_entropy(x, y, class_weights=w, ignore_index=i, axis=1), "
      "w[jnp.where(y != i, y, 0)], where=y != i)")
def _():
    y = IGNORED
    losses = J.softmax_cross_entropy(X, y, class_weights=W, ignore_index=-100, axis=1)
    return (F.cross_entropy(t64(X), t64(y), weight=t64(W), ignore_index=-100, reduction="mean"),
            jaxloss.reduce.ratio(losses, W[jnp.where(y != -100, y, 0)], where=y != -100))


@pair("F.ctc_loss(logp, y, il, tl)", "jaxloss.ctc_loss(x, xp, y, yp)")
def _():
    return _torch_ctc("none"), J.ctc_loss(CTC_X, CTC_XP, CTC_Y, CTC_YP)


@pair('F.ctc_loss(logp, y, il, tl, reduction="mean")', "jaxloss.reduce.mean(jaxloss.ctc_loss(x, xp, y, yp) / tl)")
def _():
    tl = np.sum(1 - CTC_YP, axis=1)
    return _torch_ctc("mean"), jaxloss.reduce.mean(J.ctc_loss(CTC_X, CTC_XP, CTC_Y, CTC_YP) / tl)


def _torch_ctc(reduction):
    log_probs = F.log_softmax(t64(CTC_X), -1).transpose(0, 1)
    il = torch.tensor(np.sum(1 - CTC_XP, axis=1).astype(np.int64))
    tl = torch.tensor(np.sum(1 - CTC_YP, axis=1).astype(np.int64))
    return F.ctc_loss(log_probs, t64(CTC_Y), il, tl, reduction=reduction)


@pair("F.gaussian_nll_loss(m, t, v, full=f, eps=e)", "jaxloss.gaussian_nll_loss(m, t, v, full=f, eps=e)")
def _():
    v = np.abs(Q) + 0.1
    return (F.gaussian_nll_loss(t64(P), t64(Q), t64(v), full=True, eps=0.2, reduction="none"),
            J.gaussian_nll_loss(P, Q, v, full=True, eps=0.2))


@pair("F.hinge_embedding_loss(x, y, margin=m)", "jaxloss.hinge_embedding_loss(x, y, margin=m)")
def _():
    return (F.hinge_embedding_loss(t64(B), t64(SIGNS), margin=0.5, reduction="none"),
            J.hinge_embedding_loss(B, SIGNS, margin=0.5))


@pair("F.huber_loss(p, t, delta=d)", "jaxloss.huber_loss(p, t, delta=d)")
def _():
    return F.huber_loss(t64(P), t64(Q), delta=0.7, reduction="none"), J.huber_loss(P, Q, delta=0.7)


@pair("F.kl_div(logp, t, log_target=b).sum(-1)", "jaxloss.kl_divergence(logp, t, log_targets=b)")
def _():
    theirs = [F.kl_div(t64(LOGP), t64(T), reduction="none").sum(-1),
              F.kl_div(t64(LOGP), t64(np.log(T)), reduction="none", log_target=True).sum(-1)]
    ours = [J.kl_divergence(LOGP, T), J.kl_divergence(LOGP, np.log(T), log_targets=True)]
    return np.stack([np_(t) for t in theirs]), np.stack(ours)


@pair("F.l1_loss(p, t)", "jaxloss.l1_loss(p, t)")
def _():
    return F.l1_loss(t64(P), t64(Q), reduction="none"), J.l1_loss(P, Q)


@pair("F.margin_ranking_loss(a, b, y, margin=m)", "jaxloss.margin_ranking_loss(a, b, y, margin=m)")
def _():
    return (F.margin_ranking_loss(t64(B[0]), t64(B[1]), t64(SIGNS[2]), margin=0.3, reduction="none"),
            J.margin_ranking_loss(B[0], B[1], SIGNS[2], margin=0.3))


@pair("F.mse_loss(p, t)", "jaxloss.mse_loss(p, t)")
def _():
    return F.mse_loss(t64(P), t64(Q), reduction="none"), J.mse_loss(P, Q)


@pair("F.multi_margin_loss(x, y, p=q, margin=m, weight=w)",
      'jaxloss.multiclass_hinge_loss(x, y, kind="weston_watkins", p=q, margin=m, class_weights=w)')
def _():
    return (F.multi_margin_loss(t64(X), t64(Y), p=2, margin=0.7, weight=t64(W), reduction="none"),
            J.multiclass_hinge_loss(X, Y, kind="weston_watkins", p=2, margin=0.7, class_weights=W))


@pair("F.multilabel_margin_loss(x, y)", "jaxloss.multilabel_margin_loss(x, y)")
def _():
    y = np.array([[3, 0, -1, 1, 2], [1, -1, 0, 0, 0], [4, 3, 2, 1, 0], [-1, 2, 2, 2, 2]])
    return F.multilabel_margin_loss(t64(X), t64(y), reduction="none"), J.multilabel_margin_loss(X, y)


@pair("F.multilabel_soft_margin_loss(x, y, weight=w)", "jaxloss.multilabel_soft_margin_loss(x, y, class_weights=w)")
def _():
    y = (T > 0.2).astype(np.float32)
    return (F.multilabel_soft_margin_loss(t64(X), t64(y), weight=t64(W), reduction="none"),
            J.multilabel_soft_margin_loss(X, y, class_weights=W))


@pair("F.nll_loss(logp, y, weight=w, ignore_index=i)",
      "jaxloss.nll_loss(logp, y, class_weights=w, ignore_index=i, axis=1)")
def _():
    return (F.nll_loss(t64(LOGP), t64(IGNORED), weight=t64(W), reduction="none"),
            J.nll_loss(LOGP, IGNORED, class_weights=W, ignore_index=-100, axis=1))


@pair('F.nll_loss(logp, y, weight=w, ignore_index=i, reduction="mean")',
      "jaxloss.reduce.ratio(jaxloss.nll_loss(logp, y, class_weights=w, ignore_index=i, axis=1), "
      "w[jnp.where(y != i, y, 0)], where=y != i)")
def _():
    y = IGNORED
    losses = J.nll_loss(LOGP, y, class_weights=W, ignore_index=-100, axis=1)
    return (F.nll_loss(t64(LOGP), t64(y), weight=t64(W), reduction="mean"),
            jaxloss.reduce.ratio(losses, W[jnp.where(y != -100, y, 0)], where=y != -100))


@pair("F.poisson_nll_loss(x, t, log_input=l, full=f)", "jaxloss.poisson_nll_loss(x, t, log_input=l, full=f)")
def _():
    rate, counts = np.abs(P) + 0.1, np.round(np.abs(Q) * 3)
    theirs = [F.poisson_nll_loss(t64(P), t64(counts), reduction="none"),
              F.poisson_nll_loss(t64(rate), t64(counts), log_input=False, full=True, reduction="none")]
    ours = [J.poisson_nll_loss(P, counts), J.poisson_nll_loss(rate, counts, log_input=False, full=True)]
    return np.stack([np_(t) for t in theirs]), np.stack(ours)


@pair("F.smooth_l1_loss(p, t, beta=b)", "jaxloss.smooth_l1_loss(p, t, beta=b)")
def _():
    return F.smooth_l1_loss(t64(P), t64(Q), beta=0.5, reduction="none"), J.smooth_l1_loss(P, Q, beta=0.5)


@pair("F.soft_margin_loss(x, y)", "jaxloss.soft_margin_loss(x, y)")
def _():
    return F.soft_margin_loss(t64(B), t64(SIGNS), reduction="none"), J.soft_margin_loss(B, SIGNS)


@pair("F.triplet_margin_loss(a, p, n, margin=m, p=q, eps=e, swap=s)",
      "jaxloss.triplet_margin_loss(a, p, n, margin=m, p=q, eps=e, swap=s)")
def _():
    return (F.triplet_margin_loss(t64(A), t64(POS), t64(NEG), margin=0.5, p=1.5, eps=1e-3, swap=True,
                                  reduction="none"),
            J.triplet_margin_loss(A, POS, NEG, margin=0.5, p=1.5, eps=1e-3, swap=True))


@pair("F.triplet_margin_with_distance_loss(a, p, n, margin=m, swap=s)",
      "jaxloss.triplet_margin_loss(a, p, n, margin=m, swap=s)")
def _():
    return (F.triplet_margin_with_distance_loss(t64(A), t64(POS), t64(NEG), margin=0.5, swap=True, reduction="none"),
            J.triplet_margin_loss(A, POS, NEG, margin=0.5, swap=True))


# ------------------------------------------------------------------ the checks


def test_every_row_has_a_pair_and_every_pair_a_row():
    rows = table_rows()
    assert sorted(set(rows) - set(PAIRS)) == [], "README rows without a pair in tests/peer/test_table.py"
    assert sorted(set(PAIRS) - set(rows)) == [], "pairs without a README row"
    wrong = {peer: (rows[peer], PAIRS[peer][0]) for peer in rows if rows[peer] != PAIRS[peer][0]}
    assert wrong == {}, "README's jaxloss call differs from the pair's (README, test)"


def test_every_peer_loss_has_a_row():
    called = {re.match(r"[\w.]+", peer).group(0) for peer in table_rows()}
    optax_losses = {f"optax.losses.{name}" for name, value in vars(optax.losses).items()
                    if not name.startswith("_") and inspect.isfunction(value)}
    torch_losses = {f"F.{name}" for name in TORCH_LOSSES}
    assert sorted(optax_losses - called) == [], "optax.losses functions without a row"
    assert sorted(torch_losses - called) == [], "torch.nn.functional losses without a row"


@pytest.mark.parametrize("peer", sorted(PAIRS))
def test_row_gives_the_same_numbers(peer):
    theirs, ours = PAIRS[peer][1]()
    theirs, ours = np_(theirs), np.asarray(ours)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-6, equal_nan=False)
