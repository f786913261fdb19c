"""Gradient caching (GradCache): a contrastive loss over a batch larger than the encoder's
activations allow.

A contrastive loss couples every example with every other, so its gradient cannot be split
over micro-batches by summing their gradients.  It can be split at the embeddings, which are
small: :func:`cached_contrastive` embeds the batch chunk by chunk without keeping any
activations, takes the loss's gradient with respect to the embeddings (``block_size=`` keeps
that step free of the ``N × N`` logits too), then runs each chunk through the encoder again
under :func:`jax.vjp` and contracts with its embeddings' gradient, adding up the parameter
gradients.  The result is ``jax.value_and_grad`` of the full-batch mean loss; the memory of
the encoder is that of one chunk (plus the inputs, embeddings and their gradients, a few
numbers per example), for the price of a second forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks, _math
from jaxloss.types import Array, AxisName

__all__ = ["cached_contrastive"]

Params = TypeVar("Params")


def _check(applies, params, inputs, chunk_size) -> list[int]:
    """The batch size of each input; errors name the argument and the shapes."""
    if not inputs:
        raise ValueError("cached_contrastive needs at least one input batch (one per embedding argument of the loss).")
    if len(applies) != len(inputs):
        raise ValueError(f"apply must be one encoder or one per input: got {len(applies)} encoders "
                         f"for {len(inputs)} inputs.")
    if not all(callable(f) for f in applies):
        raise TypeError("apply must be a callable apply(params, chunk) -> embeddings, or a sequence of them.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int (static), got {chunk_size!r}.")
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(f"params{jax.tree_util.keystr(path)} must be floating-point (only float parameters "
                            f"have gradients), got dtype {jnp.result_type(leaf)}; split integer state out of params.")
    sizes = []
    for k, batch in enumerate(inputs):
        shapes = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(batch)]
        if not shapes or any(len(s) == 0 for s in shapes) or len({s[0] for s in shapes}) != 1:
            raise ValueError(f"inputs[{k}] must be an array or a pytree of arrays sharing a leading batch axis, "
                             f"got shapes {shapes}.")
        n = shapes[0][0]
        if n % chunk_size:
            raise ValueError(f"chunk_size={chunk_size} must divide the batch size of inputs[{k}], {n} "
                             f"(shapes {shapes}); pad the batch and mask the padding with where=.")
        sizes.append(n)
    return sizes


def _chunked(batch, chunk_size):
    """``batch`` with its leading axis ``[N, ...]`` split into ``[N / chunk_size, chunk_size, ...]``."""
    return jax.tree.map(lambda x: jnp.reshape(x, (-1, chunk_size) + np.shape(x)[1:]), batch)


def _embed(apply, params, chunks, chunk_size, k):
    """Pass 1: every chunk's embeddings ``[N, ...]``, no activations kept (nothing is differentiated)."""
    embeddings = jax.lax.map(lambda chunk: apply(params, chunk), chunks)
    shape = np.shape(embeddings)
    if len(shape) < 3 or shape[1] != chunk_size:
        raise ValueError(f"apply must return one embedding per example of its chunk, [chunk_size, ...] = "
                         f"[{chunk_size}, ...], for inputs[{k}]; got shape {shape[1:]}.")
    return jnp.reshape(embeddings, (-1,) + shape[2:])


def _varying_axes(x) -> frozenset:
    """The mesh axes over which ``x`` varies inside ``shard_map`` (empty outside it, and
    under ``check_vma=False``, ``pmap`` or a named ``vmap``)."""
    aval = jax.typeof(x)
    manual = getattr(aval, "manual_axis_type", None)
    return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def _local(params, like, axis_name):
    """``params`` marked as varying over ``axis_name`` when the embeddings ``like`` are (a
    ``shard_map`` that checks replication), so that each device's vector-Jacobian product
    gives its own chunk's gradient, summed over the devices once at the end (a replicated
    parameter's gradient would otherwise be summed over the devices in every chunk)."""
    names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
    if axis_name is None or not set(names) <= _varying_axes(like):
        return params

    def vary(leaf):
        missing = tuple(name for name in names if name not in _varying_axes(leaf))
        return jax.lax.pcast(leaf, missing, to="varying") if missing else leaf
    return jax.tree.map(vary, params)


