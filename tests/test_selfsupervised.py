"""Self-supervised losses: float64 NumPy transcriptions of the papers' pseudocode (Barlow Twins
and VICReg Algorithm 1, DINO Algorithm 1 / the official DINOLoss), PyTorch transcriptions of
the official code for gradients, sharded (8 CPU devices) == one device, collapsed embeddings
and zero vectors, where= and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

N, D = 16, 5


def _views(seed=0, n=N, d=D):
    rng = np.random.default_rng(seed)
    z1 = rng.standard_normal((n, d)) * rng.uniform(0.3, 2.0, d) + rng.standard_normal(d)
    return z1, 0.6 * z1 + rng.standard_normal((n, d))


def _close(ours, theirs, rtol=1e-6):
    """Equal up to ``rtol`` of the largest magnitude."""
    theirs = np.asarray(theirs, np.float64)
    np.testing.assert_allclose(np.asarray(ours, np.float64), theirs, rtol=0,
                               atol=rtol * max(np.abs(theirs).max(), 1e-30))


def _off_diagonal(m):
    return m[~np.eye(len(m), dtype=bool)]


# ------------------------------------------------------------------ NumPy float64 transcriptions


def _np_barlow(z_a, z_b, lambda_=5e-3, eps=1e-5):
    """Barlow Twins Algorithm 1, with the official code's standardisation (BatchNorm1d:
    biased variance plus eps) for ``z.std(0)``."""
    n = len(z_a)
    z_a_norm = (z_a - z_a.mean(0)) / np.sqrt(z_a.var(0) + eps)
    z_b_norm = (z_b - z_b.mean(0)) / np.sqrt(z_b.var(0) + eps)
    c = z_a_norm.T @ z_b_norm / n
    c_diff = (c - np.eye(len(c))) ** 2
    c_diff[~np.eye(len(c), dtype=bool)] *= lambda_
    return c_diff.sum()


def _np_vicreg(z_a, z_b, lam=25.0, mu=25.0, nu=1.0, eps=1e-4):
    """VICReg Algorithm 1."""
    n, d = z_a.shape
    sim_loss = np.mean((z_a - z_b) ** 2)
    std_z_a, std_z_b = np.sqrt(z_a.var(0, ddof=1) + eps), np.sqrt(z_b.var(0, ddof=1) + eps)
    std_loss = np.mean(np.maximum(0, 1 - std_z_a)) + np.mean(np.maximum(0, 1 - std_z_b))
    z_a, z_b = z_a - z_a.mean(0), z_b - z_b.mean(0)
    cov_z_a, cov_z_b = z_a.T @ z_a / (n - 1), z_b.T @ z_b / (n - 1)
    cov_loss = (_off_diagonal(cov_z_a) ** 2).sum() / d + (_off_diagonal(cov_z_b) ** 2).sum() / d
    return lam * sim_loss + mu * std_loss + nu * cov_loss


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _np_dino_official(student_output, teacher_output, center, student_temp, teacher_temp, ncrops):
    """The official ``DINOLoss.forward`` on its ``[views·N, K]`` layout, in NumPy."""
    student_out = np.split(student_output / student_temp, ncrops)
    teacher_out = np.exp(_np_log_softmax((teacher_output - center) / teacher_temp))
    teacher_out = np.split(teacher_out, len(teacher_output) // len(student_out[0]))
    total_loss, n_loss_terms = 0.0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            loss = np.sum(-q * _np_log_softmax(student_out[v]), axis=-1)
            total_loss += loss.mean()
            n_loss_terms += 1
    return total_loss / n_loss_terms


def _np_dino_per_example(student, teacher, center, student_temp, teacher_temp):
    """DINO Algorithm 1's H(t, s) per example, averaged over the pairs of different views."""
    out = np.zeros(student.shape[0])
    for i in range(student.shape[0]):
        terms = [-np.sum(np.exp(_np_log_softmax((teacher[i, t] - center) / teacher_temp))
                         * _np_log_softmax(student[i, s] / student_temp))
                 for t in range(teacher.shape[1]) for s in range(student.shape[1]) if s != t]
        out[i] = np.mean(terms)
    return out


