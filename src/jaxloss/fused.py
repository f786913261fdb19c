"""Losses fused with the layer that feeds them: linear + softmax cross-entropy over a
large vocabulary, without the logits.

In language-model training the logits ``[tokens, vocab]`` dominate memory (8192 tokens ×
256k classes in float32 is 8 GiB, and their gradient as much again).
:func:`linear_softmax_cross_entropy` takes the hidden states and the classifier instead
and streams over blocks of the vocabulary: the forward keeps a running maximum and
log-sum-exp per token (the online softmax), and the derivative rule recomputes each
block's logits, so neither pass holds more than ``tokens × block_size`` of them (as Cut
Cross-Entropy, Wijmans et al. 2025, and Liger Kernel's fused linear cross-entropy do).
It supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products; ``fn.reference`` is plain autodiff of the
same blockwise formula.

Per-token losses cannot know their cotangent in the forward, so their value and gradient
cost four ``tokens × hidden × vocab`` matmuls (the rule recomputes the logits) against three
for materialised logits.  :func:`linear_softmax_cross_entropy_mean` returns the mean
instead: its forward forms the gradient while each block's logits are at hand and returns
it as residuals of a ``jax.custom_jvp`` rule (three matmuls, every autodiff mode, a global
mean under ``axis_name=``, a given ``normalizer=`` for gradient accumulation): the faster
choice when a training step needs only the mean
(``benchmarks/results/linear_cross_entropy-cpu.md``).
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss._softmax import (IGNORE_INDEX, check_ignore_index, class_ids, label_value, loud, one_hot,
                              shifted_logsumexp, smoothing, z_loss_tangent)
from jaxloss._softmax import z_loss as z_loss_term
from jaxloss.types import Array, ArrayLike, AxisName

_LAYOUTS = ("hv", "vh")
# Logits per block when block_size is None: 4M (16 MiB in float32) over the tokens.
_AUTO_BLOCK_ELEMENTS = 1 << 22


def _vocab_axis(layout):
    return 1 if layout == "hv" else 0


def _block_size(tokens, vocab, block_size):
    if block_size is None:
        block_size = max(128, _AUTO_BLOCK_ELEMENTS // max(tokens, 1) // 128 * 128)
        # A multiple of 8 from half that up that divides the vocabulary leaves no remainder block
        # (whose buffers, outside the loop, would add to the temporaries).
        divisors = (s for s in range(block_size, block_size // 2 - 1, -8) if vocab % s == 0)
        block_size = block_size if vocab <= block_size else next(divisors, block_size)
    return min(block_size, vocab)


def _precision(precision, hidden, weight):
    """The matmuls' precision: the caller's, else ``HIGHEST`` for float32 (or wider) inputs,
    which GPUs would otherwise multiply in TF32 and TPUs in bfloat16 passes, and ``DEFAULT``
    for bfloat16/float16 inputs, whose products are exact in the float32 accumulator."""
    if precision is not None:
        return precision
    wide = jnp.finfo(jnp.promote_types(hidden.dtype, weight.dtype)).bits >= 32
    return jax.lax.Precision.HIGHEST if wide else jax.lax.Precision.DEFAULT


def _matmul(hidden, columns, layout, precision):
    """``hidden [N, H]`` times the classifier ``columns`` (``[H, B]`` or ``[B, H]``):
    ``[N, B]`` in the inputs' dtype, accumulated and returned in at least float32."""
    dtype = jnp.promote_types(hidden.dtype, columns.dtype)
    contract = ((1,), (0 if layout == "hv" else 1,))
    return jax.lax.dot_general(hidden.astype(dtype), columns.astype(dtype), (contract, ((), ())),
                               precision=precision, preferred_element_type=_math.compute_dtype(dtype))


def _fold_vocabulary(body, init, vocab, size, *, checkpoint=False):
    """Fold ``body(carry, start, size)`` over the blocks ``[start, start + size)`` of the
    vocabulary: a scan over the ``vocab // size`` whole blocks, then the remainder as one
    smaller block, so no column is computed twice and no block needs a mask.  Slicing
    inside the body (no padded or reshaped copy of the weight) keeps the classifier and its
    gradient in place; with ``checkpoint`` reverse mode recomputes each block instead of
    storing it."""
    count, rest = divmod(vocab, size)

    def step(carry, k):
        return body(carry, k * size, size), None

    tail = functools.partial(body, start=count * size, size=rest)
    step, tail = (jax.checkpoint(step), jax.checkpoint(tail)) if checkpoint else (step, tail)
    carry = jax.lax.scan(step, init, jnp.arange(count))[0]
    return tail(carry) if rest else carry


