"""House order, checked on the source: no import cycles, configs as data, models free of data
and decoder code, no file over 600 lines."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("larp_jax", "data_pipelines", "configs", "experiments", "benchmarks")


def _modules() -> dict[str, str]:
  """Dotted module name -> file path of every project module."""
  out = {}
  for package in PACKAGES:
    for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(dirpath, name)
          rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
          out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = path
  return out


def _imports(path: str, module: str, modules: dict[str, str]) -> set[str]:
  """Project modules imported anywhere in the file (module level or inside functions)."""
  tree = ast.parse(open(path).read(), path)
  found = set()
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
      names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    for name in names:
      if name in modules and name != module:
        found.add(name)
  return found


def _graph() -> dict[str, set[str]]:
  modules = _modules()
  return {m: _imports(p, m, modules) for m, p in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_cycle_finder_finds_a_cycle():
  assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_project_modules():
  graph = _graph()
  assert len(graph) > 50  # the walk found the project
  assert _cycles(graph) == []


def test_configs_import_only_ml_collections_and_common():
  modules = _modules()
  for module, path in modules.items():
    if not module.startswith("configs.") or module == "configs.common":
      continue
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        names = [f"{node.module}.{a.name}" for a in node.names]
      else:
        continue
      for name in names:
        assert (
            name.split(".")[0] in ("ml_collections", "__future__") or name == "configs.common"
        ), f"{path} imports {name}"


@pytest.mark.parametrize(
    "forbidden",
    [
        "data_pipelines",
        "larp_jax.decoding",
        "larp_jax.evaluation",
        "larp_jax.jobs",
        "larp_jax.training",
    ],
)
def test_models_import_no_data_decoder_or_job_code(forbidden):
  graph = _graph()
  for module, imported in graph.items():
    if module.startswith("larp_jax.models"):
      bad = [m for m in imported if m == forbidden or m.startswith(forbidden + ".")]
      assert not bad, f"{module} imports {bad}"


def test_no_file_over_600_lines():
  long = []
  for package in ("larp_jax", "data_pipelines", "configs", "experiments"):
    for dirpath, _, files in os.walk(os.path.join(ROOT, package)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(dirpath, name)
          lines = sum(1 for _ in open(path))
          if lines > 600:
            long.append((os.path.relpath(path, ROOT), lines))
  assert not long, long
