"""Test setup: 8 fake CPU devices before JAX initialises."""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
  os.environ["XLA_FLAGS"] = (
      flags + " --xla_force_host_platform_device_count=8").strip()

# XLA's persistent compilation cache, shared by the test workers and the
# runs they start as subprocesses (crash tests, notebooks, two-process
# runs), which compile the same steps again and again. Entries are keyed
# by the computation, the flags and the JAX version, so a change in the code
# is a new entry, never a stale one.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), "clusterax-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
