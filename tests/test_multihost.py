"""Beyond one host: two processes with 4 CPU devices each, joined by ``jax.distributed`` over
localhost with gloo collectives, run the sharded losses over the 8 global devices — InfoNCE
(blockwise, sharded, with a queue), multiple-negatives ranking with hard negatives, CLIP, the
vocabulary-parallel linear cross-entropy, the class-sharded ArcFace and a Partial FC step with
``reduce.mean(axis_name=)`` — and give the dense one-process values and gradients.

The cases and the worker program are tests/_multihost_worker.py. A failure to start gloo or
the distributed runtime fails the test with the workers' output: it is not skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import _multihost_worker as worker

pytestmark = pytest.mark.full

WORKER = Path(__file__).with_name("_multihost_worker.py")
TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _environment() -> dict[str, str]:
    """This process's environment with 4 CPU devices instead of the 8 of tests/conftest.py; the
    LLVM optimisation level 0 makes the workers' compile a third shorter (tiny programs)."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith(("--xla_force_host_platform_device_count", "--xla_backend_optimization_level"))]
    flags += ["--xla_force_host_platform_device_count=4", "--xla_backend_optimization_level=0"]
    return {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}


def _start(tmp_path: Path) -> list[tuple[subprocess.Popen, Path]]:
    port, env = _free_port(), _environment()
    workers = []
    for i in range(2):
        log = tmp_path / f"process_{i}.log"
        with open(log, "w") as out:
            workers.append((subprocess.Popen([sys.executable, str(WORKER), str(i), str(port), str(tmp_path)],
                                             env=env, stdout=out, stderr=subprocess.STDOUT), log))
    return workers


def _wait(workers: list[tuple[subprocess.Popen, Path]]) -> None:
    """Wait for both workers; on the first failure, or after TIMEOUT_S, stop the other (which
    would wait for its peer) and fail with both outputs."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        codes = [p.poll() for p, _ in workers]
        failed = any(c not in (None, 0) for c in codes)
        late = time.monotonic() > deadline
        if all(c == 0 for c in codes):
            return
        if failed or late:
            for p, _ in workers:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            logs = "\n".join(f"--- process {i} (exit {p.returncode}):\n{log.read_text()[-4000:]}"
                             for i, (p, log) in enumerate(workers))
            reason = f"timed out after {TIMEOUT_S} s" if late and not failed else "failed"
            pytest.fail(f"two-process jax.distributed run (gloo collectives) {reason}:\n{logs}", pytrace=False)
        time.sleep(0.1)


def _close(ours: np.ndarray, theirs: np.ndarray, what: str, rtol: float = 1e-5) -> None:
    """Each element within ``rtol`` of its own size or of the array's largest (float32 rounding of
    a sum scales with its largest terms); NaN fails."""
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, (what, ours.shape, theirs.shape)
    atol = max(1e-7, rtol * float(np.max(np.abs(theirs), initial=0.0)))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, equal_nan=False, err_msg=what)


def test_two_processes_over_gloo_give_the_one_process_values_and_gradients(tmp_path):
    workers = _start(tmp_path)
    try:
        dense = worker.run(None, lambda x, spec: x)  # computed while the workers start
    except BaseException:
        for p, _ in workers:
            p.kill()
            p.wait()
        raise
    _wait(workers)
    results = [dict(np.load(tmp_path / f"process_{i}.npz")) for i in range(2)]
    assert sorted(results[0]) == sorted(dense), (sorted(results[0]), sorted(dense))
    for name, expected in dense.items():
        assert np.all(np.isfinite(expected)), name
        np.testing.assert_array_equal(results[1][name], results[0][name], err_msg=f"{name}: the processes differ")
        _close(results[0][name], expected, name)
    # Every case reached each of its inputs (a gradient of zeros would pass vacuously).
    for name, make in worker.CASES.items():
        for i in make().wrt:
            assert np.any(dense[f"{name}/grad{i}"] != 0), (name, i)