def _to_official(x):
    """``[N, V, K]`` (jaxloss: batch first) to the official code's ``[V·N, K]`` (views first)."""
    return np.concatenate(list(np.moveaxis(x, 1, 0)))


def _dino_inputs(seed=0, n=6, s=5, t=2, k=7):
    rng = np.random.default_rng(seed)
    student = 2 * rng.standard_normal((n, s, k))
    teacher = 2 * rng.standard_normal((n, t, k))
    teacher[:, :s] = student[:, :t] + rng.standard_normal((n, min(s, t), k))  # the same crops, perturbed
    return student, teacher, rng.standard_normal(k)


# ------------------------------------------------------------------ values


@pytest.mark.parametrize("lambda_, eps", [(5e-3, 1e-5), (0.3, 0.1)])
def test_barlow_twins_matches_algorithm_1(lambda_, eps, x64):
    z1, z2 = _views(1)
    ours = jaxloss.barlow_twins_loss(jnp.asarray(z1), jnp.asarray(z2), lambda_=lambda_, eps=eps)
    assert ours.shape == ()
    _close(ours, _np_barlow(z1, z2, lambda_, eps), 1e-12)


@pytest.mark.parametrize("coefficients", [(25.0, 25.0, 1.0, 1e-4), (2.0, 3.0, 0.5, 0.01)])
def test_vicreg_matches_algorithm_1(coefficients, x64):
    z1, z2 = _views(2)
    lam, mu, nu, eps = coefficients
    ours = jaxloss.vicreg_loss(jnp.asarray(z1), jnp.asarray(z2), sim_coeff=lam, std_coeff=mu, cov_coeff=nu, eps=eps)
    assert ours.shape == ()
    _close(ours, _np_vicreg(z1, z2, lam, mu, nu, eps), 1e-12)
    assert 0 < np.mean(np.sqrt(z1.var(0, ddof=1))) and np.any(np.sqrt(z1.var(0, ddof=1) + eps) < 1)  # hinge active


def test_negative_cosine_similarity_is_simsiam_d_and_byol_is_two_plus_twice_it(x64):
    p, z = _views(3)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    ours = jaxloss.negative_cosine_similarity(jnp.asarray(p), jnp.asarray(z))
    _close(ours, -np.sum(unit(p) * unit(z), axis=-1), 1e-12)
    _close(2 + 2 * ours, np.sum((unit(p) - unit(z)) ** 2, axis=-1), 1e-12)  # BYOL's regression loss


@pytest.mark.parametrize("s, t", [(5, 2), (2, 2), (3, 1), (2, 3)])
def test_dino_matches_the_official_loss_and_algorithm_1(s, t, x64):
    student, teacher, center = _dino_inputs(4, s=s, t=t)
    ours = jaxloss.dino_loss(jnp.asarray(student), jnp.asarray(teacher), jnp.asarray(center),
                             student_temperature=0.1, teacher_temperature=0.04)
    assert ours.shape == (student.shape[0],)
    _close(ours, _np_dino_per_example(student, teacher, center, 0.1, 0.04), 1e-12)
    if t <= s:  # the official code pairs its teacher views with the first student views
        official = _np_dino_official(_to_official(student), _to_official(teacher), center, 0.1, 0.04, s)
        _close(jnp.mean(ours), official, 1e-12)


def test_dino_center_update_is_the_official_ema(x64):
    _, teacher, center = _dino_inputs(5)
    ours = jaxloss.dino_center_update(jnp.asarray(center), jnp.asarray(teacher), momentum=0.9)
    flat = _to_official(teacher)
    _close(ours, 0.9 * center + 0.1 * flat.sum(0) / len(flat), 1e-12)


# ------------------------------------------------------------------ gradients against PyTorch


def _torch_grads(loss, arrays):
    torch = pytest.importorskip("torch")
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    value = loss(torch, *tensors)
    value.backward()
    return value.item(), [None if t.grad is None else t.grad.numpy() for t in tensors]


