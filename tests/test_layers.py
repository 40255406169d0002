"""The package's layers: every import points down, and no two modules import each other.

    base < processes < measuring < figures < teaching < labs < cli

Imports are read from the source (``ast``), function-level ones included, so a
lazy import cannot hide a cycle or an upward dependency.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "conclab"
LAYERS = ("base", "processes", "measuring", "figures", "teaching", "labs", "cli")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str, root: Path) -> bool:
    path = root.parent.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def imports_of(path: Path, root: Path) -> set[str]:
    """The package modules ``path`` imports (absolute names), wherever the import sits."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == root.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != root.name:
                continue
            # `from . import stats` imports a module; `from .x import name` imports from x.
            for alias in node.names:
                found.add(
                    f"{target}.{alias.name}"
                    if is_module(f"{target}.{alias.name}", root)
                    else target
                )
    found.discard(name)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    return {
        name: {i for i in imports_of(path, root) if i in modules} for name, path in modules.items()
    }


def layer(module: str, root_name: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(edges: dict[str, set[str]], root_name: str) -> list[str]:
    bad = []
    for module, targets in edges.items():
        here = layer(module, root_name)
        for target in targets:
            there = layer(target, root_name)
            if here is None or there is None:
                if (
                    here is not None or module == root_name
                ):  # the package's __init__ imports nothing
                    if there is not None or target != root_name:
                        bad.append(f"{module} -> {target}")
                continue
            if there > here:
                bad.append(f"{module} ({LAYERS[here]}) -> {target} ({LAYERS[there]})")
    return sorted(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_sits_in_a_layer_folder():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "cli")]
    assert not loose, f"modules outside the layer folders: {loose}"
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")} == set(
        LAYERS
    ) - {"cli"}


def test_imports_point_only_downward():
    assert upward_imports(graph(PACKAGE), PACKAGE.name) == []


def test_no_import_cycles():
    assert cycles(graph(PACKAGE)) == []


def test_base_imports_nothing_else_of_the_package():
    edges = graph(PACKAGE)
    outside = {
        f"{m} -> {t}"
        for m, ts in edges.items()
        if m.startswith("conclab.base")
        for t in ts
        if not t.startswith("conclab.base")
    }
    assert not outside


@pytest.fixture
def fake_package(tmp_path):
    root = tmp_path / "conclab"
    for folder in ("base", "measuring", "figures"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "base" / "paths.py").write_text("import os\n")
    (root / "measuring" / "stats.py").write_text("from ..base import paths\n")
    (root / "measuring" / "driver.py").write_text("from . import stats\n")
    return root


def test_the_checks_catch_a_cycle_and_an_upward_import(fake_package):
    assert (
        cycles(graph(fake_package)) == [] and upward_imports(graph(fake_package), "conclab") == []
    )
    # stats imports driver back (inside a function, as lazy imports do): a cycle
    (fake_package / "measuring" / "stats.py").write_text(
        "from ..base import paths\n\ndef columns():\n    from .driver import FIELDS\n"
    )
    assert cycles(graph(fake_package)) == [["conclab.measuring.driver", "conclab.measuring.stats"]]
    # base reaching up into figures: upward
    (fake_package / "figures" / "plotting.py").write_text("")
    (fake_package / "base" / "paths.py").write_text("from ..figures import plotting\n")
    assert upward_imports(graph(fake_package), "conclab") == [
        "conclab.base.paths (base) -> conclab.figures.plotting (figures)"
    ]
