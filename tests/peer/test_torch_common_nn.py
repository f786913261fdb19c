"""PyTorch's criterion test cases (``torch.testing._internal.common_nn``), run against jaxloss.

Each case names its source: a ``*_test()`` dict of common_nn (its ``fullname``), a reference
function of ``loss_reference_fns`` it exercises, or the ``torch.nn.functional`` documentation
for the options common_nn leaves out.  The inputs follow those cases' shapes and
distributions (float64, as common_nn runs them).  Each case compares, on the same inputs:

* torch's ``reduction="none"`` with jaxloss's per-example losses;
* torch's ``"sum"`` and ``"mean"`` (and ``"batchmean"``) with ``jaxloss.reduce`` applied to them:
  the class-weighted mean torch uses for ``cross_entropy`` / ``nll_loss`` with ``weight`` is
  ``jaxloss.reduce.ratio(losses, weight[labels], where=labels != ignore_index)``, CTC's mean is
  ``jaxloss.reduce.mean(losses / target_lengths)``;
* torch's gradient of the mean with jaxloss's, for the float inputs listed in ``wrt``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

pytestmark = pytest.mark.full  # the full tier: pytest --full

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL, ATOL = 1e-9, 1e-12  # float64 on both sides


@dataclasses.dataclass(frozen=True)
class Case:
    source: str
    inputs: Callable  # rng -> tuple of numpy arrays
    torch: Callable  # (*tensors, reduction) -> tensor; for "none" shaped as jaxloss's losses
    ours: Callable  # (*arrays) -> per-example losses
    mean: Callable = lambda losses, *arrays: jaxloss.reduce.mean(losses)
    wrt: tuple = (0,)
    extra: dict = dataclasses.field(default_factory=dict)  # other torch reductions -> jaxloss reduction


def _ids(rng, shape, classes):
    return rng.integers(0, classes, size=shape)


def _signs(rng, shape):
    return np.where(rng.standard_normal(shape) > 0, 1.0, -1.0)


def _log_probs(rng, shape):
    return np.log(rng.uniform(size=shape) + 1e-2)


def _weighted_mean(axis=-1, ignore_index=-100, weights=None):
    """torch's mean for class ids: Σ losses / Σ w[labels] over the labels that are not ignored."""
    def mean(losses, scores, labels, *_):
        counted = labels != ignore_index
        w = jnp.ones(scores.shape[axis], losses.dtype) if weights is None else jnp.asarray(weights)
        return jaxloss.reduce.ratio(losses, w[jnp.where(counted, labels, 0)], where=counted)
    return mean


def _rows(loss, reduction):
    """torch's elementwise "none" output summed over the last axis, as jaxloss returns it."""
    return loss.sum(-1) if reduction == "none" else loss


def _class_axis_cases():
    w3, w10 = np.random.default_rng(1).uniform(size=3), np.random.default_rng(2).uniform(size=10)
    cases = []
    for source, shape, classes, options in [
        ("common_nn nllloss_no_reduce_test (NLLLoss_no_reduce)", (15, 10), 10, {}),
        ("common_nn nllloss_no_reduce_ignore_index_test", (15, 10), 10, dict(ignore_index=2)),
        ("common_nn nllloss_no_reduce_weights_test", (15, 10), 10, dict(weight=w10)),
        ("common_nn nllloss_no_reduce_weights_ignore_index_test", (15, 10), 10, dict(weight=w10, ignore_index=2)),
        ("common_nn nllloss_no_reduce_weights_ignore_index_neg_test", (15, 10), 10, dict(weight=w10, ignore_index=-1)),
        ("common_nn nllloss2d_no_reduce_test", (2, 3, 5, 5), 3, {}),
        ("common_nn nllloss2d_no_reduce_ignore_index_test", (2, 3, 5, 5), 3, dict(ignore_index=1)),
        ("common_nn nllloss2d_no_reduce_weights_test", (2, 3, 5, 5), 3, dict(weight=w3)),
        ("common_nn nlllossNd_no_reduce_test", (2, 3, 5, 5, 2, 2), 3, {}),
        ("common_nn nlllossNd_no_reduce_ignore_index_test", (2, 3, 5, 5, 2, 2), 3, dict(ignore_index=1)),
        ("common_nn nlllossNd_no_reduce_weights_test", (2, 3, 5, 5, 2, 2), 3, dict(weight=w3)),
    ]:
        cases.append(_nll_case(source, shape, classes, options))
    for source, shape, classes, options in [
        ("common_nn cross_entropy_loss_indices_target_reference", (15, 10), 10, {}),
        ("common_nn cross_entropy_loss_indices_target_reference, weight + ignore_index", (15, 10), 10,
         dict(weight=w10, ignore_index=2)),
        ("common_nn cross_entropy_loss_indices_target_reference, label_smoothing", (15, 10), 10,
         dict(label_smoothing=0.15)),
        ("common_nn cross_entropy_loss_indices_target_reference, weight + ignore_index + label_smoothing, "
         "[N, C, d1, d2]", (2, 3, 5, 5), 3, dict(weight=w3, ignore_index=1, label_smoothing=0.2)),
    ]:
        cases.append(_cross_entropy_case(source, shape, classes, options))
    cases.append(Case(
        "common_nn cross_entropy_loss_prob_target_reference, weight + label_smoothing, [N, C, d1, d2]",
        lambda rng: (rng.standard_normal((2, 3, 5, 5)), np.moveaxis(rng.dirichlet(np.ones(3), size=(2, 5, 5)), -1, 1)),
        lambda x, t, reduction: F.cross_entropy(x, t, weight=torch.tensor(w3), label_smoothing=0.1,
                                                reduction=reduction),
        lambda x, t: jaxloss.softmax_cross_entropy(x, t, class_weights=w3, label_smoothing=0.1, axis=1),
        wrt=(0, 1)))
    return cases


