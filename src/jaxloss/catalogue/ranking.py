"""Catalogue entries: Learning-to-rank losses (ranking.py): per-list losses of scores and graded relevance."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxloss import ranking, ranking_metrics
from jaxloss.catalogue._common import Entry

_LISTS = (4, 5)  # lists, items


def _lists(weighted=True, label_step=0.17, spread=0.5, **options):
    """Scores 0.45 apart (no pair difference within 0.1 of the hinge's kink at 1) and distinct
    labels ``label_step`` apart from 0.15 (0.17: in (0.1, 0.9), away from the sigmoid loss's
    clip, no tie for a finite difference to cross), each list in its own random order; item
    weights in ``1 ± spread`` (0.1 keeps the gains (2^y − 1) w of 0.17-spaced labels in the
    labels' order, away from the kinks of the ideal DCG); ``options`` added."""

    def sample(rng):
        def spaced(step, start):
            order = np.argsort(rng.random(_LISTS), axis=-1)
            return jnp.float32(start + step * order + rng.uniform(-0.02, 0.02, _LISTS))

        kwargs = {"weights": jnp.float32(rng.uniform(1 - spread, 1 + spread, _LISTS))} if weighted else {}
        return (spaced(0.45, -1.0), spaced(label_step, 0.15)), {**kwargs, **options}

    return sample


_HUGE = jnp.array([[1e4, -1e4, 0.0, 1.0, 2.0],
                   [0.0, 0.0, 0.0, 0.0, 0.0],  # tied scores
                   [1e4, 1e4, -1e4, -1e4, 0.0],
                   [3.0, 1.0, 2.0, 0.0, -1.0]])
_GRADES = jnp.array([[1.0, 0.0, 0.5, 0.0, 1.0],
                     [1.0, 0.0, 0.0, 1.0, 0.0],
                     [0.0, 0.0, 0.0, 0.0, 0.0],  # no relevant item
                     [1.0, 1.0, 1.0, 0.0, 0.0]])  # tied labels
_ITEMS = jnp.array([[True, True, False, True, False],
                    [False, False, False, False, False],  # every item masked
                    [True, True, True, True, True],
                    [True, False, True, False, True]])


def _extremes(weighted=True, **options):
    def extremes():
        weights = {"weights": jnp.full(_LISTS, 2.0)} if weighted else {}
        weights.update(options)
        padded = jnp.where(_ITEMS, _HUGE, jnp.array([jnp.nan, jnp.inf, -jnp.inf, 1e4])[:, None])
        return [((_HUGE, _GRADES), weights),
                ((-_HUGE, _GRADES), {**weights, "where": _ITEMS}),
                ((padded, jnp.where(_ITEMS, _GRADES, jnp.nan)), {**weights, "where": _ITEMS}),
                ((_HUGE, _GRADES), {**weights, "where": jnp.zeros(4, bool)})]

    return extremes


ENTRIES: tuple[Entry, ...] = (
    Entry(ranking.ranking_softmax_loss, "ranking",
          "optax.losses.ranking_softmax_loss, rax.softmax_loss (reduce_fn=None); sampled with "
          "lambda_weights=\"ndcg\", topn=3: TF-Ranking's SoftmaxLoss(lambda_weight=NDCGLambdaWeight(topn=3))",
          _lists(lambda_weights="ndcg", topn=3), _extremes(lambda_weights="ndcg", topn=3)),
    Entry(ranking.pairwise_logistic_loss, "ranking",
          "rax.pairwise_logistic_loss (RankNet; mean over each list's pairs); sampled with "
          "lambda_weights=\"ndcg\", topn=3: rax.dcg_lambdaweight(normalize=True, topn=3)",
          _lists(spread=0.1, lambda_weights="ndcg", topn=3), _extremes(lambda_weights="ndcg", topn=3)),
    Entry(ranking.pairwise_hinge_loss, "ranking",
          "rax.pairwise_hinge_loss (mean over each list's pairs)",
          _lists(), _extremes()),
    Entry(ranking.pairwise_soft_zero_one_loss, "ranking",
          "rax.pairwise_soft_zero_one_loss (mean over each list's pairs); sampled with "
          "lambda_weights=\"label_diff\": rax.labeldiff_lambdaweight",
          _lists(lambda_weights="label_diff"), _extremes(lambda_weights="label_diff")),
    Entry(ranking.pointwise_sigmoid_loss, "ranking",
          "rax.pointwise_sigmoid_loss (mean over each list's items)",
          _lists(), _extremes()),
    Entry(ranking.pointwise_mse_loss, "ranking",
          "rax.pointwise_mse_loss (mean over each list's items)",
          _lists(), _extremes()),
    Entry(ranking.listmle_loss, "ranking",
          "rax.listmle_loss (reduce_fn=None, key=None)",
          _lists(weighted=False), _extremes(weighted=False)),
    Entry(ranking_metrics.approx_ndcg_loss, "ranking",
          "rax.approx_t12n(rax.ndcg_metric) (reduce_fn=None); sampled with topn=3: rax's approx_cutoff",
          _lists(spread=0.1, temperature=jnp.float32(0.8), topn=3), _extremes(topn=3)),
    Entry(ranking_metrics.approx_mrr_loss, "ranking",
          "rax.approx_t12n(rax.mrr_metric) (reduce_fn=None)",
          _lists(weighted=False, label_step=0.5, temperature=jnp.float32(0.8)), _extremes(weighted=False)),
)
