"""Forward+backward time and compiled footprint of softmax cross-entropy: jaxloss vs optax vs autodiff.

For ``softmax_cross_entropy(logits, labels)`` with integer class ids it times
``jax.value_and_grad(mean(loss(x, y)))`` with respect to the logits ``x`` (jit-compiled, warmed
up, the contenders interleaved in every repetition, median of ``--repeats`` runs) and reads the
compiled footprint, ``temp_size_in_bytes + output_size_in_bytes`` of ``memory_analysis()``, for
four contenders: jaxloss's public loss (hand rule: reverse mode keeps the logits and the
per-example log-sum-exp), optax's ``softmax_cross_entropy_with_integer_labels``, plain autodiff
of ``-take_along_axis(jax.nn.log_softmax(x), y)`` (in the logits' dtype), and ``fn.reference``
(plain autodiff of jaxloss's own formula, in at least float32).  Ratios are against optax and
against autodiff.  Goals: in float32, jaxloss time ratio <= 1.05 and footprint ratio <= 1.0
against optax; for bfloat16 logits (which jaxloss computes in float32 inside), time ratio <= 0.8
and footprint ratio <= 0.6 against optax.

Run from the repository root::

    python benchmarks/cross_entropy.py                              # [4096, 32000] float32, 7 repeats
    python benchmarks/cross_entropy.py --dtype bfloat16
    python benchmarks/cross_entropy.py --shape 256 1000 --repeats 51
    python -m jaxloss bench cross_entropy --dtype bfloat16 --shape 256 1000
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
from _timing import add_run_options, measure, others_note, ratio_table, scaled, write_report  # noqa: E402

# dtype: (time goal, footprint goal), jaxloss against optax, at the GOAL_SHAPES only
GOALS = {"float32": (1.05, 1.0), "bfloat16": (0.8, 0.6)}
GOAL_SHAPES = {(4096, 32000), (256, 1000)}


def _log_softmax_nll(x, y):
    """Plain autodiff of the textbook formula, in the logits' dtype."""
    return -jnp.take_along_axis(jax.nn.log_softmax(x, axis=-1), y[..., None], axis=-1)[..., 0]


CONTENDERS = {
    "jaxloss": jaxloss.softmax_cross_entropy,
    "optax": optax.losses.softmax_cross_entropy_with_integer_labels,
    "autodiff": _log_softmax_nll,
    "reference": jaxloss.softmax_cross_entropy.reference,
}


def _objective(loss):
    return jax.value_and_grad(lambda x, y: jnp.mean(loss(x, y)))


def main(argv=None) -> str:
    """Run the benchmark, print the markdown table and return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=2, default=(4096, 32000), metavar=("N", "C"),
                        help="examples and classes (default 4096 32000)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, help="timed runs per contender (default 7; 5 with --quick)")
    add_run_options(parser, "5 repeats")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (5 if args.quick else 7)

    shape, dtype = tuple(scaled(n, args.scale) for n in args.shape), jnp.dtype(args.dtype)
    kx, ky = jax.random.split(jax.random.key(0))
    x = 4 * jax.random.normal(kx, shape, dtype)
    y = jax.random.randint(ky, shape[:1], 0, shape[1], jnp.int32)

    objectives = {name: _objective(loss) for name, loss in CONTENDERS.items()}
    ms, footprint, others = measure(objectives, (x, y), repeats=args.repeats)
    lines = [f"logits {shape} {args.dtype}, int32 labels, median of {args.repeats} interleaved runs, "
             f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}"
             + others_note(others), "", *ratio_table(ms, footprint, ("optax", "autodiff"))]
    time_goal, footprint_goal = GOALS[args.dtype]
    met = ms["jaxloss"] <= time_goal * ms["optax"] and footprint["jaxloss"] <= footprint_goal * footprint["optax"]
    verdict = (f"- goal ({args.dtype}: time ≤ {time_goal}, footprint ≤ {footprint_goal} vs optax) "
               f"{'met' if met else 'NOT met'}: time ×{ms['jaxloss'] / ms['optax']:.3f}, "
               f"footprint ×{footprint['jaxloss'] / footprint['optax']:.5f} "
               f"({footprint['jaxloss'] - footprint['optax']:+,} bytes)")
    table = "\n".join(lines + (["", verdict] if shape in GOAL_SHAPES else []))
    print(table)
    if args.write:
        write_report("cross_entropy", table, args.write, argv)
    return table


if __name__ == "__main__":
    main()
