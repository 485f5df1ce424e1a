"""Test setup: 8 fake CPU devices before JAX initialises."""

from importlib import metadata
import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _jaxlib_at_least(major, minor):
  version = metadata.version("jaxlib").split(".")
  return tuple(int(v) for v in version[:2]) >= (major, minor)


# XLA:CPU aborts the whole process (SIGABRT, a crashed test worker) when the
# devices of one collective reach it more than 40 s apart, its default. The
# suite runs 8 fake devices per worker, 2 workers and the runs they start on
# 2 cores, so one device's thread can lag that long with nothing wrong (the
# likeliest reason the CI run at 986db99 lost a worker to SIGABRT; its
# message was not kept). Warn after 2 minutes, abort
# after 10 (a real deadlock still ends). jaxlib 0.9 has both flags; an
# unknown flag in XLA_FLAGS is fatal, hence the version check.
COLLECTIVE_TIMEOUT_FLAGS = (
    "--xla_cpu_collective_call_warn_stuck_timeout_seconds=120",
    "--xla_cpu_collective_call_terminate_timeout_seconds=600",
) if _jaxlib_at_least(0, 9) else ()

flags = os.environ.get("XLA_FLAGS", "").split()
if not any("xla_force_host_platform_device_count" in f for f in flags):
  flags.append("--xla_force_host_platform_device_count=8")
for flag in COLLECTIVE_TIMEOUT_FLAGS:
  if not any(f.split("=")[0] == flag.split("=")[0] for f in flags):
    flags.append(flag)
os.environ["XLA_FLAGS"] = " ".join(flags)

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


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs_after_each_module():
  """A test worker runs hundreds of modules; each compiled CPU program keeps
  its machine code mapped. Past the kernel's limit of memory mappings
  (vm.max_map_count, 65530) LLVM fails with 'Cannot allocate memory' and
  the worker segfaults (seen in a local CI run). Dropping JAX's in-memory
  caches after each module unmaps them; the persistent cache keeps
  recompiling cheap."""
  yield
  jax.clear_caches()
