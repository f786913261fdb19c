"""Measurement helpers shared by the benchmark scripts: compiled footprint and interleaved timing."""

from __future__ import annotations

import datetime
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable, Mapping

import jax
import jaxlib

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def compile_with_footprint(fn: Callable, *args) -> tuple[Callable, int]:
    """``jax.jit(fn)`` compiled for ``args``, and its footprint in bytes (temporaries + outputs)."""
    compiled = jax.jit(fn).lower(*args).compile()
    memory = compiled.memory_analysis()
    return compiled, memory.temp_size_in_bytes + memory.output_size_in_bytes


def interleaved_times(fns: Mapping[str, Callable], args, *, repeats: int,
                      warmup: int = 2) -> dict[str, tuple[list[float], list[float]]]:
    """Seconds per call of each function, timed both ways: ``(after_other, after_own)``.

    Each repetition runs every contender twice in a row, both calls timed: the first follows
    a call of another contender (a training step does not give the loss a cache warmed by
    itself, and a call after one that freed a large temporary pays for mapping that memory
    again), the second follows a call of its own.  With three or more contenders the order
    rotates by one each repetition, so the first call follows a different contender in turn
    and slow drift of the machine (thermal, other load) falls on all of them alike; two
    simply alternate (a rotation would put a contender after itself).
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            jax.block_until_ready(fns[name](*args))
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for rep in range(repeats):
        shift = rep % len(names) if len(names) > 2 else 0
        for name in names[shift:] + names[:shift]:
            for series in times[name]:
                start = time.perf_counter()
                jax.block_until_ready(fns[name](*args))
                series.append(time.perf_counter() - start)
    return times


def interleaved_medians(fns: Mapping[str, Callable], args, *, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, each timed call directly following a call of
    its own, as in a training loop that repeats one step (see :func:`interleaved_times`)."""
    times = interleaved_times(fns, args, repeats=repeats, warmup=warmup)
    return {name: statistics.median(after_own) for name, (_, after_own) in times.items()}


def machine() -> str:
    """The device that runs the default backend: the GPU's kind, or the CPU model and core count."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        return f"{device.device_kind} ({jax.device_count()} × {device.platform})"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def device_memory() -> int:
    """Bytes of memory of the default device: the accelerator's limit, or the machine's RAM."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return stats["bytes_limit"]
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cpu_ticks():
    """(idle, total) jiffies of the whole machine from /proc/stat, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return None
    return ticks[3] + ticks[4], sum(ticks)


def others_share(before, after, own_seconds):
    """Share of the machine's CPU time used by other processes between two snapshots (None
    when the window is too short, under 100 ticks, for the jiffy counts to mean anything)."""
    if before is None or after is None or after[1] - before[1] < 100:
        return None
    busy = (after[1] - before[1]) - (after[0] - before[0])
    own = own_seconds * os.sysconf("SC_CLK_TCK")
    return max(0.0, busy - own) / (after[1] - before[1])


def measure(objectives: Mapping[str, Callable], args, *, repeats: int):
    """Compile each objective for ``args`` and time them interleaved.

    Returns ``(ms, footprint, others)``: median milliseconds and footprint bytes per contender,
    and the share of the CPU other processes used while timing (None when unknown).
    """
    compiled, footprint = {}, {}
    for name, fn in objectives.items():
        compiled[name], footprint[name] = compile_with_footprint(fn, *args)
    ticks, times = cpu_ticks(), os.times()
    ms = {k: 1e3 * v for k, v in interleaved_medians(compiled, args, repeats=repeats).items()}
    own = sum(os.times()[:2]) - sum(times[:2])
    return ms, footprint, others_share(ticks, cpu_ticks(), own)


def ratio_table(ms, footprint, baselines) -> list[str]:
    """Markdown rows: each contender's median time and footprint, and both as ratios to each
    baseline contender."""
    head = ["contender", "median ms", *(f"time ×{b}" for b in baselines), "footprint MiB",
            *(f"footprint ×{b}" for b in baselines)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for name in ms:
        cells = [name, f"{ms[name]:.2f}", *(f"{ms[name] / ms[b]:.2f}" for b in baselines),
                 f"{footprint[name] / 2**20:.1f}", *(f"{footprint[name] / footprint[b]:.2f}" for b in baselines)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def others_note(others) -> str:
    return "" if others is None else f"; other processes used {100 * others:.0f}% of the CPU while timing"


def add_run_options(parser, quick: str) -> None:
    """The options every script shares, which ``python -m jaxloss bench all`` passes: ``--quick``
    (the script's quick run, described by ``quick``), ``--scale`` and ``--write [DIR]``."""
    parser.add_argument("--quick", action="store_true", help=f"a quick run: {quick}")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the problem sizes by this (default 1; a CPU smoke run: 0.01)")
    parser.add_argument("--write", nargs="?", const=str(RESULTS), metavar="DIR",
                        help="also write the report to DIR/<script>-<backend>.md (DIR: benchmarks/results)")


def scaled(n: int, scale: float, least: int = 4) -> int:
    """``n × scale`` rounded, at least ``least`` (``n`` itself at scale 1)."""
    return n if scale == 1 else max(least, round(n * scale))


def header(name: str, argv) -> str:
    """A results file's heading: the script, backend, device, versions, date and command."""
    command = " ".join(["python -m jaxloss bench", name, *(argv if argv is not None else sys.argv[1:])])
    return (f"# {name}, {jax.default_backend()}\n\n- Device: {machine()}; jax {jax.__version__}, "
            f"jaxlib {jaxlib.__version__}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
            f"- Command: `{command}`\n\n")


def write_report(name: str, report: str, directory, argv=None, *, titled: bool = False) -> pathlib.Path:
    """Write ``report`` to ``directory/<name>-<backend>.md`` (under :func:`header` unless it is
    ``titled`` already) and return the path."""
    path = pathlib.Path(directory) / f"{name}-{jax.default_backend()}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("" if titled else header(name, argv)) + report.rstrip("\n") + "\n")
    return path


def plot_footprints(curves: Mapping[str, list[tuple[int, int]]], path, *, unit: tuple[str, int], ylabel: str,
                    title: str) -> None:
    """Save a log-log plot of each curve's ``(batch size, footprint in bytes)`` points in ``unit``
    (its name and bytes, e.g. ``("GiB", 2**30)``); empty curves are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, points in curves.items():
        if points:
            ns, footprint = zip(*points)
            ax.loglog(ns, [f / unit[1] for f in footprint], marker="o", label=label)
    ax.set_xlabel("batch size N")
    ax.set_ylabel(f"{ylabel} ({unit[0]})")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
