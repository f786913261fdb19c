"""batch_triplet_loss and valid_triplet_anchors: a float64 reference written with loops over
triplets, gradients, pytorch-metric-learning parity, masks, duplicates and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss.catalogue import embedding as catalogue_embedding
from jaxloss.embedding import batch_triplet_loss, valid_triplet_anchors

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

MININGS = ["all", "hard", "semihard"]
DISTANCES = ["euclidean", "squared", "cosine"]
MARGIN = 1.0


def _inputs(seed=0):
    """Well-separated embeddings [8, 4] (distinct distances, hinges away from 0 at margin 1)
    with four classes of two: the catalogue's sample."""
    (x, labels), _ = catalogue_embedding._batch_triplets(np.random.default_rng(seed))
    return np.asarray(x, np.float64), np.asarray(labels)


def _uneven_inputs(seed=0):
    """Classes of 3, 2, 2 and 1 (the last anchor has no positive), random embeddings."""
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1, 0, 2, 1, 0, 3, 2])
    return 1.5 * rng.standard_normal((len(labels), 4)), labels


def _np_distance(u, v, distance, xp=np):
    if distance == "euclidean":
        return xp.sqrt(xp.sum((u - v) ** 2))
    if distance == "squared":
        return xp.sum((u - v) ** 2)
    return 1 - xp.sum(u * v) / (xp.sqrt(xp.sum(u * u)) * xp.sqrt(xp.sum(v * v)))


def _np_triplets(x, labels, mining, distance, keep=None):
    """The selected triplets as ``{anchor: [(p, n, weight), ...]}``, by explicit loops."""
    n = len(labels)
    keep = np.ones(n, bool) if keep is None else keep
    d = lambda i, j: _np_distance(x[i], x[j], distance)  # noqa: E731
    chosen = {}
    for a in range(n):
        if not keep[a]:
            continue
        positives = [p for p in range(n) if keep[p] and p != a and labels[p] == labels[a]]
        negatives = [m for m in range(n) if keep[m] and labels[m] != labels[a]]
        if not positives or not negatives:
            continue
        if mining == "all":
            total = len(positives) * len(negatives)
            chosen[a] = [(p, m, 1 / total) for p in positives for m in negatives]
        elif mining == "hard":
            chosen[a] = [(max(positives, key=lambda p: d(a, p)), min(negatives, key=lambda m: d(a, m)), 1.0)]
        else:  # semihard: closest negative farther than the positive, else the farthest
            chosen[a] = []
            for p in positives:
                farther = [m for m in negatives if d(a, m) > d(a, p)]
                pick = min(farther, key=lambda m: d(a, m)) if farther else max(negatives, key=lambda m: d(a, m))
                chosen[a].append((p, pick, 1 / len(positives)))
    return chosen


def _np_loss(x, labels, mining, distance, margin=MARGIN, keep=None, xp=np, at=None):
    """Per-anchor losses from the triplets selected on the concrete ``at`` (default ``x``)
    and computed from ``x`` with ``xp`` (NumPy, or jax.numpy to differentiate it)."""
    chosen = _np_triplets(np.asarray(x if at is None else at), labels, mining, distance, keep)
    losses = []
    for a in range(len(labels)):
        total = 0.0
        for p, m, w in chosen.get(a, []):
            z = _np_distance(x[a], x[p], distance, xp) - _np_distance(x[a], x[m], distance, xp) + margin
            total = total + w * xp.maximum(z, 0.0)
        losses.append(total)
    return xp.stack([xp.asarray(v, dtype=x.dtype) for v in losses]) if xp is jnp else np.array(losses)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MININGS)
@pytest.mark.parametrize("make", [_inputs, _uneven_inputs], ids=["pairs", "uneven"])
def test_matches_float64_loop_reference(make, mining, distance, x64):
    x, labels = make(1)
    got = batch_triplet_loss(x, labels, margin=MARGIN, mining=mining, distance=distance)
    np.testing.assert_allclose(got, _np_loss(x, labels, mining, distance), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MININGS)
