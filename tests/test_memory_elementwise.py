"""Compiled footprint of ``value_and_grad(mean(loss))`` for elementwise losses, against autodiff of
the simplest stable one-line formula a user would write (deterministic: ``memory_analysis()`` of the
compiled program, temporaries + outputs).  Labels are arguments (a batch), float32 and bfloat16.
The margin losses get {0, 1} float labels (the one-liners sign them as ``2y − 1``).  Gradients
with respect to the first argument (and the variance of ``gaussian_nll_loss``)."""

import jax
import jax.numpy as jnp
import pytest
from _loss_cases import mean_value_and_grad_memory

import jaxloss

SHAPE = (256, 1024)
QUANTILES = jnp.linspace(0.1, 0.9, 8)


def _relu(z):
    return jnp.maximum(z, 0.0)


def _cos(a, b):
    return jnp.sum(a * b, -1) / jnp.sqrt(jnp.sum(a * a, -1) * jnp.sum(b * b, -1))


# loss: (jaxloss loss, one-line formula, kind of second argument)
AT_GOAL = {
    "absolute_error": (jaxloss.absolute_error, lambda p, y: jnp.abs(p - y), "normal"),
    "squared_error": (jaxloss.squared_error, lambda p, y: (p - y) ** 2, "normal"),
    "l2_loss": (jaxloss.l2_loss, lambda p, y: 0.5 * (p - y) ** 2, "normal"),
    "huber_loss": (jaxloss.huber_loss, lambda p, y: jnp.where(jnp.abs(p - y) <= 1, 0.5 * (p - y) ** 2,
                                                              jnp.abs(p - y) - 0.5), "normal"),
    "smooth_l1_loss": (jaxloss.smooth_l1_loss, lambda p, y: jnp.where(jnp.abs(p - y) < 1, 0.5 * (p - y) ** 2,
                                                                      jnp.abs(p - y) - 0.5), "normal"),
    "log_cosh": (jaxloss.log_cosh, lambda p, y: jnp.logaddexp(p - y, y - p) - jnp.log(2.0), "normal"),
    "binary_cross_entropy": (jaxloss.binary_cross_entropy, lambda p, y: -(
        y * jnp.maximum(jnp.log(p), -100) + (1 - y) * jnp.maximum(jnp.log1p(-p), -100)), "probability"),
    "hinge_embedding_loss": (jaxloss.hinge_embedding_loss, lambda x, y: jnp.where(y > 0, x, _relu(1 - x)), "binary"),
    "poisson_nll_loss": (jaxloss.poisson_nll_loss, lambda x, y: jnp.exp(x) - y * x, "counts"),
    "sigmoid_binary_cross_entropy": (jaxloss.sigmoid_binary_cross_entropy,
                                     lambda x, y: jnp.logaddexp(0, x) - x * y, "binary"),
    "hinge_loss": (jaxloss.hinge_loss, lambda s, y: _relu(1 - (2 * y - 1) * s), "binary"),
    "perceptron_loss": (jaxloss.perceptron_loss, lambda s, y: _relu(-(2 * y - 1) * s), "binary"),
    "squared_hinge_loss": (jaxloss.squared_hinge_loss, lambda s, y: _relu(1 - (2 * y - 1) * s) ** 2, "binary"),
    "logistic_loss": (jaxloss.logistic_loss, lambda s, y: jnp.logaddexp(0, -(2 * y - 1) * s), "binary"),
    "square_loss": (jaxloss.square_loss, lambda s, y: (1 - (2 * y - 1) * s) ** 2, "binary"),
    "sparsemax_loss": (jaxloss.sparsemax_loss, lambda x, y: (lambda z: jnp.where(
        z <= -1, 0, jnp.where(z >= 1, z, (z + 1) ** 2 / 4)))((1 - 2 * y) * x), "binary"),
    "cosine_similarity": (jaxloss.cosine_similarity, _cos, "normal"),
    "cosine_distance": (jaxloss.cosine_distance, lambda p, y: 1 - _cos(p, y), "normal"),
    "quantile_loss": (lambda p, y: jaxloss.quantile_loss(p, y, quantiles=QUANTILES), lambda p, y: jnp.sum(
        jnp.maximum(QUANTILES * (y[:, None] - p), (QUANTILES - 1) * (y[:, None] - p)), -1), "quantiles"),
    "gaussian_nll_loss": (jaxloss.gaussian_nll_loss, lambda m, y, v: 0.5 * (
        jnp.log(jnp.maximum(v, 1e-6)) + (m - y) ** 2 / jnp.maximum(v, 1e-6)), "gaussian"),
}


def _inputs(kind, dtype):
    """(arguments, argnums of the gradient)."""
    kx, ky, kv = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, SHAPE, dtype)
    if kind == "quantiles":  # [N, Q] predictions for 8 quantiles, [N] targets
        n = SHAPE[0] * SHAPE[1] // len(QUANTILES)
        return (jax.random.normal(kx, (n, len(QUANTILES)), dtype), jax.random.normal(ky, (n,), dtype)), (0,)
    if kind == "gaussian":  # mean, target, variance; gradients of the mean and the variance
        return (x, jax.random.normal(ky, SHAPE, dtype), jax.random.uniform(kv, SHAPE, dtype, 0.5, 2.0)), (0, 2)
    second = {
        "normal": lambda: jax.random.normal(ky, SHAPE, dtype),
        "binary": lambda: jax.random.bernoulli(ky, 0.5, SHAPE).astype(dtype),
        "counts": lambda: jnp.floor(3 * jax.random.uniform(ky, SHAPE)).astype(dtype),
        "probability": lambda: jax.random.uniform(ky, SHAPE, dtype),
    }[kind]()
    return ((jax.nn.sigmoid(x) if kind == "probability" else x), second), (0,)


def _footprint(loss, args, argnums):
    return mean_value_and_grad_memory(lambda *a: loss(*a).astype(jnp.float32), args, argnums)[1]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("name", sorted(AT_GOAL))
def test_footprint_at_most_the_one_line_formula(name, dtype):
    loss, one_line, kind = AT_GOAL[name]
    args, argnums = _inputs(kind, dtype)
    # 64 bytes: a few scalar constants (the loss's opaque ones) may be kept as temporaries.
    assert _footprint(loss, args, argnums) <= _footprint(one_line, args, argnums) + 64