def _slice(x, start, size, axis=0):
    return None if x is None else jax.lax.dynamic_slice_in_dim(x, start, size, axis=axis)


def _block_logits(hidden, weight, bias, start, size, layout, precision):
    z = _matmul(hidden, _slice(weight, start, size, _vocab_axis(layout)), layout, precision)
    return z if bias is None else z + _slice(bias, start, size).astype(z.dtype)


def _label_index(labels, vocab, axis_name):
    """Each label's column in this shard of ``axis_name`` (0 where another shard owns it),
    and whether this shard owns it."""
    local = labels - (0 if axis_name is None else jax.lax.axis_index(axis_name) * vocab)
    inside = (local >= 0) & (local < vocab)
    return jnp.where(inside, local, 0), inside


def _take_label(x, index, layout):
    """The label's column of the weight (or of its tangent), ``[N, H]``, or the label's
    entry of the bias, ``[N]``; 0 where another shard owns the label, None for None."""
    if x is None:
        return None
    local, inside = index
    if x.ndim == 1:
        return jnp.where(inside, jnp.take(x, local), 0)
    cols = jnp.take(x, local, axis=_vocab_axis(layout))
    return jnp.where(inside[:, None], cols.T if layout == "hv" else cols, 0)


def _dot_rows(a, b):
    """``Σ_h a·b`` over the last axis, in at least float32 (``None`` if either is)."""
    if a is None or b is None:
        return None
    dtype = _math.compute_dtype(jnp.promote_types(a.dtype, b.dtype))
    return jnp.sum(a.astype(dtype) * b.astype(dtype), axis=-1)


def _column_sum(w, layout):
    """``Σ_v w_v`` (``[H]``): with it ``Σ_v z_v = hidden·Σ_v w_v + Σ_v b_v``, the smoothing
    term's logit sum, costs one pass over the weight and no logits."""
    return None if w is None else jnp.sum(w.astype(_math.compute_dtype(w.dtype)), axis=_vocab_axis(layout))


def _total(b):
    return None if b is None else jnp.sum(b.astype(_math.compute_dtype(b.dtype)))


def _per_token_zeros(h, w, *more):
    """Zeros ``[N]`` in the compute dtype that vary like the logits over any ``shard_map``
    axes (those of the tokens and of the vocabulary): a scan's carry must."""
    dtype = _math.compute_dtype(jnp.promote_types(h.dtype, w.dtype))
    zeros = jnp.zeros_like(h[:, 0], dtype) + jnp.zeros_like(w[0, 0], dtype)
    for x in more:
        zeros = zeros if x is None else zeros + jnp.zeros_like(x[:, 0], dtype)
    return zeros


def _check_linear(hidden, weight, labels, bias, label_smoothing, z_loss, ignore_index, where, block_size,
                  vocab_axis_name, weight_layout, precision):
    _checks.float_array("hidden", hidden)
    _checks.float_array("weight", weight)
    if weight_layout not in _LAYOUTS:
        raise ValueError(f'weight_layout must be "hv" ([hidden, vocab]) or "vh" ([vocab, hidden]), '
                         f"got {weight_layout!r}.")
    h_shape, w_shape = jnp.shape(hidden), jnp.shape(weight)
    features = 0 if weight_layout == "hv" else 1
    if len(h_shape) < 1 or len(w_shape) != 2 or w_shape[features] != h_shape[-1]:
        layout = "[hidden, vocab]" if weight_layout == "hv" else "[vocab, hidden]"
        raise ValueError(f"weight must be {layout} (weight_layout={weight_layout!r}) with hidden size "
                         f"hidden.shape[-1]; got hidden {h_shape}, weight {w_shape}.")
    batch, vocab = h_shape[:-1], w_shape[1 - features]
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer) or jnp.shape(labels) != batch:
        raise ValueError(f"labels must be integer class ids of hidden's batch shape {batch}, "
                         f"got {_checks._describe(labels)}.")
    if bias is not None:
        _checks.float_array("bias", bias)
        if jnp.shape(bias) != (vocab,):
            raise ValueError(f"bias must have shape {(vocab,)} (weight's vocabulary), got {jnp.shape(bias)}.")
    for name, value in (("label_smoothing", label_smoothing), ("z_loss", z_loss)):
        _checks.float_option(name, value, batch, "hidden's batch shape")
    _checks.in_unit_interval("label_smoothing", label_smoothing)
    _checks.positive("z_loss", z_loss, allow_zero=True)
    check_ignore_index(ignore_index)
    _checks.broadcasts_to("where", where, batch, "hidden's batch shape")
    if block_size is not None and (not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}.")
    if precision is not None and not isinstance(precision, jax.lax.Precision):
        raise ValueError(f"precision must be a jax.lax.Precision or None, got {precision!r}.")


