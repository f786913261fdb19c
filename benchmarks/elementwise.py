"""Forward+backward time and compiled footprint of elementwise losses: jaxloss vs optax vs autodiff.

For ``huber_loss`` (delta=1) and ``sigmoid_binary_cross_entropy`` it times
``jax.value_and_grad(mean(loss(x, y)))`` with respect to ``x`` (jit-compiled, warmed up, the
contenders interleaved in every repetition, median of ``--repeats`` runs) and reads the compiled
footprint, ``temp_size_in_bytes + output_size_in_bytes`` of ``memory_analysis()``, for three
contenders: jaxloss's public loss (hand rule), optax's loss, and ``fn.reference`` (plain autodiff
of jaxloss's formula).  Ratios are against optax and against autodiff; the goal is jaxloss time
ratio <= 1.05 and footprint ratio <= 1.0 against both.

Run from the repository root::

    python benchmarks/elementwise.py                      # 16M float32 elements, 7 repeats
    python benchmarks/elementwise.py --dtype bfloat16 --size 1048576 --repeats 11
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import jax
import jax.numpy as jnp
import optax

import jaxloss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import add_run_options, compile_with_footprint, interleaved_medians, scaled, write_report  # noqa: E402

TIME_GOAL, FOOTPRINT_GOAL, GOAL_SIZE = 1.05, 1.0, 4096 * 4096  # the goal applies at 16M elements

LOSSES = {
    # loss: ({contender: loss(x, y)}, targets(key, shape, dtype))
    "huber_loss": (
        {"jaxloss": lambda x, y: jaxloss.huber_loss(x, y, delta=1.0),
         "optax": lambda x, y: optax.losses.huber_loss(x, y, delta=1.0),
         "autodiff": lambda x, y: jaxloss.huber_loss.reference(x, y, delta=1.0)},
        lambda key, shape, dtype: jax.random.normal(key, shape, dtype),
    ),
    "sigmoid_binary_cross_entropy": (
        {"jaxloss": jaxloss.sigmoid_binary_cross_entropy,
         "optax": optax.losses.sigmoid_binary_cross_entropy,
         "autodiff": jaxloss.sigmoid_binary_cross_entropy.reference},
        lambda key, shape, dtype: jax.random.bernoulli(key, 0.5, shape).astype(dtype),
    ),
}


def _objective(loss):
    return jax.value_and_grad(lambda x, y: jnp.mean(loss(x, y)))


def main(argv=None) -> str:
    """Run the benchmark, print the markdown table and return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096 * 4096, help="elements per input (default 16M)")
    parser.add_argument("--repeats", type=int, help="timed runs per contender (default 7; 5 with --quick)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    add_run_options(parser, "5 repeats (--scale multiplies both dimensions of the [rows, columns] input)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (5 if args.quick else 7)

    cols = math.gcd(args.size, 4096)
    shape, dtype = (scaled(args.size // cols, args.scale, 1), scaled(cols, args.scale, 1)), jnp.dtype(args.dtype)
    args.size = shape[0] * shape[1]
    kx, ky = jax.random.split(jax.random.key(0))
    x = 2 * jax.random.normal(kx, shape, dtype)  # r = x - y ~ N(0, 5): |r| > delta for about 2/3 of them

    lines = [f"{args.size:,} elements, shape {shape}, {args.dtype}, median of {args.repeats} "
             f"interleaved runs, jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}",
             "",
             "| loss | contender | median ms | time ×optax | time ×autodiff "
             "| footprint MiB | footprint ×optax | footprint ×autodiff |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for loss_name, (contenders, make_targets) in LOSSES.items():
        y = make_targets(ky, shape, dtype)
        compiled, footprint = {}, {}
        for name, loss in contenders.items():
            compiled[name], footprint[name] = compile_with_footprint(_objective(loss), x, y)
        ms = {k: 1e3 * v for k, v in interleaved_medians(compiled, (x, y), repeats=args.repeats).items()}
        for name in contenders:
            lines.append(f"| {loss_name} | {name} | {ms[name]:.2f} "
                         f"| {ms[name] / ms['optax']:.2f} | {ms[name] / ms['autodiff']:.2f} "
                         f"| {footprint[name] / 2**20:.1f} "
                         f"| {footprint[name] / footprint['optax']:.2f} "
                         f"| {footprint[name] / footprint['autodiff']:.2f} |")
        met = all(ms["jaxloss"] <= TIME_GOAL * ms[other] and footprint["jaxloss"] <= FOOTPRINT_GOAL * footprint[other]
                  for other in ("optax", "autodiff"))
        verdicts += [] if args.size != GOAL_SIZE else [f"- {loss_name}: goal (time ≤ {TIME_GOAL}, footprint ≤ {FOOTPRINT_GOAL} vs optax "
                        f"and autodiff) {'met' if met else 'NOT met'}"]
    table = "\n".join(lines + [""] + verdicts)
    print(table)
    if args.write:
        write_report("elementwise", table, args.write, argv)
    return table


if __name__ == "__main__":
    main()
