"""Forward+backward time and compiled footprint of the embedding losses: jaxloss vs autodiff (vs optax).

Three comparisons, each ``jax.value_and_grad`` of the mean loss with respect to every float input
(jit-compiled, warmed up, the contenders interleaved, median of ``--repeats`` runs) and the
compiled footprint (``temp_size_in_bytes + output_size_in_bytes`` of ``memory_analysis()``):

* ``angular_margin_loss`` (ArcFace margins) over ``C`` class centres: jaxloss's hand rule against
  plain autodiff of the same formula (``fn.reference``);
* ``batch_triplet_loss`` with each mining: the hand rule against ``fn.reference``;
* ``triplet_margin_loss``: the hand rule against ``optax.losses.triplet_margin_loss`` and
  ``fn.reference``.

Run from the repository root::

    python benchmarks/embedding.py                  # all three, default sizes
    python benchmarks/embedding.py --only angular --repeats 21
    python -m jaxloss bench embedding --only triplet
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


def _objective(loss, argnums):
    return jax.value_and_grad(lambda *a: jnp.mean(loss(*a)), argnums=argnums)


def _angular(n, d, c, keys):
    x = jax.random.normal(keys[0], (n, d))
    centres = jax.random.normal(keys[1], (c, d))
    labels = jax.random.randint(keys[2], (n,), 0, c)

    def contender(fn):
        return _objective(lambda x, w, y: fn(x, w, y, scale=64.0, m2=0.5), (0, 1))

    return (f"angular_margin_loss (ArcFace, m2 = 0.5, s = 64): embeddings [{n}, {d}], centres [{c}, {d}]",
            {"jaxloss": contender(jaxloss.angular_margin_loss),
             "autodiff": contender(jaxloss.angular_margin_loss.reference)},
            (x, centres, labels), ("autodiff",))


def _batch_triplet(n, d, mining, keys):
    x = jax.random.normal(keys[0], (n, d))
    labels = jax.random.randint(keys[1], (n,), 0, max(2, n // 8))

    def contender(fn):
        return _objective(lambda x, y: fn(x, y, margin=0.2, mining=mining), 0)

    return (f"batch_triplet_loss (mining={mining!r}, euclidean): embeddings [{n}, {d}], {max(2, n // 8)} classes",
            {"jaxloss": contender(jaxloss.batch_triplet_loss),
             "autodiff": contender(jaxloss.batch_triplet_loss.reference)},
            (x, labels), ("autodiff",))


def _triplet(n, d, keys):
    a, p, q = (jax.random.normal(k, (n, d)) for k in keys[:3])
    return (f"triplet_margin_loss (p = 2, margin 1): anchors, positives, negatives [{n}, {d}]",
            {"jaxloss": _objective(jaxloss.triplet_margin_loss, (0, 1, 2)),
             "optax": _objective(optax.losses.triplet_margin_loss, (0, 1, 2)),
             "autodiff": _objective(jaxloss.triplet_margin_loss.reference, (0, 1, 2))},
            (a, p, q), ("optax", "autodiff"))


def main(argv=None) -> str:
    """Run the comparisons, print the markdown tables and return them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("angular", "batch_triplet", "triplet"), action="append",
                        help="run only these comparisons (repeatable; default all)")
    parser.add_argument("--repeats", type=int, help="timed runs per contender (default 11; 5 with --quick)")
    parser.add_argument("--angular", type=int, nargs=3, default=(1024, 512, 16384), metavar=("N", "D", "C"))
    parser.add_argument("--batch-triplet", type=int, nargs=2, default=(1024, 128), metavar=("N", "D"))
    parser.add_argument("--triplet", type=int, nargs=2, default=(65536, 128), metavar=("N", "D"))
    add_run_options(parser, "5 repeats")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (5 if args.quick else 11)
    for name in ("angular", "batch_triplet", "triplet"):
        setattr(args, name, tuple(scaled(n, args.scale) for n in getattr(args, name)))
    only = set(args.only or ("angular", "batch_triplet", "triplet"))
    keys = jax.random.split(jax.random.key(0), 3)

    cases = []
    if "angular" in only:
        cases.append(_angular(*args.angular, keys))
    if "batch_triplet" in only:
        cases += [_batch_triplet(*args.batch_triplet, mining, keys) for mining in ("all", "hard", "semihard")]
    if "triplet" in only:
        cases.append(_triplet(*args.triplet, keys))

    sections = [f"float32, median of {args.repeats} interleaved runs, jax {jax.__version__}, "
                f"optax {optax.__version__}, {jax.devices()[0].platform}"]
    print(sections[0], flush=True)
    for title, objectives, inputs, baselines in cases:
        ms, footprint, others = measure(objectives, inputs, repeats=args.repeats)
        sections.append("\n".join(["", f"### {title}", "", f"(value and gradient of the mean loss{others_note(others)})",
                                    "", *ratio_table(ms, footprint, baselines)]))
        print(sections[-1], flush=True)
    report = "\n".join(sections)
    if args.write:
        write_report("embedding", report, args.write, argv)
    return report


if __name__ == "__main__":
    main()
