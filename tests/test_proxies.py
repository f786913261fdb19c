"""Centre- and proxy-based metric learning: float64 NumPy references from the papers' formulas,
pytorch-metric-learning parity (values and gradients for the embeddings and the class vectors,
its reducers reproduced with jaxloss.reduce), the centre update, masks and ignored ids."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss.proxies import center_loss, center_update, proxy_anchor_loss, proxy_nca_loss, subcenter_arcface_loss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

N, C, D = 12, 5, 4


def _inputs(seed=0, n=N, classes=C, features=D, sub=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    shape = (classes, features) if sub is None else (classes, sub, features)
    vectors = rng.standard_normal(shape) * rng.uniform(0.5, 2.0, shape[:-1] + (1,))
    embeddings = rng.standard_normal((n, features)) * rng.uniform(0.5, 2.0, (n, 1))
    return embeddings, vectors, labels


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _grads(fn, e, v, labels, reduce=jaxloss.reduce.mean, **options):
    """The reduced loss and its gradients in the embeddings and the class vectors."""
    value, grads = jax.value_and_grad(lambda e, v: reduce(fn(e, v, labels, **options)), (0, 1))(e, v)
    return (value, *grads)


def _assert_all(got, want, rtol, atol, names=("loss", "embeddings", "class vectors")):
    for name, a, b in zip(names, got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, equal_nan=False, err_msg=name)


# ---------------------------------------------------------------- center loss


def test_center_loss_is_half_the_squared_distance_with_its_derivatives(x64):
    e, c, labels = _inputs(1)
    diff = e - c[labels]
    want_e, want_c = diff, -np.stack([diff[labels == j].sum(0) for j in range(C)])
    got = _grads(center_loss, e, c, labels, reduce=jnp.sum)
    _assert_all(got, (0.5 * np.sum(diff**2), want_e, want_c), 1e-12, 1e-12)
    np.testing.assert_allclose(center_loss(e, c, labels), 0.5 * np.sum(diff**2, -1), rtol=1e-12)


def test_center_loss_ignores_ignore_index_and_nans_other_bad_ids(x64):
    e, c, labels = _inputs(2)
    labels[[1, 4]] = [-100, C]
    losses = center_loss(e, c, labels)
    assert losses[1] == 0 and np.isnan(losses[4])
    ge, gc = jax.grad(lambda e, c: jnp.sum(jnp.where(jnp.isnan(losses), 0.0, center_loss(e, c, labels))), (0, 1))(e, c)
    assert np.all(np.asarray(ge)[[1, 4]] == 0) and np.all(np.isfinite(gc))
    assert np.isnan(center_loss(e, c, labels, ignore_index=None)[1])


def test_center_loss_forward_mode_and_second_order_match_autodiff(x64):
    e, c, labels = _inputs(3)
    result = jaxloss.check_gradients(center_loss, e, c, labels, order=2)
    assert result.ok, result


def _paper_update(c, x, labels, alpha, keep=None):
    """Wen et al. 2016 Eq. 4, class by class in float64."""
    keep = np.ones(len(x), bool) if keep is None else keep
    new = c.copy()
    for j in range(len(c)):
        members = (labels == j) & keep
        delta = np.sum(c[j] - x[members], axis=0) / (1 + members.sum())
        new[j] = c[j] - alpha * delta
    return new


@pytest.mark.parametrize("alpha", [0.5, 0.1, 1.0])
def test_center_update_is_the_papers_step(alpha, x64):
    e, c, labels = _inputs(4, classes=7)  # some classes absent: their centres stay
    labels[0] = -100
    got = center_update(c, e, labels, alpha=alpha)
    np.testing.assert_allclose(got, _paper_update(c, e, labels, alpha), rtol=1e-12, atol=1e-14)
    absent = np.setdiff1d(np.arange(7), labels)
    assert absent.size and np.all(got[absent] == c[absent])


def test_center_update_mask_leaves_examples_out_even_with_inf_padding(x64):
    e, c, labels = _inputs(5)
    keep = np.arange(N) % 3 != 0
    e[~keep] = np.inf
    got = center_update(c, e, labels, alpha=0.5, where=keep)
    np.testing.assert_allclose(got, _paper_update(c, np.where(keep[:, None], e, 0), labels, 0.5, keep), rtol=1e-12)


def test_center_update_over_a_sharded_batch_equals_the_whole_batch(x64):
    e, c, labels = _inputs(6)
    keep = np.arange(N) % 4 != 1
    whole = center_update(c, e, labels, alpha=0.3, where=keep)
    shards = jax.vmap(lambda e, y, k: center_update(c, e, y, alpha=0.3, where=k, axis_name="batch"),
                      axis_name="batch")(e.reshape(3, 4, D), labels.reshape(3, 4), keep.reshape(3, 4))
    for shard in shards:
        np.testing.assert_allclose(shard, whole, rtol=1e-12, atol=1e-14)


def test_center_update_keeps_dtype_and_checks_alpha():
    e, c, labels = _inputs(7)
    assert center_update(jnp.bfloat16(c), jnp.float32(e), labels).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="alpha"):
        center_update(c, e, labels, alpha=1.5)
    with pytest.raises(ValueError, match="labels"):
        center_update(c, e, labels[:-1])


# ---------------------------------------------------------------- pytorch-metric-learning


def _pml(name, e, vectors, labels, parameter="proxies", **kwargs):
    """pytorch-metric-learning's ``name`` (its default reducer) on ``vectors`` as its parameter,
    in float64: the loss and its gradients in the embeddings and ``vectors``."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses

    loss = getattr(losses, name)(**kwargs).double()
    with torch.no_grad():
        getattr(loss, parameter).copy_(torch.tensor(vectors))
    et = torch.tensor(e, requires_grad=True)
    value = loss(et, torch.tensor(labels))
    value.backward()
    return value.item(), et.grad.numpy(), getattr(loss, parameter).grad.numpy()


