"""Cross-entropy under optax's names and options: the aliases, ``class_mask`` (optax's ``where``
on the class axis), poly-1 with optax's defaults and label smoothing, ``smooth_labels``, and
``axis=`` against optax (``[N, C, H, W]`` with ``axis=1``) and PyTorch (``[N, C, d1, d2]``).

optax's losses run on the same float64 inputs; where optax's own derivative is NaN (its
probability-target loss at a masked class's target) only the other entries are compared.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxloss
from jaxloss.multiclass import poly1_cross_entropy, smooth_labels, softmax_cross_entropy

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

N, C = 6, 5


def _inputs(seed=0, shape=(N, C)):
    """Logits, ids, probability targets and a class mask with: a row with no class left (0), a
    row whose label's class is masked (1), and every other row with at least one class left."""
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal(shape)
    ids = rng.integers(0, shape[-1], shape[:-1])
    probs = rng.dirichlet(np.ones(shape[-1]), shape[:-1])
    mask = rng.random(shape) < 0.6
    mask[..., 0] = True
    if len(shape) == 2:
        mask[0], ids[1], mask[1, 0] = False, 0, False
        mask[1, 1] = True
    return x, ids.astype(np.int32), probs, mask


def _grad(fn, x, *args, **kwargs):
    return jax.grad(lambda x: jnp.sum(fn(x, *args, **kwargs)))(x)


def test_optax_names_are_softmax_cross_entropy_itself():
    assert jaxloss.softmax_cross_entropy_with_integer_labels is jaxloss.softmax_cross_entropy
    assert jaxloss.safe_softmax_cross_entropy is jaxloss.softmax_cross_entropy
    assert "softmax_cross_entropy_with_integer_labels" in jaxloss.softmax_cross_entropy.__doc__


def test_integer_labels_with_a_class_mask_match_optax(x64):
    x, ids, _, mask = _inputs()
    ours = softmax_cross_entropy(x, ids, class_mask=mask)
    theirs = optax.losses.softmax_cross_entropy_with_integer_labels(x, ids, where=mask)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    # No class left: 0.  A label on a masked class: lse over the classes left − its logit.
    assert ours[0] == 0 and ours[1] == pytest.approx(np.log(np.sum(np.exp(x[1][mask[1]]))) - x[1, 0], rel=1e-12)
    g = _grad(softmax_cross_entropy, x, ids, class_mask=mask)
    np.testing.assert_allclose(g, _grad(optax.losses.softmax_cross_entropy_with_integer_labels, x, ids, where=mask),
                               rtol=1e-12, atol=1e-14)
    # Masked classes get derivative 0, but for a label on one (row 1): −1, its own logit's.
    label = np.eye(C, dtype=bool)[ids]
    assert np.all(np.asarray(g)[~mask & ~label] == 0) and g[1, 0] == -1


def test_probability_targets_with_a_class_mask_match_optax(x64):
    x, _, probs, mask = _inputs()
    ours = softmax_cross_entropy(x, probs, class_mask=mask)
    np.testing.assert_allclose(ours, optax.losses.softmax_cross_entropy(x, probs, where=mask), rtol=1e-12, atol=1e-14)
    gx, gy = jax.grad(lambda x, y: jnp.sum(softmax_cross_entropy(x, y, class_mask=mask)), (0, 1))(x, probs)
    tx, ty = jax.grad(lambda x, y: jnp.sum(optax.losses.softmax_cross_entropy(x, y, where=mask)), (0, 1))(x, probs)
    np.testing.assert_allclose(gx, tx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gy)[mask], np.asarray(ty)[mask], rtol=1e-12)
    assert np.all(np.asarray(gx)[~mask] == 0) and np.all(np.asarray(gy)[~mask] == 0)


