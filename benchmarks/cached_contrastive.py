"""Gradient caching: compiled footprint of a contrastive training step vs batch size, cached vs plain.

One step = the mean ``multiple_negatives_ranking_loss`` (blockwise, ``--block-size``) of a
Siamese 2-layer MLP encoder (``--dim-in`` → ``--hidden`` → ``--dim``, GELU) on two views, and
its gradient with respect to the encoder's parameters:

* plain: ``jax.value_and_grad`` of the full batch (every example's activations kept for the
  backward pass);
* cached: :func:`jaxloss.cached_contrastive` with ``--chunk`` examples per chunk (one chunk's
  activations at a time);
* loss only: ``value_and_grad`` of the same loss with respect to ``[N, dim]`` embeddings, no
  encoder: what the loss itself needs, the floor of the cached step.

Footprint = ``temp_size_in_bytes + output_size_in_bytes`` of ``memory_analysis()``, read from
the compiled program without running it (so sizes beyond the machine's memory are measured
too); at the ``--time-ns`` sizes each step that fits under ``--max-gib`` is also timed
(median of ``--repeats``).  With ``--plot PATH`` it writes footprint against N as a PNG.

Run from the repository root::

    python benchmarks/cached_contrastive.py --time-ns 4096 --plot benchmarks/results/cached_contrastive-memory-cpu.png
    python -m jaxloss bench cached_contrastive --ns 256 512 --chunk 128 --hidden 64
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import jax
import jax.numpy as jnp

import jaxloss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import (  # noqa: E402
    add_run_options, compile_with_footprint, interleaved_medians, machine, plot_footprints, scaled, write_report,
)

MIB = 2**20


def encoder(params, x):
    """A 2-layer MLP: ``gelu(x W1 + b1) W2``."""
    return jax.nn.gelu(x @ params["w1"] + params["b1"]) @ params["w2"]


def _params(args):
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"w1": jax.random.normal(k1, (args.dim_in, args.hidden)) / args.dim_in**0.5,
            "b1": jnp.zeros(args.hidden),
            "w2": jax.random.normal(k2, (args.hidden, args.dim)) / args.hidden**0.5}


def _steps(args):
    loss = functools.partial(jaxloss.multiple_negatives_ranking_loss, block_size=args.block_size)

    def plain(params, x, y):
        return jax.value_and_grad(lambda p: jnp.mean(loss(encoder(p, x), encoder(p, y))))(params)

    def cached(params, x, y):
        return jaxloss.cached_contrastive(loss, encoder, params, x, y, chunk_size=args.chunk)

    def loss_only(params, x, y):
        return jax.value_and_grad(lambda a, b: jnp.mean(loss(a, b)), (0, 1))(x[:, :args.dim], y[:, :args.dim])
    return {"plain": plain, "cached": cached, "loss only": loss_only}


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ns", type=int, nargs="+", help="batch sizes (default 1024 … 65536; 1024 4096 16384 with "
                        "--quick)")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--dim-in", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--time-ns", type=int, nargs="*", help="also time the steps at these N (default none; the "
                        "first N with --quick)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-gib", type=float, default=8.0, help="time only what fits under this (default 8)")
    parser.add_argument("--plot", help="write footprint against N to this PNG")
    add_run_options(parser, "three batch sizes, the first timed (--scale multiplies N and every width)")
    args = parser.parse_args(argv)
    ns = args.ns or ([1024, 4096, 16384] if args.quick else [1024 * 2**k for k in range(7)])
    time_ns = args.time_ns if args.time_ns is not None else ns[:1] if args.quick else []
    chunk = scaled(args.chunk, args.scale)  # N scaled as the chunk is: whole chunks stay whole
    args.ns, args.time_ns = ([max(1, n * chunk // args.chunk) for n in series] for series in (ns, time_ns))
    for name in ("chunk", "dim_in", "hidden", "dim", "block_size"):
        setattr(args, name, scaled(getattr(args, name), args.scale))
    params, steps = _params(args), _steps(args)
    out = [f"float32; encoder {args.dim_in} → {args.hidden} → {args.dim} (GELU); multiple_negatives_ranking_loss, "
           f"block_size = {args.block_size}; chunk = {args.chunk}; jax {jax.__version__}; {machine()}", "",
           "| N | plain MiB | cached MiB | loss only MiB | plain / cached | cached / cached at first N |"
           + (" plain ms | cached ms |" if args.time_ns else ""),
           "|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.time_ns else "")]
    print("\n".join(out), flush=True)
    curves: dict[str, list[tuple[int, int]]] = {name: [] for name in steps}
    for n in args.ns:
        x = jax.ShapeDtypeStruct((n, args.dim_in), jnp.float32)
        shapes = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
        compiled, footprint = {}, {}
        for name, step in steps.items():
            compiled[name], footprint[name] = compile_with_footprint(step, shapes, x, x)
            curves[name].append((n, footprint[name]))
        first = curves["cached"][0][1]
        row = (f"| {n:,} | {footprint['plain'] / MIB:,.1f} | {footprint['cached'] / MIB:,.1f} | "
               f"{footprint['loss only'] / MIB:,.1f} | {footprint['plain'] / footprint['cached']:,.1f} | "
               f"{footprint['cached'] / first:,.2f} |")
        if n in args.time_ns:
            fits = {name: compiled[name] for name in ("plain", "cached") if footprint[name] <= args.max_gib * 2**30}
            data = jax.random.normal(jax.random.key(1), (2, n, args.dim_in))
            ms = {name: 1e3 * t for name, t in
                  interleaved_medians(fits, (params, data[0], data[1]), repeats=args.repeats, warmup=1).items()}
            row += "".join(f" {ms[name]:,.0f} |" if name in ms else " does not fit |" for name in ("plain", "cached"))
        elif args.time_ns:
            row += " | |"
        out.append(row)
        print(row, flush=True)
    if args.plot:
        plot_footprints(curves, args.plot, unit=("MiB", MIB), ylabel="compiled footprint of the step",
                        title=f"MLP {args.dim_in}→{args.hidden}→{args.dim} + MNRL, chunk = {args.chunk}, float32")
        out += ["", f"(plot: {args.plot})"]
    if args.write:
        write_report("cached_contrastive", "\n".join(out), args.write, argv)
    return "\n".join(out)


if __name__ == "__main__":
    main()