def _tokens(hidden, labels, *options):
    """hidden as ``[N, H]`` tokens, labels as int32 ``[N]`` and per-token options as ``[N]``."""
    flat = lambda x: x if x is None or jnp.ndim(x) == 0 else jnp.broadcast_to(x, labels.shape).reshape(-1)  # noqa: E731
    return (hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1).astype(jnp.int32), *map(flat, options))


def _smoothing_of(label_smoothing, vocab):
    """``(ε/V, 1 − ε)``, or ``(0, 1)`` for a constant ``ε = 0`` (no smoothing term)."""
    if label_smoothing is None:
        return 0.0, 1.0
    return smoothing(label_smoothing, vocab)


def _linear_cross_entropy_tangent(p, t, out, res):
    log_z, z_y, mean_z = res
    layout, axis_name, axis = p.weight_layout, p.vocab_axis_name, _vocab_axis(p.weight_layout)
    h, labels, eps, lam, d_eps, d_lam = _tokens(p.hidden, p.labels, p.label_smoothing, p.z_loss,
                                                 t.label_smoothing, t.z_loss)
    dh = None if t.hidden is None else t.hidden.reshape(h.shape)
    w, dw, b, db = p.weight, t.weight, p.bias, t.bias
    vocab = w.shape[axis]
    size = _block_size(h.shape[0], vocab, p.block_size)
    precision = _precision(p.precision, h, w)

    def body(total, start, size):
        z = _block_logits(h, w, b, start, size, layout, precision)
        prob = _math.softmax_weight(z - log_z[:, None])
        dz = tangent_sum(
            (1.0, None if dh is None else _matmul(dh, _slice(w, start, size, axis), layout, precision)),
            (1.0, None if dw is None else _matmul(h, _slice(dw, start, size, axis), layout, precision)),
            (1.0, _slice(db, start, size)),
        )
        return total + jnp.sum(prob * dz, axis=-1)

    stream = label = spread = None
    if dh is not None or dw is not None or db is not None:
        stream = _math.psum(_fold_vocabulary(body, _per_token_zeros(h, w, dh), vocab, size, checkpoint=True), axis_name)
        index = _label_index(labels, vocab, axis_name)
        label = _math.psum(tangent_sum((1.0, None if dh is None else _dot_rows(dh, _take_label(w, index, layout))),
                                       (1.0, _dot_rows(h, _take_label(dw, index, layout))),
                                       (1.0, _take_label(db, index, layout))), axis_name)
        if mean_z is not None:
            spread = _math.psum(tangent_sum((1.0, _dot_rows(dh, _column_sum(w, layout))),
                                       (1.0, _dot_rows(h, _column_sum(dw, layout))), (1.0, _total(db))), axis_name)
    z_factor, per_z = z_loss_tangent(log_z, lam, d_lam)
    classes = _math.psum(vocab, axis_name)
    dense, keep = _smoothing_of(None if mean_z is None else eps, classes)
    dloss = tangent_sum(
        (1.0 + z_factor, stream),
        (-keep, label),
        (-dense, spread),
        (None if mean_z is None else z_y - mean_z, d_eps),
        (1.0, per_z),
    )
    if dloss is None:
        return None
    _, counted, _ = class_ids(labels, classes, p.ignore_index)
    return jnp.where(counted, dloss, 0.0).reshape(out.shape)


@hand_derivative(_linear_cross_entropy_tangent,
                 static=("ignore_index", "block_size", "vocab_axis_name", "weight_layout", "precision"),
                 check=_check_linear, residuals=True, per_example=("hidden", "labels"),
                 own_precision=("hidden", "weight", "bias"))
