"""Catalogue entries: self-supervised losses on two views."""

from __future__ import annotations

import jax.numpy as jnp

from jaxloss import selfsupervised
from jaxloss.catalogue._common import HUGE, Entry

_VIEWS = (8, 4)  # examples (even: the sharded check splits them in two), features


def _with_std(x, scales):
    """``x`` with each feature centred and rescaled to the unbiased standard deviation ``scales``."""
    x = x - x.mean(0)
    return x / x.std(0, ddof=1) * scales


def _two_views(**options):
    """(z1, z2) ``[8, 4]``, correlated, with per-feature standard deviations away from 1
    (VICReg's hinge kink); float options as float32 arrays."""

    def sample(rng):
        z1 = _with_std(rng.standard_normal(_VIEWS), [0.5, 0.8, 1.3, 2.0]) + rng.standard_normal(_VIEWS[1])
        z2 = _with_std(z1 + 0.7 * rng.standard_normal(_VIEWS), [0.6, 1.4, 0.7, 1.8])
        return (jnp.float32(z1), jnp.float32(z2)), {k: jnp.float32(v) for k, v in options.items()}

    return sample


def _extreme_views():
    huge = jnp.array([[1e4, 0.0, 1.0], [-1e4, 0.0, 2.0], [1e4, 0.0, 3.0], [0.0, 0.0, 4.0]])  # a collapsed feature
    same = jnp.broadcast_to(jnp.array([1.0, -2.0, 0.5]), (4, 3))  # identical rows: every feature collapsed
    zeros = jnp.zeros((4, 3))
    return [((huge, huge[::-1]), {}), ((huge, -huge), {}), ((same, huge), {}), ((same, same), {}),
            ((zeros, zeros), {}), ((huge[:1], same[:1]), {}),  # one example
            ((huge, same), {"where": jnp.array([False, True, False, False])}),
            ((huge, huge), {"where": jnp.zeros(4, bool)})]


def _predictions_and_targets(rng):
    p = rng.standard_normal((5, 3)) + 0.3
    return (jnp.float32(p), jnp.float32(0.5 * p + rng.standard_normal((5, 3)))), {}


def _extreme_cosine_similarity():
    zeros = jnp.zeros_like(HUGE)
    return [((HUGE, HUGE), {}), ((HUGE, -2 * HUGE), {}), ((zeros, HUGE), {}), ((HUGE, zeros), {}),
            ((zeros, zeros), {}), ((HUGE, zeros), {"where": jnp.zeros(2, bool)})]


def _dino(rng):
    """Student ``[4, 3, 5]`` (3 views), teacher ``[4, 2, 5]`` (the student's first 2 views,
    perturbed), centre ``[5]``; temperatures that keep the softmaxes informative."""
    student = 2 * rng.standard_normal((4, 3, 5))
    teacher = student[:, :2] + 0.5 * rng.standard_normal((4, 2, 5))
    return (jnp.float32(student), jnp.float32(teacher)), {
        "center": jnp.float32(0.3 * rng.standard_normal(5)),
        "student_temperature": jnp.float32(0.5), "teacher_temperature": jnp.float32(0.3)}


def _extreme_dino():
    huge = jnp.array([[[1e4, -1e4, 0.0], [0.0, 1e4, 1e4], [-1e4, 0.0, 0.0]],
                      [[0.0, 0.0, 0.0], [1e4, 1e4, 1e4], [1e4, -1e4, 1e4]]])
    center = jnp.array([1e4, 0.0, -1e4])
    return [((huge, huge[:, :2]), {"center": jnp.zeros(3)}),  # default temperatures 0.1 and 0.04
            ((huge, -huge[:, 1:]), {"center": center}),
            ((huge, huge[:, :2]), {"center": center, "student_temperature": 1e-3, "teacher_temperature": 1e-3}),
            ((huge, huge[:, :2]), {"center": center, "where": jnp.zeros(2, bool)})]


ENTRIES: tuple[Entry, ...] = (
    Entry(selfsupervised.barlow_twins_loss, "self-supervised",
          "facebookresearch/barlowtwins BarlowTwins (BatchNorm1d eps)",
          _two_views(lambda_=0.3, eps=1e-3), _extreme_views, sharded=True, per_batch=True),
    Entry(selfsupervised.vicreg_loss, "self-supervised",
          "facebookresearch/vicreg VICReg (variance term not halved: the paper's Algorithm 1)",
          _two_views(sim_coeff=2.0, std_coeff=3.0, cov_coeff=1.5, eps=1e-3), _extreme_views,
          sharded=True, per_batch=True),
    Entry(selfsupervised.negative_cosine_similarity, "self-supervised",
          "SimSiam D(p, z); BYOL's loss is 2 + 2·this",
          _predictions_and_targets, _extreme_cosine_similarity),
    Entry(selfsupervised.dino_loss, "self-supervised",
          "facebookresearch/dino DINOLoss (its value is the batch mean)",
          _dino, _extreme_dino),
)
