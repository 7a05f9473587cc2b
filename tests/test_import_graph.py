"""toolkit/ has no import cycles: the graph of which module needs which, read with ``ast``.

An edge ``a -> b`` means that code in ``a`` imports ``b`` (at module level or inside a
function; imports under ``if TYPE_CHECKING:`` never run and are left out). A name imported
from a package resolves to where it is defined: ``from toolkit.data import Split`` needs
``toolkit.data.dataset`` (the package's ``__init__`` re-exports it), ``from toolkit.sweep
import storage`` needs the submodule, and a name the ``__init__`` defines itself needs the
package. Importing ``a.b`` also runs the package ``a``; that implicit step is no edge, since
a package importing its own submodules is how packages are built.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root/package``."""
    files = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


class ImportGraph:
    """The import graph of one top-level package under ``root``."""

    def __init__(self, root: Path, package: str):
        self.files = module_files(root, package)
        self.trees = {name: ast.parse(path.read_text()) for name, path in self.files.items()}

    def is_package(self, module: str) -> bool:
        return self.files[module].name == "__init__.py"

    def absolute(self, module: str, node: ast.ImportFrom) -> str:
        """The module an ImportFrom reads from, with relative levels resolved."""
        if not node.level:
            return node.module or ""
        parts = module.split(".")
        if not self.is_package(module):
            parts = parts[:-1]  # a plain module's level 1 is its own package
        parts = parts[: len(parts) - (node.level - 1)]
        return ".".join([*parts, *([node.module] if node.module else [])])

    def origin(self, package: str, name: str, seen: frozenset = frozenset()) -> str:
        """The module that defines ``name`` as read from module ``package``."""
        if f"{package}.{name}" in self.files:
            return f"{package}.{name}"  # a submodule
        if (package, name) in seen:
            return package
        for node in ast.walk(self.trees[package]):  # a re-export: follow it
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        source = self.absolute(package, node)
                        if source in self.files:
                            return self.origin(source, alias.name, seen | {(package, name)})
        return package  # defined in the module itself

    def edges(self, module: str) -> set[str]:
        found = set()
        for node in _imports(self.trees[module]):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name in self.files}
                continue
            source = self.absolute(module, node)
            if source in self.files:
                found |= {self.origin(source, alias.name) for alias in node.names}
        return found - {module}

    def graph(self) -> dict[str, set[str]]:
        return {module: self.edges(module) for module in self.files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_toolkit_has_no_import_cycles():
    graph = ImportGraph(ROOT, "toolkit").graph()
    assert len(graph) > 50 and graph["toolkit.sweep.execute"], "the walk found too little"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


# -- the graph reader on a small package whose edges are known ---------------------------
FAKE = {
    "pkg/__init__.py": "",
    "pkg/a.py": """
        from typing import TYPE_CHECKING

        from pkg.sub import Thing        # re-exported by pkg/sub/__init__ from pkg.sub.impl
        from . import b                  # a submodule, relative
        if TYPE_CHECKING:
            from pkg import c            # never runs: no edge
        def later():
            import pkg.d                 # inside a function: an edge
        """,
    "pkg/b.py": "import os\nfrom .sub import helper  # defined in pkg/sub/__init__\n",
    "pkg/c.py": "from pkg.a import later\n",
    "pkg/d.py": "",
    "pkg/sub/__init__.py": "from .impl import Thing\n\ndef helper(): ...\n",
    "pkg/sub/impl.py": "from ..d import *\nThing = 1\n",
}


@pytest.fixture
def fake_root(tmp_path):
    for name, text in FAKE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_edges_resolve_relative_submodule_and_re_exported_imports(fake_root):
    graph = ImportGraph(fake_root, "pkg").graph()
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.sub.impl", "pkg.b", "pkg.d"},
        "pkg.b": {"pkg.sub"},
        "pkg.c": {"pkg.a"},
        "pkg.d": set(),
        "pkg.sub": {"pkg.sub.impl"},
        "pkg.sub.impl": {"pkg.d"},
    }
    assert cycles(graph) == []


def test_a_cycle_through_a_function_level_import_is_found(fake_root):
    (fake_root / "pkg" / "d.py").write_text("def f():\n    from pkg import b\n")
    found = cycles(ImportGraph(fake_root, "pkg").graph())
    # d -> b -> sub -> impl -> d, and a -> d -> b ... but nothing reaches back to a.
    assert found == [["pkg.b", "pkg.d", "pkg.sub", "pkg.sub.impl"]]