def linear_softmax_cross_entropy(hidden: Array, weight: Array, labels: Array, *, bias: Array | None = None,
                                 label_smoothing: ArrayLike = 0.0, z_loss: ArrayLike = 0.0,
                                 ignore_index: int | None = IGNORE_INDEX, where: Array | None = None,
                                 block_size: int | None = None, vocab_axis_name: AxisName | None = None,
                                 weight_layout: Literal["hv", "vh"] = "hv", precision: jax.lax.Precision | None = None,
                                 ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array | None]]:
    r"""Softmax cross-entropy of the logits ``z = hidden @ weight + bias``, per token,
    without materialising the logits.

    With :math:`Z = \sum_v e^{z_v}`, the label ``y``, label smoothing ε and z-loss weight λ
    over a vocabulary of ``V`` classes:

    .. math:: \ell = \log Z - (1 - \varepsilon)\, z_y - \frac{\varepsilon}{V} \sum_v z_v
                   + \lambda (\log Z)^2 ,

    the formulas of :func:`jaxloss.softmax_cross_entropy` (``label_smoothing``, ``z_loss``)
    on class ids.  The sum over ``v`` comes from the classifier's column sum, not the
    logits.

    Derivatives (hand rule), with ``p = softmax(z)`` and
    ``g_v = (1 + 2λ·log Z)·p_v − (1 − ε)·[v = y] − ε/V``:
    ``∂ℓ/∂hidden = Σ_v g_v·w_v``, ``∂ℓ/∂w_v = g_v·hidden``, ``∂ℓ/∂b_v = g_v``,
    ``∂ℓ/∂ε = z_y − (1/V)·Σ_v z_v`` and ``∂ℓ/∂λ = (log Z)²``.  The forward streams over
    blocks of ``block_size`` classes keeping a running maximum and log-sum-exp per token;
    reverse mode keeps the inputs and three numbers per token, and the rule recomputes
    each block's logits, so at most ``tokens × block_size`` logits exist in either pass.
    That costs one matmul more than materialising them (four instead of three for value
    and gradient).

    Low-precision ``hidden`` and ``weight`` (bfloat16, float16) are multiplied in their
    own dtype with float32 accumulation (``preferred_element_type``); the log-sum-exp and
    the loss are float32, and each gradient comes back in its input's dtype.  The matmuls
    run at ``precision`` (below): by default exact float32 products for float32 inputs.

    Logits of ±1e4 give finite losses and gradients.  Class ids follow
    :func:`jaxloss.softmax_cross_entropy`: a token whose label equals ``ignore_index`` gives
    loss 0 and contributes exactly 0 to every gradient; any other label outside ``[0, V)``
    gives NaN, loss and gradients.

    **Vocabulary-parallel form.**  Inside ``shard_map`` with ``vocab_axis_name=``, each
    device holds a shard of the classes: shard ``k`` of ``D`` has columns
    ``[k·V/D, (k+1)·V/D)`` of ``weight`` (and of ``bias``), while ``hidden``, ``labels``
    and the options are the same on every device and ``labels`` are global ids.  The
    global log-sum-exp comes from a ``pmax`` and a ``psum`` over the axis, the label
    logit from the shard that owns it; the per-token losses (the same on every device)
    and the gradients equal those of one device holding the whole vocabulary.  Tokens
    sharded over a data axis need nothing special: reduce with
    ``jaxloss.reduce.mean(losses, axis_name=...)``.

    Args:
      hidden: float array ``[..., H]``, the final hidden states.
      weight: float array ``[H, V]`` (``weight_layout="hv"``: a ``flax`` ``Dense`` kernel)
        or ``[V, H]`` (``weight_layout="vh"``: a tied embedding table such as
        ``nnx.Embed.embedding``, used as it is, without a transposed copy).
      labels: int ``[...]`` class ids of hidden's batch shape ``hidden.shape[:-1]``.
      bias: optional float array ``[V]``.
      label_smoothing: ε in [0, 1]; a float or an array of the batch shape.
      z_loss: λ >= 0 (PaLM uses 1e-4); a float or an array of the batch shape.
      ignore_index: static; the label of the tokens to ignore, an int (−100 by default, as
        in PyTorch) or ``None`` (every label outside ``[0, V)`` is invalid).
      where: optional bool ``[...]`` mask broadcasting to the batch shape: masked tokens (padding)
        give loss 0 and contribute nothing to any gradient.
      block_size: classes per block (static).  ``None`` picks ``4M / tokens`` rounded down
        to a multiple of 128 (16 MiB of float32 logits per block), at least 128, or the
        largest multiple of 8 down to half that which divides ``V``; a last, smaller block
        holds the remaining ``V mod block_size`` classes.
      vocab_axis_name: the ``shard_map`` axis over which the vocabulary is sharded (static).
      weight_layout: ``"hv"`` or ``"vh"``, as above (static).
      precision: static; the ``jax.lax.Precision`` of the logit matmuls (forward and
        rule).  ``None`` (default): ``HIGHEST`` for float32 (and float64) inputs, since GPUs
        run float32 matmuls in TF32 and TPUs in bfloat16 passes by default (about 1e-3
        relative error, far outside float32's tolerances); ``DEFAULT`` for
        bfloat16/float16 inputs, whose products are exact in the float32 accumulator
        anyway.  Pass ``jax.lax.Precision.DEFAULT`` for the backend's fast float32 path.

    Returns:
      Losses of the batch shape ``hidden.shape[:-1]``, float32 for lower-precision inputs.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss, optax
      >>> h = jax.random.normal(jax.random.key(0), (8, 16))
      >>> w = jax.random.normal(jax.random.key(1), (16, 1000))
      >>> y = jnp.arange(8) * 100
      >>> ours = jaxloss.linear_softmax_cross_entropy(h, w, y, block_size=256)
      >>> bool(jnp.allclose(ours, optax.softmax_cross_entropy_with_integer_labels(h @ w, y), rtol=1e-5))
      True

    References:
      Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", ICLR 2025
      (Cut Cross-Entropy); Hsu et al., "Liger Kernel", 2024 (fused linear cross-entropy);
      Chowdhery et al., "PaLM", 2022, §5 (z-loss); Shoeybi et al., "Megatron-LM", 2019
      (vocabulary-parallel cross-entropy).  Matches
      ``optax.losses.softmax_cross_entropy_with_integer_labels(hidden @ weight + bias, labels)``
      and ``torch.nn.functional.cross_entropy(..., label_smoothing=ε, ignore_index=-100,
      reduction="none")``.
    """
    batch = labels.shape
    h, labels, eps, lam = _tokens(hidden, labels, label_smoothing, z_loss)
    axis = _vocab_axis(weight_layout)
    vocab = weight.shape[axis]
    size = _block_size(h.shape[0], vocab, block_size)
    precision = _precision(precision, h, weight)

    def body(carry, start, size):
        return _math.logsumexp_step(carry, _block_logits(h, weight, bias, start, size, weight_layout, precision))

    zeros = _per_token_zeros(h, weight)
    top, total = _fold_vocabulary(body, (zeros - jnp.inf, zeros), vocab, size)
    if vocab_axis_name is not None:
        top, total = _merge_logsumexp(top, total, vocab_axis_name)
    log_z = _math.logsumexp_finish(top, total)
    index = _label_index(labels, vocab, vocab_axis_name)
    z_y = _math.psum(tangent_sum((1.0, _dot_rows(h, _take_label(weight, index, weight_layout))),
                                 (1.0, _take_label(bias, index, weight_layout))), vocab_axis_name)
    smoothing = not (isinstance(label_smoothing, int | float) and label_smoothing == 0)
    mean_z = None
    if smoothing:
        sums = tangent_sum((1.0, _dot_rows(h, _column_sum(weight, weight_layout))), (1.0, _total(bias)))
        mean_z = _math.psum(sums, vocab_axis_name) / _math.psum(vocab, vocab_axis_name)
    _, counted, invalid = class_ids(labels, _math.psum(vocab, vocab_axis_name), ignore_index)
    loss = loud(jnp.where(counted, _token_loss(log_z, z_y, mean_z, eps, lam), 0.0), invalid)
    return loss.reshape(batch), (log_z, z_y, mean_z)


