"""Third-party passes plug into the registry and run from the Python API and qcc-opt."""

import subprocess
import sys
import textwrap
from dataclasses import dataclass

from xdsl.passes import ModulePass

from qcc import ir, passes, registry
from qcc.dialects import qnn


@dataclass(frozen=True)
class CountRelus(ModulePass):
    """Test pass: record how many relus it saw in a module attribute."""

    name = "test-count-relus"
    scale: int = 1

    def apply(self, ctx, op):
        from xdsl.dialects.builtin import IntegerAttr, i64

        n = sum(isinstance(o, qnn.ReluOp) for o in op.walk())
        op.attributes["test.relus"] = IntegerAttr(n * self.scale, i64)


def _module():
    g = ir.Graph()
    x = g.input("x", (4,))
    y = g.add(qnn.ReluOp.make(g.add(qnn.ReluOp.make(x))))
    return g.finish({"y": y})


def test_added_pass_runs_with_options():
    registry.add_pass("test-count-relus", lambda: CountRelus)
    m = passes.run(_module(), "test-count-relus{scale=10}")
    assert m.attributes["test.relus"].value.data == 20
    assert "test-count-relus" in passes.available()


def test_entry_point_plugin_reaches_qcc_opt(tmp_path):
    # A plugin module registered through the `qcc.plugins` entry-point group.
    plugin = tmp_path / "qcc_test_plugin.py"
    plugin.write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from xdsl.passes import ModulePass

        @dataclass(frozen=True)
        class Hello(ModulePass):
            """Says hello in a module attribute."""
            name = "test-hello"
            def apply(self, ctx, op):
                from xdsl.dialects.builtin import StringAttr
                op.attributes["test.hello"] = StringAttr("world")

        def register(registry):
            registry.add_pass("test-hello", lambda: Hello)
    '''))
    dist = tmp_path / "qcc_test_plugin-0.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qcc-test-plugin\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text("[qcc.plugins]\nhello = qcc_test_plugin:register\n")
    src = tmp_path / "in.mlir"
    ir.print_module(_module(), src)
    env_path = f"{tmp_path}"
    r = subprocess.run([sys.executable, "-c",
                        f"import sys; sys.path.insert(0, {env_path!r}); "
                        "from qcc.tools.opt import main; sys.exit(main())",
                        str(src), "-p", "test-hello"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'test.hello = "world"' in r.stdout


def test_print_ir_after_all(tmp_path):
    src = tmp_path / "in.mlir"
    g = ir.Graph()
    x = g.input("x", (4,))
    y = g.add(qnn.IdentityOp.make(x))
    ir.print_module(g.finish({"y": y}), src)
    r = subprocess.run([sys.executable, "-m", "qcc.tools.opt", str(src), "-p", "canonicalize",
                        "--print-ir-after-all"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "IR after canonicalize" in r.stderr
    after = r.stderr.split("IR after canonicalize", 1)[1]
    assert "qnn.identity" not in after