def test_gradient_matches_autodiff_of_loop_reference(mining, distance, x64):
    x, labels = _inputs(2)
    x0 = x
    w = np.random.default_rng(0).standard_normal(len(labels))
    ours = jax.grad(lambda x: jnp.vdot(w, batch_triplet_loss(x, labels, margin=MARGIN, mining=mining,
                                                             distance=distance)))(x)
    ref = jax.grad(lambda x: jnp.vdot(w, _np_loss(x, labels, mining, distance, xp=jnp, at=x0)))(jnp.asarray(x0))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MININGS)
def test_check_gradients_embeddings_and_margin(mining, distance):
    x, labels = _inputs(3)
    margin = np.full(len(labels), MARGIN, np.float32)  # per-anchor margins, differentiated
    result = jaxloss.check_gradients(batch_triplet_loss, x, labels, margin=margin, mining=mining, distance=distance)
    assert result.ok, result
    assert {r.argument for r in result.rows} == {"embeddings", "margin"}


def test_margin_derivative_is_fraction_of_active_selected_triplets(x64):
    x, labels = _uneven_inputs(4)
    for mining in MININGS:
        dm = jax.grad(lambda m: batch_triplet_loss(x, labels, margin=m, mining=mining).sum())(MARGIN)
        chosen = _np_triplets(x, labels, mining, "euclidean")
        d = lambda i, j: np.linalg.norm(x[i] - x[j])  # noqa: E731
        expected = sum(w for a, t in chosen.items() for p, m, w in t if d(a, p) - d(a, m) + MARGIN > 0)
        np.testing.assert_allclose(dm, expected, rtol=1e-12)