def _token_loss(log_z, z_y, mean_z, eps, lam):
    """``log Z − (1 − ε)·z_y − ε·mean_v z_v + λ·(log Z)²`` (no smoothing term for ``mean_z=None``)."""
    loss = log_z - z_y if mean_z is None else log_z - (1 - eps) * z_y - eps * mean_z
    z_term = z_loss_term(log_z, lam)
    return loss if z_term is None else loss + z_term


def _merge_logsumexp(top, total, axis_name):
    """The streamed ``(top, total)`` of every shard of ``axis_name`` combined into the global one."""
    top_all = jax.lax.pmax(top, axis_name)
    shift = jnp.where(jnp.isfinite(top_all), top_all, 0.0)
    return top_all, jax.lax.psum(total * jnp.exp(top - shift), axis_name)


# ------------------------------------------------------------------ linear_softmax_cross_entropy_mean


def _tokens_per_block(tokens, vocab, block_size):
    # At least 128 tokens: every block also adds into the whole [H, V] weight gradient.
    if block_size is None:
        block_size = max(128, _AUTO_BLOCK_ELEMENTS // max(vocab, 1) // 8 * 8)
    return min(block_size, tokens)


def _zeros(shape, dtype, *like):
    """Zeros that vary like the arrays ``like`` over any ``shard_map`` axes (a scan's carry must)."""
    zeros = jnp.zeros(shape, dtype)
    for x in like:
        if isinstance(x, jax.Array):
            zeros = zeros + jnp.zeros_like(x, dtype).reshape(-1)[0]
    return zeros


def _mean_pass(h, w, labels, b, eps, lam, keep, invalid, scale, size, layout, smoothing, precision):
    """``Σ_tokens scale·ℓ`` over the tokens ``keep`` holds (NaN if a token is ``invalid``), streamed
    over blocks of ``size`` tokens with all the classes at once, and in the same pass its gradients:
    ``G = scale·((1 + 2λ·lse)·softmax(z) − (1 − ε)·onehot(y) − ε/V)`` per block, then
    ``∂hidden = G·wᵀ``, ``∂weight += hiddenᵀ·G``, ``∂bias += Σ G`` (three matmuls in all),
    ``∂ε = Σ scale·(z_y − mean_v z_v)`` and ``∂λ = Σ scale·lse²``."""
    n, vocab = h.shape[0], w.shape[_vocab_axis(layout)]
    count = -(-n // size)
    pad = lambda x: jnp.pad(x, [(0, count * size - n)] + [(0, 0)] * (x.ndim - 1))  # noqa: E731
    blocks = [pad(x).reshape((count, size) + x.shape[1:]) for x in (h, labels, keep, invalid)]
    dtype = _math.compute_dtype(jnp.promote_types(h.dtype, w.dtype))
    dense, keep_label = _smoothing_of(eps if smoothing else None, vocab)
    # G runs into the gradient matmuls in the inputs' dtype, unless that dtype has a smaller range
    # than float32 (float16: G overflows where float32 holds it, e.g. with a z-loss at large logits).
    low = w.dtype if jnp.finfo(w.dtype).maxexp >= jnp.finfo(dtype).maxexp else dtype
    w_low = w.astype(low)

    def body(carry, block):
        total, dw, db, d_eps, d_lam = carry
        h_b, y_b, keep_b, invalid_b = block
        h_low = h_b.astype(low)
        z = _block_logits(h_b, w, b, 0, vocab, layout, precision)
        top, lse = shifted_logsumexp(z)
        log_z, z_y = top + lse, label_value(z, y_b)
        mean_z = jnp.mean(z, axis=-1) if smoothing else None
        weight = jnp.where(keep_b, scale, 0.0)
        # softmax(z) capped at 1 as _math.softmax_weight, and a one-hot select, written without a
        # constant [size, V] operand: partial evaluation would hoist it out of the loop as a buffer.
        prob = jnp.exp(jnp.minimum(z - log_z[:, None], 0.0))
        g = (weight * (1 + 2 * lam * log_z))[:, None] * prob - (weight * dense)[:, None]
        g = jnp.where(one_hot(y_b, vocab), g - (weight * keep_label)[:, None], g)
        g_low = g.astype(low)
        dh_b = jax.lax.dot_general(g_low, w_low, (((1,), (1 if layout == "hv" else 0,)), ((), ())),
                                   precision=precision, preferred_element_type=dtype)
        contract = (((0,), (0,)), ((), ()))
        dw_b = (jax.lax.dot_general(h_low, g_low, contract, precision=precision, preferred_element_type=dtype)
                if layout == "hv" else
                jax.lax.dot_general(g_low, h_low, contract, precision=precision, preferred_element_type=dtype))
        carry = (total + jnp.sum(loud(weight * _token_loss(log_z, z_y, mean_z, eps, lam), invalid_b)), dw + dw_b,
                 db + jnp.sum(g, axis=0), d_eps + (jnp.sum(weight * (z_y - mean_z)) if smoothing else 0.0),
                 d_lam + jnp.sum(weight * jnp.square(log_z)))
        return carry, dh_b

    like = (h, w, b, labels, keep, invalid, eps, lam, scale)
    zero = _zeros((), dtype, *like)
    init = (zero, _zeros(w.shape, dtype, *like), _zeros(vocab, dtype, *like), zero, zero)
    (total, dw, db, d_eps, d_lam), dh = jax.lax.scan(body, init, blocks)
    return total, (dh.reshape(count * size, -1)[:n], dw, db, d_eps, d_lam)


def _check_mean(hidden, weight, labels, bias, label_smoothing, z_loss, ignore_index, where, normalizer, block_size,
                axis_name, weight_layout, precision):
    _check_linear(hidden, weight, labels, bias, label_smoothing, z_loss, ignore_index, where, block_size, None,
                  weight_layout, precision)
    for name, value in (("label_smoothing", label_smoothing), ("z_loss", z_loss), ("normalizer", normalizer)):
        if value is not None and jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar here (the mean's rule sums its gradient), "
                             f"got shape {jnp.shape(value)}.")
    if normalizer is not None:
        _checks.float_option("normalizer", normalizer, (), "a scalar")
        _checks.positive("normalizer", normalizer)


def _inner(a, b):
    """``Σ a·b`` over every element, in ``a``'s (float32) dtype; None for a zero tangent ``b``."""
    return None if b is None else jnp.sum(a * b.astype(a.dtype).reshape(a.shape))


def _mean_tangent(p, t, out, res):
    dh, dw, db, d_eps, d_lam = res
    dhidden = t.hidden if t.hidden is None or p.where is None else jnp.where(p.where[..., None], t.hidden, 0)
    local = tangent_sum((1.0, _inner(dh, dhidden)), (1.0, _inner(dw, t.weight)), (1.0, _inner(db, t.bias)),
                        (d_eps, t.label_smoothing), (d_lam, t.z_loss))
    normalizer = None if p.normalizer is None else -out / p.normalizer
    return tangent_sum((1.0, _math.psum(local, p.axis_name)), (normalizer, t.normalizer))


@hand_derivative(_mean_tangent, static=("ignore_index", "block_size", "axis_name", "weight_layout", "precision"),
                 check=_check_mean, residuals=True, where_of="inputs", own_precision=("hidden", "weight", "bias"))
def linear_softmax_cross_entropy_mean(hidden: Array, weight: Array, labels: Array, *, bias: Array | None = None,
                                      label_smoothing: ArrayLike = 0.0, z_loss: ArrayLike = 0.0,
                                      ignore_index: int | None = IGNORE_INDEX, where: Array | None = None,
                                      normalizer: ArrayLike | None = None, block_size: int | None = None,
                                      axis_name: AxisName | None = None, weight_layout: Literal["hv", "vh"] = "hv",
                                      precision: jax.lax.Precision | None = None,
                                      ) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    r"""The mean over the (unmasked) tokens of :func:`linear_softmax_cross_entropy`, with
    its gradient computed in the forward pass: one matmul fewer for value and gradient.

    Same formula, options and layouts as :func:`linear_softmax_cross_entropy`, averaged over
    the tokens that are neither masked nor ignored, as PyTorch's
    ``cross_entropy(..., ignore_index=-100)`` mean:

    .. math:: L = \frac{1}{n} \sum_{i\ \text{counted}} \ell_i ,\qquad
              n = \#\{i : \text{where}_i,\ y_i \ne \text{ignore\_index}\}

    (``jaxloss.reduce.mean(losses, where=where & (labels != ignore_index))``; 0 when no token
    is left; NaN if an unmasked label is outside ``[0, V)`` and not ignored, such a token
    counting in ``n``), or :math:`n` = ``normalizer`` when given.

    A scalar loss lets the gradient be formed while the logits of a block are at hand (as
    Liger Kernel's fused linear cross-entropy does): the forward runs over blocks of
    ``block_size`` **tokens** with all the classes at once, computes
    ``G = ((1 + 2λ·log Z)·softmax(z) − (1 − ε)·onehot(y) − ε/V)/n`` per block and
    accumulates the gradient blocks ``∂L/∂hidden = G·wᵀ``, ``∂L/∂weight = hiddenᵀ·G``,
    ``∂L/∂bias = Σ_i G_i``, ``∂L/∂ε = Σ_i (z_{iy} − mean_v z_{iv})/n`` and
    ``∂L/∂λ = Σ_i (log Z_i)²/n`` — three matmuls, against four for the per-token function,
    which cannot know its cotangent in the forward.  At most ``block_size × V`` logits exist
    at once, plus a float32 gradient of the weight.

    Derivatives: a ``jax.custom_jvp`` whose forward returns the gradient blocks above as
    residuals and whose hand rule contracts them with the tangents,
    ``dL = ⟨∂L/∂hidden, dhidden⟩ + ⟨∂L/∂weight, dweight⟩ + ⟨∂L/∂bias, dbias⟩ + ∂L/∂ε·dε
    + ∂L/∂λ·dλ − (L/n)·dn``.  The rule is linear in the tangents, so reverse mode is its
    transpose (each gradient is the cotangent times its block: no matmul after the forward),
    forward mode (``jax.jvp``) costs the forward, and second order (``jax.hessian``,
    ``jax.jvp(jax.grad(f))``, grad-of-grad) differentiates the forward's gradient blocks by
    plain autodiff.  The forward computes the gradient blocks also when nothing is
    differentiated (call ``jaxloss.reduce.mean`` of :func:`linear_softmax_cross_entropy`
    for an evaluation-only mean).

    Args:
      hidden, weight, labels, bias, ignore_index, weight_layout: as in
        :func:`linear_softmax_cross_entropy`.
      label_smoothing: ε in [0, 1], a float or a scalar array.
      z_loss: λ >= 0, a float or a scalar array.
      where: optional bool ``[...]`` mask of hidden's batch shape: the tokens the mean is over.
      normalizer: None (divide by the counted tokens ``n``, across ``axis_name`` too), or
        a positive scalar to divide the summed losses by instead (gradient accumulation:
        with the total token count of all micro-batches, the micro-batches' values and
        gradients add up to those of the whole batch's mean).  Differentiated
        (``∂L/∂normalizer = −L/normalizer``) when it is a float array.
      block_size: tokens per block (static); ``None`` picks ``4M / V`` rounded down to a
        multiple of 8 (16 MiB of float32 logits per block), at least 128 (each block also
        adds into the whole float32 weight gradient, so small blocks cost memory traffic).
      axis_name: None, or the ``shard_map``/``pmap``/named-``vmap`` axis the tokens are
        sharded over (static; token or data parallelism, ``weight`` and ``bias`` the same
        on every device).  Two things are ``psum``-ed over it: the count ``n`` (unless
        ``normalizer`` is given) and the summed losses, so every device returns the global
        mean, as ``jaxloss.reduce.mean(..., axis_name=)`` does (and the tangent, likewise).
        The gradient blocks are not: each device's hold its own tokens' share,
        ``Σ_local g_i/n``.  Differentiating the sharded function (``jax.grad`` of a
        ``shard_map`` with ``weight`` in ``P()``) then gives each device its tokens' rows
        of ``∂L/∂hidden``, and the replicated ``weight`` and ``bias`` the sum over the
        devices of their blocks: the all-reduce of data parallelism, inserted by
        ``shard_map``'s transpose.  With ``pmap``, where gradients stay per device, sum
        them (``jax.lax.psum``) as usual.
      precision: static; the ``jax.lax.Precision`` of the three matmuls.  ``None`` (default):
        ``HIGHEST`` for float32 (and float64) inputs, since GPUs run float32 matmuls in TF32
        and TPUs in bfloat16 passes by default, 1e-3 relative error, far above float32's;
        ``DEFAULT`` for bfloat16/float16 inputs, whose products are exact in the float32
        accumulator anyway.  Pass ``jax.lax.Precision.DEFAULT`` for the backend's fast
        float32 path.

    Returns:
      A scalar, float32 for lower-precision inputs.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> h = jax.random.normal(jax.random.key(0), (8, 16))
      >>> w = jax.random.normal(jax.random.key(1), (16, 1000))
      >>> y = jnp.arange(8) * 100
      >>> mean = jaxloss.linear_softmax_cross_entropy_mean(h, w, y, block_size=4)
      >>> bool(jnp.allclose(mean, jaxloss.linear_softmax_cross_entropy(h, w, y).mean(), rtol=1e-5))
      True

    References:
      Hsu et al., "Liger Kernel: Efficient Triton Kernels for LLM Training", 2024 (fused
      linear cross-entropy with the gradient in the forward); see
      :func:`linear_softmax_cross_entropy`.
    """
    tokens, vocab = labels.size, weight.shape[_vocab_axis(weight_layout)]
    unmasked = jnp.ones(tokens, bool) if where is None else where.reshape(-1)
    ids, counted, invalid = class_ids(labels.reshape(-1), vocab, ignore_index)
    keep, invalid = unmasked & counted, unmasked & invalid
    h = jnp.where(keep[:, None], hidden.reshape(-1, hidden.shape[-1]), 0)  # NaN padding never enters
    count = jnp.maximum(_math.psum(jnp.sum(keep | invalid), axis_name), 1) if normalizer is None else normalizer
    scale = 1.0 / count
    smoothing = not (isinstance(label_smoothing, int | float) and label_smoothing == 0)
    size = _tokens_per_block(tokens, vocab, block_size)
    precision = _precision(precision, hidden, weight)
    total, (dh, dw, db, d_eps, d_lam) = _mean_pass(h, weight, ids, bias, label_smoothing, z_loss, keep, invalid, scale,
                                                    size, weight_layout, smoothing, precision)
    return _math.psum(total, axis_name), (dh.reshape(hidden.shape), dw, db, d_eps, d_lam)
