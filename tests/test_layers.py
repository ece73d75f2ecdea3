"""The subpackages form layers: a module imports only from its own layer or below, lazily or not,
so there is no import cycle between subpackages (issue 29)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import datosearch

SRC = Path(datosearch.__file__).parent
# bottom to top; top-level modules (errors, atomic, options, _quiet) are layer 0, cli and the package itself on top
LAYERS = ["space", "dato", "models", "objectives", "search", "studies"]


def _layer(parts: list[str]) -> int:
    """Layer of a module given by its path inside the package (`["studies", "export"]`)."""
    if parts[0] in LAYERS:
        return LAYERS.index(parts[0]) + 1
    return len(LAYERS) + 1 if parts[0] in ("cli", "__init__") else 0


def _imported(tree: ast.AST, parts: list[str]) -> list[list[str]]:
    """Package-relative paths of the datosearch modules a file imports (at any depth: lazy imports count)."""
    package = parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "datosearch":
                target = node.module.split(".")[1:]
            else:
                continue
            out += [target + [a.name] if not node.module or target == base else target for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name.split(".")[1:] for a in node.names if a.name.split(".")[0] == "datosearch"]
    return [t for t in out if t]


def test_no_module_imports_a_higher_layer():
    violations = []
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        for target in _imported(ast.parse(path.read_text()), parts):
            if _layer(target) > _layer(parts):
                violations.append(f"{'/'.join(parts)} imports {'.'.join(target)}")
    assert violations == []


def test_the_checker_sees_a_violation():
    tree = ast.parse("def f():\n    from ..search.variation import X\n")
    assert [_layer(t) for t in _imported(tree, ["space", "structured"])] == [LAYERS.index("search") + 1]


def test_subpackages_import_in_layer_order():
    for name in LAYERS:
        assert importlib.import_module(f"datosearch.{name}")