def _torch_barlow(torch, z1, z2, lambda_=5e-3):
    """The official ``BarlowTwins.forward`` after the projector (one process)."""
    bn = torch.nn.BatchNorm1d(z1.shape[1], affine=False).double()
    c = bn(z1).T @ bn(z2) / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.flatten()[:-1].view(c.shape[0] - 1, c.shape[0] + 1)[:, 1:].flatten().pow(2).sum()
    return on_diag + lambda_ * off_diag


def _torch_vicreg(torch, x, y, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
    """The official ``VICReg.forward`` after the projector (one process)."""
    functional = torch.nn.functional
    repr_loss = functional.mse_loss(x, y)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    std_x, std_y = torch.sqrt(x.var(dim=0) + 0.0001), torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(functional.relu(1 - std_x)) / 2 + torch.mean(functional.relu(1 - std_y)) / 2
    n, d = x.shape
    cov_x, cov_y = (x.T @ x) / (n - 1), (y.T @ y) / (n - 1)
    off = lambda c: c.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()  # noqa: E731
    cov_loss = off(cov_x).pow(2).sum() / d + off(cov_y).pow(2).sum() / d
    return sim_coeff * repr_loss + std_coeff * std_loss + cov_coeff * cov_loss


def _jax_grads(fn, arrays, **options):
    value, grads = jax.value_and_grad(lambda *a: jnp.sum(fn(*a, **options)), tuple(range(len(arrays))))(
        *map(jnp.asarray, arrays))
    return value, grads


def test_barlow_twins_values_and_gradients_match_the_official_code(x64):
    z1, z2 = _views(6)
    value, grads = _jax_grads(jaxloss.barlow_twins_loss, (z1, z2))
    torch_value, torch_grads = _torch_grads(_torch_barlow, (z1, z2))
    _close(value, torch_value, 1e-12)
    for ours, theirs in zip(grads, torch_grads):
        _close(ours, theirs, 1e-10)


def test_vicreg_values_and_gradients_match_the_official_code_with_half_the_std_coeff(x64):
    z1, z2 = _views(7)
    value, grads = _jax_grads(jaxloss.vicreg_loss, (z1, z2), std_coeff=12.5)
    torch_value, torch_grads = _torch_grads(_torch_vicreg, (z1, z2))
    _close(value, torch_value, 1e-12)
    for ours, theirs in zip(grads, torch_grads):
        _close(ours, theirs, 1e-10)


def test_negative_cosine_similarity_gradients_match_torch_also_at_zero_vectors(x64):
    p, z = _views(8)
    p[0], z[1] = 0.0, 0.0

    def simsiam_d(torch, p, z):
        functional = torch.nn.functional
        return -(functional.normalize(p, dim=1) * functional.normalize(z, dim=1)).sum(dim=1).sum()

    value, grads = _jax_grads(jaxloss.negative_cosine_similarity, (p, z))
    torch_value, torch_grads = _torch_grads(simsiam_d, (p, z))
    _close(value, torch_value, 1e-12)
    for ours, theirs in zip(grads, torch_grads):
        assert np.all(np.isfinite(ours))
        _close(ours, theirs, 1e-10)
    assert np.abs(grads[0][0]).max() > 1e10  # −ẑ/ε at the zero vector, as PyTorch


def test_dino_student_gradient_matches_the_official_code(x64):
    student, teacher, center = _dino_inputs(9)
    s = student.shape[1]

    def official(torch, student_output, teacher_output):
        functional = torch.nn.functional
        student_out = (student_output / 0.1).chunk(s)
        teacher_out = functional.softmax((teacher_output - torch.tensor(center)) / 0.04, dim=-1).detach().chunk(2)
        total_loss, n_loss_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                total_loss += torch.sum(-q * functional.log_softmax(student_out[v], dim=-1), dim=-1).mean()
                n_loss_terms += 1
        return total_loss / n_loss_terms

    torch_value, (torch_grad, _) = _torch_grads(official, (_to_official(student), _to_official(teacher)))
    ours = lambda x: jnp.mean(jaxloss.dino_loss(x, jax.lax.stop_gradient(jnp.asarray(teacher)),  # noqa: E731
                                                jnp.asarray(center)))
    value, grad = jax.value_and_grad(ours)(jnp.asarray(student))
    _close(value, torch_value, 1e-12)
    _close(_to_official(np.asarray(grad)), torch_grad, 1e-10)


def test_dino_teacher_and_center_get_their_true_derivatives(x64):
    student, teacher, center = _dino_inputs(10, n=3)
    args = tuple(map(jnp.asarray, (student, teacher, center)))
    options = {"student_temperature": 1.0, "teacher_temperature": 0.5}  # softmaxes far from one-hot
    result = jaxloss.check_gradients(jaxloss.dino_loss, *args, **options)
    assert result.ok, result
    grad_teacher, grad_center = jax.grad(lambda t, c: jnp.sum(jaxloss.dino_loss(args[0], t, c, **options)),
                                         (0, 1))(*args[1:])
    assert np.abs(grad_teacher).max() > 1e-3
    _close(grad_center, -grad_teacher.sum((0, 1)), 1e-12)  # the logits enter as t − c


# ------------------------------------------------------------------ collapse, zero vectors, where


@pytest.mark.parametrize("loss", [jaxloss.barlow_twins_loss, jaxloss.vicreg_loss], ids=lambda f: f.__name__)
def test_collapsed_embeddings_give_finite_values_and_gradients(loss):
    z = np.random.default_rng(11).standard_normal((N, D)).astype(np.float32)
    same = np.broadcast_to(z[:1], z.shape)  # identical rows: every feature has variance 0
    half = z.copy()
    half[:, :2] = 3.0  # two collapsed features
    for z1, z2 in ((same, same), (same, z), (half, z), (np.zeros_like(z), np.zeros_like(z))):
        value, grads = _jax_grads(loss, (z1, z2))
        assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
    both = _jax_grads(loss, (same, same))[1]  # total collapse: a stationary point (see the docstrings)
    assert all(np.abs(g).max() < 1e-3 for g in both)  # (0 up to the rounding of the batch mean)
    assert np.abs(_jax_grads(loss, (same, z))[1][0]).max() > 1  # ... unless the other view is spread
    if loss is jaxloss.barlow_twins_loss:  # ẑ = 0: C = 0, each feature adds 1
        _close(loss(jnp.asarray(same), jnp.asarray(same)), D)
        _close(loss(jnp.asarray(same), jnp.asarray(z)), D)
    else:  # no invariance or covariance; each branch's hinge is 1 − √ε
        _close(loss(jnp.asarray(same), jnp.asarray(same)), 25.0 * 2 * (1 - np.sqrt(1e-4)))


@pytest.mark.parametrize("loss", [jaxloss.barlow_twins_loss, jaxloss.vicreg_loss], ids=lambda f: f.__name__)
def test_where_removes_masked_examples_from_the_batch(loss):
    z1, z2 = (jnp.float32(a) for a in _views(12))
    keep = np.arange(N) % 4 != 1
    where = jnp.asarray(keep)
    padded = (z1.at[~keep].set(jnp.nan), z2.at[~keep].set(jnp.inf))
    value, grads = _jax_grads(loss, padded, where=where)
    _close(value, loss(z1[keep], z2[keep]), 1e-5)
    for g in grads:
        assert np.all(np.asarray(g)[~keep] == 0) and np.all(np.isfinite(g))
    empty, empty_grads = _jax_grads(loss, padded, where=jnp.zeros(N, bool))
    assert empty == 0 and all(np.all(np.asarray(g) == 0) for g in empty_grads)


def test_dino_center_update_leaves_masked_examples_out():
    _, teacher, center = (jnp.float32(a) for a in _dino_inputs(13))
    keep = jnp.array([True, False, True, True, False, True])
    ours = jaxloss.dino_center_update(center, teacher.at[~keep].set(jnp.nan), where=keep)
    _close(ours, jaxloss.dino_center_update(center, teacher[keep]), 1e-6)
    np.testing.assert_array_equal(jaxloss.dino_center_update(center, teacher, where=jnp.zeros(6, bool)), center)


# ------------------------------------------------------------------ sharded over 8 CPU devices




SHARDED = {
    "barlow": (jaxloss.barlow_twins_loss, {"lambda_": 0.3, "eps": 1e-3}),
    "vicreg": (jaxloss.vicreg_loss, {"sim_coeff": 2.0, "std_coeff": 3.0, "cov_coeff": 1.5, "eps": 1e-3}),
}


@pytest.mark.parametrize("name", SHARDED)
def test_sharded_equals_one_device_values_and_gradients(mesh, name):
    loss, options = SHARDED[name]
    z1, z2 = (jnp.float32(a) for a in _views(14, 4 * N))
    where = jnp.asarray(np.arange(4 * N) % 7 != 3)
    options = {k: jnp.float32(v) for k, v in options.items()}

    def whole(z1, z2, where, options):
        return loss(z1, z2, where=where, **options)

    def local(z1, z2, where, options):
        return loss(z1, z2, where=where, axis_name="x", **options)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P("x"), P()), out_specs=P())
    args = (z1, z2, where, options)
    _close(jax.jit(sharded)(*args), whole(*args), 1e-5)
    grads = lambda f: jax.jit(jax.grad(f, (0, 1, 3)))(*args)  # noqa: E731
    for ours, theirs in zip(jax.tree.leaves(grads(sharded)), jax.tree.leaves(grads(whole))):
        _close(ours, theirs, 1e-5)


