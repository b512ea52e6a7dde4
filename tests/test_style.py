"""Code health: ruff and mypy are clean, and the layering rule holds (only frontends,
exporters and the testing helpers import a framework)."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FRAMEWORKS = {"onnx", "onnxruntime", "torch", "tensorflow", "caffe", "google"}
ALLOWED = ("qcc/frontends/", "qcc/exporters/", "qcc/testing/")


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the test extra)")
    r = subprocess.run([ruff, "check", "qcc", "tests", "tools"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_clean():
    mypy = shutil.which("mypy")
    if mypy is None:
        pytest.skip("mypy is not installed (it is in the test extra)")
    r = subprocess.run([mypy, "qcc"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_never_imports_a_framework():
    offenders = []
    for path in sorted((ROOT / "qcc").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(ALLOWED):
            continue
        bad = _imported_roots(path) & FRAMEWORKS
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert not offenders, "framework imports outside frontends/exporters:\n" + "\n".join(
        offenders)
