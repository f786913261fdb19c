"""Measurement helpers shared by the benchmark scripts: compiled footprint and interleaved timing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import jax


def compile_with_footprint(fn: Callable, *args) -> tuple[Callable, int]:
    """``jax.jit(fn)`` compiled for ``args``, and its footprint in bytes (temporaries + outputs)."""
    compiled = jax.jit(fn).lower(*args).compile()
    memory = compiled.memory_analysis()
    return compiled, memory.temp_size_in_bytes + memory.output_size_in_bytes


def interleaved_medians(fns: Mapping[str, Callable], args, *, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each function, the contenders taking turns in every repetition.

    Each repetition runs every contender, starting from a rotating position, so slow drift of
    the machine (thermal, other load) falls on all of them alike.  Each timed call directly
    follows an untimed call of the same function, as in a training loop that repeats one step:
    otherwise a contender's time would depend on which one ran before it (a call after one
    that freed a large temporary pays for mapping that memory again).
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            jax.block_until_ready(fns[name](*args))
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            jax.block_until_ready(fns[name](*args))
            start = time.perf_counter()
            jax.block_until_ready(fns[name](*args))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