@pytest.mark.parametrize("softmax_scale", [1.0, 3.0, 10.0])
def test_proxy_nca_matches_pytorch_metric_learning_with_its_mean_reducer(softmax_scale, x64):
    e, p, labels = _inputs(10)
    want = _pml("ProxyNCALoss", e, p, labels, num_classes=C, embedding_size=D, softmax_scale=softmax_scale)
    for fn in (proxy_nca_loss, proxy_nca_loss.reference):
        _assert_all(_grads(fn, e, p, labels, softmax_scale=softmax_scale), want, 1e-10, 1e-12)


def test_proxy_nca_per_example_is_cross_entropy_of_negated_squared_distances(x64):
    e, p, labels = _inputs(11, n=(3 * 4), classes=6)
    z = -2.5 * np.sum((_unit(e)[:, None] - _unit(p)[None]) ** 2, -1)
    want = np.log(np.sum(np.exp(z), -1)) - z[np.arange(len(e)), labels]
    np.testing.assert_allclose(proxy_nca_loss(e, p, labels, softmax_scale=2.5), want, rtol=1e-12)
    batched = proxy_nca_loss(e.reshape(3, 4, D), p, labels.reshape(3, 4), softmax_scale=2.5)
    np.testing.assert_allclose(batched, want.reshape(3, 4), rtol=1e-12)
    moved = proxy_nca_loss(e.T, p, labels, axis=0, softmax_scale=2.5)
    np.testing.assert_allclose(moved, want, rtol=1e-12)


@pytest.mark.parametrize("margin,alpha", [(0.1, 32.0), (0.3, 8.0), (0.0, 1.0)])
def test_proxy_anchor_matches_pytorch_metric_learning_with_its_divisor_reducer(margin, alpha, x64):
    e, p, labels = _inputs(12, n=10, classes=7)  # classes 0..6 drawn from 10 labels: some proxies without positives
    assert len(np.unique(labels)) < 7
    want = _pml("ProxyAnchorLoss", e, p, labels, num_classes=7, embedding_size=D, margin=margin, alpha=alpha)
    for fn in (proxy_anchor_loss, proxy_anchor_loss.reference):
        _assert_all(_grads(fn, e, p, labels, reduce=lambda x: x, margin=margin, alpha=alpha), want, 1e-10, 1e-12)


def _np_proxy_anchor(e, p, labels, margin, alpha):
    """Kim et al. 2020 Eq. 4 in float64."""
    cos = _unit(e) @ _unit(p).T
    pos = labels[:, None] == np.arange(len(p))
    pos_terms = np.log1p(np.sum(np.where(pos, np.exp(-alpha * (cos - margin)), 0), 0))
    neg_terms = np.log1p(np.sum(np.where(~pos, np.exp(alpha * (cos + margin)), 0), 0))
    return pos_terms.sum() / max(np.any(pos, 0).sum(), 1) + neg_terms.sum() / len(p)


