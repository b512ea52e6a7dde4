"""Bad TensorFlow input: one message naming the file and what to do, nothing
written. Graphs are built with qcc's own GraphDef schema (TensorFlow's field
numbers), except the unfrozen one, which TensorFlow writes."""

from __future__ import annotations

import numpy as np
import pytest

from qcc.dialects.base import DYN
from qcc.frontends.errors import FrontendError
from qcc.frontends.tensorflow import graph_pb2 as pb
from qcc.frontends.tensorflow import load_graphdef
from qcc.frontends.tensorflow.graphdef import array_to_tensor
from qcc.tools.cli import main


def _node(g, name, op, inputs=(), **attrs):
    n = g.node.add(name=name, op=op)
    n.input.extend(inputs)
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            n.attr[k].tensor.CopyFrom(array_to_tensor(v))
        elif isinstance(v, bool):
            n.attr[k].b = v
        elif isinstance(v, list):
            n.attr[k].shape.dim.extend(pb.TensorShapeProto.Dim(size=d) for d in v)
        else:
            n.attr[k].type = v
    return n


def _graph(batch=2):
    g = pb.GraphDef()
    _node(g, "x", "Placeholder", dtype=pb.DT_FLOAT, shape=[batch, 4])
    _node(g, "w", "Const", dtype=pb.DT_FLOAT,
          value=np.arange(12, dtype=np.float32).reshape(4, 3))
    _node(g, "y", "MatMul", ["x", "w"])
    return g


def _write(tmp_path, g, name="m.pb"):
    path = tmp_path / name
    path.write_bytes(g.SerializeToString())
    return path


def test_small_graph_by_hand(tmp_path):
    """The schema round-trips TF's wire format: a hand-built graph computes x @ w."""
    from qcc import runtime

    module = load_graphdef(_write(tmp_path, _graph()))
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    (y,) = runtime.run(module, {"x": x}).values()
    np.testing.assert_allclose(y, x @ np.arange(12, dtype=np.float32).reshape(4, 3))


def test_not_a_graphdef(tmp_path, capsys):
    path = tmp_path / "junk.pb"
    path.write_bytes(b"\xff\xfe definitely not protobuf \x00\x01")
    out = tmp_path / "out.mlir"
    assert main(["import", str(path), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "junk.pb: not a TensorFlow GraphDef" in err and "Traceback" not in err
    assert not out.exists()


def test_unsupported_ops_listed_at_once(tmp_path):
    g = _graph()
    _node(g, "a", "Cumsum", ["y", "w"])
    _node(g, "b", "Atan2", ["a", "a"])
    _node(g, "c", "Cumsum", ["b", "w"])
    with pytest.raises(FrontendError) as e:
        load_graphdef(_write(tmp_path, g))
    msg = str(e.value)
    assert "2 unsupported TensorFlow op types" in msg
    assert "Atan2: b" in msg and "Cumsum: a, c" in msg


def test_variables_say_how_to_freeze(tmp_path):
    g = _graph()
    _node(g, "v", "VarHandleOp", dtype=pb.DT_FLOAT)
    _node(g, "r", "ReadVariableOp", ["v"], dtype=pb.DT_FLOAT)
    _node(g, "z", "AddV2", ["y", "r"])
    with pytest.raises(FrontendError, match="unfrozen variables .*convert_variables_to_"
                       "constants_v2"):
        load_graphdef(_write(tmp_path, g))


def test_unfrozen_tensorflow_graph(tf, tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    fn = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec((1, 4)))
    path = tmp_path / "unfrozen.pb"
    path.write_bytes(fn.graph.as_graph_def().SerializeToString())
    assert main(["import", str(path), "-o", str(tmp_path / "o.mlir")]) == 1
    err = capsys.readouterr().err
    assert "unfrozen variables" in err and "freeze it first" in err


def test_dynamic_batch_stays_symbolic(tmp_path):
    module = load_graphdef(_write(tmp_path, _graph(batch=-1)))
    assert list(module.body.block.first_op.function_type.inputs.data[0].get_shape()) == [
        DYN, 4]
    module = load_graphdef(_write(tmp_path, _graph(batch=-1)), input_shapes={"x": (3, 4)})
    assert list(module.body.block.first_op.function_type.inputs.data[0].get_shape()) == [3, 4]


def test_outputs_and_inputs(tmp_path):
    g = _graph()
    _node(g, "r", "Relu", ["y"])
    _node(g, "s", "Sigmoid", ["y"])
    path = _write(tmp_path, g)
    module = load_graphdef(path)  # two unconsumed nodes: two outputs
    assert len(module.body.block.first_op.function_type.outputs.data) == 2
    module = load_graphdef(path, outputs=["s"])
    assert len(module.body.block.first_op.function_type.outputs.data) == 1
    with pytest.raises(FrontendError, match="--output-nodes nope: no such node"):
        load_graphdef(path, outputs=["nope"])
    with pytest.raises(FrontendError, match="--input-nodes q: no such node"):
        load_graphdef(path, inputs=["q"])
    # cut the graph at y: its shape must be given
    with pytest.raises(FrontendError, match="--input-shape y="):
        load_graphdef(path, inputs=["y"], outputs=["r"])
    module = load_graphdef(path, inputs=["y"], outputs=["r"], input_shapes={"y": (2, 3)})
    assert [op.name for op in module.walk()].count("qnn.relu") == 1


def test_no_output(tmp_path):
    g = pb.GraphDef()
    _node(g, "x", "Placeholder", dtype=pb.DT_FLOAT, shape=[1])
    with pytest.raises(FrontendError, match="no output found.*--output-nodes"):
        load_graphdef(_write(tmp_path, g))


def test_pb_imports_without_tensorflow(tmp_path):
    """A frozen .pb needs qcc's schema only: import and run with TensorFlow blocked."""
    import subprocess
    import sys

    path = _write(tmp_path, _graph())
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "import numpy as np, qcc\n"
            "from qcc import runtime\n"
            f"m = qcc.load({str(path)!r})\n"
            "(y,) = runtime.run(m, {'x': np.ones((2, 4), np.float32)}).values()\n"
            "print(y.sum())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == 2 * np.arange(12, dtype=np.float32).reshape(4, 3).sum()


def test_error_names_the_tensorflow_node(tmp_path):
    g = _graph()
    _node(g, "shape", "Const", dtype=pb.DT_INT32, value=np.asarray([5, 5], np.int32))
    _node(g, "r", "Reshape", ["y", "shape"])
    with pytest.raises(FrontendError) as e:
        load_graphdef(_write(tmp_path, g))
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'm.pb'}: node 'r' (Reshape): "), msg
    assert msg.count("node '") == 1
