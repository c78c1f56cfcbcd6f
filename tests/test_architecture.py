"""The package keeps the layer order its docstring states: read from the imports of every
module (those inside functions too), no module imports from a higher layer, and none is left
out of the order."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import monitor

PACKAGE = Path(monitor.__file__).resolve().parent


def layers() -> list[list[str]]:
    """The layer list of the package docstring: each layer's module names and `pkg.*` globs."""
    found: list[list[str]] = []
    for line in (monitor.__doc__ or "").splitlines():
        numbered = re.match(r"\s+\d+\.\s+\S+(?: \S+)*\s{2,}(.+)$", line)
        if numbered:
            found.append([])
        elif not (found and re.match(r"\s{10,}\S", line)):
            continue
        text = numbered.group(1) if numbered else line
        found[-1] += [name.strip() for name in text.split(",") if name.strip()]
    return found


def modules() -> dict[str, Path]:
    return {".".join(path.relative_to(PACKAGE).with_suffix("").parts): path
            for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"}


def layer_of(module: str, order: list[list[str]]) -> int | None:
    for number, names in enumerate(order):
        if module in names or any(name.endswith(".*") and module.startswith(name[:-1])
                                  for name in names):
            return number
    return None


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.split(".")[0] == "monitor":
            base = node.module.removeprefix("monitor").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}".lstrip(".")
                found.add(candidate if candidate in known else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("monitor.") for a in node.names
                      if a.name.startswith("monitor.")}
    return found & known


def test_every_module_has_a_layer() -> None:
    """Each module of the package is named by exactly one layer of the docstring."""
    order = layers()
    assert len(order) == 7, order
    assert [m for m in modules() if layer_of(m, order) is None] == []


def test_no_module_imports_from_a_higher_layer() -> None:
    """No import runs from a lower layer to a higher one."""
    order, found = layers(), modules()
    upward = []
    for module, path in found.items():
        own = layer_of(module, order)
        assert own is not None
        for imported in imports(path, set(found)):
            theirs = layer_of(imported, order)
            if theirs is not None and theirs > own:
                upward.append(f"{module} (layer {own + 1}) imports {imported} "
                              f"(layer {theirs + 1})")
    assert upward == []


def test_the_check_sees_a_violation() -> None:
    """The check itself works: `pipeline` imported by `models` would be reported."""
    order = layers()
    models_layer, pipeline_layer = layer_of("models", order), layer_of("pipeline", order)
    assert models_layer is not None and pipeline_layer is not None
    assert pipeline_layer > models_layer
    assert imports(PACKAGE / "surfaces" / "cli.py", set(modules())) >= {"pipeline", "config"}
