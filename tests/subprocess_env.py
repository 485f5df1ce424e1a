"""The environment for runs a test starts as subprocesses."""

import os


def child_env(num_devices: int | None = None) -> dict[str, str]:
  """This session's environment for a child process on the CPU.

  The session forces 8 fake devices (conftest.py); a child gets
  ``num_devices`` of them, or JAX's default of one when None, as a user's
  run would. Every other XLA flag (the collective timeouts) is kept.
  """
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if "xla_force_host_platform_device_count" not in f]
  if num_devices is not None:
    flags.append(f"--xla_force_host_platform_device_count={num_devices}")
  env["XLA_FLAGS"] = " ".join(flags)
  return env
