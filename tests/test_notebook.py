"""examples/quickstart.ipynb runs top to bottom in a kernel from this environment.

The kernel is a separate process (its own JAX, one CPU device), started in the repository root
with ``QUICKSTART_WORKDIR`` pointing into ``tmp_path`` so the test can read the export back.
"""

import json
import os
import sys

import numpy as np
import pytest

import ipykernel  # noqa: F401  (the kernel the notebook runs in; requirements-test.txt)
import nbclient
import nbformat
from jupyter_client import kernelspec  # installed with nbclient
from jupyter_client import manager

from configs import common
from larp_jax import export
import xla_env  # tests/xla_env.py

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO_ROOT, "examples", "quickstart.ipynb")
MARKER = "QUICKSTART OK"
KERNEL_NAME = "larp_jax_test"


def _kernel_manager(kernels_dir: str) -> manager.AsyncKernelManager:
  """A kernel on this interpreter (``sys.executable``), whatever kernelspecs the user has."""
  spec_dir = os.path.join(kernels_dir, KERNEL_NAME)
  os.makedirs(spec_dir)
  with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
    json.dump(
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "larp_jax (test)",
            "language": "python",
        },
        f,
    )
  specs = kernelspec.KernelSpecManager(kernel_dirs=[kernels_dir], ensure_native_kernel=False)
  return manager.AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)


def _kernel_env(workdir: str) -> dict[str, str]:
  env = dict(os.environ)
  env.update(
      {
          # conftest gives the pytest process 8 fake devices; the notebook's user has one.
          "XLA_FLAGS": xla_env.xla_flags(1),
          "JAX_PLATFORMS": "cpu",
          "TF_CPP_MIN_LOG_LEVEL": "3",
          "QUICKSTART_WORKDIR": workdir,
          "IPYTHONDIR": os.path.join(os.path.dirname(workdir), "ipython"),
          "PYTHONPATH": os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p),
      }
  )
  return env


def _text(cell) -> str:
  parts = []
  for output in cell.get("outputs", []):
    if output.get("output_type") == "stream":
      parts.append(output.get("text", ""))
    elif "data" in output:
      parts.append(output["data"].get("text/plain", ""))
  return "".join(parts)


def test_committed_notebook_has_no_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  code = [cell for cell in nb.cells if cell.cell_type == "code"]
  assert code, "the notebook has no code cells"
  for cell in code:
    assert (
        not cell.outputs and cell.execution_count is None
    ), f"commit examples/quickstart.ipynb without outputs (cell: {cell.source[:60]!r})"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
  # Connection files and kernelspec lookups stay inside tmp_path.
  monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
  monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
  workdir = str(tmp_path / "work")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
      nb,
      km=_kernel_manager(str(tmp_path / "kernels")),
      timeout=300,
      resources={"metadata": {"path": REPO_ROOT}},
  )  # the kernel's cwd
  client.execute(env=_kernel_env(workdir))  # raises CellExecutionError naming a failing cell

  code = [cell for cell in nb.cells if cell.cell_type == "code"]
  for cell in code:
    assert cell.execution_count is not None, f"cell not executed: {cell.source[:60]!r}"
    errors = [o for o in cell.outputs if o.get("output_type") == "error"]
    assert not errors, f"cell {cell.source[:60]!r} raised {errors[0].get('ename')}"
  assert MARKER in _text(code[-1]), _text(code[-1])
  assert "state = None | same history: True" in "".join(_text(c) for c in code)

  # The export the notebook wrote round-trips outside the kernel.
  path = os.path.join(workdir, "export", "token_embeddings.npz")
  assert os.path.exists(path) and os.path.exists(path + ".manifest.json")
  ids, arrays, manifest = export.load_embeddings(path)
  config = common.load_config("toy:test")
  shape = (config.data.vocab_size, config.model.embed_dim)
  assert list(arrays) == ["token"] and arrays["token"].shape == shape
  assert arrays["token"].dtype == np.float32 and np.isfinite(arrays["token"]).all()
  assert list(ids) == [f"token_{i}" for i in range(shape[0])]
  assert manifest["arrays"] == {"token": list(shape)} and manifest["job"] == "toy"
  assert os.path.isdir(manifest["checkpoint"])
  assert manifest["checkpoint"].startswith(os.path.join(workdir, "toy", "checkpoints"))