def _nll_case(source, shape, classes, options):
    ignore_index = options.get("ignore_index", -100)
    weight = options.get("weight")

    def inputs(rng):
        labels_shape = shape[:1] + shape[2:]
        return _log_probs(rng, shape), _ids(rng, labels_shape, classes)

    def ours(x, y):
        return jaxloss.nll_loss(x, y, class_weights=weight, ignore_index=ignore_index, axis=1)

    return Case(source, inputs,
                lambda x, y, reduction: F.nll_loss(x, y, reduction=reduction, **_torch_options(options)), ours,
                mean=_weighted_mean(axis=1, ignore_index=ignore_index, weights=weight))


def _cross_entropy_case(source, shape, classes, options):
    ignore_index = options.get("ignore_index", -100)
    weight, smoothing = options.get("weight"), options.get("label_smoothing", 0.0)

    def inputs(rng):
        return rng.standard_normal(shape), _ids(rng, shape[:1] + shape[2:], classes)

    def ours(x, y):
        return jaxloss.softmax_cross_entropy(x, y, class_weights=weight, ignore_index=ignore_index,
                                             label_smoothing=smoothing, axis=1)

    return Case(source, inputs,
                lambda x, y, reduction: F.cross_entropy(x, y, reduction=reduction, **_torch_options(options)),
                ours, mean=_weighted_mean(axis=1, ignore_index=ignore_index, weights=weight))


def _torch_options(options):
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}


def _multi_margin_case(source, shape, target_shape, p=1, margin=1.0, weight=None):
    return Case(
        source, lambda rng: (rng.standard_normal(shape), _ids(rng, target_shape, shape[-1])),
        lambda x, y, reduction: F.multi_margin_loss(x, y, p=p, margin=margin, reduction=reduction,
                                                    weight=None if weight is None else torch.tensor(weight)),
        lambda x, y: jaxloss.multiclass_hinge_loss(x, y, kind="weston_watkins", p=p, margin=margin,
                                                   class_weights=weight))


def _ctc_inputs(rng):
    batch, frames, classes, max_labels = 3, 12, 5, 4
    logits = rng.standard_normal((batch, frames, classes))
    labels = rng.integers(1, classes, size=(batch, max_labels))
    return logits, labels, np.array([12, 10, 7]), np.array([4, 3, 1])


def _paddings(lengths, size):
    return (jnp.arange(size)[None, :] >= lengths[:, None]).astype(jnp.float64)


def _torch_ctc(x, labels, input_lengths, target_lengths, reduction):
    log_probs = F.log_softmax(x, -1).transpose(0, 1)
    return F.ctc_loss(log_probs, labels, input_lengths, target_lengths, reduction=reduction)


def _ours_ctc(x, labels, input_lengths, target_lengths):
    return jaxloss.ctc_loss(x, _paddings(input_lengths, x.shape[1]), labels, _paddings(target_lengths, labels.shape[1]))