@pytest.mark.parametrize("mining", MININGS)
def test_leading_batch_axes_and_vmap(mining):
    xs, ls = zip(*(_uneven_inputs(s) for s in range(3)))
    x, labels = jnp.float32(np.stack(xs)), jnp.int32(np.stack(ls))
    batched = batch_triplet_loss(x, labels, mining=mining)
    mapped = jax.vmap(lambda x, y: batch_triplet_loss(x, y, mining=mining))(x, labels)
    single = jnp.stack([batch_triplet_loss(a, b, mining=mining) for a, b in zip(x, labels)])
    np.testing.assert_allclose(batched, single, rtol=1e-6)
    np.testing.assert_allclose(mapped, single, rtol=1e-6)
    g = jax.grad(lambda x: batch_triplet_loss(x, labels, mining=mining).sum())(x)
    g_single = jnp.stack([jax.grad(lambda x: batch_triplet_loss(x, b, mining=mining).sum())(a)
                          for a, b in zip(x, labels)])
    np.testing.assert_allclose(g, g_single, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ pytorch-metric-learning parity


def _pml_distance(distance):
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances

    del pml
    if distance == "cosine":
        return distances.CosineSimilarity()
    return distances.LpDistance(normalize_embeddings=False, power=2 if distance == "squared" else 1)


def _pml_triplet_losses(x, labels, distance, indices=None):
    import torch
    from pytorch_metric_learning import losses, reducers

    loss = losses.TripletMarginLoss(margin=MARGIN, distance=_pml_distance(distance),
                                    reducer=reducers.DoNothingReducer())
    xt, yt = torch.tensor(x), torch.tensor(labels)
    if indices is None:
        from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

        indices = lmu.get_all_triplets_indices(yt)
    out = loss(xt, yt, indices)["loss"]  # DoNothingReducer: the per-triplet losses and their indices
    assert out["reduction_type"] == "triplet"
    return out["losses"].numpy(), [i.numpy() for i in out["indices"]]


@pytest.mark.parametrize("distance", DISTANCES)
def test_hard_matches_pml_batch_hard_miner(distance):
    _pml_distance(distance)
    import torch
    from pytorch_metric_learning import miners

    x, labels = _uneven_inputs(5)
    miner = miners.BatchHardMiner(distance=_pml_distance(distance))
    indices = miner(torch.tensor(x), torch.tensor(labels))
    per_triplet, (anchors, _, _) = _pml_triplet_losses(x, labels, distance, indices)
    with jax.enable_x64(True):
        ours = np.asarray(batch_triplet_loss(x, labels, margin=MARGIN, mining="hard", distance=distance))
    expected = np.zeros(len(labels))
    expected[anchors] = per_triplet
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("distance", DISTANCES)
def test_all_is_per_anchor_mean_of_pml_triplet_losses(distance):
    _pml_distance(distance)
    x, labels = _uneven_inputs(6)
    per_triplet, (anchors, _, _) = _pml_triplet_losses(x, labels, distance)
    expected = np.array([per_triplet[anchors == a].mean() if np.any(anchors == a) else 0.0
                         for a in range(len(labels))])
    with jax.enable_x64(True):
        ours = np.asarray(batch_triplet_loss(x, labels, margin=MARGIN, mining="all", distance=distance))
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_semihard_picks_pml_semihard_triplet_with_largest_loss():
    """Where PML's semi-hard miner (0 < d_an − d_ap ≤ m) finds negatives for (a, p), our
    one negative per positive is the closest of them: the one with the largest loss."""
    _pml_distance("euclidean")
    import torch
    from pytorch_metric_learning import miners

    x, labels = _uneven_inputs(7)
    miner = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets="semihard",
                                      distance=_pml_distance("euclidean"))
    indices = miner(torch.tensor(x), torch.tensor(labels))
    per_triplet, (anchors, positives, _) = _pml_triplet_losses(x, labels, "euclidean", indices)
    assert len(per_triplet) > 0
    chosen = _np_triplets(x, labels, "semihard", "euclidean")
    d = lambda i, j: np.linalg.norm(x[i] - x[j])  # noqa: E731
    for a, p in set(zip(anchors.tolist(), positives.tolist())):
        mine = [m for q, m, _ in chosen[a] if q == p]
        ours = d(a, p) - d(a, mine[0]) + MARGIN
        np.testing.assert_allclose(ours, per_triplet[(anchors == a) & (positives == p)].max(), rtol=1e-10)


# ------------------------------------------------------------------ anchors, masks, edge cases


def test_valid_triplet_anchors():
    labels = jnp.array([0, 0, 1, 2, 2, 3])
    np.testing.assert_array_equal(valid_triplet_anchors(labels), [True, True, False, True, True, False])
    where = jnp.array([True, False, True, True, True, True])
    np.testing.assert_array_equal(valid_triplet_anchors(labels, where=where),
                                  [False, False, False, True, True, False])
    np.testing.assert_array_equal(valid_triplet_anchors(jnp.zeros((2, 3), jnp.int32)), np.zeros((2, 3), bool))
    assert not hasattr(valid_triplet_anchors, "reference")


def test_anchors_without_triplets_give_zero_and_mean_recipe():
    x, labels = _uneven_inputs(8)
    for mining in MININGS:
        losses = batch_triplet_loss(x, labels, mining=mining)
        valid = valid_triplet_anchors(labels)
        assert jnp.all(losses[~valid] == 0)
        mean = jaxloss.reduce.mean(losses, where=valid)
        np.testing.assert_allclose(mean, losses[valid].mean(), rtol=1e-6)


