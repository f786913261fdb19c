"""Pair-based metric-learning losses (jaxloss.pairs, jaxloss.supcon): float64 references written from the
formulas, parity with pytorch-metric-learning (its reducers reproduced with jaxloss.reduce),
masks, anchors without positives, and derivatives at duplicates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import pairs, supcon

pytestmark = pytest.mark.full

LOSSES = (supcon.supervised_contrastive_loss, pairs.multi_similarity_loss, pairs.circle_loss,
          pairs.lifted_structure_loss, pairs.npair_loss)
DISTANCE = {pairs.circle_loss: ("cosine",)}


def _batch(seed=0, n=12, d=5, classes=4):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, d)) + 0.3).astype(np.float32)
    labels = np.repeat(np.arange(classes), n // classes)
    rng.shuffle(labels)
    return x, labels.astype(np.int32)


def _cosines(x):
    x_hat = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return x_hat @ x_hat.T


def _np_supcon(x, labels, t):
    s = _cosines(np.float64(x)) / t
    out = np.zeros(len(x))
    for a in range(len(x)):
        others = np.arange(len(x)) != a
        pos = others & (labels == labels[a])
        if pos.any() and (labels != labels[a]).any():
            out[a] = np.log(np.sum(np.exp(s[a, others]))) - np.mean(s[a, pos])
    return out


def _np_multi_similarity(x, labels, alpha, beta, base):
    s = _cosines(np.float64(x))
    out = np.zeros(len(x))
    for a in range(len(x)):
        pos = (np.arange(len(x)) != a) & (labels == labels[a])
        neg = labels != labels[a]
        if pos.any():
            out[a] = (np.log1p(np.sum(np.exp(-alpha * (s[a, pos] - base)))) / alpha
                      + np.log1p(np.sum(np.exp(beta * (s[a, neg] - base)))) / beta)
    return out


def test_supervised_contrastive_matches_float64_formula():
    x, labels = _batch(1)
    labels[0] = 9  # an anchor without a positive: 0
    got = supcon.supervised_contrastive_loss(jnp.array(x), jnp.array(labels), temperature=0.3)
    np.testing.assert_allclose(got, _np_supcon(x, labels, 0.3), rtol=2e-6, atol=1e-6)
    assert got[0] == 0


def test_multi_similarity_matches_float64_formula():
    x, labels = _batch(2)
    got = pairs.multi_similarity_loss(jnp.array(x), jnp.array(labels), alpha=2.0, beta=10.0, base=0.3)
    np.testing.assert_allclose(got, _np_multi_similarity(x, labels, 2.0, 10.0, 0.3), rtol=2e-6, atol=1e-6)


def test_supervised_contrastive_equals_ntxent_with_two_per_label():
    x, _ = _batch(3, n=10)
    labels = jnp.array([0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    for t in (0.07, 0.5):
        np.testing.assert_allclose(supcon.supervised_contrastive_loss(jnp.array(x), labels, temperature=t),
                                   jaxloss.ntxent_loss(jnp.array(x), labels, temperature=t), rtol=1e-5, atol=1e-6)
        grads = [jax.grad(lambda x: f(x, labels, temperature=t).sum())(jnp.array(x))
                 for f in (supcon.supervised_contrastive_loss, jaxloss.ntxent_loss)]
        np.testing.assert_allclose(*grads, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- pytorch-metric-learning parity


def _pml():
    pml = pytest.importorskip("pytorch_metric_learning")
    import torch
    return pml, torch


def _pml_distance(distance):
    from pytorch_metric_learning import distances
    return distances.LpDistance() if distance == "euclidean" else distances.CosineSimilarity()


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", [0, 1])
def test_pml_parity(distance, seed):
    """Every loss at PML's defaults (values and gradients of the reduced loss), on batches where
    every label has a positive (PML keeps the negative terms of an anchor without one)."""
    pml, torch = _pml()
    from pytorch_metric_learning import distances, losses, miners
    x, labels = _batch(seed)
    tx, tl = torch.tensor(x, requires_grad=True), torch.tensor(labels, dtype=torch.long)
    pd = _pml_distance(distance)
    jx, jl = jnp.array(x), jnp.array(labels)
    nonzero = lambda losses: jaxloss.reduce.mean(losses, where=losses > 0)  # noqa: E731  AvgNonZeroReducer
    pairs_count = len(np.unique(labels))
    cases = [
        (lambda x: nonzero(supcon.supervised_contrastive_loss(x, jl, distance=distance)),
         lambda: losses.SupConLoss(distance=pd)(tx, tl)),
        (lambda x: jaxloss.reduce.mean(pairs.multi_similarity_loss(x, jl, distance=distance)),
         lambda: losses.MultiSimilarityLoss(distance=pd)(tx, tl)),
        (lambda x: jaxloss.reduce.mean(pairs.multi_similarity_loss(x, jl, mining=True, distance=distance)),
         lambda: losses.MultiSimilarityLoss(distance=pd)(tx, tl, miners.MultiSimilarityMiner(distance=pd)(tx, tl))),
        (lambda x: jaxloss.reduce.mean(pairs.lifted_structure_loss(x, jl, distance=distance)),
         lambda: losses.GeneralizedLiftedStructureLoss(distance=pd)(tx, tl)),
        (lambda x: jaxloss.reduce.sum(pairs.npair_loss(x, jl, distance=distance)) / pairs_count,
         lambda: losses.NPairsLoss(distance=pd if distance == "euclidean" else distances.DotProductSimilarity())(
             tx, tl)),
    ]
    if distance == "cosine":  # PML's gradient is detach_weights=True's
        cases.append((lambda x: nonzero(pairs.circle_loss(x, jl, gamma=4.0, detach_weights=True)),
                      lambda: losses.CircleLoss(gamma=4.0)(tx, tl)))
    for ours, theirs in cases:
        tx.grad = None
        expected = theirs()
        expected.backward()
        value, grad = jax.value_and_grad(ours)(jx)
        np.testing.assert_allclose(value, expected.item(), rtol=2e-6, equal_nan=False)
        np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-4, atol=2e-6, equal_nan=False)


def test_circle_detached_gradient_matches_pml():
    pml, torch = _pml()
    from pytorch_metric_learning import losses, reducers
    x, labels = _batch(4)
    tx = torch.tensor(x, requires_grad=True)
    losses.CircleLoss(reducer=reducers.SumReducer())(tx, torch.tensor(labels, dtype=torch.long)).backward()
    grad = jax.grad(lambda x: pairs.circle_loss(x, jnp.array(labels), detach_weights=True).sum())(jnp.array(x))
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-4, atol=1e-4 * np.abs(tx.grad.numpy()).max())
    value = pairs.circle_loss(jnp.array(x), jnp.array(labels), detach_weights=True)
    np.testing.assert_allclose(value, pairs.circle_loss(jnp.array(x), jnp.array(labels)))


# ---------------------------------------------------------------- masks, anchors without positives


@pytest.mark.parametrize("fn", LOSSES, ids=lambda f: f.__name__)
def test_masked_examples_leave_the_batch(fn):
    """Unmasked losses equal those of the batch without the masked examples; masked rows (NaN
    padding) get loss 0 and gradient exactly 0."""
    x, labels = _batch(5)
    keep = np.ones(len(x), bool)
    keep[[2, 7]] = False
    padded = x.copy()
    padded[~keep] = np.nan
    for distance in DISTANCE.get(fn, ("cosine", "euclidean")):
        kw = {} if fn is pairs.circle_loss else {"distance": distance}
        got = fn(jnp.array(padded), jnp.array(labels), where=jnp.array(keep), **kw)
        alone = fn(jnp.array(x[keep]), jnp.array(labels[keep]), **kw)
        np.testing.assert_allclose(got[keep], alone, rtol=1e-6, atol=1e-7, equal_nan=False)
        assert np.all(np.asarray(got)[~keep] == 0)
        grad = jax.grad(lambda x: fn(x, jnp.array(labels), where=jnp.array(keep), **kw).sum())(jnp.array(padded))
        assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~keep] == 0)


@pytest.mark.parametrize("fn", LOSSES, ids=lambda f: f.__name__)
def test_anchor_without_positive_has_zero_loss_and_gradient(fn):
    x, labels = _batch(6)
    labels[3] = 99
    losses = fn(jnp.array(x), jnp.array(labels))
    assert losses[3] == 0
    jac = jax.jacrev(lambda x: fn(x, jnp.array(labels))[3])(jnp.array(x))
    assert np.all(np.asarray(jac) == 0)


@pytest.mark.parametrize("fn", LOSSES, ids=lambda f: f.__name__)
def test_finite_gradient_at_duplicates(fn):
    """Duplicate embeddings (distance 0) give finite first and second derivatives."""
    x, labels = _batch(7)
    x[1] = x[0]
    x[4] = 2 * x[0]
    for distance in DISTANCE.get(fn, ("cosine", "euclidean")):
        kw = {} if fn is pairs.circle_loss else {"distance": distance}
        f = lambda x: fn(x, jnp.array(labels), **kw).sum()  # noqa: E731
        grad = jax.grad(f)(jnp.array(x))
        hvp = jax.jvp(jax.grad(f), (jnp.array(x),), (jnp.ones_like(jnp.array(x)),))[1]
        assert np.all(np.isfinite(grad)) and np.all(np.isfinite(hvp))


@pytest.mark.parametrize("fn", LOSSES, ids=lambda f: f.__name__)
def test_forward_and_second_order_match_reference(fn):
    x, labels = _batch(8)
    jx, jl, v = jnp.array(x), jnp.array(labels), jnp.array(np.random.default_rng(0).standard_normal(x.shape))
    outs = [jax.jvp(lambda x: g(x, jl), (jx,), (v,))[1] for g in (fn, fn.reference)]
    np.testing.assert_allclose(*outs, rtol=1e-4, atol=1e-5, equal_nan=False)
    hvps = [jax.jvp(jax.grad(lambda x: g(x, jl).sum()), (jx,), (v,))[1] for g in (fn, fn.reference)]
    np.testing.assert_allclose(*hvps, rtol=1e-3, atol=1e-4, equal_nan=False)


def test_feature_axis_first():
    x, labels = _batch(9)
    for fn in LOSSES:
        np.testing.assert_allclose(fn(jnp.array(x.T), jnp.array(labels), axis=0), fn(jnp.array(x), jnp.array(labels)),
                                   rtol=1e-6)


def test_bad_options_raise():
    x, labels = _batch(0)
    with pytest.raises(ValueError, match="distance"):
        supcon.supervised_contrastive_loss(jnp.array(x), jnp.array(labels), distance="manhattan")
    with pytest.raises(ValueError, match="temperature"):
        supcon.supervised_contrastive_loss(jnp.array(x), jnp.array(labels), temperature=0.0)
    with pytest.raises(ValueError, match="labels"):
        pairs.npair_loss(jnp.array(x), jnp.array(labels[:-1]))
    with pytest.raises(TypeError, match="mining"):
        pairs.multi_similarity_loss(jnp.array(x), jnp.array(labels), mining="yes")
