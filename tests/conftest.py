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


@pytest.fixture
def x64():
    """Run the test with 64-bit types enabled (float64 references)."""
    with jax.enable_x64(True):
        yield
