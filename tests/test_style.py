"""Code health: ruff and mypy are clean, and the layering rule holds (only frontends,
exporters and the testing helpers import a framework)."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
FRAMEWORKS = {"onnx", "onnxruntime", "torch", "tensorflow", "caffe", "google"}
ALLOWED = ("qcc/frontends/", "qcc/exporters/", "qcc/testing/", "qcc/qat/")


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


# The layering rule: each qcc module has a floor; a module imports only from its own
# floor or below, and no import cycle exists (counting imports inside functions).
FLOORS: list[tuple[str, ...]] = [
    ("qcc.errors", "qcc.fileio", "qcc.registry", "qcc.examples"),
    ("qcc.dialects",),
    ("qcc.ir",),
    ("qcc.passes", "qcc.targets", "qcc.quant"),
    ("qcc.frontends", "qcc.exporters", "qcc.runtime", "qcc.qat"),
    # The jobs (qcc/flow: the quantize job, the AMCT-style API) compose passes, the
    # runtime and the exporters: they sit with the tools. quant.amct and
    # quant.amct_pytorch are re-exports of qcc.flow's for scripts using the old names.
    ("qcc.tools", "qcc.testing", "qcc", "qcc.flow", "qcc.quant.amct", "qcc.qat.amct",
     "qcc.quant.amct_pytorch",
     "qcc.frontends.tensorflow.amct",  # AMCT's TensorFlow vocabulary over flow.amct
     "qcc.frontends.caffe.amct"),  # AMCT's Caffe vocabulary (reads records with protobuf)
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _floor(module: str) -> int:
    best, floor = -1, -1
    for i, prefixes in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, floor = len(p), i
    return floor


def _qcc_imports(path: Path, modules: set[str]) -> set[str]:
    """The qcc modules `path` imports, at module level or inside functions."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `from qcc.x import y`: y may be a module
                name = name.rpartition(".")[0]
            if name and name != me and name.startswith("qcc"):
                out.add(name)
    return out


def _import_graph() -> dict[str, set[str]]:
    paths = sorted((ROOT / "qcc").rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {}
    for p in paths:
        deps = _qcc_imports(p, modules)
        # a package's __init__ runs before its modules: importing a.b.c imports a.b
        graph[_module_name(p)] = {d for d in deps if not _module_name(p).startswith(d + ".")}
    return graph


def test_nothing_imports_upward():
    graph = _import_graph()
    upward = [f"{m} (floor {_floor(m)}) imports {d} (floor {_floor(d)})"
              for m, deps in sorted(graph.items()) for d in sorted(deps)
              if _floor(d) > _floor(m)]
    unplaced = [m for m in graph if _floor(m) < 0]
    assert not unplaced, f"modules with no floor in FLOORS: {unplaced}"
    assert not upward, "imports that run up the layering:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = _import_graph()
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_errors_module_is_a_leaf():
    assert not _import_graph()["qcc.errors"], "qcc/errors.py imports from qcc"


def test_every_qcc_exception_derives_from_qcc_error():
    import importlib
    import inspect

    from qcc.errors import QccError

    loose = []
    for path in sorted((ROOT / "qcc").rglob("*.py")):
        name = _module_name(path)
        try:
            module = importlib.import_module(name)
        except ImportError:  # a framework of an optional extra is missing
            continue
        for cls_name, cls in vars(module).items():
            if (inspect.isclass(cls) and issubclass(cls, BaseException)
                    and cls.__module__ == name and not issubclass(cls, QccError)):
                loose.append(f"{name}.{cls_name}")
    assert not loose, f"exceptions not derived from qcc.errors.QccError: {loose}"