def _multilabel_margin_targets(rng, shape, negative=False):
    if negative:  # common_nn: clamp(floor((rand - 0.5) * 20), min=-1)
        return np.maximum(np.floor((rng.uniform(size=shape) - 0.5) * 20), -1).astype(np.int64)
    return np.floor(rng.uniform(size=shape) * shape[-1]).astype(np.int64)


def _bce_inputs(rng):
    return np.clip(rng.uniform(size=(15, 10)), 2.8e-2, 1 - 2.8e-2), (rng.standard_normal((15, 10)) > 0) * 1.0


W10 = np.random.default_rng(3).uniform(size=10)

CASES = [
    *_class_axis_cases(),
    _multi_margin_case("common_nn multimarginloss_no_reduce_test", (5, 10), (5,)),
    _multi_margin_case("common_nn multimarginloss_1d_input_0d_target_no_reduce_test", (10,), ()),
    _multi_margin_case("common_nn multimarginloss_p_no_reduce_test", (5, 10), (5,), p=2),
    _multi_margin_case("common_nn multimarginloss_margin_no_reduce_test", (5, 10), (5,), margin=0.5),
    _multi_margin_case("common_nn multimarginloss_weights_no_reduce_test", (5, 10), (5,), weight=W10),
    Case("common_nn marginrankingloss_reference (margin 0.5)",
         lambda rng: (rng.standard_normal(10), rng.standard_normal(10), _signs(rng, 10)),
         lambda a, b, y, reduction: F.margin_ranking_loss(a, b, y, margin=0.5, reduction=reduction),
         lambda a, b, y: jaxloss.margin_ranking_loss(a, b, y, margin=0.5), wrt=(0, 1)),
    Case("common_nn ctcloss_reference (padded targets, input and target lengths)", _ctc_inputs,
         lambda x, t, il, tl, reduction: _torch_ctc(x, t, il, tl, reduction), _ours_ctc,
         mean=lambda losses, x, t, il, tl: jaxloss.reduce.mean(losses / tl)),
    Case("common_nn kldivloss_no_reduce_test",
         lambda rng: (np.log(rng.uniform(size=(10, 10))), rng.uniform(size=(10, 10))),
         lambda i, t, reduction: _rows(F.kl_div(i, t, reduction=reduction), reduction),
         lambda i, t: jaxloss.kl_divergence(i, t),
         mean=lambda losses, i, t: jaxloss.reduce.mean(losses) / i.shape[-1],
         extra={"batchmean": lambda losses, i, t: jaxloss.reduce.mean(losses)}),
    Case("common_nn kldivloss_no_reduce_log_target_test",
         lambda rng: (np.log(rng.uniform(size=(10, 10))), np.log(rng.uniform(size=(10, 10)))),
         lambda i, t, reduction: _rows(F.kl_div(i, t, reduction=reduction, log_target=True), reduction),
         lambda i, t: jaxloss.kl_divergence(i, t, log_targets=True),
         mean=lambda losses, i, t: jaxloss.reduce.mean(losses) / i.shape[-1],
         extra={"batchmean": lambda losses, i, t: jaxloss.reduce.mean(losses)}, wrt=(0, 1)),
    Case("common_nn poissonnllloss_no_reduce_test",
         lambda rng: (rng.uniform(size=(10, 10)), rng.standard_normal((10, 10))),
         lambda i, t, reduction: F.poisson_nll_loss(i, t, reduction=reduction),
         lambda i, t: jaxloss.poisson_nll_loss(i, t)),
    Case("torch.nn.functional.poisson_nll_loss (log_input=False, full=True)",
         lambda rng: (rng.uniform(0.1, 3.0, size=(10, 10)), rng.poisson(2.0, size=(10, 10)).astype(float)),
         lambda i, t, reduction: F.poisson_nll_loss(i, t, log_input=False, full=True, reduction=reduction),
         lambda i, t: jaxloss.poisson_nll_loss(i, t, log_input=False, full=True)),
    *[Case(f"common_nn {name}",
           lambda rng: (rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))),
           lambda i, t, reduction, beta=beta: F.smooth_l1_loss(i, t, beta=beta, reduction=reduction),
           lambda i, t, beta=beta: jaxloss.smooth_l1_loss(i, t, beta=beta), wrt=(0, 1))
      for name, beta in [("smoothl1loss_no_reduce_test", 1.0), ("smoothl1loss_beta_test", 0.5),
                         ("smoothl1loss_zero_beta_test", 0.0)]],
    Case("common_nn huberloss_delta_test",
         lambda rng: (rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))),
         lambda i, t, reduction: F.huber_loss(i, t, delta=0.5, reduction=reduction),
         lambda i, t: jaxloss.huber_loss(i, t, delta=0.5), wrt=(0, 1)),
    Case("common_nn cosineembeddingloss_reference (margin 0.3)",
         lambda rng: (rng.standard_normal((6, 9)), rng.standard_normal((6, 9)), _signs(rng, 6)),
         lambda a, b, y, reduction: F.cosine_embedding_loss(a, b, y, margin=0.3, reduction=reduction),
         lambda a, b, y: jaxloss.cosine_embedding_loss(a, b, y, margin=0.3), wrt=(0, 1)),
    Case("common_nn CosineEmbeddingLoss_no_batch_dim",
         lambda rng: (rng.standard_normal(9), rng.standard_normal(9), np.array(1.0)),
         lambda a, b, y, reduction: F.cosine_embedding_loss(a, b, y, reduction=reduction),
         lambda a, b, y: jaxloss.cosine_embedding_loss(a, b, y), wrt=(0, 1)),
    *[Case(f"common_nn tripletmarginloss_reference ({options})",
           lambda rng: tuple(rng.standard_normal((6, 9)) for _ in range(3)),
           lambda a, p, n, reduction, options=options: F.triplet_margin_loss(a, p, n, reduction=reduction, **options),
           lambda a, p, n, options=options: jaxloss.triplet_margin_loss(a, p, n, **options), wrt=(0, 1, 2))
      for options in [dict(), dict(margin=2.0, swap=True), dict(p=1.0, eps=1e-3)]],
    Case("common_nn multilabelmarginloss_no_reduce_test",
         lambda rng: (rng.standard_normal((5, 10)), _multilabel_margin_targets(rng, (5, 10))),
         lambda x, y, reduction: F.multilabel_margin_loss(x, y, reduction=reduction),
         lambda x, y: jaxloss.multilabel_margin_loss(x, y)),
    Case("common_nn multilabelmarginloss_index_neg_test",
         lambda rng: (rng.standard_normal((5, 10)), _multilabel_margin_targets(rng, (5, 10), negative=True)),
         lambda x, y, reduction: F.multilabel_margin_loss(x, y, reduction=reduction),
         lambda x, y: jaxloss.multilabel_margin_loss(x, y)),
    Case("common_nn multilabelmarginloss_1d_no_reduce_test",
         lambda rng: (rng.standard_normal(10), _multilabel_margin_targets(rng, (10,))),
         lambda x, y, reduction: F.multilabel_margin_loss(x, y, reduction=reduction),
         lambda x, y: jaxloss.multilabel_margin_loss(x, y)),
    Case("common_nn MultiLabelMarginLoss_no_batch_dim (target [3, 0, -1, 1])",
         lambda rng: (rng.standard_normal(4), np.array([3, 0, -1, 1])),
         lambda x, y, reduction: F.multilabel_margin_loss(x, y, reduction=reduction),
         lambda x, y: jaxloss.multilabel_margin_loss(x, y)),
    *[Case(f"common_nn {name}",
           lambda rng: (rng.standard_normal(10), _signs(rng, 10)),
           lambda x, y, reduction, margin=margin: F.hinge_embedding_loss(x, y, margin=margin, reduction=reduction),
           lambda x, y, margin=margin: jaxloss.hinge_embedding_loss(x, y, margin=margin))
      for name, margin in [("hingeembeddingloss_no_reduce_test", 1.0),
                           ("hingeembeddingloss_margin_no_reduce_test", 0.5)]],
    Case("common_nn softmarginloss_no_reduce_test (targets: the signs of common_nn's randn)",
         lambda rng: (rng.standard_normal((5, 5)), _signs(rng, (5, 5))),
         lambda x, y, reduction: F.soft_margin_loss(x, y, reduction=reduction),
         lambda x, y: jaxloss.soft_margin_loss(x, y)),
    Case("common_nn multilabelsoftmarginloss_no_reduce_test",
         lambda rng: (rng.standard_normal((5, 10)), np.floor(rng.uniform(size=(5, 10)) * 2)),
         lambda x, y, reduction: F.multilabel_soft_margin_loss(x, y, reduction=reduction),
         lambda x, y: jaxloss.multilabel_soft_margin_loss(x, y)),
    Case("common_nn multilabelsoftmarginloss_weights_no_reduce_test",
         lambda rng: (rng.standard_normal((5, 10)), np.floor(rng.uniform(size=(5, 10)) * 2)),
         lambda x, y, reduction: F.multilabel_soft_margin_loss(x, y, weight=torch.tensor(W10), reduction=reduction),
         lambda x, y: jaxloss.multilabel_soft_margin_loss(x, y, class_weights=W10)),
    Case("common_nn bceloss_no_reduce_test",
         _bce_inputs,
         lambda p, t, reduction: F.binary_cross_entropy(p, t, reduction=reduction),
         lambda p, t: jaxloss.binary_cross_entropy(p, t)),
    Case("common_nn bceloss_weights_no_reduce_test (torch's elementwise weight multiplies the losses)",
         _bce_inputs,
         lambda p, t, reduction: F.binary_cross_entropy(p, t, weight=torch.tensor(W10), reduction=reduction),
         lambda p, t: jaxloss.binary_cross_entropy(p, t) * W10),
    Case("common_nn bce_with_logistic_no_reduce_test",
         _bce_inputs,
         lambda x, t, reduction: F.binary_cross_entropy_with_logits(x, t, reduction=reduction),
         lambda x, t: jaxloss.sigmoid_binary_cross_entropy(x, t), wrt=(0, 1)),
    Case("common_nn l1loss_no_reduce_test",
         lambda rng: (rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))),
         lambda i, t, reduction: F.l1_loss(i, t, reduction=reduction),
         lambda i, t: jaxloss.l1_loss(i, t), wrt=(0, 1)),
    Case("common_nn mseloss_no_reduce_test",
         lambda rng: (rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 4, 5))),
         lambda i, t, reduction: F.mse_loss(i, t, reduction=reduction),
         lambda i, t: jaxloss.mse_loss(i, t), wrt=(0, 1)),
    *[Case(f"torch.nn.functional.gaussian_nll_loss (full={full}, eps={eps})",
           lambda rng: (rng.standard_normal((6, 4)), rng.standard_normal((6, 4)), rng.uniform(0.05, 2.0, size=(6, 4))),
           lambda m, t, v, reduction, full=full, eps=eps: F.gaussian_nll_loss(m, t, v, full=full, eps=eps,
                                                                             reduction=reduction),
           lambda m, t, v, full=full, eps=eps: jaxloss.gaussian_nll_loss(m, t, v, full=full, eps=eps), wrt=(0, 1, 2))
      for full, eps in [(False, 1e-6), (True, 0.1)]],
]