@pytest.mark.parametrize("targets", ["ids", "probabilities"])
@pytest.mark.parametrize("fn", [softmax_cross_entropy, poly1_cross_entropy], ids=lambda f: f.__name__)
def test_masked_logits_may_be_nan_and_get_no_derivative_in_any_mode(fn, targets):
    x, ids, probs, mask = _inputs(1)
    # Labels on classes left (a label on a masked class reads its logit, as optax's), row 0 has none.
    kept = np.where(mask[np.arange(N), ids], ids, np.argmax(mask, axis=-1))
    labels = jnp.int32(kept) if targets == "ids" else jnp.float32(probs)
    options = {"label_smoothing": jnp.float32(0.1)} | ({"z_loss": 1e-3} if fn is softmax_cross_entropy else {})
    x = jnp.float32(np.where(mask, x, np.nan))

    def total(x):
        return jnp.sum(fn(x, labels, class_mask=mask, **options))

    losses = fn(x, labels, class_mask=mask, **options)
    grad = jax.grad(total)(x)
    jvp = jax.jvp(lambda x: fn(x, labels, class_mask=mask, **options), (x,), (jnp.ones_like(x),))[1]
    hvp = jax.jvp(jax.grad(total), (x,), (jnp.ones_like(x),))[1]
    for result in (losses, grad, jvp, hvp):
        np.testing.assert_array_equal(np.isfinite(result), True)
    assert losses[0] == 0 and np.all(np.asarray(grad)[~mask] == 0) and np.all(np.asarray(hvp)[~mask] == 0)


@pytest.mark.parametrize("fn, targets, options", [
    (softmax_cross_entropy, "ids", {"label_smoothing": 0.2, "z_loss": 0.05, "class_weights": True}),
    (softmax_cross_entropy, "probabilities", {"label_smoothing": 0.2, "z_loss": 0.05, "class_weights": True}),
    (poly1_cross_entropy, "ids", {"label_smoothing": 0.2, "epsilon": 1.5}),
    (poly1_cross_entropy, "probabilities", {"label_smoothing": 0.2, "epsilon": 1.5}),
], ids=["cross_entropy-ids", "cross_entropy-probabilities", "poly1-ids", "poly1-probabilities"])
def test_class_masked_derivatives_check_out_to_second_order(fn, targets, options, x64):
    x, ids, probs, mask = _inputs(2)
    rng = np.random.default_rng(3)
    options = {k: jnp.asarray(rng.uniform(0.5, 2, C) if v is True else v) for k, v in options.items()}
    labels = jnp.asarray(ids if targets == "ids" else probs)
    check = jaxloss.check_gradients(fn, jnp.asarray(x), labels, class_mask=mask, **options, order=2)
    assert check.ok, repr(check)


