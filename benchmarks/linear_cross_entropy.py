"""Fused linear + softmax cross-entropy: jaxloss vs optax on materialised logits vs autodiff.

For each size (tokens B, hidden H, vocabulary V) it times ``jax.value_and_grad`` of the mean
per-token loss with respect to the hidden states and the classifier weight (jit-compiled,
warmed up, the contenders interleaved, each timed right after a call of its own and right
after a call of another contender, median of ``--repeats`` runs each way, the goal judged on
the worse) and reads the compiled ``memory_analysis()``: the temporaries (``temp``) and the
footprint (temp + outputs).  Contenders: ``jaxloss.linear_softmax_cross_entropy`` (per-token
losses, blockwise over the vocabulary, never more than ``B × block_size`` logits),
``jaxloss.linear_softmax_cross_entropy_mean`` (the mean, its gradient formed in the forward over
blocks of tokens), optax's ``softmax_cross_entropy_with_integer_labels(h @ w, y)``
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
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import optax

import jaxloss

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import cpu_ticks, interleaved_times, machine, others_note, others_share  # noqa: E402

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


def _cpu_seconds(compiled, args, repeats):
    """Process CPU seconds (all threads) per call, the contenders in rotation: on a shared machine
    wall time also measures the other processes' share of the cores, CPU time much less."""
    names, seconds = list(compiled), {name: [] for name in compiled}
    for rep in range(repeats):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            start = time.process_time()
            jax.block_until_ready(compiled[name](*args))
            seconds[name].append(time.process_time() - start)
    return seconds


def run_size(size, dtype, repeats, block_size, max_temp, cpu_time=False):
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
    runs = interleaved_times(compiled, (h, w, y), repeats=repeats, warmup=1 if repeats < 3 else 2)
    others = others_share(ticks, cpu_ticks(), sum(os.times()[:2]) - sum(times[:2]))
    cpu = _cpu_seconds(compiled, (h, w, y), repeats) if cpu_time else {}
    # Median milliseconds right after a call of its own and right after another contender's;
    # the goal is judged on the worse, and each repetition's ratio to optax gives the spread.
    ms = {k: tuple(1e3 * statistics.median(series) for series in v) for k, v in runs.items()}
    worse = {k: max(v) for k, v in ms.items()}
    flops = 6 * b * hidden * vocab
    rows = []
    for name in temp:
        t = ms.get(name)
        if t is not None and "optax" in ms:
            ratios = [x / o for mine, base in zip(runs[name], runs["optax"]) for x, o in zip(mine, base)]
            ratio = f"{t[0] / ms['optax'][0]:.2f} / {t[1] / ms['optax'][1]:.2f}"
            spread = f"{min(ratios):.2f}–{max(ratios):.2f}"
        else:
            ratio = spread = "–"
        cells = [name, f"{b}×{hidden}×{vocab}", "–" if t is None else f"{t[0]:.0f} / {t[1]:.0f}", ratio, spread,
                 f"{temp[name] / 2**20:.1f}", f"{temp[name] / temp['optax']:.3f}",
                 f"{footprint[name] / 2**20:.1f}", "–" if t is None else f"{flops / max(t) / 1e6:.0f}"]
        if cpu_time:
            cells.insert(5, "–" if t is None else
                         f"{statistics.median(cpu[name]) / statistics.median(cpu['optax']):.2f} "
                         f"({min(a / b for a, b in zip(cpu[name], cpu['optax'])):.2f}–"
                         f"{max(a / b for a, b in zip(cpu[name], cpu['optax'])):.2f})")
        rows.append("| " + " | ".join(cells) + " |")
    verdicts = []
    for ours in ("jaxloss", "jaxloss mean") if size in GOALS else ():
        temp_goal, time_goal = GOALS[size]
        ok = temp[ours] <= temp_goal
        parts = [f"temp {temp[ours] / 2**20:.1f} MiB (≤ {temp_goal / 2**20:.0f})"]
        if time_goal is not None and ours in ms and "optax" in ms:
            ratio = worse[ours] / worse["optax"]
            ok = ok and ratio <= time_goal
            parts.append(f"time ×{ratio:.2f} optax, the worse of both ways (≤ {time_goal})")
            if cpu_time:
                parts.append(f"CPU time ×{statistics.median(cpu[ours]) / statistics.median(cpu['optax']):.2f}")
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
    parser.add_argument("--cpu-time", action="store_true",
                        help="also time process CPU seconds per call (another round of --repeats calls)")
    parser.add_argument("--max-temp-gib", type=float, default=4.0,
                        help="compile but do not run contenders needing more temporaries (default 4)")
    args = parser.parse_args(argv)

    sizes = [tuple(s) for s in args.size] if args.size else list(SIZES)
    head = ["contender", "B×H×V", "median ms (own / other)", "time ×optax (own / other)", "×optax range",
            "temp MiB", "temp ×optax", "footprint MiB", "GFLOP/s (6BHV)"]
    if args.cpu_time:
        head.insert(5, "CPU time ×optax (range)")
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    verdicts, notes = [], []
    for size in sizes:
        repeats = args.repeats if size[0] * size[1] * size[2] < 2**38 else 1
        rows, size_verdicts, others = run_size(size, jnp.dtype(args.dtype), repeats, args.block_size,
                                               args.max_temp_gib * 2**30, args.cpu_time)
        lines += rows
        verdicts += size_verdicts
        notes.append(f"{size}: median of {repeats}{others_note(others)}")
    title = (f"value_and_grad w.r.t. hidden and weight of the mean loss, {args.dtype}, "
             f"jax {jax.__version__}, optax {optax.__version__}, {machine()}; "
             f"'–': not run (temp over {args.max_temp_gib:g} GiB)")
    table = "\n".join([title, "", *lines, "", *verdicts, *(f"- {n}" for n in notes)])
    print(table)
    return table


if __name__ == "__main__":
    main()
