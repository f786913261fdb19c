"""ArcFace over many classes: blockwise and dense jaxloss against autodiff of the simple formula.

For each size (embeddings N, classes C, features D) it compiles ``jax.value_and_grad`` of the
mean ArcFace loss with respect to the embeddings and the class centres, reads the compiled
``memory_analysis()`` (the temporaries ``temp`` and the footprint, temp + outputs: the
outputs hold the [C, D] centre gradient) and times the contenders whose temporaries fit
under ``--max-temp-gib`` (jit-compiled, warmed up, interleaved, median of ``--repeats``).
Contenders: ``jaxloss.arcface_loss(..., block_size=B)`` (never more than ``N × B`` logits,
forward or backward), ``jaxloss.arcface_loss`` dense (every class in one block: an ``[N, C]``
cosine matrix), and plain autodiff of the formula a user would write (normalise, ``ê ĉᵀ``,
``cos(arccos(cos θ_y) + m)`` on the label, ``log_softmax``).  Goal (float32): at
N = 1024, C = 1,000,000, D = 512 the blockwise temp ≤ 2 GiB (the dense logits alone are 4 GiB).

Run from the repository root::

    python benchmarks/angular_classes.py                         # 1024 × 100k × 512 timed, 1024 × 1M × 512 memory
    python benchmarks/angular_classes.py --size 256 20000 128 --repeats 3 --max-temp-gib 8
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

import jaxloss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import (add_run_options, cpu_ticks, interleaved_medians, machine, others_note, others_share,  # noqa: E402
                     scaled, write_report)

SIZES = ((1024, 100_000, 512), (1024, 1_000_000, 512))
GOAL = ((1024, 1_000_000, 512), 2 * 2**30)
SCALE, MARGIN = 64.0, 0.5


def _autodiff(e, w, y):
    """ArcFace as a user writes it, differentiated by autodiff (InsightFace's th/mm fallback)."""
    e_hat = e / jnp.linalg.norm(e, axis=-1, keepdims=True)
    w_hat = w / jnp.linalg.norm(w, axis=-1, keepdims=True)
    cos = jnp.matmul(e_hat, w_hat.T, precision=jax.lax.Precision.HIGHEST)
    c_y = jnp.take_along_axis(cos, y[:, None], axis=-1)[:, 0]
    margin = jnp.cos(jnp.arccos(jnp.clip(c_y, -1 + 1e-7, 1 - 1e-7)) + MARGIN)
    target = jnp.where(c_y > jnp.cos(jnp.pi - MARGIN), margin, c_y - MARGIN * jnp.sin(MARGIN))
    logits = SCALE * cos.at[jnp.arange(y.shape[0]), y].set(target)
    return -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), y[:, None], axis=-1)[:, 0]


def _contenders(block_size):
    return {
        f"jaxloss blockwise (B={block_size})": lambda e, w, y: jaxloss.arcface_loss(
            e, w, y, scale=SCALE, margin=MARGIN, block_size=block_size),
        "jaxloss dense": lambda e, w, y: jaxloss.arcface_loss(e, w, y, scale=SCALE, margin=MARGIN),
        "autodiff": _autodiff,
    }


def _objective(loss):
    return jax.value_and_grad(lambda e, w, y: jnp.mean(loss(e, w, y)), argnums=(0, 1))


def run_size(size, repeats, block_size, max_temp):
    n, classes, features = size
    ke, kw, ky = jax.random.split(jax.random.key(0), 3)
    shapes = (jax.ShapeDtypeStruct((n, features), jnp.float32), jax.ShapeDtypeStruct((classes, features), jnp.float32),
              jax.ShapeDtypeStruct((n,), jnp.int32))
    compiled, temp, footprint = {}, {}, {}
    for name, loss in _contenders(min(block_size, classes)).items():
        c = jax.jit(_objective(loss)).lower(*shapes).compile()
        memory = c.memory_analysis()
        temp[name] = memory.temp_size_in_bytes
        footprint[name] = memory.temp_size_in_bytes + memory.output_size_in_bytes
        if temp[name] <= max_temp and repeats > 0:
            compiled[name] = c
    ms, others = {}, None
    if compiled:
        args = (jax.random.normal(ke, (n, features)), jax.random.normal(kw, (classes, features)),
                jax.random.randint(ky, (n,), 0, classes))
        ticks, times = cpu_ticks(), os.times()
        ms = {k: 1e3 * v for k, v in interleaved_medians(compiled, args, repeats=repeats, warmup=1).items()}
        others = others_share(ticks, cpu_ticks(), sum(os.times()[:2]) - sum(times[:2]))
    base = ms.get("autodiff")
    rows = []
    for name in temp:
        t = ms.get(name)
        cells = [name, f"{n}×{classes}×{features}", "–" if t is None else f"{t:.0f}",
                 "–" if t is None or base is None else f"{t / base:.2f}",
                 f"{temp[name] / 2**20:.1f}", f"{footprint[name] / 2**20:.1f}"]
        rows.append("| " + " | ".join(cells) + " |")
    verdict = []
    if size == GOAL[0]:
        ours = temp[next(iter(temp))]
        verdict.append(f"- blockwise, {n}×{classes}×{features}: goal {'met' if ours <= GOAL[1] else 'NOT met'}: "
                       f"temp {ours / 2**20:.1f} MiB (≤ {GOAL[1] / 2**20:.0f}); dense logits alone "
                       f"{n * classes * 4 / 2**20:.0f} MiB")
    return rows, verdict, others


def main(argv=None) -> str:
    """Run the benchmark, print the markdown table and return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=3, action="append", metavar=("N", "C", "D"),
                        help="embeddings, classes, features (repeatable; default: 1024×100k×512 and 1024×1M×512)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender (default 3; 0: memory only)")
    add_run_options(parser, "the first size only (--scale multiplies N, C, D and the block size)")
    parser.add_argument("--block-size", type=int, default=8192, help="classes per block (default 8192)")
    parser.add_argument("--max-temp-gib", type=float, default=2.5,
                        help="compile but do not run contenders needing more temporaries (default 2.5)")
    parser.add_argument("--time-largest", action="store_true",
                        help="also time sizes over 2^38 N·C·D (default: their memory only)")
    args = parser.parse_args(argv)

    sizes = [tuple(scaled(n, args.scale) for n in s) for s in args.size or SIZES[:1 if args.quick else None]]
    args.block_size = scaled(args.block_size, args.scale)
    head = ["contender", "N×C×D", "median ms", "time ×autodiff", "temp MiB", "footprint MiB"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    verdicts, notes = [], []
    for size in sizes:
        repeats = args.repeats if args.time_largest or size[0] * size[1] * size[2] < 2**38 else 0
        rows, verdict, others = run_size(size, repeats, args.block_size, args.max_temp_gib * 2**30)
        lines += rows
        verdicts += verdict
        notes.append(f"{size}: " + (f"median of {repeats}{others_note(others)}" if repeats else "memory only"))
    title = (f"value_and_grad w.r.t. embeddings and class centres of the mean ArcFace loss (s = {SCALE:g}, "
             f"m = {MARGIN:g}), float32, jax {jax.__version__}, {machine()}; "
             f"'–': not timed (temp over {args.max_temp_gib:g} GiB, or memory only)")
    table = "\n".join([title, "", *lines, "", *verdicts, *(f"- {n}" for n in notes)])
    print(table)
    if args.write:
        write_report("angular_classes", table, args.write, argv)
    return table


if __name__ == "__main__":
    main()
