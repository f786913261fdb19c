"""What a user would write instead: the textbook stable formulas, differentiated by autodiff.

``verify``'s precision column holds each loss to the float32 precision of plain autodiff of
the formula a careful user writes in jnp (``jax.nn.log_softmax`` of the similarity matrix,
say), not to that of jaxloss's own formula, which can share a loss's flaw.  A loss with no
entry here is measured against autodiff of its own formula (``fn.reference``).

:data:`EASY` holds "easy batches" for the losses whose float32 precision is most at risk:
near-duplicate pairs at a large scale, where each row's loss is tiny and a positive logit
taken apart from its row's log-sum-exp cancels at rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _cross_entropy_rows(logits):
    """``−diag(log_softmax(logits))``: each row's cross-entropy of its own column."""
    return -jnp.diagonal(jax.nn.log_softmax(logits, axis=-1))


def _unit(x):
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _with_negatives(logits, rows, negatives, negatives_where):
    """``logits`` followed by the columns ``⟨row_i, n⟩`` of extra negatives (``[Q, D]`` shared,
    ``[N, K, D]`` each row's own), −inf where ``negatives_where`` masks them."""
    if negatives is None:
        return logits
    dots = rows @ negatives.T if negatives.ndim == 2 else jnp.einsum("nd,nkd->nk", rows, negatives)
    return jnp.concatenate([logits, dots if negatives_where is None else jnp.where(negatives_where, dots, -jnp.inf)], 1)


def info_nce_loss(queries, keys, *, temperature=0.07, negatives=None, negatives_where=None, **_):
    q = queries / temperature
    return _cross_entropy_rows(_with_negatives(q @ keys.T, q, negatives, negatives_where))


def multiple_negatives_ranking_loss(anchors, positives, *, scale=20.0, symmetric=False, negatives=None,
                                    negatives_where=None, **_):
    a = scale * _unit(anchors)
    logits = a @ _unit(positives).T
    rows = _cross_entropy_rows(_with_negatives(logits, a, None if negatives is None else _unit(negatives),
                                               negatives_where))
    return 0.5 * (rows + _cross_entropy_rows(logits.T)) if symmetric else rows


def clip_loss(image_embeddings, text_embeddings, *, logit_scale, image_negatives=None, image_negatives_where=None,
              text_negatives=None, text_negatives_where=None, **_):
    logits = image_embeddings @ text_embeddings.T
    per_image = _with_negatives(logits, image_embeddings, text_negatives, text_negatives_where)
    per_text = _with_negatives(logits.T, text_embeddings, image_negatives, image_negatives_where)
    scale = jnp.exp(logit_scale)
    return 0.5 * (_cross_entropy_rows(scale * per_image) + _cross_entropy_rows(scale * per_text))


TEXTBOOK = {f.__name__: f for f in (info_nce_loss, multiple_negatives_ranking_loss, clip_loss)}


def _near_duplicates(rng, spread, n=128, d=32, noise=1e-3):
    """``n`` unit rows scattered by ``spread`` around one direction, and their positives a
    tiny step away (renormalised): at a scale of 100 every row's loss is small (spread 0.06:
    3e-3 to 0.3; spread 0.1: down to 1e-5), so ``1 − p_ii`` must not cancel."""
    centre = rng.standard_normal(d)
    u = centre / np.linalg.norm(centre) + spread * rng.standard_normal((n, d))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    v = u + noise * rng.standard_normal((n, d))
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return jnp.float32(u), jnp.float32(v)


def _easy(**options):
    """The easy batches (two spreads) with ``options`` (a scale of 100)."""
    options = {k: jnp.float32(v) for k, v in options.items()}
    return lambda rng: [(_near_duplicates(rng, spread), options) for spread in (0.06, 0.1)]


EASY = {
    "info_nce_loss": _easy(temperature=0.01),
    "multiple_negatives_ranking_loss": _easy(scale=100.0),
    "clip_loss": _easy(logit_scale=np.log(100.0)),
}
