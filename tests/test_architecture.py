"""The import graph keeps its shape: no cycles, imports only in the allowed direction, and no import
hidden inside a function except a heavy optional dependency.

The graph is read from the source by AST (nothing is imported), from ``app.py``, ``server.py``, ``pages/``,
``ui/``, ``api/``, ``core/`` and ``workers/``. The direction is pages → ui → core ← api, core ← workers: a
layer may import itself and the layers below it, never one beside or above it. Imports under
``if TYPE_CHECKING:`` never run, so they count for the direction but not for cycles.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("app.py", "server.py", "pages", "ui", "api", "core", "workers")
# Alembic loads these by path, frozen in time; they are not part of the import graph.
EXCLUDED = ("core/migrations",)

# What each layer may import from the project (its own layer included).
ALLOWED_LAYERS: dict[str, frozenset[str]] = {
    "app": frozenset({"ui", "core"}),
    "server": frozenset({"api", "core", "ui"}),
    "pages": frozenset({"pages", "ui", "core"}),
    "ui": frozenset({"ui", "core"}),
    "api": frozenset({"api", "core"}),
    "workers": frozenset({"workers", "core"}),
    "core": frozenset({"core"}),
}
PROJECT_LAYERS = frozenset(ALLOWED_LAYERS)
# Third-party packages a layer must never import (core stays importable without a web framework or torch).
FORBIDDEN_PACKAGES: dict[str, frozenset[str]] = {
    "core": frozenset({"streamlit", "starlette", "torch"}),
}
# Heavy optional dependencies: imported inside the function that needs them, so that importing the module
# stays cheap (and works where they are not installed, e.g. the app process never loads torch).
HEAVY_OPTIONAL = frozenset({
    "torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "whisper", "dlib",
    "pynvml",  # NVML: only on the Monitoring page's GPU view
    "minio",  # the S3 store only: a local object store never loads it
    "urllib3",  # minio's transport, imported with it
    "tokenizers",  # transformers' tokenizer backend (the tiny T5 tokenizer is built with it)
})
# The studio's own modules that load torch at import: only the GPU steps that run models import them.
HEAVY_PROJECT_MODULES = frozenset({"workers.ml.generation", "workers.ml.training", "workers.ml.motion",
                                   "workers.ml.families"})


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a project module, or the top-level name of a third-party package
    line: int
    in_function: bool
    type_checking_only: bool

    def where(self) -> str:
        return f"{self.importer}:{self.line} imports {self.target}"


@dataclass
class ImportGraph:
    modules: dict[str, Path] = field(default_factory=dict)
    imports: list[Import] = field(default_factory=list)

    def project_imports(self) -> Iterator[Import]:
        return (i for i in self.imports if i.target in self.modules)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path, sources: Iterable[str]) -> Iterator[Path]:
    for source in sources:
        path = root / source
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            relative = file.relative_to(root).as_posix()
            if not relative.startswith(EXCLUDED):
                yield file


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportVisitor(ast.NodeVisitor):
    """Collects every import with where it sits: in a function, or under ``if TYPE_CHECKING:``."""

    def __init__(self, importer: str, is_package: bool) -> None:
        self.importer = importer
        self.is_package = is_package
        self.found: list[tuple[str, int, bool, bool]] = []  # (dotted name, line, in function, type checking)
        self._function_depth = 0
        self._type_checking_depth = 0

    def _visit_function(self, node: ast.AST) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _visit_function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._type_checking_depth += 1
        for child in node.body:
            self.visit(child)
        self._type_checking_depth -= 1
        for child in node.orelse:
            self.visit(child)

    def _add(self, name: str, line: int) -> None:
        self.found.append((name, line, self._function_depth > 0, self._type_checking_depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node)
        for alias in node.names:
            # Resolved later: "from package import module" lands in the module, "from module import name" in
            # the module itself.
            self._add(f"{base}.{alias.name}" if base else alias.name, node.lineno)

    def _absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.importer.split(".")
        if not self.is_package:
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        return ".".join([*package, node.module] if node.module else package)


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The project module a dotted name lands in (its longest known prefix), else its top-level package."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return parts[0]


def build_graph(root: Path, sources: Iterable[str] = SOURCES) -> ImportGraph:
    graph = ImportGraph()
    for path in source_files(root, sources):
        graph.modules[module_name(path, root)] = path
    for importer, path in graph.modules.items():
        visitor = _ImportVisitor(importer, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        seen: set[tuple[str, int]] = set()
        for name, line, in_function, type_checking in visitor.found:
            target = _resolve(name, graph.modules)
            if target == importer or (target, line) in seen:
                continue
            seen.add((target, line))
            graph.imports.append(Import(importer, target, line, in_function, type_checking))
    return graph


def find_cycles(graph: ImportGraph) -> list[list[str]]:
    """Every strongly connected group of project modules that import each other at run time, sorted."""
    edges: dict[str, set[str]] = {module: set() for module in graph.modules}
    for item in graph.project_imports():
        if not item.type_checking_only:
            edges[item.importer].add(item.target)
    return sorted(sorted(group) for group in _strongly_connected(edges) if len(group) > 1)


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    # Tarjan's algorithm, iterative so a deep graph cannot hit the recursion limit.
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = lowlink[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = lowlink[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    lowlink[node] = min(lowlink[node], index[child])
                continue
            work.pop()
            if work:
                lowlink[work[-1][0]] = min(lowlink[work[-1][0]], lowlink[node])
            if lowlink[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def _layer(module: str) -> str:
    return module.split(".")[0]


def wrong_direction(graph: ImportGraph) -> list[str]:
    problems = []
    for item in graph.imports:
        layer, target_top = _layer(item.importer), _layer(item.target)
        if target_top in PROJECT_LAYERS and target_top not in ALLOWED_LAYERS[layer]:
            problems.append(item.where())
        elif target_top in FORBIDDEN_PACKAGES.get(layer, frozenset()):
            problems.append(item.where())
    return problems


def _heavy(target: str) -> bool:
    return _layer(target) in HEAVY_OPTIONAL or any(
        target == module or target.startswith(module + ".") for module in HEAVY_PROJECT_MODULES
    )


def imports_inside_functions(graph: ImportGraph) -> list[str]:
    return [
        item.where() for item in graph.imports if item.in_function and not item.type_checking_only
        and not _heavy(item.target)
    ]


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


# --- the project --------------------------------------------------------------------------------------


def test_no_import_cycles() -> None:
    cycles = find_cycles(build_graph(ROOT))
    assert not cycles, _report("modules that import each other", [" ↔ ".join(cycle) for cycle in cycles])


def test_imports_follow_the_layers() -> None:
    problems = wrong_direction(build_graph(ROOT))
    assert not problems, _report("imports against pages → ui → core ← api, core ← workers", problems)


def test_no_imports_inside_functions_but_heavy_optional_ones() -> None:
    problems = imports_inside_functions(build_graph(ROOT))
    heavy = ", ".join(sorted(HEAVY_OPTIONAL | HEAVY_PROJECT_MODULES))
    assert not problems, _report(f"imports inside functions (only {heavy} may be)", problems)


# --- the checker itself --------------------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_checker_reports_a_planted_cycle(tmp_path: Path) -> None:
    _write(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "from core import b\n",
        "core/b.py": "def f():\n    from core.a import g  # dodges the cycle at import time, still a cycle\n",
        "core/c.py": "import core.a\n",
    })
    graph = build_graph(tmp_path, ["core"])
    assert find_cycles(graph) == [["core.a", "core.b"]]
    assert imports_inside_functions(graph) == ["core.b:2 imports core.a"]


def test_checker_ignores_type_checking_imports_for_cycles(tmp_path: Path) -> None:
    _write(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "from core.b import B\n",
        "core/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core.a import A\n",
    })
    assert find_cycles(build_graph(tmp_path, ["core"])) == []


def test_checker_reports_imports_against_the_layers(tmp_path: Path) -> None:
    _write(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "import streamlit\nfrom ui import page\n",
        "ui/__init__.py": "",
        "ui/page.py": "from core import a\nfrom api import routes\n",
        "api/__init__.py": "",
        "api/routes.py": "from . import helpers\ndef f():\n    import torch\n",
        "api/helpers.py": "",
    })
    graph = build_graph(tmp_path, ["core", "ui", "api"])
    assert wrong_direction(graph) == [
        "core.a:1 imports streamlit", "core.a:2 imports ui.page", "ui.page:2 imports api.routes",
    ]
    assert imports_inside_functions(graph) == []
