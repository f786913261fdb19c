"""The sharded losses beyond one host: the cases tests/test_multihost.py runs in two processes.

Run as a script, this is one of two worker processes (4 CPU devices each, set by the test's
XLA_FLAGS) joined by ``jax.distributed.initialize`` over localhost with gloo collectives::

    python tests/_multihost_worker.py PROCESS_ID PORT OUTDIR

It builds the global mesh of the 8 devices, makes each input a global array from the part this
process holds (``jax.make_array_from_process_local_data``, as a multi-host data loader would),
runs every case of ``CASES`` (value and gradients, under jit + shard_map) and saves the
results, replicated on every device, to ``OUTDIR/process_<id>.npz``. Imported (tests/ is on
sys.path), it gives the test the same cases to run in one process: importing it starts nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxloss

N, D = 16, 6  # batch (2 rows per device), features
H, V = 5, 40        # hidden size, vocabulary (5 columns per device)
C = 40              # classes of the angular margin (5 centres per device)
AXIS = "x"


class Case(NamedTuple):
    """``loss(*args, axis=, block=)``: the losses (or a scalar step loss); ``axis`` is the mesh
    axis name inside shard_map, ``block`` the block size (3) there; both None for the dense
    one-array form. ``specs`` shard ``args``; the gradients are taken with respect to the
    arguments ``wrt``."""

    loss: Callable[..., jax.Array]
    args: tuple[np.ndarray, ...]
    specs: tuple[P, ...]
    out: P
    wrt: tuple[int, ...]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _f32(x: object) -> np.ndarray:
    return np.asarray(x, np.float32)


def _info_nce() -> Case:
    rng = _rng(0)
    q = rng.standard_normal((N, D)) + 0.2
    k, queue = rng.standard_normal((N, D)) + 0.6 * q, rng.standard_normal((5, D))

    def loss(q, k, queue, where, axis, block):  # the queue of negatives the same on every device
        return jaxloss.info_nce_loss(q, k, temperature=0.7, negatives=queue, where=where, block_size=block,
                                     axis_name=axis)

    return Case(loss, (_f32(q), _f32(k), _f32(queue), np.arange(N) != 6),
                (P(AXIS), P(AXIS), P(), P(AXIS)), P(AXIS), (0, 1, 2))


def _mnrl() -> Case:
    rng = _rng(1)
    a = rng.standard_normal((N, D)) + 0.2
    p, n = rng.standard_normal((N, D)) + 0.6 * a, rng.standard_normal((N, D))

    def loss(a, p, n, where, axis, block):  # (anchor, positive, hard negative) rows, the negatives gathered
        return jaxloss.multiple_negatives_ranking_loss(a, p, negatives=n, scale=3.0, symmetric=True, where=where,
                                                       block_size=block, axis_name=axis)

    return Case(loss, (_f32(a), _f32(p), _f32(n), np.arange(N) % 5 != 2), (P(AXIS),) * 4, P(AXIS),
                (0, 1, 2))


def _clip() -> Case:
    rng = _rng(2)
    x = rng.standard_normal((N, D))
    y = rng.standard_normal((N, D)) + 0.5 * x

    def loss(x, y, logit_scale, where, axis, block):
        return jaxloss.clip_loss(x, y, logit_scale=logit_scale, where=where, block_size=block, axis_name=axis)

    return Case(loss, (_f32(x), _f32(y), _f32(1.5), np.arange(N) != 9),
                (P(AXIS), P(AXIS), P(), P(AXIS)), P(AXIS), (0, 1, 2))


def _vocabulary_parallel() -> Case:
    rng = _rng(3)
    h, w, b = rng.standard_normal((7, H)), rng.standard_normal((H, V)), rng.standard_normal(V)
    y = rng.integers(0, V, 7).astype(np.int32)
    y[2] = -100

    def loss(h, w, b, y, where, axis, block):  # the vocabulary split over the devices: [H, V/8] and [V/8]
        return jaxloss.linear_softmax_cross_entropy(h, w, y, bias=b, label_smoothing=0.1, z_loss=1e-2, where=where,
                                                    block_size=block, vocab_axis_name=axis)

    return Case(loss, (_f32(h), _f32(w), _f32(b), y, np.arange(7) != 4),
                (P(), P(None, AXIS), P(AXIS), P(), P()), P(), (0, 1, 2))


def _angular_inputs(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = _rng(seed)
    y = rng.integers(0, C, n).astype(np.int32)
    y[1] = -100
    centres = rng.standard_normal((C, D)) * rng.uniform(0.5, 2.0, (C, 1))
    return _f32(rng.standard_normal((n, D))), _f32(centres), y


def _class_sharded() -> Case:
    e, c, y = _angular_inputs(4, 7)

    def loss(e, c, y, where, axis, block):  # the class centres split over the devices, the embeddings replicated
        return jaxloss.arcface_loss(e, c, y, scale=16.0, margin=0.3, where=where, block_size=block,
                                    class_axis_name=axis)

    return Case(loss, (e, c, y, np.arange(7) != 5), (P(), P(AXIS), P(), P()), P(), (0, 1))


def _partial_fc_step() -> Case:
    e, c, y = _angular_inputs(5, N)

    def loss(e, c, y, axis, block):
        """Partial FC: each device embeds its slice of the batch and holds a slice of the centres;
        it gathers the embeddings, scores them against its classes, keeps its own rows' losses and
        takes the global mean over the data axis."""
        if axis is None:
            return jaxloss.reduce.mean(jaxloss.arcface_loss(e, c, y, scale=16.0), where=y != -100)
        e_all, y_all = jax.lax.all_gather(e, axis, tiled=True), jax.lax.all_gather(y, axis, tiled=True)
        losses = jaxloss.arcface_loss(e_all, c, y_all, scale=16.0, class_axis_name=axis, block_size=block)
        own = jax.lax.dynamic_slice_in_dim(losses, jax.lax.axis_index(axis) * y.shape[0], y.shape[0])
        return jaxloss.reduce.mean(own, where=y != -100, axis_name=axis)

    return Case(loss, (e, c, y), (P(AXIS), P(AXIS), P(AXIS)), P(), (0, 1))


CASES: dict[str, Callable[[], Case]] = {
    "info_nce": _info_nce, "mnrl": _mnrl, "clip": _clip, "vocabulary_parallel": _vocabulary_parallel,
    "class_sharded": _class_sharded, "partial_fc_step": _partial_fc_step,
}


def _objective(case: Case, mesh: Mesh | None) -> Callable[..., tuple[tuple[jax.Array, jax.Array], tuple]]:
    """``args -> ((Σ wᵢ·lossᵢ, losses), gradients)`` with weights 1, 2, …: sharded over ``mesh``
    (shard_map, blockwise), or the dense one-array form where ``mesh`` is None."""
    if mesh is None:
        losses = lambda *args: case.loss(*args, axis=None, block=None)  # noqa: E731
    else:
        losses = jax.shard_map(lambda *args: case.loss(*args, axis=AXIS, block=3), mesh=mesh, in_specs=case.specs,
                               out_specs=case.out)

    def total(*args):
        values = losses(*args)
        weights = jnp.arange(1, values.size + 1, dtype=values.dtype).reshape(values.shape)
        return jnp.sum(weights * values), values

    return jax.value_and_grad(total, argnums=case.wrt, has_aux=True)


def run(mesh: Mesh | None, put: Callable[[np.ndarray, P], jax.Array]) -> dict[str, np.ndarray]:
    """Every case's weighted sum, losses and gradients, flattened to ``{"<case>/<name>": array}``,
    the inputs placed with ``put(array, spec)``. One compiled program runs every case (each
    compile costs seconds on a loaded 2-core machine); its outputs are replicated on every
    device, so each process reads them whole."""
    cases = {name: make() for name, make in CASES.items()}
    args = {name: [put(x, spec) for x, spec in zip(case.args, case.specs, strict=True)]
            for name, case in cases.items()}
    every = {name: _objective(case, mesh) for name, case in cases.items()}
    replicated = None if mesh is None else NamedSharding(mesh, P())
    results = jax.jit(lambda args: {name: fn(*args[name]) for name, fn in every.items()},
                      out_shardings=replicated)(args)
    out: dict[str, np.ndarray] = {}
    for name, ((total, losses), grads) in results.items():
        out[f"{name}/total"], out[f"{name}/losses"] = np.asarray(total), np.asarray(losses)
        for i, g in zip(cases[name].wrt, grads, strict=True):
            out[f"{name}/grad{i}"] = np.asarray(g)
    return out


def _process_local(mesh: Mesh, x: np.ndarray, spec: P) -> jax.Array:
    """The global array of ``x`` sharded by ``spec``, made from this process's part of it only
    (the span of its devices' blocks), as a data loader on each host would provide it."""
    sharding = NamedSharding(mesh, spec)
    blocks = sharding.addressable_devices_indices_map(x.shape).values()
    span = tuple(slice(min(s.indices(n)[0] for s in dim), max(s.indices(n)[1] for s in dim))
                 for n, dim in zip(x.shape, zip(*blocks, strict=True), strict=False))
    return jax.make_array_from_process_local_data(sharding, np.asarray(x[span]), x.shape)


def main(process_id: int, port: int, outdir: str) -> None:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)

    devices = jax.devices()
    assert (jax.process_count(), len(devices), jax.local_device_count()) == (2, 8, 4), (
        jax.process_count(), len(devices), jax.local_device_count())
    mesh = Mesh(np.array(devices), (AXIS,))
    results = run(mesh, lambda x, spec: _process_local(mesh, x, spec))
    np.savez(f"{outdir}/process_{process_id}.npz", **results)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
