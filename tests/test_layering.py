"""Every import points down the layers of docs/design.md ("Layering"), and the drawn graph is the real one.

Static: the package is parsed (``ast``), not imported, so a lazy import inside a function counts too
(it is a dependency all the same, only a later one).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lfmcdm"
DESIGN = PACKAGE.parent / "docs/design.md"

#: Bottom to top. A module may import its own group, and groups of lower layers; peers (same layer,
#: another group) and higher layers are off limits. "core" = the modules at the package root + settings/.
LAYERS: list[set[str]] = [{"core"}, {"data"}, {"models"}, {"eval"}, {"pseudo", "train", "synth"}, {"stages"}, {"cli"}]
LAYER = {group: rank for rank, groups in enumerate(LAYERS) for group in groups}
SUBPACKAGES = {"data", "models", "eval", "pseudo", "train", "synth", "stages"}
COMMAND_LINE = {"cli", "launcher", "warm"}  # the `lfmcdm` command: its entry point, warm start, the CLI


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def group(module: str) -> str:
    """The layer group of a module: its subpackage, ``cli`` (the command line's modules), or ``core``."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in COMMAND_LINE:
        return "cli"
    if len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return "core"


def imports(path: Path) -> set[str]:
    """The ``lfmcdm`` modules one file imports (``from lfmcdm.x import y`` -> ``lfmcdm.x.y`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lfmcdm")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lfmcdm") and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / sub.replace(".", "/") / "__init__.py").exists()
                found.add(sub if is_module else node.module)
    return found


def edges() -> set[tuple[str, str]]:
    """(importer, imported) module pairs inside the package."""
    return {(module_name(p), target) for p in PACKAGE.rglob("*.py") for target in imports(p)
            if target != module_name(p)}


def test_every_import_points_down():
    upward = sorted(f"{a} -> {b}" for a, b in edges()
                    if group(a) != group(b) and LAYER[group(b)] >= LAYER[group(a)])
    assert not upward, "imports that run up or across the layers of docs/design.md:\n" + "\n".join(upward)


def test_no_stage_imports_another_stage():
    crossing = sorted(f"{a} -> {b}" for a, b in edges()
                      if a.startswith("lfmcdm.stages.") and b.startswith("lfmcdm.stages."))
    assert not crossing, "stage modules share code through lower layers, not each other:\n" + "\n".join(crossing)


def test_design_doc_draws_the_real_graph():
    """docs/design.md's mermaid block lists exactly the group-to-group imports there are."""
    real = {(group(a), group(b)) for a, b in edges() if group(a) != group(b)}
    block = DESIGN.read_text().split("```mermaid", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*(\w+)\s*-->\s*(\w+)\s*$", block, flags=re.M))
    assert drawn == real, f"missing in docs/design.md: {sorted(real - drawn)}; stale there: {sorted(drawn - real)}"