def test_proxy_anchor_where_and_ignore_index_remove_examples_from_the_batch(x64):
    e, p, labels = _inputs(13)
    keep = np.arange(N) % 3 != 0
    padded = np.where(keep[:, None], e, np.nan)
    want = _np_proxy_anchor(e[keep], p, labels[keep], 0.1, 16.0)
    np.testing.assert_allclose(proxy_anchor_loss(padded, p, labels, alpha=16.0, where=keep), want, rtol=1e-12)
    ignored = np.where(keep, labels, -100)
    np.testing.assert_allclose(proxy_anchor_loss(e, p, ignored, alpha=16.0), want, rtol=1e-12)
    g = jax.grad(lambda e: proxy_anchor_loss(e, p, labels, alpha=16.0, where=keep))(padded)
    assert np.all(g[~keep] == 0) and np.all(np.isfinite(g))
    assert proxy_anchor_loss(e, p, labels, where=np.zeros(N, bool)) == 0
    assert np.isnan(proxy_anchor_loss(e, p, np.where(keep, labels, C)))


def test_proxy_anchor_stays_finite_at_large_alpha_and_huge_values():
    e, p, labels = _inputs(14)
    f = lambda e, p, margin, alpha: proxy_anchor_loss(e, p, labels, margin=margin, alpha=alpha)  # noqa: E731
    value, grads = jax.value_and_grad(f, (0, 1, 2, 3))(jnp.float32(1e4 * e), jnp.float32(p), 1.0, 1e3)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_proxy_anchor_sharded_over_8_devices_equals_one_device(mesh):
    """Under shard_map over the batch (proxies replicated) every device returns the whole
    batch's loss; the gradients of the embeddings, proxies, margin and alpha, the JVP and a
    forward-over-reverse HVP equal one device's, with a mask and an ignored id on some shards."""
    from jax.sharding import PartitionSpec as P

    e, p, labels = _inputs(16, n=32, classes=6)
    labels[[3, 17]] = -100
    keep = np.arange(32) % 5 != 2
    args = (jnp.float32(e), jnp.float32(p), jnp.float32(0.2), jnp.float32(8.0))

    def whole(e, p, margin, alpha):
        return proxy_anchor_loss(e, p, labels, margin=margin, alpha=alpha, where=keep)

    local = lambda e, p, margin, alpha, y, m: proxy_anchor_loss(  # noqa: E731
        e, p, y, margin=margin, alpha=alpha, where=m, axis_name="x")
    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P(), P(), P(), P("x"), P("x")), out_specs=P())
    run = lambda *a: sharded(*a, jnp.asarray(labels), jnp.asarray(keep))  # noqa: E731
    np.testing.assert_allclose(jax.jit(run)(*args), whole(*args), rtol=1e-6, equal_nan=False)
    argnums = (0, 1, 2, 3)
    tangents = tuple(jnp.float32(t) for t in (np.cos(e), np.sin(p), 0.3, -0.5))
    for derivative in (lambda f: jax.grad(f, argnums)(*args), lambda f: jax.jvp(f, args, tangents)[1],
                       lambda f: jax.jvp(jax.grad(f, argnums), args, tangents)[1]):
        ours, theirs = jax.jit(lambda: derivative(run))(), derivative(whole)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max(), equal_nan=False)


@pytest.mark.parametrize("degrees,scale,sub", [(28.6, 64.0, 3), (10.0, 16.0, 2), (57.0, 8.0, 4)])
def test_subcenter_arcface_matches_pytorch_metric_learning_with_its_mean_reducer(degrees, scale, sub, x64):
    e, w, labels = _inputs(15, n=16, sub=sub)
    e[:3] = -w[labels[:3]].sum(1) + 0.05  # against every sub-centre: ArcFace's fallback region
    want = _pml("SubCenterArcFaceLoss", e, w.reshape(C * sub, D).T, labels, parameter="W", num_classes=C,
                embedding_size=D, margin=degrees, scale=scale, sub_centers=sub)
    want = (want[0], want[1], want[2].T.reshape(C, sub, D))
    for fn in (subcenter_arcface_loss, subcenter_arcface_loss.reference):
        _assert_all(_grads(fn, e, w, labels, scale=scale, margin=math.radians(degrees)), want, 1e-9, 1e-11)


def test_subcenter_arcface_with_one_sub_centre_is_arcface(x64):
    e, w, labels = _inputs(16)
    np.testing.assert_allclose(subcenter_arcface_loss(e, w[:, None], labels, scale=8.0, margin=0.3),
                               jaxloss.arcface_loss(e, w, labels, scale=8.0, margin=0.3), rtol=1e-12)
    got = _grads(subcenter_arcface_loss, e, w[:, None], labels, scale=8.0, margin=0.3)
    want = _grads(jaxloss.arcface_loss, e, w, labels, scale=8.0, margin=0.3)
    _assert_all(got, (want[0], want[1], want[2][:, None]), 1e-12, 1e-14)


