"""Fused linear + softmax cross-entropy: jaxloss vs optax on materialised logits vs autodiff.

For each size (tokens B, hidden H, vocabulary V) it times ``jax.value_and_grad`` of the mean
per-token loss with respect to the hidden states and the classifier weight (jit-compiled,
warmed up, the contenders interleaved, median of ``--repeats`` runs) and reads the compiled
``memory_analysis()``: the temporaries (``temp``) and the footprint (temp + outputs).
Contenders: ``jaxloss.linear_softmax_cross_entropy`` (per-token losses, blockwise over the
vocabulary, never more than ``B × block_size`` logits), ``jaxloss.linear_softmax_cross_entropy_mean``
(the mean, its gradient formed in the forward over blocks of tokens), optax's ``softmax_cross_entropy_with_integer_labels(h @ w, y)``
(materialised logits), plain autodiff of ``log_softmax`` on ``h @ w``, and tokamax's
``linear_softmax_cross_entropy_loss`` (its XLA path) when tokamax is installed.  A contender
whose temporaries would exceed ``--max-temp-gib`` is compiled (its footprint is reported) but
not run.  Goals (float32, on the CPU): at 4096 × 512 × 32000, temp ≤ 100 MiB and time ≤ 1.1×
optax; at 16384 × 1024 × 128000, temp ≤ 2 GiB.

Run from the repository root::

    python benchmarks/linear_cross_entropy.py                      # the two goal sizes
    python benchmarks/linear_cross_entropy.py --size 1024 256 8000 --repeats 9
    python -m jaxloss bench linear_cross_entropy --dtype bfloat16 --size 8192 2048 256000
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
from _timing import cpu_ticks, interleaved_medians, others_note, others_share  # noqa: E402

SIZES = ((4096, 512, 32000), (16384, 1024, 128000))
GOALS = {(4096, 512, 32000): (100 * 2**20, 1.1), (16384, 1024, 128000): (2 * 2**30, None)}


def _materialised(h, w, y):
    return optax.losses.softmax_cross_entropy_with_integer_labels(h @ w, y)


def _autodiff(h, w, y):
    logits = h @ w
    return -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), y[:, None], axis=-1)[:, 0]


def _contenders(block_size):
    fns = {
        "jaxloss": lambda h, w, y: jaxloss.linear_softmax_cross_entropy(h, w, y, block_size=block_size),
        "jaxloss mean": lambda h, w, y: jaxloss.linear_softmax_cross_entropy_mean(h, w, y),
        "optax": _materialised,
        "autodiff": _autodiff,
    }
    try:
        import tokamax  # noqa: PLC0415

        fns["tokamax (xla)"] = lambda h, w, y: tokamax.linear_softmax_cross_entropy_loss(
            h, w, y, reduction="none", implementation="xla")
    except Exception:  # noqa: BLE001  (optional, absent here)
        pass
    return fns


def _objective(loss):
    return jax.value_and_grad(lambda h, w, y: jnp.mean(loss(h, w, y)), argnums=(0, 1))


def run_size(size, dtype, repeats, block_size, max_temp):
    b, hidden, vocab = size
    kh, kw, ky = jax.random.split(jax.random.key(0), 3)
    h = jax.random.normal(kh, (b, hidden), dtype)
    w = (jax.random.normal(kw, (hidden, vocab), jnp.float32) / hidden**0.5).astype(dtype)
    y = jax.random.randint(ky, (b,), 0, vocab, jnp.int32)
    compiled, temp, footprint = {}, {}, {}
    for name, loss in _contenders(block_size).items():
        c = jax.jit(_objective(loss)).lower(h, w, y).compile()
        memory = c.memory_analysis()
        temp[name] = memory.temp_size_in_bytes
        footprint[name] = memory.temp_size_in_bytes + memory.output_size_in_bytes
        if temp[name] <= max_temp:
            compiled[name] = c
    ticks, times = cpu_ticks(), os.times()
    ms = {k: 1e3 * v for k, v in interleaved_medians(compiled, (h, w, y), repeats=repeats,
                                                     warmup=1 if repeats < 3 else 2).items()}
    others = others_share(ticks, cpu_ticks(), sum(os.times()[:2]) - sum(times[:2]))
    flops = 6 * b * hidden * vocab
    rows = []
    for name in temp:
        t = ms.get(name)
        cells = [name, f"{b}×{hidden}×{vocab}", "–" if t is None else f"{t:.0f}",
                 "–" if t is None or "optax" not in ms else f"{t / ms['optax']:.2f}",
                 f"{temp[name] / 2**20:.1f}", f"{temp[name] / temp['optax']:.3f}",
                 f"{footprint[name] / 2**20:.1f}", "–" if t is None else f"{flops / t / 1e6:.0f}"]
        rows.append("| " + " | ".join(cells) + " |")
    verdicts = []
    for ours in ("jaxloss", "jaxloss mean") if size in GOALS else ():
        temp_goal, time_goal = GOALS[size]
        ok = temp[ours] <= temp_goal
        parts = [f"temp {temp[ours] / 2**20:.1f} MiB (≤ {temp_goal / 2**20:.0f})"]
        if time_goal is not None and ours in ms and "optax" in ms:
            ratio = ms[ours] / ms["optax"]
            ok = ok and ratio <= time_goal
            parts.append(f"time ×{ratio:.2f} optax (≤ {time_goal})")
        verdicts.append(f"- {ours}, {b}×{hidden}×{vocab}: goal {'met' if ok else 'NOT met'}: " + ", ".join(parts))
    return rows, verdicts, others


def main(argv=None) -> str:
    """Run the benchmark, print the markdown table and return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=3, action="append", metavar=("B", "H", "V"),
                        help="tokens, hidden size, vocabulary (repeatable; default: the two goal sizes)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per contender (default 5)")
    parser.add_argument("--block-size", type=int, default=None, help="jaxloss block size (default: auto)")
    parser.add_argument("--max-temp-gib", type=float, default=4.0,
                        help="compile but do not run contenders needing more temporaries (default 4)")
    args = parser.parse_args(argv)

    sizes = [tuple(s) for s in args.size] if args.size else list(SIZES)
    head = ["contender", "B×H×V", "median ms", "time ×optax", "temp MiB", "temp ×optax",
            "footprint MiB", "GFLOP/s (6BHV)"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    verdicts, notes = [], []
    for size in sizes:
        repeats = args.repeats if size[0] * size[1] * size[2] < 2**38 else 1
        rows, size_verdicts, others = run_size(size, jnp.dtype(args.dtype), repeats, args.block_size,
                                               args.max_temp_gib * 2**30)
        lines += rows
        verdicts += size_verdicts
        notes.append(f"{size}: median of {repeats}{others_note(others)}")
    title = (f"value_and_grad w.r.t. hidden and weight of the mean loss, {args.dtype}, "
             f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}; "
             f"'–': not run (temp over {args.max_temp_gib:g} GiB)")
    table = "\n".join([title, "", *lines, "", *verdicts, *(f"- {n}" for n in notes)])
    print(table)
    return table


if __name__ == "__main__":
    main()
