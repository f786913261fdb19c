"""dice_ce_loss and dice_focal_loss: MONAI DiceCELoss / DiceFocalLoss parity (values and torch
autograd gradients), the pixel masks, and the derivatives of every float argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

pytestmark = pytest.mark.full

B, C, H, W = 2, 3, 4, 5


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, C, H, W)), rng.integers(0, C, (B, H, W))


MONAI_CASES = [
    ("DiceCELoss", "dice_ce_loss", {}, {"softmax": True}),
    ("DiceCELoss", "dice_ce_loss", {"from_logits": "sigmoid", "include_background": False, "lambda_ce": 0.5},
     {"sigmoid": True, "include_background": False, "lambda_ce": 0.5}),
    ("DiceCELoss", "dice_ce_loss", {"batch": True, "squared": True, "label_smoothing": 0.1, "lambda_dice": 2.0},
     {"softmax": True, "batch": True, "squared_pred": True, "label_smoothing": 0.1, "lambda_dice": 2.0}),
    ("DiceCELoss", "dice_ce_loss", {"smooth_nr": 0.0, "smooth_dr": 1e-3},
     {"softmax": True, "smooth_nr": 0.0, "smooth_dr": 1e-3}),
    ("DiceFocalLoss", "dice_focal_loss", {"gamma": 1.5, "alpha": 0.3}, {"sigmoid": True, "gamma": 1.5, "alpha": 0.3}),
    ("DiceFocalLoss", "dice_focal_loss", {"from_logits": "softmax", "include_background": False, "lambda_focal": 0.3},
     {"softmax": True, "include_background": False, "lambda_focal": 0.3}),
    # Class weights summing to the class count: MONAI's Σ w L / C is Σ w L / Σ w.
    ("DiceFocalLoss", "dice_focal_loss", {"class_weights": [0.5, 1.0, 1.5]},
     {"sigmoid": True, "weight": [0.5, 1.0, 1.5]}),
]


@pytest.mark.parametrize("monai_name, name, ours, theirs", MONAI_CASES)
def test_batch_mean_equals_monai_in_value_and_gradient(x64, monai_name, name, ours, theirs):
    torch = pytest.importorskip("torch")
    losses = pytest.importorskip("monai.losses")
    x, ids = _inputs()
    tx = torch.tensor(x, requires_grad=True)
    expected = getattr(losses, monai_name)(to_onehot_y=True, **theirs)(tx, torch.tensor(ids[:, None]))
    expected.backward()
    fn = getattr(jaxloss, name)
    ours = {k: jnp.asarray(v) if isinstance(v, list) else v for k, v in ours.items()}
    value, grad = jax.value_and_grad(lambda x: jaxloss.reduce.mean(fn(x, jnp.asarray(ids), axis=1, **ours)))(
        jnp.asarray(x))
    # MONAI's focal term runs in float32 (FocalLoss casts its input).
    np.testing.assert_allclose(value, expected.item(), rtol=1e-6, equal_nan=False)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-6, atol=1e-8, equal_nan=False)


def test_one_hot_targets_equal_class_ids_and_monai(x64):
    torch = pytest.importorskip("torch")
    losses = pytest.importorskip("monai.losses")
    x, ids = _inputs(1)
    onehot = np.moveaxis(np.eye(C)[ids], -1, 1)
    expected = losses.DiceCELoss(softmax=True)(torch.tensor(x), torch.tensor(onehot)).item()
    for labels in (jnp.asarray(onehot), jnp.asarray(ids)):
        np.testing.assert_allclose(jaxloss.reduce.mean(jaxloss.dice_ce_loss(jnp.asarray(x), labels, axis=1)),
                                   expected, rtol=1e-12)


def test_class_weighted_cross_entropy_is_torchs_weighted_mean_per_example(x64):
    """One example: MONAI's weighted CE mean over the batch is this example's; the Dice term
    matches for weights summing to the class count."""
    torch = pytest.importorskip("torch")
    losses = pytest.importorskip("monai.losses")
    x, ids = _inputs(2)
    x, ids, w = x[:1], ids[:1], np.array([0.5, 1.0, 1.5])
    tx = torch.tensor(x, requires_grad=True)
    expected = losses.DiceCELoss(to_onehot_y=True, softmax=True, weight=torch.tensor(w))(tx, torch.tensor(ids[:, None]))
    expected.backward()
    value, grad = jax.value_and_grad(lambda x: jaxloss.dice_ce_loss(x, jnp.asarray(ids), axis=1,
                                                                    class_weights=jnp.asarray(w))[0])(jnp.asarray(x))
    np.testing.assert_allclose(value, expected.item(), rtol=1e-12)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-10, atol=1e-14)


def _numpy_dice_ce(x, ids, keep, w, lambda_dice, lambda_ce, smooth):
    """Float64 NumPy: per example, λ_d·(Σ_c w_c L_c / Σ_c w_c) + λ_ce·(Σ w_y CE / Σ w_y) over kept pixels."""
    out = []
    for b in range(x.shape[0]):
        xb, yb = x[b][keep[b]], ids[b][keep[b]]  # [n, C], [n]
        p = np.exp(xb - xb.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        g = np.eye(x.shape[-1])[yb]
        dice = 1 - (2 * (p * g).sum(0) + smooth) / (p.sum(0) + g.sum(0) + smooth)
        ce = -np.log(p[np.arange(len(yb)), yb])
        out.append(lambda_dice * (w * dice).sum() / w.sum() + lambda_ce * (w[yb] * ce).sum() / w[yb].sum())
    return np.array(out)


def test_where_and_ignored_pixels_leave_both_terms(x64):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, H, W, C))
    ids = rng.integers(0, C, (B, H, W))
    where = rng.random((B, H, W)) < 0.7
    ignored = rng.random((B, H, W)) < 0.2
    w = np.array([0.5, 1.0, 2.0])
    keep = where & ~ignored
    expected = _numpy_dice_ce(x, ids, keep, w, 0.7, 1.3, 0.5)
    options = dict(class_weights=jnp.asarray(w), lambda_dice=0.7, lambda_ce=1.3, smooth=0.5)
    padded = jnp.where(jnp.asarray(where)[..., None], jnp.asarray(x), jnp.nan)
    labels = jnp.asarray(np.where(ignored, -100, ids))
    got = jaxloss.dice_ce_loss(padded, labels, where=jnp.asarray(where), **options)
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=False)
    grad = jax.grad(lambda x: jnp.sum(jaxloss.dice_ce_loss(x, labels, where=jnp.asarray(where), **options)))(padded)
    assert np.all(np.asarray(grad)[~keep] == 0) and np.all(np.isfinite(grad))


def test_an_invalid_class_id_makes_its_example_nan():
    x, ids = _inputs(4)
    ids[1, 0, 0] = C
    for fn in (jaxloss.dice_ce_loss, jaxloss.dice_focal_loss):
        out = fn(jnp.float32(x), jnp.asarray(ids), axis=1)
        assert np.isfinite(out[0]) and np.isnan(out[1])


def test_every_float_argument_has_its_derivative_with_batch_dice(x64):
    """``batch=True`` (the catalogue's sample covers the per-example Dice): class weights,
    lambdas, smoothing, soft targets and logits against autodiff and finite differences."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((2, 1, 2, C)))
    targets = jnp.asarray(rng.dirichlet(np.ones(C), size=(2, 1, 2)))
    options = {k: jnp.float64(v) for k, v in {"lambda_dice": 0.7, "lambda_ce": 1.3, "smooth": 0.5}.items()}
    result = jaxloss.check_gradients(jaxloss.dice_ce_loss, x, targets, reference=jaxloss.dice_ce_loss.reference,
                                     class_weights=jnp.asarray([0.5, 1.0, 2.0]), batch=True, **options)
    assert result.ok, result


def test_the_losses_are_the_weighted_sums_of_their_parts():
    x, ids = _inputs(6)
    x, ids = jnp.float32(np.moveaxis(x, 1, -1)), jnp.asarray(ids)
    dice = jaxloss.soft_dice_loss(x, ids, from_logits="softmax", smooth=1e-5)
    ce = jnp.mean(jaxloss.softmax_cross_entropy(x, ids), axis=(1, 2))
    np.testing.assert_allclose(jaxloss.dice_ce_loss(x, ids, lambda_ce=0.5), dice + 0.5 * ce, rtol=1e-6)
    dice = jaxloss.soft_dice_loss(x, ids, from_logits="sigmoid", smooth=1e-5)
    focal = jnp.mean(jaxloss.sigmoid_focal_loss(x, jax.nn.one_hot(ids, C)), axis=(1, 2, 3))
    np.testing.assert_allclose(jaxloss.dice_focal_loss(x, ids, lambda_dice=2.0), 2 * dice + focal, rtol=1e-6)


def test_bad_options_raise_naming_them():
    x, ids = jnp.zeros((2, 3, 3, 1)), jnp.zeros((2, 3, 3), jnp.int32)
    with pytest.raises(ValueError, match="logits must have at least 2 classes"):
        jaxloss.dice_ce_loss(x, ids)
    x = jnp.zeros((2, 3, 3, 3))
    with pytest.raises(ValueError, match="from_logits"):
        jaxloss.dice_focal_loss(x, ids, from_logits=None)
    with pytest.raises(ValueError, match="lambda_ce"):
        jaxloss.dice_ce_loss(x, ids, lambda_ce=-1.0)
    with pytest.raises(ValueError, match="labels"):
        jaxloss.dice_ce_loss(x, ids[:, :2])
