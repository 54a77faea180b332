"""The import rule: `streamer` -> core <- `trainer`. The core imports neither, not even inside a
function; the trainer never imports the streamer. docs/architecture.md explains why.

The first test reads every import statement of every module (top level and inside functions) and
every module path the code names as a string for `importlib` (MODEL_KINDS, the command tables),
so a lazy import cannot slip past. The second one, in test_model_contract.py, loads a bundle of
every model kind in a fresh interpreter and checks no training loop came along.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "streamer", "trainer")
FORBIDDEN = {"core": ("streamer", "trainer"), "trainer": ("streamer",), "streamer": ()}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, and every dotted module path given as a string
    to importlib (import_module("x.y"), "x.y:Class" registry entries)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, f"<relative import of {node.module}>"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            head = node.value.split(":")[0]
            if head.split(".")[0] in PACKAGES and head.replace(".", "").replace("_", "").isalnum() and "." in head:
                found.append((node.lineno, head))
    return found


def test_every_import_follows_the_arrows():
    broken = []
    for package in PACKAGES:
        files = sorted((ROOT / package).rglob("*.py"))
        assert files, package
        for path in files:
            for line, module in imports_of(path):
                top = module.split(".")[0]
                if module.startswith("<relative"):
                    broken.append(f"{path.relative_to(ROOT)}:{line} uses a relative import; name the package")
                elif top in FORBIDDEN[package]:
                    broken.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({package} must not import {top})")
    assert not broken, "\n".join(broken)


def test_the_scan_sees_imports_inside_functions_and_registry_strings(tmp_path):
    sample = tmp_path / "m.py"
    sample.write_text('def f():\n    from trainer.train import run\n\nKINDS = {"x": "trainer.fit_resnet:ResNetFitter"}\n')
    assert [m for _, m in imports_of(sample)] == ["trainer.train", "trainer.fit_resnet"]


def test_every_model_kind_is_a_core_class():
    from core.models import MODEL_KINDS

    assert all(path.startswith("core.") for path in MODEL_KINDS.values()), MODEL_KINDS


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_names_the_rule_in_its_docstring(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))) or ""
    assert "core" in doc and ("import" in doc or "imports" in doc), package
