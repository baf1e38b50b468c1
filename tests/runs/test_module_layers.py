"""The modules of apps/runs form a one-way chain (docs/architecture.md, "Inside apps/runs"): no import
cycle, no import hidden inside a function (where a cycle would hide), and the executor backends know no job."""

import ast
import graphlib
from pathlib import Path

RUNS = Path(__file__).resolve().parents[2] / "apps" / "runs"
MODULES = {path.stem: path for path in RUNS.glob("*.py") if path.stem != "__init__"}
# Function-local imports with a framework reason given in a comment beside them.
LOCAL_IMPORTS_ALLOWED = {"apps"}  # RunsConfig.ready(): models need the app registry


def _imports(path: Path) -> tuple[set[str], list[int]]:
    """(apps.runs modules imported, line numbers of imports inside functions)."""
    tree = ast.parse(path.read_text())
    inner = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
             for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))}
    targets, local = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [node.module] if node.module else [alias.name for alias in node.names]
            elif node.module == "apps.runs":
                names = [alias.name for alias in node.names]
            elif (node.module or "").startswith("apps.runs."):
                names = [node.module.split(".")[2]]
            else:
                names = []
            targets |= {name.split(".")[0] for name in names} & set(MODULES)
        if isinstance(node, ast.Import):
            targets |= {alias.name.split(".")[2] for alias in node.names if alias.name.startswith("apps.runs.")}
        if id(node) in inner:
            local.append(node.lineno)
    return targets - {path.stem}, local


GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def test_no_import_cycle_between_runs_modules():
    order = list(graphlib.TopologicalSorter({name: deps for name, (deps, _) in GRAPH.items()}).static_order())
    assert set(order) == set(MODULES)


def test_no_function_local_imports_in_runs():
    local = {name: lines for name, (_, lines) in GRAPH.items() if lines and name not in LOCAL_IMPORTS_ALLOWED}
    assert local == {}


def test_the_layers_point_one_way():
    deps = {name: deps for name, (deps, _) in GRAPH.items()}
    assert deps["dispatch"] == set()  # knows how to run a job, not what any job does
    assert "tasks" not in set().union(*deps.values())  # tasks are sent by name
    assert not deps["execution"] & {"services", "lifecycle", "dispatch", "callbacks"}
    assert not deps["lifecycle"] & {"services", "recovery", "sse", "modes"}
    assert not deps["serializers"] - {"models"} and not deps["events"] - {"models"}
