"""XLA flags for the test processes (conftest's and the subprocesses tests launch).

Compilation dominates these tiny runs on a 2-core CPU, so LLVM's backend optimisation is off
(``--xla_backend_optimization_level=0``): the HLO passes still run and the numbers are the same
to float32 rounding; kernels are slower, compiles much faster (the suite ~20% shorter).
"""

FAST_COMPILE = "--xla_backend_optimization_level=0"


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a test process with ``devices`` fake CPU devices."""
  return f"--xla_force_host_platform_device_count={int(devices)} {FAST_COMPILE}"
