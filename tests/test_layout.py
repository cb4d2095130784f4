"""The package's shape: qcore is the sub-packages of :data:`ORDER` (no module at its top level), a module imports
only its own package and those before it (function-level imports included), there is no cycle, no module is
over 400 lines, every module of qcore says what it exports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "qcore"
# qcore's packages from the bottom up (docs/architecture.md): a module may import its own package and the ones
# before it in this list, never one after it.
ORDER = ["env", "guards", "quant", "data", "metrics", "nets", "backends", "ptq", "qat", "runs", "cluster", "service",
         "learn", "layers", "doctor", "present", "cli"]
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The qcore modules ``path`` imports, anywhere in it (functions too): ``from . import x`` names the
    submodule ``x`` when there is one, else the package; importing ``a.b`` is an edge to ``a.b`` only."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif target in known:
                    out.add(target)
    out.discard(name)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_its_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_parser_sees_relative_and_function_level_imports(tmp_path, monkeypatch):
    mods = _modules()
    known = set(mods)
    assert "qcore.nets.train" in imports_of(mods["qcore.nets.weights"], known)
    assert {"qcore.data.base", "qcore.nets.models"} <= imports_of(mods["qcore.nets.train"], known)
    assert "qcore.backends.fx_int8" in imports_of(mods["qcore.backends"], known)  # inside a function


def _rank(module: str) -> int:
    """Where ``module``'s package stands in :data:`ORDER`; ``qcore`` itself and ``qcore.__main__`` stand outside it
    (the root imports nothing; ``python -m qcore`` is the CLI's door, above everything)."""
    parts = module.split(".")
    if len(parts) == 1:
        return -1
    return len(ORDER) if parts[1] == "__main__" else ORDER.index(parts[1])


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every (module, imported) where the imported module's package comes after the importer's in :data:`ORDER`."""
    return sorted((name, dep) for name, deps in graph.items() for dep in deps if _rank(dep) > _rank(name))


def test_the_upward_check_finds_an_upward_import():
    # what the sweep did before the regrouping: it reached up into layers to check keep_float's names
    graph = {"qcore.runs.sweep": {"qcore.layers.names", "qcore.backends"}, "qcore.layers.walk": {"qcore.runs.sweep"}}
    assert upward_imports(graph) == [("qcore.runs.sweep", "qcore.layers.names")]


def test_qcore_is_its_packages_and_nothing_else():
    packages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert packages == sorted(ORDER), f"qcore's packages are {packages}; tests/test_layout.py's ORDER says {ORDER}"
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"modules at qcore's top level: {loose}; put each in the package of its concern"


def test_no_module_imports_a_package_above_its_own():
    mods = _modules()
    graph = {name: imports_of(path, set(mods)) for name, path in mods.items()}
    upward = upward_imports(graph)
    assert not upward, "imports that point up (see ORDER): " + ", ".join(f"{a} -> {b}" for a, b in upward)


def test_the_architecture_doc_lists_the_packages_in_order():
    text = (ROOT / "docs" / "architecture.md").read_text()
    listed = re.findall(r"^\| \d+ \| `(\w+)/` \|", text, flags=re.M)
    assert listed == ORDER, f"docs/architecture.md lists {listed}; ORDER is {ORDER}"
    for package in ORDER:  # and each package says what it holds
        doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"qcore/{package}/__init__.py has no docstring saying what it holds"


def test_qcore_has_no_import_cycle():
    mods = _modules()
    graph = {name: imports_of(path, set(mods)) for name, path in mods.items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _sources() -> list[Path]:
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "ui").rglob("*.py"), *(ROOT / "pages").rglob("*.py"),
             *(ROOT / "bench").rglob("*.py"), *(ROOT / "scripts").rglob("*.py"), ROOT / "app.py"]
    return sorted(p for p in files if p.is_file())


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_400_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines: it probably holds two ideas"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_lists_what_it_exports(path):
    if path.name == "__main__.py":
        return
    tree = ast.parse(path.read_text())
    exported = next((node.value for node in tree.body if isinstance(node, ast.Assign)
                     and any(getattr(t, "id", "") == "__all__" for t in node.targets)), None)
    assert exported is not None, f"{path.relative_to(ROOT)} has no __all__"
    names = ast.literal_eval(exported)
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    targets = [t for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
               for t in (n.targets if isinstance(n, ast.Assign) else [n.target])]
    defined |= {x.id for t in targets for x in ast.walk(t) if isinstance(x, ast.Name)}
    defined |= {a.asname or a.name for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    missing = [n for n in names if n not in defined]
    assert not missing, f"{path.relative_to(ROOT)}: __all__ names {missing}, which it does not define"