def test_sharded_center_update_equals_one_device(mesh):
    _, teacher, center = (jnp.float32(a) for a in _dino_inputs(15, n=16))
    where = jnp.asarray(np.arange(16) % 5 != 0)
    local = lambda c, t, w: jaxloss.dino_center_update(c, t, where=w, axis_name="x")  # noqa: E731
    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("x"), P("x")), out_specs=P())
    _close(jax.jit(sharded)(center, teacher, where), jaxloss.dino_center_update(center, teacher, where=where), 1e-6)


# ------------------------------------------------------------------ errors


Z = jnp.ones((4, 3))
S3, T2 = jnp.ones((4, 3, 5)), jnp.ones((4, 2, 5))


@pytest.mark.parametrize("call, error, match", [
    (lambda: jaxloss.barlow_twins_loss(jnp.ones(4), jnp.ones(4)), ValueError, r"z1 must be \[examples, features\]"),
    (lambda: jaxloss.barlow_twins_loss(Z, jnp.ones((4, 2))), ValueError, r"z1 and z2 .* \(4, 3\) and \(4, 2\)"),
    (lambda: jaxloss.vicreg_loss(Z, jnp.ones((4, 3), int)), TypeError, "z2 must be a floating-point"),
    (lambda: jaxloss.vicreg_loss(Z, Z, where=jnp.ones(3, bool)), ValueError, "where"),
    (lambda: jaxloss.vicreg_loss(Z, Z, where=jnp.ones(4)), TypeError, "where must be a boolean"),
    (lambda: jaxloss.barlow_twins_loss(Z, Z, eps=0.0), ValueError, "eps must be > 0"),
    (lambda: jaxloss.barlow_twins_loss(Z, Z, lambda_=-1.0), ValueError, "lambda_ must be >= 0"),
    (lambda: jaxloss.vicreg_loss(Z, Z, std_coeff=jnp.ones(3)), ValueError, "std_coeff"),
    (lambda: jaxloss.negative_cosine_similarity(Z, jnp.ones((4, 2))), ValueError, "predictions and targets"),
    (lambda: jaxloss.dino_loss(S3[:, :1], T2[:, :1], jnp.zeros(5)), ValueError, "pair of different views"),
    (lambda: jaxloss.dino_loss(S3, T2[..., :4], jnp.zeros(5)), ValueError, "student_logits and teacher_logits"),
    (lambda: jaxloss.dino_loss(S3, T2, jnp.zeros(4)), ValueError, "center"),
    (lambda: jaxloss.dino_loss(S3, T2, jnp.zeros(5), teacher_temperature=0.0), ValueError, "teacher_temperature"),
    (lambda: jaxloss.dino_loss(S3, T2, jnp.zeros(5), where=jnp.ones(3, bool)), ValueError, "where"),
    (lambda: jaxloss.dino_center_update(jnp.zeros(4), T2), ValueError, "center must be"),
    (lambda: jaxloss.dino_center_update(jnp.zeros(5), T2, momentum=1.5), ValueError, "momentum"),
])
def test_bad_input_raises_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()
