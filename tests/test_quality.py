"""The package stays typed (mypy) and lint-clean (ruff): checked with the rest of the suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_package_is_mypy_clean():
    pytest.importorskip("mypy")
    r = _run("mypy", "clusterpool")
    assert r.returncode == 0, r.stdout + r.stderr


def test_tree_is_ruff_clean():
    if shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists():
        pytest.skip("ruff not installed")
    r = _run("ruff", "check", "clusterpool", "tests", "scripts")
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_ships_py_typed():
    assert (ROOT / "clusterpool" / "py.typed").exists()


def _imports(path: Path, package: str, runtime_only: bool = False) -> set[str]:
    """The package-relative modules a module imports (TYPE_CHECKING imports included unless
    `runtime_only`); a name taken from a package's `__init__` (`from . import __version__`) is
    an import of the package."""
    import ast

    def walk(node: ast.AST):
        for child in ast.iter_child_nodes(node):
            if (runtime_only and isinstance(child, ast.If) and isinstance(child.test, ast.Name)
                    and child.test.id == "TYPE_CHECKING"):
                continue
            yield child
            yield from walk(child)

    out: set[str] = set()
    for node in walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            if node.module:
                out.add(".".join([*base, node.module]))
            else:
                for a in node.names:
                    module = ".".join([*base, a.name])
                    is_module = (ROOT.joinpath(*module.split(".")).with_suffix(".py").exists()
                                 or ROOT.joinpath(*module.split("."), "__init__.py").exists())
                    out.add(module if is_module else ".".join(base))
    return out


def _import_graph(runtime_only: bool = False) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "clusterpool").rglob("*.py"):
        rel = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        name = rel.removesuffix(".__init__")
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = _imports(path, package, runtime_only)
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_the_package_has_no_import_cycles():
    graph = _import_graph()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for d in graph[start]:
            if d == goal or (d not in seen and (seen.add(d) or reaches(d, goal, seen))):
                return True
        return False

    cyclic = sorted(m for m in graph if reaches(m, m, set()))
    assert cyclic == [], f"modules in import cycles: {cyclic}"


def _private_reach_ins() -> list[str]:
    """Reads of another object's `_private` attribute (not self's, cls's or super()'s)."""
    import ast

    hits = []
    for path in sorted((ROOT / "clusterpool").rglob("*.py")):
        if path.name == "_redispy.py":  # the seam to redis-py's internals (tests/unit/test_redispy_seam.py)
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name, receiver = None, None
            if isinstance(node, ast.Attribute):
                name, receiver = node.attr, node.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                name, receiver = node.args[1].value, node.args[0]
            if not name or not name.startswith("_") or name.startswith("__"):
                continue
            if isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"):
                continue
            if isinstance(receiver, ast.Call) and getattr(receiver.func, "id", None) == "super":
                continue
            hits.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    return hits


def test_objects_rarely_read_each_others_private_state():
    """At most 10 places, and those on an object of the reader's own class (a view's copy)."""
    hits = _private_reach_ins()
    assert len(hits) <= 10, "reads of another object's private state:\n" + "\n".join(hits)


# The sync client's I/O: the asyncio client must stand on the shared core without them.
SYNC_DRIVER = {"client", "router", "fanout", "nodeapi", "dropin", "core", "refresh", "health", "connection",
               "pool", "pipeline", "transaction", "pubsub", "sublinks", "discovery", "inspection", "multikey"}


def test_the_asyncio_client_reaches_no_sync_driver_module():
    graph = _import_graph(runtime_only=True)
    seen: set[str] = set()
    todo = [m for m in graph if m.startswith("clusterpool.asyncio")]
    while todo:
        m = todo.pop()
        if m in seen or m not in graph:
            continue
        seen.add(m)
        todo.extend(d for d in graph[m] if d != "clusterpool")  # the package __init__ re-exports both
    reached = sorted(m for m in seen if m.removeprefix("clusterpool.") in SYNC_DRIVER)
    assert reached == [], f"clusterpool.asyncio reaches sync driver modules: {reached}"