def _accumulate(apply, params, chunks, cotangents, total):
    """Pass 3: ``total`` plus every chunk's ``vjp(apply(·, chunk))(cotangent)``, one chunk's
    activations at a time (``lax.scan``)."""
    def step(acc, xs):
        chunk, cotangent = xs
        embeddings, vjp = jax.vjp(lambda p: apply(p, chunk), params)
        (grads,) = vjp(cotangent.astype(embeddings.dtype))
        return jax.tree.map(lambda a, g: a + g.astype(a.dtype), acc, grads), None
    return jax.lax.scan(step, total, (chunks, cotangents))[0]


def cached_contrastive(loss: Callable[..., jax.Array],
                       apply: Callable[[Params, Any], jax.Array] | Sequence[Callable[[Params, Any], jax.Array]],
                       params: Params, *inputs: Any, chunk_size: int, where: Array | None = None,
                       axis_name: AxisName | None = None, **loss_kwargs: Any) -> tuple[jax.Array, Params]:
    r"""The mean contrastive loss of a large batch and its gradient with respect to the
    encoder's parameters, holding the encoder's activations of one chunk at a time
    (GradCache).

    With embeddings :math:`e^{(k)} = f_k(\theta, x^{(k)})` of each input batch (``apply``),
    the value is the mean of the loss's per-example values,

    .. math:: L(\theta) = \frac{1}{|\{i : \text{where}_i\}|}\sum_i [\text{where}_i]\,
              \ell_i\big(e^{(1)}, e^{(2)}, \dots\big),

    (over every device's examples under ``axis_name``), and the gradient is the chain rule
    split at the embeddings,

    .. math:: \nabla_\theta L = \sum_k \sum_{c} \Big(\frac{\partial f_k(\theta, x^{(k)}_c)}
              {\partial\theta}\Big)^{\!\top} \frac{\partial L}{\partial e^{(k)}_c}

    over the chunks :math:`c` of ``chunk_size`` examples: pass 1 embeds every chunk without
    keeping activations (``lax.map``), pass 2 takes :math:`\partial L/\partial e` from the loss
    (its hand rule; with ``block_size=`` in ``loss_kwargs`` without any ``N × N`` array), and
    pass 3 re-runs each chunk under :func:`jax.vjp` and adds its parameter gradient
    (``lax.scan``).  Equal to ``jax.value_and_grad`` of the full-batch mean loss up to
    rounding; memory: one chunk's activations, plus the inputs, embeddings and their
    gradients; time: one extra forward pass of the encoder.

    ``apply`` must be deterministic given ``(params, chunk)``: both passes must see the same
    embeddings.  Give dropout its randomness through the inputs (a key per example, split
    inside ``apply``), not through mutable state.  Options of the loss (``temperature``,
    ``scale``, ``block_size``, ``precision``...) pass through as constants: only ``params``
    is differentiated.

    Flax nnx: split the model into its graph and parameters and merge them inside ``apply``::

        graphdef, state = nnx.split(model, nnx.Param)  # (use nnx.split(model, nnx.Param, ...) for other state)
        def apply(state, x):
            return nnx.merge(graphdef, state)(x)
        loss, grads = jaxloss.cached_contrastive(jaxloss.info_nce_loss, apply, state, x, y, chunk_size=256)

    Data parallel (``axis_name``): call it inside ``jax.shard_map`` with ``params`` replicated
    and the inputs (and ``where``) split over ``axis_name``; ``chunk_size`` divides each
    device's batch.  The loss gets ``axis_name`` (its columns gathered from every device, its
    gradients sent back), the mean is over the global batch, and the parameter gradient is
    summed over the devices once, at the end: every device returns the global loss and the
    global gradient, replicated.  Also under ``jax.vmap(..., axis_name=)`` and ``pmap``.

    Args:
      loss: a per-example contrastive loss taking one embedding array per input, positionally,
        e.g. :func:`jaxloss.info_nce_loss` ``(queries, keys)``,
        :func:`jaxloss.multiple_negatives_ranking_loss` ``(anchors, positives)``,
        :func:`jaxloss.clip_loss` ``(image_embeddings, text_embeddings)``; it receives
        ``where`` and ``axis_name`` when they are given, and ``loss_kwargs``.
      apply: the encoder ``apply(params, chunk) -> embeddings [chunk_size, D]``, one for every
        input (a Siamese encoder), or a sequence of them, one per input (two towers, e.g.
        CLIP's image and text encoders, each taking the whole ``params``).
      params: the encoder's parameters, a pytree of float arrays.
      *inputs: one batch per embedding argument of ``loss``: an array or pytree of arrays
        (token ids and attention masks...) with a leading batch axis ``[N, ...]``.
      chunk_size: static; the examples per chunk, dividing every input's ``N``.
      where: optional boolean ``[N]``: examples to leave out (padding), given to the loss and
        to the mean.
      axis_name: optional ``shard_map`` / ``pmap`` / named ``vmap`` axis the batch is split over.
      **loss_kwargs: the loss's options (``temperature=``, ``block_size=``...).

    Returns:
      ``(loss, grads)``: the mean loss (a scalar, float32 for lower-precision embeddings) and
      its gradient with respect to ``params`` (the structure and dtypes of ``params``;
      accumulated over the chunks in at least float32).

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> def encode(w, x):
      ...     return jnp.tanh(x @ w)
      >>> w = jnp.eye(3)
      >>> x = jnp.linspace(-1.0, 1.0, 24).reshape(8, 3)
      >>> y = x[:, ::-1]
      >>> loss, grads = jaxloss.cached_contrastive(jaxloss.info_nce_loss, encode, w, x, y,
      ...                                          chunk_size=2, temperature=0.5)
      >>> full = lambda w: jnp.mean(jaxloss.info_nce_loss(encode(w, x), encode(w, y), temperature=0.5))
      >>> want, want_grads = jax.value_and_grad(full)(w)
      >>> bool(jnp.allclose(loss, want)), bool(jnp.allclose(grads, want_grads, atol=1e-6))
      (True, True)

    References:
      Gao, Zhang, Han, Callan, "Scaling Deep Contrastive Learning Batch Size under Memory
      Limited Setup" (GradCache), 2021; sentence-transformers
      ``CachedMultipleNegativesRankingLoss`` (``mini_batch_size`` is ``chunk_size``).
      Differs from CachedMultipleNegativesRankingLoss: the loss is any jaxloss contrastive loss
      and the encoder any function; the encoder's randomness is not replayed (``apply`` must be
      deterministic, randomness comes in with the inputs).
    """
    applies = tuple(apply) if isinstance(apply, Sequence) else (apply,) * len(inputs)
    _check(applies, params, inputs, chunk_size)
    _checks.mask("where", where)
    chunks = [_chunked(batch, chunk_size) for batch in inputs]
    embeddings = [_embed(f, params, c, chunk_size, k) for k, (f, c) in enumerate(zip(applies, chunks))]
    options = dict(loss_kwargs)
    if where is not None:
        options["where"] = where
    if axis_name is not None:
        options["axis_name"] = axis_name
    shape = jax.eval_shape(lambda *e: loss(*e, **options), *embeddings).shape
    _checks.broadcasts_to("where", where, shape, "the losses")
    mask = None if where is None else jnp.broadcast_to(where, shape)
    count = jnp.maximum(_math.psum(jnp.sum(mask) if mask is not None else jnp.float32(np.prod(shape)), axis_name), 1)

    def local_total(*e):
        # This device's share of the global mean; its gradient is the global mean's gradient
        # (the loss itself sends other devices' terms back through its gathered columns).
        losses = loss(*e, **options)
        return jnp.sum(losses if mask is None else jnp.where(mask, losses, 0)) / count

    value, cotangents = jax.value_and_grad(local_total, argnums=tuple(range(len(inputs))))(*embeddings)
    local = _local(params, embeddings[0], axis_name)
    total = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.promote_types(p.dtype, jnp.float32)), local)
    for f, c, g in zip(applies, chunks, cotangents):
        total = _accumulate(f, local, c, _chunked(g, chunk_size), total)
    grads = jax.tree.map(lambda g, p: _math.psum(g, axis_name).astype(p.dtype), total, params)
    return _math.psum(value, axis_name), grads
