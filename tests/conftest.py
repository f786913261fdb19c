"""Test configuration: 8 simulated CPU devices for the sharded tests.

XLA reads XLA_FLAGS once, when the backend starts, so this runs before jax is imported.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mesh():
    """A one-axis ("x") mesh of the 8 simulated CPU devices, for the sharded tests."""
    import numpy as np
    from jax.sharding import Mesh

    devices = jax.devices("cpu")
    if len(devices) < 8:
        pytest.skip(f"needs 8 CPU devices (XLA_FLAGS above), got {len(devices)}")
    return Mesh(np.array(devices[:8]), ("x",))


@pytest.fixture
def x64():
    """Run the test with 64-bit types enabled (float64 references)."""
    with jax.enable_x64(True):
        yield


# Hypothesis profiles (tests/test_robustness.py): "ci", few derandomised examples per loss, by
# default; "heavy", many random ones: JAXLOSS_HYPOTHESIS_PROFILE=heavy python -m pytest ...
from hypothesis import HealthCheck, settings

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=10, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW)
settings.register_profile("heavy", max_examples=200, deadline=None, suppress_health_check=_SLOW)
settings.load_profile(os.environ.get("JAXLOSS_HYPOTHESIS_PROFILE", "ci"))