@pytest.mark.parametrize("mining", MININGS)
def test_where_excludes_masked_examples_even_with_nan_padding(mining):
    x, labels = _uneven_inputs(9)
    keep = np.array([True, True, False, True, True, True, True, False])
    padded = np.where(keep[:, None], x, np.nan)
    padded[7, 0] = np.inf
    with jax.enable_x64(True):
        losses, vjp = jax.vjp(lambda x: batch_triplet_loss(x, labels, mining=mining, where=jnp.asarray(keep)), padded)
        grad = vjp(jnp.ones_like(losses))[0]
        expected = _np_loss(x, labels, mining, "euclidean", keep=keep)
        np.testing.assert_allclose(losses, expected, rtol=1e-12, atol=1e-12)
        assert np.all(np.asarray(grad)[~keep] == 0) and np.all(np.isfinite(grad))
        # Same as dropping the masked examples.
        dropped = batch_triplet_loss(x[keep], labels[keep], mining=mining)
        np.testing.assert_allclose(np.asarray(losses)[keep], dropped, rtol=1e-12)
        g_dropped = jax.grad(lambda x: batch_triplet_loss(x, labels[keep], mining=mining).sum())(x[keep])
        np.testing.assert_allclose(np.asarray(grad)[keep], g_dropped, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mining", MININGS)
def test_finite_gradient_at_zero_distance(mining):
    x, labels = _uneven_inputs(10)
    x = np.float32(x)
    x[2] = x[0]  # duplicate of a positive
    x[1] = x[0]  # duplicate of a negative
    for distance in ["euclidean", "squared"]:
        fn = lambda x: batch_triplet_loss(x, labels, mining=mining, distance=distance).sum()  # noqa: E731
        for f in (fn, lambda x: batch_triplet_loss.reference(x, labels, mining=mining, distance=distance).sum()):
            g = jax.grad(f)(x)
            assert np.all(np.isfinite(g))
        np.testing.assert_allclose(jax.grad(fn)(x), jax.grad(lambda x: batch_triplet_loss.reference(
            x, labels, mining=mining, distance=distance).sum())(x), rtol=1e-5, atol=1e-6)
    # All identical: every distance is 0, the Euclidean subgradient is 0.
    same = np.ones((4, 3), np.float32)
    g = jax.grad(lambda x: batch_triplet_loss(x, np.array([0, 0, 1, 1]), mining=mining).sum())(same)
    np.testing.assert_array_equal(g, 0)


def test_reverse_mode_keeps_small_residuals():
    x, labels = jnp.float32(_uneven_inputs(11)[0]), jnp.int32(_uneven_inputs(11)[1])
    n, dim = x.shape
    for mining, largest in [("hard", 2 * n), ("semihard", 2 * n * n), ("all", n * n)]:
        _, vjp = jax.vjp(lambda x: batch_triplet_loss(x, labels, mining=mining), x)
        sizes = [leaf.size for leaf in jax.tree.leaves(vjp) if hasattr(leaf, "size")]
        assert max(sizes) <= max(largest, n * dim), (mining, sizes)


def test_errors_name_the_argument():
    x, labels = jnp.zeros((4, 3)), jnp.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="mining"):
        batch_triplet_loss(x, labels, mining="easy")
    with pytest.raises(ValueError, match="distance"):
        batch_triplet_loss(x, labels, distance="manhattan")
    with pytest.raises(ValueError, match="embeddings"):
        batch_triplet_loss(jnp.zeros(4), labels)
    with pytest.raises(ValueError, match="labels"):
        batch_triplet_loss(x, labels[:3])
    with pytest.raises(TypeError, match="labels"):
        batch_triplet_loss(x, jnp.zeros(4))
    with pytest.raises(TypeError, match="embeddings"):
        batch_triplet_loss(jnp.zeros((4, 3), jnp.int32), labels)
    with pytest.raises(ValueError, match="margin"):
        batch_triplet_loss(x, labels, margin=jnp.ones(3))
    with pytest.raises(ValueError, match="where"):
        batch_triplet_loss(x, labels, where=jnp.ones(3, bool))
    with pytest.raises(ValueError, match="mining"):
        batch_triplet_loss(x, labels, mining=["hard"])
    with pytest.raises(TypeError, match="labels"):
        valid_triplet_anchors(jnp.zeros(4))
