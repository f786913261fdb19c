"""Dice-family options: batch Dice (whole batch, sharded), smooth_nr / smooth_dr, focal Tversky;
float64 references, MONAI parity, gradients to second order."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss

pytestmark = pytest.mark.full

SHAPE = (8, 3, 2, 3)  # [B, H, W, C]: eight examples, one per simulated device


def _close(a, b, rtol=1e-6, atol=1e-9):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


def _inputs(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal(shape)
    ids = rng.integers(0, shape[-1], size=shape[:-1])
    return x, ids


def _numpy_tversky(x, ids, *, alpha, beta, nr, dr, batch=False, gamma=1.0):
    """Per-class Tversky losses from the formula in float64 NumPy (softmax over the last axis),
    to the power 1/gamma, class mean."""
    p = np.exp(x - x.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    g = np.eye(x.shape[-1])[ids]
    axes = tuple(range(0 if batch else 1, x.ndim - 1))
    i, ps, gs = (p * g).sum(axes), p.sum(axes), g.sum(axes)
    losses = 1 - (i + nr) / (i + alpha * (ps - i) + beta * (gs - i) + dr)
    return (np.maximum(losses, 0) ** (1 / gamma)).mean(-1)


@pytest.mark.parametrize("batch", [False, True])
def test_smooth_nr_dr_and_batch_match_a_float64_reference(batch):
    x, ids = _inputs()
    nr, dr = 0.3, 1.7
    for name, alpha, beta, scale in (("soft_dice_loss", 0.5, 0.5, 2.0), ("tversky_loss", 0.3, 0.7, 1.0),
                                     ("jaccard_loss", 1.0, 1.0, 1.0)):
        kw = {} if name != "tversky_loss" else {"alpha": alpha, "beta": beta}
        ours = getattr(jaxloss, name)(jnp.float32(x), jnp.int32(ids), from_logits="softmax", smooth_nr=nr,
                                      smooth_dr=dr, batch=batch, **kw)
        # Dice = Tversky(0.5, 0.5) with both smoothings halved: (2I + nr)/(P + G + dr).
        expected = _numpy_tversky(x, ids, alpha=alpha, beta=beta, nr=nr / scale, dr=dr / scale, batch=batch)
        assert ours.shape == (() if batch else SHAPE[:1])
        _close(ours, expected, rtol=2e-6)


def test_smooth_is_the_shorthand_for_equal_smoothings():
    x, ids = _inputs(1)
    a = jaxloss.soft_dice_loss(jnp.float32(x), jnp.int32(ids), from_logits="softmax", smooth=0.4)
    b = jaxloss.soft_dice_loss(jnp.float32(x), jnp.int32(ids), from_logits="softmax", smooth=9.0, smooth_nr=0.4,
                               smooth_dr=0.4)
    _close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("gamma", [1.0, 4 / 3, 2.5])
def test_focal_tversky_matches_a_float64_reference(gamma):
    x, ids = _inputs(2)
    ours = jaxloss.focal_tversky_loss(jnp.float32(x), jnp.int32(ids), from_logits="softmax", gamma=gamma, smooth=0.5)
    _close(ours, _numpy_tversky(x, ids, alpha=0.3, beta=0.7, nr=0.5, dr=0.5, gamma=gamma), rtol=3e-6)
    if gamma == 1.0:
        _close(ours, jaxloss.tversky_loss(jnp.float32(x), jnp.int32(ids), from_logits="softmax", alpha=0.3, beta=0.7,
                                          smooth=0.5), rtol=1e-6)


def test_focal_tversky_gradient_is_zero_not_nan_at_a_perfect_overlap():
    ids = jnp.int32([[0, 1, 1]])
    p = jax.nn.one_hot(ids, 2)
    for fn in (jaxloss.focal_tversky_loss, jaxloss.focal_tversky_loss.reference):
        grads = jax.grad(lambda p, g: fn(p, ids, smooth=0.0, gamma=g)[0], argnums=(0, 1))(p, 4 / 3)
        assert all(np.all(np.asarray(d) == 0) for d in grads)


@pytest.mark.parametrize("name", ["soft_dice_loss", "tversky_loss", "focal_tversky_loss", "generalized_dice_loss"])
def test_batch_gradients_match_autodiff_and_finite_differences_to_second_order(name):
    x, _ = _inputs(3, (3, 2, 2, 3))
    t = np.random.default_rng(4).dirichlet(np.ones(3), size=(3, 2, 2))
    options = {"smooth_nr": 0.2, "smooth_dr": 0.6} | ({"gamma": 1.5} if name == "focal_tversky_loss" else {})
    check = jaxloss.check_gradients(getattr(jaxloss, name), jnp.asarray(x), jnp.asarray(t), from_logits="softmax",
                                    batch=True, order=2, **{k: jnp.asarray(v) for k, v in options.items()})
    assert check.ok, check


def test_batch_masks_pixels_and_ignores_ids_over_the_whole_batch():
    x, ids = _inputs(5)
    where = np.random.default_rng(6).uniform(size=SHAPE[:-1]) > 0.3
    ids = np.where(np.random.default_rng(7).uniform(size=ids.shape) > 0.8, -100, ids)
    ours = jaxloss.soft_dice_loss(jnp.float32(x), jnp.int32(ids), from_logits="softmax", batch=True,
                                  where=jnp.asarray(where))
    keep = where & (ids >= 0)
    expected = _numpy_tversky(x[keep][None], ids[keep][None], alpha=0.5, beta=0.5, nr=0.5, dr=0.5, batch=True)
    _close(ours, expected, rtol=2e-6)


def test_batch_invalid_id_makes_the_batch_loss_nan_with_zero_gradient():
    x, ids = _inputs(8)
    ids[2, 0, 0] = 7
    f = lambda x: jaxloss.soft_dice_loss(x, jnp.int32(ids), from_logits="softmax", batch=True)  # noqa: E731
    assert np.isnan(f(jnp.float32(x)))
    assert np.all(np.asarray(jax.grad(f)(jnp.float32(x))) == 0)


def test_axis_name_without_batch_is_rejected():
    x, ids = _inputs()
    with pytest.raises(ValueError, match="axis_name"):
        jaxloss.soft_dice_loss(jnp.float32(x), jnp.int32(ids), axis_name="x")


@pytest.mark.parametrize("name", ["soft_dice_loss", "focal_tversky_loss", "generalized_dice_loss"])
def test_sharded_batch_equals_the_whole_batch_values_and_gradients(mesh, name):
    x, ids = _inputs(9)
    x, ids = jnp.float32(x), jnp.int32(ids)
    where = jnp.asarray(np.random.default_rng(10).uniform(size=SHAPE[:-1]) > 0.2)
    fn = getattr(jaxloss, name)
    whole = lambda x, w: fn(x, ids, from_logits="softmax", batch=True, where=w)  # noqa: E731

    def local(x, ids, w):
        return fn(x, ids, from_logits="softmax", batch=True, where=w, axis_name="x")

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P("x")), out_specs=P())
    _close(jax.jit(sharded)(x, ids, where), whole(x, where), rtol=2e-6)
    _close(jax.jit(jax.grad(lambda x: sharded(x, ids, where)))(x), jax.grad(whole)(x, where), rtol=1e-5, atol=1e-8)
    dx = jnp.float32(np.random.default_rng(11).standard_normal(SHAPE))
    _close(jax.jit(lambda x: jax.jvp(lambda x: sharded(x, ids, where), (x,), (dx,))[1])(x),
           jax.jvp(lambda x: whole(x, where), (x,), (dx,))[1], rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------ MONAI parity (channels-first there)


@pytest.mark.parametrize("batch", [False, True])
def test_dice_and_tversky_match_monai_with_smooth_nr_dr_and_batch(batch):
    torch = pytest.importorskip("torch")
    losses = pytest.importorskip("monai.losses")
    x, ids = _inputs(12)
    xt, yt = torch.tensor(np.moveaxis(x, -1, 1)), torch.tensor(ids[:, None])
    nr, dr = 1e-3, 0.7
    for ours, theirs in (
        (jaxloss.soft_dice_loss(jnp.asarray(x), jnp.asarray(ids), from_logits="softmax", smooth_nr=nr, smooth_dr=dr,
                                batch=batch),
         losses.DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=nr, smooth_dr=dr, batch=batch, reduction="none")),
        (jaxloss.tversky_loss(jnp.asarray(x), jnp.asarray(ids), from_logits="softmax", alpha=0.3, beta=0.7,
                              smooth_nr=nr, smooth_dr=dr, batch=batch),
         losses.TverskyLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7, smooth_nr=nr, smooth_dr=dr,
                            batch=batch, reduction="none")),
        (jaxloss.generalized_dice_loss(jnp.asarray(x), jnp.asarray(ids), from_logits="softmax", smooth_nr=nr,
                                       smooth_dr=dr, batch=batch),
         losses.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, smooth_nr=nr, smooth_dr=dr, batch=batch,
                                    reduction="none")),
    ):
        value = theirs(xt, yt).detach().numpy()
        if isinstance(theirs, losses.GeneralizedDiceLoss):
            expected = value.reshape(np.shape(ours))  # one ratio per example (per batch)
        else:
            expected = value.reshape(np.shape(ours) + (-1,)).mean(-1)  # MONAI's "none" keeps the classes
        _close(ours, expected, rtol=1e-5, atol=1e-7)
