"""Forward+backward time and compiled footprint of the RNN-T loss: lean vs dense vs autodiff.

``jax.value_and_grad`` of the mean RNN-T loss with respect to the joiner's inputs (encoder
``[B, T, H]``, predictor ``[B, U+1, H]``, joiner weight ``[H, V]``; jit-compiled, warmed up, the
contenders interleaved, median of ``--repeats`` runs) and the compiled footprint
(``temp_size_in_bytes + output_size_in_bytes`` of ``memory_analysis()``) of

* ``lean``: ``jaxloss.rnnt_loss_from_joiner``, blocks of frames, never the ``[B, T, U+1, V]`` logits;
* ``dense``: the logits ``tanh(enc_t + pred_u) @ W`` materialised and ``jaxloss.rnnt_loss`` (hand rule);
* ``autodiff``: the same logits and ``jaxloss.rnnt_loss.reference``, autodiff through the lattice scan.

Frame lengths are random in ``[T/2, T]``, label lengths in ``[U/2, U]`` (ids never the blank).

Run from the repository root::

    python benchmarks/rnnt.py                       # B = 8, T = 200, U = 50, V = 1024, H = 256
    python benchmarks/rnnt.py --scale 0.5 --repeats 3
    python -m jaxloss bench rnnt --batch 2
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import add_run_options, measure, others_note, ratio_table, write_report  # noqa: E402


def _inputs(batch, frames, labels, vocab, hidden, seed=0):
    rng = np.random.default_rng(seed)
    encoder = rng.standard_normal((batch, frames, hidden)) / 2
    predictor = rng.standard_normal((batch, labels + 1, hidden)) / 2
    weight = rng.standard_normal((hidden, vocab)) / np.sqrt(hidden)
    frame_lengths = rng.integers(frames // 2, frames + 1, batch)
    label_lengths = rng.integers(labels // 2, labels + 1, batch)
    ids = rng.integers(1, vocab, (batch, labels))
    logit_paddings = np.arange(frames)[None] >= frame_lengths[:, None]
    label_paddings = np.arange(labels)[None] >= label_lengths[:, None]
    return (jnp.float32(encoder), jnp.float32(predictor), jnp.float32(weight), jnp.float32(logit_paddings),
            jnp.int32(ids), jnp.float32(label_paddings))


def _dense(loss):
    def objective(enc, pred, w, lp, y, yp):
        logits = jnp.matmul(jnp.tanh(enc[:, :, None] + pred[:, None]), w, precision=jax.lax.Precision.HIGHEST)
        return jnp.mean(loss(logits, lp, y, yp))

    return jax.value_and_grad(objective, (0, 1, 2))


def _lean(block_size):
    def objective(enc, pred, w, lp, y, yp):
        return jnp.mean(jaxloss.rnnt_loss_from_joiner(enc, pred, w, lp, y, yp, block_size=block_size))

    return jax.value_and_grad(objective, (0, 1, 2))


def main(argv=None) -> str:
    """Run the comparison, print the markdown table and return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, help="timed runs per contender (default 5; 3 with --quick)")
    parser.add_argument("--batch", type=int, default=8, help="sequences B (default 8)")
    parser.add_argument("--frames", type=int, default=200, help="frames T (default 200)")
    parser.add_argument("--labels", type=int, default=50, help="labels U (default 50)")
    parser.add_argument("--vocab", type=int, default=1024, help="vocabulary V (default 1024)")
    parser.add_argument("--hidden", type=int, default=256, help="joiner width H (default 256)")
    parser.add_argument("--block-size", type=int, default=None, help="lean form's frames per block (default: auto)")
    add_run_options(parser, "3 repeats (--scale multiplies B and T)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 5)
    batch, frames = max(1, round(args.batch * args.scale)), max(2, round(args.frames * args.scale))

    inputs = _inputs(batch, frames, args.labels, args.vocab, args.hidden)
    objectives = {"lean": _lean(args.block_size), "dense": _dense(jaxloss.rnnt_loss),
                  "autodiff": _dense(jaxloss.rnnt_loss.reference)}
    ms, footprint, others = measure(objectives, inputs, repeats=args.repeats)
    logits_mib = batch * frames * (args.labels + 1) * args.vocab * 4 / 2**20
    title = (f"rnnt: B = {batch}, T = {frames}, U = {args.labels}, V = {args.vocab}, H = {args.hidden} "
             f"(logits {logits_mib:.1f} MiB)")
    table = "\n".join([f"float32, median of {args.repeats} interleaved runs, jax {jax.__version__}, "
                       f"{jax.devices()[0].platform}", "", f"### {title}", "",
                       "(value and gradient of the mean loss w.r.t. encoder, predictor and joiner weight"
                       f"{others_note(others)})", "", *ratio_table(ms, footprint, ("dense", "autodiff"))])
    print(table, flush=True)
    if args.write:
        write_report("rnnt", table, args.write, argv)
    return table


if __name__ == "__main__":
    main()
