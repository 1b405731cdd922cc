"""The layers import one way, and no two of our modules import each other in a circle.

``alpha_panda`` -> ``dataflows`` -> {``operators``, ``connectors``} -> ``schemas``
(DESIGN.md's layout; STYLE.md lets connectors use the pure policies in
``operators``). Every ``import`` counts: at module level, inside functions,
and under ``if TYPE_CHECKING:`` too. An import of ``a.b.c`` is an edge to the
module ``a.b.c`` itself (a package's ``__init__`` only when it is named).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "operators", "connectors", "dataflows", "alpha_panda")
MAY_IMPORT: dict[str, frozenset[str]] = {
    "schemas": frozenset(),
    "operators": frozenset({"schemas"}),
    "connectors": frozenset({"schemas", "operators"}),
    "dataflows": frozenset({"schemas", "operators", "connectors"}),
    "alpha_panda": frozenset({"schemas", "operators", "connectors", "dataflows"}),
}
"""Which other packages each package may import (its own modules always)."""
CONNECTORS_MAY_USE: frozenset[str] = frozenset(
    {"operators.failures", "operators.halts", "operators.broker_reconcile", "operators.zerodha_charges"}
)
"""The pure policies of ``operators`` that connectors apply (retries, halts, charges, reconciling)."""


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str, is_package: bool, names: set[str]) -> Iterator[tuple[str, int]]:
    """Every module of ``names`` that ``tree`` imports (absolute name, line), wherever the import is."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # ``from pkg import mod`` names the module ``pkg.mod``; ``from pkg import obj``, ``pkg``.
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield (submodule if submodule in names else target), node.lineno
        yield from _imports(node, module, is_package, names)


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Our modules -> the modules of ours they import -> the first line that does."""
    paths = [p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))]
    names = {_module_name(p, root) for p in paths}
    graph: dict[str, dict[str, int]] = {}
    for path in paths:
        module = _module_name(path, root)
        tree = ast.parse(path.read_text("utf-8"), str(path))
        edges: dict[str, int] = {}
        for target, line in _imports(tree, module, path.name == "__init__.py", names):
            if target in names and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def reversed_arrows(graph: dict[str, dict[str, int]]) -> list[str]:
    """``module:line -> target`` for every import a package may not make."""
    found = []
    for module, edges in graph.items():
        package = module.split(".")[0]
        for target, line in edges.items():
            other = target.split(".")[0]
            allowed = other == package or other in MAY_IMPORT[package]
            if package == "connectors" and other == "operators":
                allowed = target in CONNECTORS_MAY_USE
            if not allowed:
                found.append(f"{module}:{line} -> {target}")
    return sorted(found)


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def test_every_import_points_down_the_layers() -> None:
    assert reversed_arrows(import_graph()) == []


def test_no_import_cycle_between_our_modules() -> None:
    assert cycles(import_graph()) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    return tmp_path


def test_the_check_sees_a_reversed_arrow_in_a_function_or_for_type_checkers(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "dataflows/__init__.py": "",
            "dataflows/flow.py": "def build():\n    from alpha_panda.cli import app\n",
            "alpha_panda/__init__.py": "",
            "alpha_panda/cli.py": "app = 1\n",
            "operators/__init__.py": "",
            "operators/risk.py": "import connectors.kafka\n",
            "connectors/__init__.py": "",
            "connectors/kafka.py": "from schemas import topics\nfrom operators import failures, risk\n",
            "operators/failures.py": "",
            "schemas/__init__.py": "",
            "schemas/topics.py": "import typing\nif typing.TYPE_CHECKING:\n    import operators.risk\n",
        },
    )
    assert reversed_arrows(import_graph(root)) == [
        "connectors.kafka:2 -> operators.risk",
        "dataflows.flow:2 -> alpha_panda.cli",
        "operators.risk:1 -> connectors.kafka",
        "schemas.topics:3 -> operators.risk",
    ]


def test_the_check_sees_a_cycle_through_relative_and_function_imports(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "dataflows/__init__.py": "",
            "dataflows/live.py": "from .pipeline import Params\n",
            "dataflows/pipeline.py": "def flow():\n    from dataflows import live\n",
            "dataflows/clock.py": "from dataflows import pipeline\n",
        },
    )
    graph = import_graph(root)
    assert graph["dataflows.live"] == {"dataflows.pipeline": 1}
    assert cycles(graph) == [["dataflows.live", "dataflows.pipeline"]]


def package_directories(root: Path = ROOT) -> list[str]:
    """``pkg/sub/`` for every directory holding an ``__init__.py`` under the five packages."""
    found = [f"{package}/" for package in PACKAGES]
    for package in PACKAGES:
        inits = (root / package).rglob("*/__init__.py")
        found += [f"{init.parent.relative_to(root).as_posix()}/" for init in inits]
    return sorted(found)


def package_map_rows(readme: str) -> list[str]:
    """The package paths the first column of the README's "Package map" table names."""
    section = readme.split("### Package map", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return sorted(row.split("`", 2)[1] for row in rows)


def test_the_readme_package_map_names_every_package_directory() -> None:
    rows = package_map_rows((ROOT / "README.md").read_text("utf-8"))
    assert len(rows) == len(set(rows))
    assert rows == package_directories()


def test_the_map_check_sees_a_missing_and_a_stale_row(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"connectors/kafka/__init__.py": "", "dataflows/runtime/__init__.py": ""})
    readme = (
        "### Package map\n\n| package | what | may import |\n|---|---|---|\n"
        "| `schemas/` | a | b |\n| `connectors/kafka/` | a | b |\n| `connectors/gone/` | a | b |\n"
        "\n### Next\n| `dataflows/runtime/` | not in the map | - |\n"
    )
    assert package_directories(root) == [
        "alpha_panda/",
        "connectors/",
        "connectors/kafka/",
        "dataflows/",
        "dataflows/runtime/",
        "operators/",
        "schemas/",
    ]
    assert package_map_rows(readme) == ["connectors/gone/", "connectors/kafka/", "schemas/"]
