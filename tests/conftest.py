"""Test configuration: 8 simulated CPU devices for the sharded tests, and the two tiers.

XLA reads XLA_FLAGS once, when the backend starts, so this runs before jax is imported.

Tiers: ``pytest`` runs the fast tier; ``pytest --full`` the full matrix.  The full tier adds
the tests marked ``full`` (the peer suites of tests/peer/, the notebooks, heavy checks) and
every test parametrised with a bfloat16 or float16 dtype; the fast tier checks every loss in
both modes at one dtype (float32 or float64) with the small hypothesis profile.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

_LOW_PRECISION = ("bfloat16", "float16")


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="run the full tier: all dtypes, peer suites, notebooks, more hypothesis examples")
    parser.addoption("--full-only", action="store_true",
                     help="with --full: only the tests the fast tier leaves out (for CI, after the fast tier)")


def _full_only(item) -> bool:
    """Whether ``item`` belongs to the full tier only: marked ``full``, or parametrised with a
    bfloat16 / float16 dtype (as a dtype object, a dtype name, or in its id)."""
    if item.get_closest_marker("full"):
        return True
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    for value in callspec.params.values():
        if isinstance(value, str):
            name = value
        else:
            dtype = value if isinstance(value, np.dtype | type) else getattr(value, "dtype", None)
            try:
                name = np.dtype(dtype).name if dtype is not None else ""
            except TypeError:
                name = ""
        if name in _LOW_PRECISION:
            return True
    return any(name in callspec.id for name in _LOW_PRECISION)


def pytest_configure(config):
    if config.getoption("--full") and "JAXLOSS_HYPOTHESIS_PROFILE" not in os.environ:
        settings.load_profile("full")


def pytest_collection_modifyitems(config, items):
    """The fast tier deselects the full tier's tests; ``--full`` keeps every test,
    ``--full-only`` only the full tier's (CI runs the fast tier, then these)."""
    full, only = config.getoption("--full"), config.getoption("--full-only")
    if full and not only:
        return
    kept, deselected = [], []
    for item in items:
        (deselected if _full_only(item) != only else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


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
# default; "full" (more, derandomised) with --full; "heavy", many random ones:
# JAXLOSS_HYPOTHESIS_PROFILE=heavy python -m pytest ...
from hypothesis import HealthCheck, settings

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("ci", max_examples=4, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW)
settings.register_profile("full", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=_SLOW)
settings.register_profile("heavy", max_examples=200, deadline=None, suppress_health_check=_SLOW)
settings.load_profile(os.environ.get("JAXLOSS_HYPOTHESIS_PROFILE", "ci"))
