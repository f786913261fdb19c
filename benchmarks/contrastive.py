"""Contrastive losses at large N: compiled footprint and forward+backward time, dense vs blockwise vs optax.

Two tables, each ``jax.value_and_grad`` of the mean loss with respect to the embeddings
(jit-compiled; footprint = ``temp_size_in_bytes + output_size_in_bytes`` of
``memory_analysis()``, read from the compiled program without running it; time = median of
``--repeats`` interleaved runs after a warm-up, measured only where the footprint fits under
``--max-gib``):

* ``info_nce_loss`` at each ``--ns`` N, dense (``block_size=None``, the N × N logits) and
  blockwise (``--block-size``); the footprint should grow linearly in N for the blockwise form;
* ``ntxent_loss`` (blockwise and dense) against ``optax.losses.ntxent`` at ``--ntxent-ns``,
  labels pairing examples two by two (SimCLR's two views).

With ``--plot PATH`` it also writes footprint against N (log-log) as a PNG (needs matplotlib).

Run from the repository root::

    python benchmarks/contrastive.py --plot benchmarks/results/contrastive-memory-cpu.png
    python benchmarks/contrastive.py --ns 4096 16384 --ntxent-ns 2048 --repeats 3
    python -m jaxloss bench contrastive --ns 1024 --ntxent-ns 256
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import optax

import jaxloss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import (  # noqa: E402
    add_run_options, compile_with_footprint, interleaved_medians, plot_footprints, scaled, write_report,
)

GIB = 2**30


def _info_nce(block_size):
    return jax.value_and_grad(lambda x, y: jnp.mean(jaxloss.info_nce_loss(x, y, block_size=block_size)), (0, 1))


def _ntxent(loss):
    return jax.value_and_grad(lambda x, y: jnp.mean(loss(x, y)))


def _run(objectives, args, max_bytes, repeats):
    """Footprint of every contender; median ms of those under ``max_bytes`` (else None)."""
    compiled, footprint = {}, {}
    for name, fn in objectives.items():
        compiled[name], footprint[name] = compile_with_footprint(fn, *args)
    fits = {name: compiled[name] for name in objectives if footprint[name] <= max_bytes}
    ms = {name: 1e3 * t for name, t in interleaved_medians(fits, args, repeats=repeats, warmup=1).items()} if fits else {}
    return {name: (footprint[name], ms.get(name)) for name in objectives}


def _cells(result, baseline=None):
    footprint, ms = result
    time = "does not fit" if ms is None else f"{ms:,.1f}"
    ratio = "" if baseline is None or ms is None or baseline[1] is None else f" ({baseline[1] / ms:,.0f}× faster)"
    return f"{footprint / GIB:,.3f} | {time}{ratio}"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ns", type=int, nargs="+", help="InfoNCE batch sizes (default 4096 16384 65536; "
                        "4096 16384 with --quick)")
    parser.add_argument("--ntxent-ns", type=int, nargs="+", help="NT-Xent batch sizes (default 2048 8192; 2048 with "
                        "--quick)")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-gib", type=float, default=12.0, help="time only what fits under this (default 12)")
    parser.add_argument("--plot", help="write footprint against N to this PNG")
    add_run_options(parser, "the smaller batch sizes (--scale multiplies N, d and the block size)")
    args = parser.parse_args(argv)
    args.ns = [scaled(n, args.scale) for n in args.ns or ((4096, 16384) if args.quick else (4096, 16384, 65536))]
    ntxent_ns = args.ntxent_ns or ((2048,) if args.quick else (2048, 8192))
    args.ntxent_ns = [2 * scaled(n // 2, args.scale) for n in ntxent_ns]  # pairs
    args.dim, args.block_size = scaled(args.dim, args.scale), scaled(args.block_size, args.scale)
    max_bytes, key = args.max_gib * GIB, jax.random.key(0)

    out = [f"float32, d = {args.dim}, block_size = {args.block_size}, median of {args.repeats} runs, "
           f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}", "",
           "### info_nce_loss: value and gradient w.r.t. queries and keys", "",
           "| N | dense GiB | dense ms | blockwise GiB | blockwise ms |", "|---:|---:|---:|---:|---:|"]
    print("\n".join(out), flush=True)
    curves = {"info_nce_loss dense": [], "info_nce_loss blockwise": [], "optax.ntxent": [], "ntxent_loss blockwise": []}
    for n in args.ns:
        x, y = jax.random.normal(key, (2, n, args.dim))
        r = _run({"dense": _info_nce(None), "blockwise": _info_nce(args.block_size)}, (x, y), max_bytes, args.repeats)
        curves["info_nce_loss dense"].append((n, r["dense"][0]))
        curves["info_nce_loss blockwise"].append((n, r["blockwise"][0]))
        out.append(f"| {n:,} | {_cells(r['dense'])} | {_cells(r['blockwise'])} |")
        print(out[-1], flush=True)

    out += ["", "### ntxent_loss vs optax.ntxent: value and gradient w.r.t. the embeddings", "",
            "| N | optax GiB | optax ms | jaxloss dense GiB | jaxloss dense ms | jaxloss blockwise GiB | "
            "jaxloss blockwise ms |", "|---:|---:|---:|---:|---:|---:|---:|"]
    print("\n".join(out[-5:]), flush=True)
    for n in args.ntxent_ns:
        x = jax.random.normal(key, (n, args.dim))
        labels = jnp.arange(n) // 2
        objectives = {
            "optax": _ntxent(lambda x, y: optax.losses.ntxent(x, y, 0.07)),
            "dense": _ntxent(lambda x, y: jaxloss.ntxent_loss(x, y)),
            "blockwise": _ntxent(lambda x, y: jaxloss.ntxent_loss(x, y, block_size=args.block_size)),
        }
        r = _run(objectives, (x, labels), max_bytes, args.repeats)
        curves["optax.ntxent"].append((n, r["optax"][0]))
        curves["ntxent_loss blockwise"].append((n, r["blockwise"][0]))
        out.append(f"| {n:,} | {_cells(r['optax'])} | {_cells(r['dense'], r['optax'])} | "
                   f"{_cells(r['blockwise'], r['optax'])} |")
        print(out[-1], flush=True)
    if args.plot:
        plot_footprints(curves, args.plot, unit=("GiB", GIB), ylabel="compiled footprint of value_and_grad",
                        title=f"Contrastive losses, d = {args.dim}, float32, block_size = {args.block_size}")
        out += ["", f"(plot: {args.plot})"]
    if args.write:
        write_report("contrastive", "\n".join(out), args.write, argv)
    return "\n".join(out)


if __name__ == "__main__":
    main()