def test_safe_softmax_cross_entropy_matches_optax_at_minus_inf_logits(x64):
    x = np.array([[0.0, -np.inf, 1.0], [2.0, 0.5, -np.inf]])
    y = np.array([[0.3, 0.0, 0.7], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(jaxloss.safe_softmax_cross_entropy(x, y), optax.losses.safe_softmax_cross_entropy(x, y),
                               rtol=1e-12)
    g, t = (jax.grad(lambda x: jnp.sum(f(x, y)))(x) for f in (jaxloss.safe_softmax_cross_entropy,
                                                              optax.losses.safe_softmax_cross_entropy))
    np.testing.assert_allclose(g, t, rtol=1e-12, atol=1e-15)


def test_poly_loss_cross_entropy_is_poly1_with_optax_default_epsilon(x64):
    x, ids, probs, mask = _inputs(4)
    one_hot = np.eye(C)[ids]
    for y in (probs, one_hot):
        np.testing.assert_allclose(jaxloss.poly_loss_cross_entropy(x, y), optax.losses.poly_loss_cross_entropy(x, y),
                                   rtol=1e-12)
        np.testing.assert_allclose(jaxloss.poly_loss_cross_entropy(x, y, class_mask=mask),
                                   optax.losses.poly_loss_cross_entropy(x, y, where=mask), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(_grad(jaxloss.poly_loss_cross_entropy, x, y, class_mask=mask),
                                   _grad(optax.losses.poly_loss_cross_entropy, x, y, where=mask),
                                   rtol=1e-11, atol=1e-14)
    # Class ids are the one-hot targets, a masked label's class included (no mass left: 0).
    np.testing.assert_allclose(jaxloss.poly_loss_cross_entropy(x, ids, class_mask=mask),
                               optax.losses.poly_loss_cross_entropy(x, one_hot, where=mask), rtol=1e-12, atol=1e-14)
    assert jaxloss.poly_loss_cross_entropy.reference(x, probs) == pytest.approx(np.asarray(
        poly1_cross_entropy(x, probs, epsilon=2.0)))


@pytest.mark.parametrize("targets", ["ids", "probabilities"])
def test_poly1_label_smoothing_is_optax_poly_loss_of_smooth_labels(targets, x64):
    x, ids, probs, mask = _inputs(5)
    y = np.eye(C)[ids] if targets == "ids" else probs
    labels = ids if targets == "ids" else probs
    for where in (None, mask):
        smoothed = optax.losses.smooth_labels(y, 0.2, where=where)
        theirs = optax.losses.poly_loss_cross_entropy(x, smoothed, epsilon=1.5, where=where)
        ours = poly1_cross_entropy(x, labels, epsilon=1.5, label_smoothing=0.2, class_mask=where)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(_grad(poly1_cross_entropy, x, labels, epsilon=1.5, label_smoothing=0.2,
                                         class_mask=where),
                                   _grad(optax.losses.poly_loss_cross_entropy, x, smoothed, epsilon=1.5, where=where),
                                   rtol=1e-11, atol=1e-14)


def test_poly1_label_smoothing_matches_torch_cross_entropy_plus_the_poly_term(x64):
    x, ids, _, _ = _inputs(6)
    xt = torch.tensor(x, requires_grad=True)
    smoothed = 0.9 * torch.nn.functional.one_hot(torch.tensor(ids).long(), C).double() + 0.1 / C
    theirs = (torch.nn.functional.cross_entropy(xt, torch.tensor(ids).long(), label_smoothing=0.1, reduction="none")
              + 2.0 * (1 - torch.sum(smoothed * torch.softmax(xt, -1), -1)))
    theirs.sum().backward()
    np.testing.assert_allclose(poly1_cross_entropy(x, ids, epsilon=2.0, label_smoothing=0.1), theirs.detach().numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(_grad(poly1_cross_entropy, x, ids, epsilon=2.0, label_smoothing=0.1), xt.grad.numpy(),
                               rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("axis", [-1, 1, (1, 2)], ids=["last", "1", "tuple"])
def test_smooth_labels_matches_optax(axis, x64):
    rng = np.random.default_rng(7)
    y = rng.dirichlet(np.ones(4), (2, 3, 5)).transpose(0, 3, 1, 2)  # [2, 4, 3, 5]
    mask = rng.random(y.shape) < 0.7
    for where in (None, mask):
        np.testing.assert_allclose(smooth_labels(y, 0.3, axis=axis, class_mask=where),
                                   optax.losses.smooth_labels(y, 0.3, axis=axis, where=where), rtol=1e-14)
    # Linear, so autodiff is its rule: ∂/∂α = 1/K − y.
    k = y.shape[axis] if isinstance(axis, int) else y.shape[1] * y.shape[2]
    w = rng.standard_normal(y.shape)
    np.testing.assert_allclose(jax.grad(lambda a: jnp.sum(w * smooth_labels(y, a, axis=axis)))(0.3),
                               np.sum(w * (1 / k - y)), rtol=1e-12)


# ---------------------------------------------------------------- axis=


def test_axis_1_on_images_matches_optax(x64):
    x, ids, probs, mask = _inputs(8, shape=(2, 3, 4, C))
    x, probs, mask = (np.moveaxis(a, -1, 1) for a in (x, probs, mask))  # [N, C, H, W]
    pairs = [
        (softmax_cross_entropy, optax.losses.softmax_cross_entropy_with_integer_labels, ids, {}),
        (softmax_cross_entropy, optax.losses.softmax_cross_entropy, probs, {}),
        (jaxloss.poly_loss_cross_entropy, optax.losses.poly_loss_cross_entropy, probs, {}),
    ]
    for ours, theirs, y, kw in pairs:
        for where in (None, mask):
            np.testing.assert_allclose(ours(x, y, axis=1, class_mask=where), theirs(x, y, axis=1, where=where),
                                       rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(_grad(ours, x, y, axis=1, class_mask=where),
                                       _grad(theirs, x, y, axis=1, where=where), rtol=1e-11, atol=1e-14)


def _torch(fn, x, *args, **kwargs):
    xt = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    loss = fn(xt, *args, reduction="none", **kwargs)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_axis_1_matches_torch_cross_entropy_with_weights_ignore_index_and_smoothing(smoothing, x64):
    x, ids, _, _ = _inputs(9, shape=(2, 3, 4, C))
    x = np.moveaxis(x, -1, 1)  # [N, C, d1, d2]
    ids[0, 1, 2] = -100
    w = np.random.default_rng(10).uniform(0.5, 2, C)
    theirs = _torch(torch.nn.functional.cross_entropy, x, torch.tensor(ids).long(), weight=torch.tensor(w),
                    label_smoothing=smoothing)
    options = {"class_weights": w, "label_smoothing": smoothing}
    np.testing.assert_allclose(softmax_cross_entropy(x, ids, axis=1, **options), theirs[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(_grad(softmax_cross_entropy, x, ids, axis=1, **options), theirs[1], rtol=1e-10,
                               atol=1e-15)
    # The focal loss with γ = 0 and no α is this cross-entropy (unweighted).
    plain = _torch(torch.nn.functional.cross_entropy, x, torch.tensor(ids).long(), label_smoothing=smoothing)
    focal = jaxloss.softmax_focal_loss(x, ids, axis=1, gamma=0.0, label_smoothing=jnp.float64(smoothing))
    np.testing.assert_allclose(focal, plain[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(_grad(jaxloss.softmax_focal_loss, x, ids, axis=1, gamma=0.0,
                                     label_smoothing=jnp.float64(smoothing)), plain[1], rtol=1e-10, atol=1e-15)


def test_axis_1_matches_torch_nll_loss_with_weights_and_ignore_index(x64):
    x, ids, _, _ = _inputs(11, shape=(2, 3, 4, C))
    log_probs = np.moveaxis(np.asarray(jax.nn.log_softmax(x)), -1, 1)
    ids[1, 0, 0] = 7
    w = np.random.default_rng(12).uniform(0.5, 2, C)
    theirs = _torch(torch.nn.functional.nll_loss, log_probs, torch.tensor(ids).long(), weight=torch.tensor(w),
                    ignore_index=7)
    np.testing.assert_allclose(jaxloss.nll_loss(log_probs, ids, axis=1, class_weights=w, ignore_index=7), theirs[0],
                               rtol=1e-12)
    np.testing.assert_allclose(_grad(jaxloss.nll_loss, log_probs, ids, axis=1, class_weights=w, ignore_index=7),
                               theirs[1], rtol=1e-12)


@pytest.mark.parametrize("fn, labels", [(poly1_cross_entropy, "probabilities"),
                                        (jaxloss.softmax_focal_loss, "probabilities"),
                                        (jaxloss.softmax_focal_loss, "ids")], ids=["poly1", "focal-soft", "focal-ids"])
def test_axis_1_equals_the_last_axis_of_the_transposed_logits(fn, labels, x64):
    x, ids, probs, _ = _inputs(13, shape=(2, 3, 4, C))
    y = ids if labels == "ids" else probs
    moved = (np.moveaxis(x, -1, 1), y if labels == "ids" else np.moveaxis(y, -1, 1))
    np.testing.assert_allclose(fn(*moved, axis=1, label_smoothing=0.1), fn(x, y, label_smoothing=0.1), rtol=1e-12)
    np.testing.assert_allclose(_grad(fn, *moved, axis=1, label_smoothing=0.1),
                               np.moveaxis(np.asarray(_grad(fn, x, y, label_smoothing=0.1)), -1, 1), rtol=1e-11,
                               atol=1e-15)
