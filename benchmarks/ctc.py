"""Forward+backward time and compiled footprint of ctc_loss: jaxloss vs optax vs autodiff.

``jax.value_and_grad`` of the mean CTC loss with respect to the logits (jit-compiled, warmed
up, the contenders interleaved, median of ``--repeats`` runs) and the compiled footprint
(``temp_size_in_bytes + output_size_in_bytes`` of ``memory_analysis()``) of

* ``jaxloss``: ``jaxloss.ctc_loss``, whose hand rule recomputes the α–β lattice in the
  backward pass;
* ``optax``: ``optax.ctc_loss`` (autodiff through its scan);
* ``autodiff``: ``jaxloss.ctc_loss.reference``, plain autodiff of the same forward.

Logits ``[B, T, K]`` with random frame lengths in ``[T/2, T]``, labels ``[B, N]`` with
random lengths in ``[N/2, N]`` (ids never the blank), one table per vocabulary size.

Run from the repository root::

    python benchmarks/ctc.py                        # T = 200, N = 32, K = 64 and 512, B = 32
    python benchmarks/ctc.py --vocab 64 --repeats 21
    python -m jaxloss bench ctc --batch 8
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import add_run_options, measure, others_note, ratio_table, scaled, write_report  # noqa: E402


def _objective(loss):
    return jax.value_and_grad(lambda x, lp, y, yp: jnp.mean(loss(x, lp, y, yp)))


def _inputs(batch, frames, labels, vocab, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, frames, vocab))
    frame_lengths = rng.integers(frames // 2, frames + 1, batch)
    label_lengths = rng.integers(labels // 2, labels + 1, batch)
    ids = rng.integers(1, vocab, (batch, labels))
    logit_paddings = np.arange(frames)[None] >= frame_lengths[:, None]
    label_paddings = np.arange(labels)[None] >= label_lengths[:, None]
    return (jnp.float32(logits), jnp.float32(logit_paddings), jnp.int32(ids), jnp.float32(label_paddings))


def main(argv=None) -> str:
    """Run the comparisons, print the markdown tables and return them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, help="timed runs per contender (default 11; 5 with --quick)")
    parser.add_argument("--batch", type=int, default=32, help="sequences per batch (default 32)")
    parser.add_argument("--frames", type=int, default=200, help="frames T (default 200)")
    parser.add_argument("--labels", type=int, default=32, help="labels N (default 32)")
    parser.add_argument("--vocab", type=int, nargs="+", default=(64, 512), help="vocabulary sizes K (default 64 512)")
    add_run_options(parser, "5 repeats (--scale multiplies B, T and N, not K)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (5 if args.quick else 11)
    batch, frames, labels = (scaled(n, args.scale, least) for n, least in
                             ((args.batch, 1), (args.frames, 4), (args.labels, 1)))

    sections = [f"float32, median of {args.repeats} interleaved runs, jax {jax.__version__}, "
                f"optax {optax.__version__}, {jax.devices()[0].platform}"]
    print(sections[0], flush=True)
    for vocab in args.vocab:
        inputs = _inputs(batch, frames, labels, vocab)
        objectives = {"jaxloss": _objective(jaxloss.ctc_loss),
                      "optax": _objective(optax.ctc_loss),
                      "autodiff": _objective(jaxloss.ctc_loss.reference)}
        ms, footprint, others = measure(objectives, inputs, repeats=args.repeats)
        title = f"ctc_loss: logits [{batch}, {frames}, {vocab}], labels [{batch}, {labels}]"
        sections.append("\n".join(["", f"### {title}", "",
                                   f"(value and gradient of the mean loss w.r.t. the logits{others_note(others)})",
                                   "", *ratio_table(ms, footprint, ("optax", "autodiff"))]))
        print(sections[-1], flush=True)
    report = "\n".join(sections)
    if args.write:
        write_report("ctc", report, args.write, argv)
    return report


if __name__ == "__main__":
    main()