def _tensors(arrays, wrt):
    return [torch.tensor(a, dtype=torch.float64 if np.issubdtype(np.asarray(a).dtype, np.floating) else torch.int64,
                         requires_grad=i in wrt) for i, a in enumerate(arrays)]


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=RTOL, atol=ATOL, equal_nan=False)


@pytest.mark.parametrize("case", CASES, ids=[case.source for case in CASES])
def test_matches_torch(case, x64):
    arrays = tuple(jnp.asarray(a) for a in case.inputs(np.random.default_rng(0)))
    tensors = _tensors(case.inputs(np.random.default_rng(0)), case.wrt)
    losses = jax.jit(case.ours)(*arrays)
    expected = case.torch(*tensors, reduction="none").detach().numpy()
    close(losses, np.reshape(expected, losses.shape))
    reductions = {"sum": lambda values, *_: jaxloss.reduce.sum(values), "mean": case.mean, **case.extra}
    for reduction, reduce in reductions.items():
        close(reduce(losses, *arrays), case.torch(*tensors, reduction=reduction).detach().numpy())

    def mean(*floats):
        args = list(arrays)
        for i, value in zip(case.wrt, floats):
            args[i] = value
        return case.mean(case.ours(*args), *args)

    ours = jax.jit(jax.grad(mean, argnums=tuple(range(len(case.wrt)))))(*(arrays[i] for i in case.wrt))
    theirs = torch.autograd.grad(case.torch(*tensors, reduction="mean"), [tensors[i] for i in case.wrt])
    for mine, reference in zip(ours, theirs):
        close(mine, reference.numpy())