def test_subcenter_arcface_gives_only_the_nearest_sub_centre_a_derivative(x64):
    e, w, labels = _inputs(17, sub=3)
    g = jax.grad(lambda w: jnp.sum(subcenter_arcface_loss(e, w, labels, scale=4.0)))(w)
    cos = np.einsum("nd,ckd->nck", _unit(e), _unit(w))
    nearest = np.zeros((C, 3), bool)
    nearest[np.arange(C)[None].repeat(N, 0), cos.argmax(-1)] = True
    assert np.all(g[~nearest] == 0) and np.all(np.linalg.norm(g[nearest], axis=-1) > 0)


def test_subcenter_arcface_tied_sub_centres_give_finite_derivatives_to_second_order():
    e, w, labels = _inputs(18, sub=2)
    w[:, 1] = w[:, 0]  # every max is a tie
    w, e = jnp.float32(w), jnp.float32(e)
    f = lambda e: jnp.sum(subcenter_arcface_loss(e, w, labels, scale=4.0))  # noqa: E731
    hvp = jax.jvp(jax.grad(f), (e,), (jnp.ones_like(e),))[1]
    assert np.all(np.isfinite(jax.grad(f)(e))) and np.all(np.isfinite(hvp))


@pytest.mark.parametrize("fn,vectors", [(proxy_nca_loss, (C, D)), (subcenter_arcface_loss, (C, 2, D)),
                                        (center_loss, (C, D))])
def test_where_masks_inf_padding_to_zero_loss_and_gradient(fn, vectors):
    e, v, labels = _inputs(19, sub=vectors[1] if len(vectors) == 3 else None)
    keep = np.arange(N) % 2 == 0
    e = np.where(keep[:, None], e, np.inf)
    losses = fn(jnp.float32(e), jnp.float32(v), labels, where=keep)
    g = jax.grad(lambda e, v: jnp.sum(fn(e, v, labels, where=keep)), (0, 1))(jnp.float32(e), jnp.float32(v))
    assert np.all(losses[~keep] == 0) and np.all(np.isfinite(losses))
    assert np.all(g[0][~keep] == 0) and all(np.all(np.isfinite(x)) for x in g)


@pytest.mark.parametrize("fn", [proxy_nca_loss, proxy_anchor_loss])
def test_proxy_losses_check_out_to_second_order_for_every_float_argument(fn, x64):
    e, p, labels = _inputs(20)
    options = {"softmax_scale": 2.0} if fn is proxy_nca_loss else {"margin": 0.2, "alpha": 4.0}
    result = jaxloss.check_gradients(fn, e, p, labels, order=2, **options)
    assert result.ok, result
    assert set(options) <= {r.argument for r in result.rows}


def test_low_precision_inputs_give_float32_loss_and_own_dtype_gradients():
    e, p, labels = _inputs(21)
    for fn in (center_loss, proxy_nca_loss, proxy_anchor_loss):
        eb, pb = jnp.bfloat16(e), jnp.bfloat16(p)
        assert fn(eb, pb, labels).dtype == jnp.float32
        ge, gp = jax.grad(lambda e, p: jnp.sum(fn(e, p, labels)), (0, 1))(eb, pb)
        assert ge.dtype == gp.dtype == jnp.bfloat16


@pytest.mark.parametrize("fn,args,match", [
    (center_loss, (np.zeros((3, 2)), np.zeros((4, 3)), np.zeros(3, int)), "centers"),
    (proxy_nca_loss, (np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(2, int)), "labels"),
    (proxy_anchor_loss, (np.zeros((2, 3, 2)), np.zeros((4, 2)), np.zeros((2, 3), int)), "embeddings"),
    (subcenter_arcface_loss, (np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3, int)), "class_centers"),
    (proxy_nca_loss, (np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3)), "labels"),
])
def test_bad_shapes_raise_naming_the_argument(fn, args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fn(*args)


def test_bad_options_raise_naming_the_option():
    e, p, labels = _inputs(22)
    with pytest.raises(ValueError, match="softmax_scale"):
        proxy_nca_loss(e, p, labels, softmax_scale=0.0)
    with pytest.raises(ValueError, match="alpha"):
        proxy_anchor_loss(e, p, labels, alpha=-1.0)
    with pytest.raises(ValueError, match="margin"):
        subcenter_arcface_loss(e, p[:, None], labels, margin=-0.1)
