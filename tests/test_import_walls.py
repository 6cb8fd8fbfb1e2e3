"""The layers of the package stay apart (docs/README.md, "How the code is laid out").

Every import of every module is read from its source (module-level or inside a function),
so a late import cannot slip through a wall. That evaluation loads nothing of training/ even
indirectly is checked in a fresh process by tests/test_checkpoint_formats.py."""

import ast
import pathlib
import sys

import pytest

pytestmark = pytest.mark.timeout(120)
PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "icl_jax"

# (modules, the packages they must not import, the one module allowed to anyway)
WALLS = [
    ("icl_jax.tasks", ("icl_jax.models", "icl_jax.training", "icl_jax.evaluation", "icl_jax.analysis",
                       "icl_jax.baselines", "icl_jax.kernels", "icl_jax.parallel"), None),
    ("icl_jax.baselines", ("icl_jax.models", "icl_jax.training", "icl_jax.evaluation", "icl_jax.analysis",
                           "icl_jax.kernels"), None),
    ("icl_jax.models", ("icl_jax.tasks", "icl_jax.training", "icl_jax.evaluation", "icl_jax.baselines",
                        "icl_jax.kernels"), "icl_jax.models.ops"),
    ("icl_jax.evaluation", ("icl_jax.training",), None),
    ("icl_jax.evaluate", ("icl_jax.training",), None),
    ("icl_jax.run_model", ("icl_jax.training",), None),
    ("icl_jax.parallel", ("icl_jax.tasks",), None),
    ("icl_jax.checkpointing", ("icl_jax.tasks", "icl_jax.training", "icl_jax.models"), None),
]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: pathlib.Path) -> set[str]:
    """Every icl_jax module `path` imports, as full dotted names (`from icl_jax import tasks`
    counts as icl_jax.tasks; relative imports are resolved)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "icl_jax" or name.startswith("icl_jax.")}


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def crossings() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        for modules, forbidden, allowed in WALLS:
            if not _inside(name, modules) or name == allowed:
                continue
            found += [f"{name} imports {target}" for target in sorted(imports(path))
                      if any(_inside(target, wall) for wall in forbidden)]
    return found


def test_no_module_imports_across_a_wall():
    assert crossings() == []


def test_the_wall_check_sees_late_and_relative_imports(tmp_path, monkeypatch):
    (tmp_path / "icl_jax" / "models").mkdir(parents=True)
    (tmp_path / "icl_jax" / "models" / "bad.py").write_text(
        "def f():\n    from ..tasks import linear\n    from icl_jax import training\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "icl_jax")
    assert crossings() == ["icl_jax.models.bad imports icl_jax.tasks", "icl_jax.models.bad imports icl_jax.tasks.linear",
                           "icl_jax.models.bad imports icl_jax.training"]

