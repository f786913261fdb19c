"""ge2e_loss: a float64 loop reference following the paper's equations, the exclusive centroid,
masking, the clamp on w, finite gradients at cos = ±1 and zero vectors, and input errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss.speaker import ge2e_loss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

KINDS = pytest.mark.parametrize("kind", ["softmax", "contrast"])


def _embeddings(seed=0, shape=(4, 3, 5)):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((shape[0], 1, shape[-1]))
    return centres + 0.7 * rng.standard_normal(shape)


def _loop_reference(e, w, b, kind, where=None, xp=np):
    """Wan et al. eqs. 5–10 with explicit loops: e_ji normalised, c_k the mean of speaker k's
    (unmasked) utterances, c_j^(−i) leaving out e_ji, S = max(w, 1e-6)·cos + b.  With xp=jnp
    (float64) it is differentiable by jax.grad."""
    speakers, utterances, _ = e.shape
    valid = np.ones((speakers, utterances), bool) if where is None else np.broadcast_to(where, (speakers, utterances))
    positive = lambda sq: sq > 0  # sqrt at 0 kept out of autodiff (its slope is infinite)
    norm = lambda v: xp.where(positive(v @ v), xp.sqrt(xp.where(positive(v @ v), v @ v, 1.0)), 0.0)
    unit = lambda v: v / xp.maximum(norm(v), 1e-12)
    w = xp.where(w >= 1e-6, w, 1e-6)
    e_hat = [[unit(e[j, i]) for i in range(utterances)] for j in range(speakers)]
    rows = []
    for j in range(speakers):
        row = []
        for i in range(utterances):
            own = [m for m in range(utterances) if valid[j, m] and m != i]
            if not valid[j, i] or not own:
                row.append(xp.zeros(()) * w)
                continue
            sims = {}
            for k in range(speakers):
                members = own if k == j else [m for m in range(utterances) if valid[k, m]]
                if not members:
                    continue
                centroid = sum(e_hat[k][m] for m in members) / len(members)
                sims[k] = w * xp.sum(e_hat[j][i] * unit(centroid)) + b
            if kind == "softmax":
                row.append(-sims[j] + xp.log(sum(xp.exp(s) for s in sims.values())))
            else:
                sigmoid = lambda s: 1 / (1 + xp.exp(-s))
                others = [sigmoid(s) for k, s in sims.items() if k != j]
                row.append(1 - sigmoid(sims[j]) + (xp.max(xp.stack(others)) if others else 0.0))
        rows.append(xp.stack(row))
    return xp.stack(rows)


def _ragged_mask(shape=(4, 3)):
    where = np.ones(shape, bool)
    where[0, 1] = False  # speaker 0: two utterances left
    where[1, :2] = False  # speaker 1: a lone utterance (loss 0, still a centroid for the others)
    where[3, :] = False  # speaker 3: none (left out of the others' softmax and max)
    return where


@KINDS
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "ragged-mask"])
def test_values_match_float64_loop_reference(kind, masked, x64):
    e = _embeddings(1)
    where = _ragged_mask() if masked else None
    got = ge2e_loss(e, w=10.0, b=-5.0, kind=kind, where=where)
    assert got.dtype == jnp.float64 and got.shape == (4, 3)
    np.testing.assert_allclose(got, _loop_reference(e, 10.0, -5.0, kind, where), rtol=1e-12, atol=1e-14)
    if masked:
        assert np.all(np.asarray(got)[~where] == 0) and np.all(np.asarray(got)[1] == 0)


@KINDS
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "ragged-mask"])
def test_gradients_match_autodiff_of_loop_reference(kind, masked, x64):
    e, w, b = jnp.asarray(_embeddings(2)), jnp.float64(2.5), jnp.float64(-1.0)
    where = _ragged_mask() if masked else None
    weights = jnp.asarray(np.random.default_rng(3).uniform(0.5, 1.5, (4, 3)))
    ours = jax.grad(lambda *a: jnp.sum(weights * ge2e_loss(a[0], w=a[1], b=a[2], kind=kind, where=where)),
                    argnums=(0, 1, 2))(e, w, b)
    ref = jax.grad(lambda *a: jnp.sum(weights * _loop_reference(*a, kind, where, xp=jnp)), argnums=(0, 1, 2))(e, w, b)
    for name, g, r in zip(["embeddings", "w", "b"], ours, ref):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12, err_msg=name)
    if kind == "softmax":
        assert ours[2] == 0  # b cancels from the softmax loss
    else:
        assert ours[2] != 0


@KINDS
def test_check_gradients_passes_in_both_modes(kind):
    e = jnp.float32(_embeddings(4, (3, 4, 6)))
    where = jnp.array([[True, True, False, True]] * 3)
    for options in ({}, {"where": where}):
        result = jaxloss.check_gradients(ge2e_loss, e, w=jnp.float32(4.0), b=jnp.float32(-2.0), kind=kind, **options)
        assert {r.argument for r in result.rows} == {"embeddings", "w", "b"}
        assert result.ok, result


def test_own_speaker_centroid_excludes_the_utterance(x64):
    # U = 2: the exclusive centroid of e_00 is e_01 itself, orthogonal to it (cos 0), while the
    # mean of both would give cos 1/√2.  Speaker 1's centroid is along −(1, 1): cos −1/√2.
    e = np.array([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]])
    got = ge2e_loss(e, w=10.0, b=-5.0)
    expected = np.log(1 + np.exp(-10 / np.sqrt(2)))  # −10·0 + log(e^0 + e^{−10/√2})
    np.testing.assert_allclose(got, np.full((2, 2), expected), rtol=1e-12)


@KINDS
def test_utterance_sees_its_speaker_only_through_the_mean_of_the_others(kind, x64):
    # eq. 8: the loss of e_00 depends on e_01, e_02 through (e_01 + e_02)/2 only; e_01's loss
    # depends on e_00 and changes.
    e = _embeddings(5, (3, 3, 3))
    e[0] /= np.linalg.norm(e[0], axis=-1, keepdims=True)
    s = e[0, 1] + e[0, 2]
    half, normal = s / 2, np.cross(s, e[0, 1])
    swing = np.sqrt(1 - half @ half) * normal / np.linalg.norm(normal)
    moved = e.copy()
    moved[0, 1], moved[0, 2] = half + swing, half - swing  # unit vectors, same sum
    np.testing.assert_allclose(np.linalg.norm(moved[0], axis=-1), 1.0, rtol=1e-12)
    before, after = ge2e_loss(e, w=3.0, b=-1.0, kind=kind), ge2e_loss(moved, w=3.0, b=-1.0, kind=kind)
    np.testing.assert_allclose(after[0, 0], before[0, 0], rtol=1e-12)
    assert abs(after[0, 1] - before[0, 1]) > 1e-3


@KINDS
def test_masked_utterances_are_left_out_of_the_centroids(kind):
    e = _embeddings(6, (3, 4, 5))
    where = np.array([True, True, True, False])
    padded = e.copy()
    padded[:, 3] = [np.nan, np.inf, -np.inf, 0.0, np.nan]
    got = ge2e_loss(padded, w=5.0, b=-2.0, kind=kind, where=where)
    np.testing.assert_allclose(got[:, :3], ge2e_loss(e[:, :3], w=5.0, b=-2.0, kind=kind), rtol=1e-6)
    assert np.all(np.asarray(got[:, 3]) == 0)
    assert np.any(np.abs(got[:, :3] - ge2e_loss(e, w=5.0, b=-2.0, kind=kind)[:, :3]) > 1e-4)
    g = jax.grad(lambda x: jnp.sum(ge2e_loss(x, w=5.0, b=-2.0, kind=kind, where=where)))(padded)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g[:, 3]) == 0)
    np.testing.assert_allclose(g[:, :3], jax.grad(lambda x: jnp.sum(ge2e_loss(x, w=5.0, b=-2.0, kind=kind)))(e[:, :3]),
                               rtol=1e-5, atol=1e-6)


def test_lone_utterance_has_loss_zero_but_serves_as_its_speakers_centroid(x64):
    e = _embeddings(7)
    where = np.ones((4, 3), bool)
    where[2, 1:] = False
    got = ge2e_loss(e, w=10.0, b=-5.0, where=where)
    assert got[2, 0] == 0
    g = jax.grad(lambda x: jnp.sum(ge2e_loss(x, w=10.0, b=-5.0, where=where)))(e)
    assert np.all(np.abs(g[2, 0]) > 0)  # others' losses still reach it through its centroid
    without = ge2e_loss(e, w=10.0, b=-5.0, where=where & (np.arange(4) != 2)[:, None])
    assert np.all(np.abs(np.asarray(got - without))[[0, 1, 3]] > 0)


@KINDS
@pytest.mark.parametrize("case", ["cos=+1", "cos=-1", "zero-vector", "zero-centroid", "huge"])
def test_finite_values_and_gradients_at_singular_points(kind, case, x64):
    # Speaker 0 holds the singular point; speaker 1 is plain.  U = 2 except for the zero
    # centroid, whose exclusive centroid (a − a)/2 needs a third utterance.
    a = np.array([1.0, 2.0, 3.0])
    speaker = {"cos=+1": [a, 2 * a], "cos=-1": [a, -a], "zero-vector": [a, 0 * a],
               "zero-centroid": [a, -a, np.array([1.0, 0.0, 0.0])], "huge": [1e4 * a, -1e4 * a[::-1]]}[case]
    e = np.stack([np.stack(speaker), np.eye(3)[: len(speaker)]])
    loss = ge2e_loss(e, w=10.0, b=-5.0, kind=kind)
    assert np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss, _loop_reference(e, 10.0, -5.0, kind), rtol=1e-10, atol=1e-12)
    total = lambda x: jnp.sum(ge2e_loss(x, w=10.0, b=-5.0, kind=kind))
    g = jax.grad(total)(e)
    assert np.all(np.isfinite(g))
    reference = jax.grad(lambda x: jnp.sum(ge2e_loss.reference(x, w=10.0, b=-5.0, kind=kind)))(e)
    np.testing.assert_allclose(g, reference, rtol=1e-9, atol=1e-9 * np.max(np.abs(reference)))
    assert np.all(np.isfinite(jax.jvp(jax.grad(total), (e,), (np.ones_like(e),))[1]))
    if case == "cos=+1":
        s = ge2e_loss(e, w=10.0, b=-5.0, kind="contrast")  # own similarity w·1 + b = 5
        assert np.all(np.asarray(s[0]) >= 1 - 1 / (1 + np.exp(-5.0)) - 1e-12)


def _zero_vectors(case, dtype=np.float32):
    """[3, 3, 4] embeddings with exact zeros: whole zero speakers (their centroids 0 too, the input
    tests/test_robustness.py found), single zero utterances, or centroids whose utterances cancel
    (speaker 1: (a − a)/2 is utterance 2's exclusive centroid; speaker 2: its centroid (c − c + 0)/3).
    Returns the embeddings and the mask of the zero vectors."""
    rng = np.random.default_rng(12)
    e = rng.standard_normal((3, 3, 4))
    if case == "zero-speakers":
        e[1:] = 0.0
    elif case == "zero-utterances":
        e[1, 0] = e[2, 2] = 0.0
    else:
        e[1, 1], e[2, 1], e[2, 2] = -2.0 * e[1, 0], -e[2, 0], 0.0
    return e.astype(dtype), np.all(e == 0, axis=-1)


ZERO_CASES = pytest.mark.parametrize("case", ["zero-speakers", "zero-utterances", "cancelled-centroids"])


@KINDS
@ZERO_CASES
@pytest.mark.parametrize("rule", ["hand", "reference"])
def test_finite_derivatives_to_second_order_at_zero_vectors_in_float32(kind, case, rule):
    # The floor's slope dx/1e-12, passed through a zero centroid (floored again), gave gradients
    # ~1e23 and an HVP of inf/NaN in float32.  A zero vector now takes the subgradient 0.
    fn = ge2e_loss if rule == "hand" else ge2e_loss.reference
    e, zero = _zero_vectors(case)
    w, b = jnp.float32(3.0), jnp.float32(-1.5)
    rng = np.random.default_rng(13)
    tangents = (jnp.float32(rng.standard_normal(e.shape)), jnp.float32(0.7), jnp.float32(-0.4))
    losses = lambda *a: fn(a[0], w=a[1], b=a[2], kind=kind)
    grad = jax.grad(lambda *a: jnp.sum(losses(*a)), argnums=(0, 1, 2))
    value = losses(e, w, b)
    gradients = grad(e, w, b)
    jvp = jax.jvp(losses, (e, w, b), tangents)[1]
    hvp = jax.jvp(grad, (e, w, b), tangents)[1]
    hvp_e = jax.jvp(lambda x: grad(x, w, b)[0], (e,), tangents[:1])[1]
    for name, x in [("value", value), ("jvp", jvp), ("hvp_e", hvp_e),
                    *zip(["grad_e", "grad_w", "grad_b"], gradients), *zip(["hvp_e", "hvp_w", "hvp_b"], hvp)]:
        assert np.all(np.isfinite(x)), name
        assert np.max(np.abs(x)) < 1e3, (name, np.max(np.abs(x)))  # no 1/1e-12 artefact
    assert np.all(np.asarray(gradients[0])[zero] == 0)  # the documented subgradient
    assert np.all(np.asarray(hvp_e)[zero] == 0)
    np.testing.assert_allclose(value, _loop_reference(e.astype(np.float64), 3.0, -1.5, kind), rtol=1e-5, atol=1e-6)


@KINDS
@ZERO_CASES
def test_zero_vectors_take_subgradient_zero_and_the_rest_matches_float64_autodiff(kind, case, x64):
    # The zero embeddings get gradient and HVP 0.  Where every zero vector is an input, the nonzero
    # ones get the float64 loop reference's gradient and HVP along tangents on them (the loop's own
    # derivative at a zero vector is the floor's 1/1e-12 artefact; through a centroid that cancels
    # it reaches the nonzero utterances too, so that case is compared with .reference only).  The
    # hand rule's HVP equals that of .reference everywhere.
    e, zero = _zero_vectors(case, np.float64)
    v = np.where(zero[..., None], 0.0, np.random.default_rng(14).standard_normal(e.shape))
    total = lambda fn: lambda x: jnp.sum(fn(x, 3.0, -1.5, kind))
    ours = total(lambda x, w, b, kind: ge2e_loss(x, w=w, b=b, kind=kind))
    g, hv = jax.jvp(jax.grad(ours), (e,), (v,))
    assert np.all(np.asarray(g)[zero] == 0) and np.all(np.asarray(hv)[zero] == 0)
    if case != "cancelled-centroids":
        loop = total(lambda x, w, b, kind: _loop_reference(x, w, b, kind, xp=jnp))
        g_loop, hv_loop = jax.jvp(jax.grad(loop), (e,), (v,))
        np.testing.assert_allclose(np.asarray(g)[~zero], np.asarray(g_loop)[~zero], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(hv)[~zero], np.asarray(hv_loop)[~zero], rtol=1e-9, atol=1e-11)
    u = np.random.default_rng(15).standard_normal(e.shape)  # tangents on the zero vectors too
    reference = total(lambda x, w, b, kind: ge2e_loss.reference(x, w=w, b=b, kind=kind))
    np.testing.assert_allclose(jax.jvp(jax.grad(ours), (e,), (u,))[1], jax.jvp(jax.grad(reference), (e,), (u,))[1],
                               rtol=1e-10, atol=1e-12)


def test_check_gradients_to_second_order_at_the_catalogue_sample():
    from jaxloss import _verify, catalogue

    args, kwargs = _verify.sample(catalogue.BY_NAME["ge2e_loss"])
    result = jaxloss.check_gradients(ge2e_loss, *args, order=2, **kwargs)
    assert result.ok, result


def test_w_is_clamped_positive_with_zero_derivative_there(x64):
    e = _embeddings(8)
    for kind in ("softmax", "contrast"):
        clamped = ge2e_loss(e, w=-2.0, b=0.5, kind=kind)
        np.testing.assert_allclose(clamped, ge2e_loss(e, w=1e-6, b=0.5, kind=kind), rtol=1e-12)
        dw = jax.grad(lambda w, kind=kind: jnp.sum(ge2e_loss(e, w=w, b=0.5, kind=kind)))
        assert dw(-2.0) == 0 and dw(2.0) != 0


def test_leading_batch_axes_and_vmap_match_per_sample_calls():
    e = jnp.float32(np.stack([_embeddings(9), _embeddings(10)]))
    per_sample = jnp.stack([ge2e_loss(x, w=10.0, b=-5.0) for x in e])
    np.testing.assert_allclose(ge2e_loss(e, w=10.0, b=-5.0), per_sample, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda x: ge2e_loss(x, w=10.0, b=-5.0))(e), per_sample, rtol=1e-6)
    g = jax.grad(lambda x: jnp.sum(ge2e_loss(x, w=10.0, b=-5.0)))(e)
    np.testing.assert_allclose(g[1], jax.grad(lambda x: jnp.sum(ge2e_loss(x, w=10.0, b=-5.0)))(e[1]), rtol=1e-5,
                               atol=1e-7)


def test_contrast_tie_takes_the_first_speaker(x64):
    # Utterance (0, 0) along x; speakers 1 and 2 mirror each other across the x axis: a tie.
    e = np.array([[[1.0, 0.0], [1.0, 0.2]], [[0.3, 1.0], [0.3, 1.0]], [[0.3, -1.0], [0.3, -1.0]]])
    g = jax.grad(lambda x: ge2e_loss(x, w=10.0, b=-5.0, kind="contrast")[0, 0])(e)
    assert np.all(np.isfinite(g))
    assert np.any(g[1] != 0) and np.all(g[2] == 0)
    np.testing.assert_allclose(g, jax.grad(lambda x: ge2e_loss.reference(x, w=10.0, b=-5.0, kind="contrast")[0, 0])(e),
                               rtol=1e-12, atol=1e-15)


def test_low_precision_embeddings_give_float32_loss_and_own_dtype_gradients():
    e = jnp.bfloat16(_embeddings(11))
    loss = ge2e_loss(e, w=10.0, b=-5.0)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, ge2e_loss(e.astype(jnp.float32), w=10.0, b=-5.0), rtol=1e-6)
    assert jax.grad(lambda x: jnp.sum(ge2e_loss(x, w=10.0, b=-5.0)))(e).dtype == jnp.bfloat16


@pytest.mark.parametrize("args, kwargs, error, match", [
    ((np.ones((3, 4)),), {}, ValueError, r"rank >= 3.*\(3, 4\)"),
    ((np.ones((3, 1, 4)),), {}, ValueError, r"at least 2 utterances.*\(3, 1, 4\)"),
    ((np.ones((3, 2, 4), np.int32),), {}, TypeError, "embeddings must be a floating-point array"),
    ((np.ones((3, 2, 4)),), {"kind": "triplet"}, ValueError, "kind must be"),
    ((np.ones((3, 2, 4)),), {"w": None}, TypeError, "w is required"),
    ((np.ones((3, 2, 4)),), {"b": np.ones(5)}, ValueError, r"b with shape \(5,\)"),
    ((np.ones((3, 2, 4)),), {"where": np.ones((2, 2), bool)}, ValueError, r"where with shape \(2, 2\)"),
    ((np.ones((3, 2, 4)),), {"where": np.ones((3, 2))}, TypeError, "where must be a boolean mask"),
])
def test_bad_input_raises_naming_the_argument(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        ge2e_loss(*args, **{"w": 10.0, "b": -5.0, **kwargs})


def test_w_and_b_are_required():
    with pytest.raises(TypeError):
        ge2e_loss(np.ones((3, 2, 4)))
