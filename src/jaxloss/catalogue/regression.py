"""Catalogue entries: regression and probabilistic losses on (prediction, target) pairs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxloss import probabilistic, regression
from jaxloss.catalogue._common import HUGE, SHAPE, Entry, away_from_kinks, with_options


def _residual_pair(kinks=()):
    """(predictions, targets) whose residuals keep away from ``kinks``."""

    def sample(rng):
        targets = rng.standard_normal(SHAPE)
        predictions = targets + away_from_kinks(rng, kinks)
        return (jnp.float32(predictions), jnp.float32(targets)), {}

    return sample


def _extreme_pairs():
    zeros = jnp.zeros_like(HUGE)
    return [
        ((HUGE, zeros), {}),
        ((HUGE, HUGE), {}),  # residual exactly 0
        ((zeros, -HUGE), {}),
        ((HUGE, zeros), {"where": jnp.zeros(HUGE.shape, bool)}),  # empty mask
    ]


def _vector_pair(rng, shape=(4, 5)):
    """(predictions, targets) ``[4, 5]`` with ``epsilon = 0.5``: each norm either below
    ``√0.5`` (floored) or above 1, away from the floor's kink."""
    x = rng.standard_normal((2, *shape))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    norms = np.where(rng.random((2, shape[0], 1)) < 0.5, rng.uniform(0.2, 0.5, (2, shape[0], 1)),
                     rng.uniform(1.0, 2.0, (2, shape[0], 1)))
    return (jnp.float32(x[0] * norms[0]), jnp.float32(x[1] * norms[1])), {"epsilon": jnp.float32(0.5)}


def _masked_vector_pair(rng):
    args, kwargs = _vector_pair(rng)
    return args, {**kwargs, "feature_mask": jnp.array([True, True, False, True, True])}


def _extreme_vector_pairs():
    # Zero vectors without a floor, parallel and opposite ones, 1e4, a traced epsilon of 0.
    a = jnp.array([[0.0, 0.0, 0.0], [1e4, -1e4, 0.5], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = jnp.array([[1.0, 2.0, 3.0], [1e4, -1e4, 0.5], [-2.0, -4.0, -6.0], [0.0, 0.0, 0.0]])
    return [((a, b), {}),
            ((a, b), {"epsilon": jnp.float32(0.0)}),
            ((a, b), {"epsilon": jnp.float32(1e-8), "feature_mask": jnp.array([True, False, True])}),
            ((a, b), {"where": jnp.zeros(4, bool)})]


def _gaussian_posterior(rng):
    """(mean, log_variance) ``[4, 3]``; a prior mean and log-variance per latent dimension."""
    return (jnp.float32(rng.standard_normal(SHAPE)), jnp.float32(rng.uniform(-2, 2, SHAPE))), {
        "prior_mean": jnp.float32(0.5 * rng.standard_normal(SHAPE[-1])),
        "prior_log_variance": jnp.float32(rng.uniform(-1, 1, SHAPE[-1]))}


def _extreme_gaussian_posterior():
    # Means of ±1e4 and log-variances of ±50 on either side; a mean equal to its prior's.
    mean = jnp.array([[1e4, -1e4, 0.0], [0.0, 1.0, -1.0]])
    log_variance = jnp.array([[50.0, -50.0, 0.0], [-50.0, 50.0, 0.0]])
    return [((mean, log_variance), {}),
            ((mean, log_variance), {"prior_log_variance": 50.0}),
            ((mean, jnp.zeros_like(mean)), {"prior_mean": mean, "prior_log_variance": jnp.array([50.0, -50.0, 0.0])}),
            ((mean, log_variance), {"where": jnp.zeros(2, bool)})]


def _gaussian_nll(rng):
    """(mean, target, variance) ``[4, 3]``, variances in [0.2, 3], well above ``eps``."""
    target = rng.standard_normal(SHAPE)
    mean = target + rng.standard_normal(SHAPE)
    return (jnp.float32(mean), jnp.float32(target), jnp.float32(rng.uniform(0.2, 3.0, SHAPE))), {"full": True}


def _extreme_gaussian_nll():
    # Residuals of 1e4 over variances of 0 (clamped to eps) and 1e4; one variance per example.
    zeros, variance = jnp.zeros_like(HUGE), jnp.array([[0.0, 1e-9, 1e4], [1.0, 0.0, 2.0]])
    return [((HUGE, zeros, variance), {}),
            ((HUGE, zeros, jnp.array([0.0, 1e4])), {"full": True}),
            ((HUGE, HUGE, zeros), {}),  # residual 0, variance 0
            ((HUGE, zeros, variance), {"where": jnp.zeros(HUGE.shape, bool)})]


def _poisson(rng):
    """(log rates, float counts) ``[4, 3]`` with ``full``: counts away from the Stirling
    term's switch at 1."""
    counts = np.where(rng.random(SHAPE) < 0.5, rng.uniform(0.0, 0.8, SHAPE), rng.uniform(1.3, 5.0, SHAPE))
    return (jnp.float32(rng.uniform(-2.0, 2.0, SHAPE)), jnp.float32(counts)), {"full": True}


def _extreme_poisson():
    # Log-rates down to −1e4 and up to 80 (e^80 fits float32); rates of 0 and 1e4; counts of 0.
    log_rates = jnp.array([[-1e4, -50.0, 0.0], [50.0, 80.0, 1.0]])
    counts = jnp.array([[0.0, 3.0, 0.0], [1e4, 0.0, 1.0]])
    rates = jnp.array([[0.0, 0.0, 1e4], [1e-30, 5.0, 0.0]])
    return [((log_rates, counts), {"full": True}),
            ((rates, counts), {"log_input": False, "full": True}),
            ((rates, counts[::-1]), {"log_input": False}),
            ((log_rates, counts), {"where": jnp.zeros(HUGE.shape, bool)})]


def _quantiles(rng):
    """(predictions ``[4, 3]`` for the quantiles 0.1, 0.5, 0.9, targets ``[4]``), every
    residual at least 0.1 from 0, the kink."""
    targets = rng.standard_normal(SHAPE[0])
    predictions = targets[:, None] + away_from_kinks(rng, ())
    return (jnp.float32(predictions), jnp.float32(targets)), {"quantiles": jnp.float32([0.1, 0.5, 0.9])}


def _extreme_quantiles():
    quantiles = {"quantiles": jnp.array([0.1, 0.5, 0.9])}
    return [((HUGE, jnp.array([0.0, 1e4])), quantiles),
            ((HUGE, HUGE), quantiles),  # every residual 0
            ((HUGE, jnp.array([-1e4, 1e4])), {"quantiles": 0.5}),
            ((HUGE, jnp.zeros(2)), {**quantiles, "where": jnp.zeros(2, bool)})]


ENTRIES: tuple[Entry, ...] = (
    Entry(regression.squared_error, "regression",
          "optax.losses.squared_error; torch mse_loss (exported as mse_loss too)",
          _residual_pair(), _extreme_pairs),
    Entry(regression.l2_loss, "regression",
          "optax.losses.l2_loss",
          _residual_pair(), _extreme_pairs),
    Entry(regression.absolute_error, "regression",
          "torch l1_loss (exported as l1_loss too)",
          _residual_pair(), _extreme_pairs),
    Entry(regression.huber_loss, "regression",
          "optax.losses.huber_loss; torch huber_loss",
          with_options(_residual_pair((1.3,)), delta=jnp.float32(1.3)), _extreme_pairs),
    Entry(regression.smooth_l1_loss, "regression",
          "torch smooth_l1_loss",
          with_options(_residual_pair((0.7,)), beta=jnp.float32(0.7)), _extreme_pairs),
    Entry(regression.log_cosh, "regression",
          "optax.losses.log_cosh",
          _residual_pair(), _extreme_pairs),
    Entry(regression.cosine_similarity, "regression",
          "optax.losses.cosine_similarity",
          _vector_pair, _extreme_vector_pairs),
    Entry(regression.cosine_distance, "regression",
          "optax.losses.cosine_distance",
          _masked_vector_pair, _extreme_vector_pairs),
    Entry(probabilistic.gaussian_kl_divergence, "probabilistic",
          "torch.distributions.kl_divergence(Normal, Normal).sum(-1)",
          _gaussian_posterior, _extreme_gaussian_posterior),
    Entry(probabilistic.gaussian_nll_loss, "probabilistic",
          "torch gaussian_nll_loss (GaussianNLLLoss)",
          _gaussian_nll, _extreme_gaussian_nll),
    Entry(probabilistic.poisson_nll_loss, "probabilistic",
          "torch poisson_nll_loss (PoissonNLLLoss)",
          _poisson, _extreme_poisson),
    Entry(regression.quantile_loss, "regression",
          "pytorch_forecasting QuantileLoss (halved, summed over quantiles)",
          _quantiles, _extreme_quantiles),
)
