"""QAT of a Caffe net (prototxt + caffemodel written here) and of a Keras model frozen
to a .pb, trained a little on the digits data: prepare -> training steps -> convert ->
fake-quant ONNX. Oracles: onnxruntime (graph optimizations off) runs the exported
model and must reach the accuracy measured in torch within 0.5 points; labels are
scikit-learn's digits."""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
sk = pytest.importorskip("sklearn.datasets")

CAFFE_NET = """
name: "DigitsCaffe"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
        inner_product_param { num_output: 10 } }
"""


@pytest.fixture(scope="module")
def data():
    from sklearn.model_selection import train_test_split

    d = sk.load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, d.target.astype(np.int64), test_size=0.25, random_state=0,
                            stratify=d.target)


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _caffe(tmp_path):
    from google.protobuf import text_format

    from qcc.frontends.caffe import caffe_pb2 as pb

    rng = np.random.default_rng(0)
    blobs = {"conv1": [rng.standard_normal((8, 1, 3, 3)) / 3, np.zeros(8)],
             "ip1": [rng.standard_normal((10, 128)) / np.sqrt(128), np.zeros(10)]}
    net = pb.NetParameter()
    text_format.Parse(CAFFE_NET, net)
    model = pb.NetParameter(name=net.name)
    for name, arrays in blobs.items():
        layer = model.layer.add(name=name)
        for a in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(a.shape)
            blob.data.extend(a.astype(np.float32).ravel().tolist())
    proto, weights = tmp_path / "digits.prototxt", tmp_path / "digits.caffemodel"
    proto.write_text(CAFFE_NET)
    weights.write_bytes(model.SerializeToString())
    return proto, weights


def _tensorflow(tmp_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    tf.random.set_seed(0)
    keras = tf.keras
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, 8, 8, 1), tf.float32, name="x"))
    frozen = convert_variables_to_constants_v2(fn)
    path = tmp_path / "digits.pb"
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return path


def _torch_accuracy(qmodel, x, y) -> float:
    qmodel.eval()
    with torch.no_grad():
        return float(np.mean(qmodel(torch.from_numpy(x)).argmax(1).numpy() == y))


def _ort_accuracy(path, x, y) -> float:
    from qcc.testing.ort import session

    sess = session(path)
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return float(np.mean(out.reshape(len(x), -1).argmax(1) == y))


@pytest.mark.parametrize("frontend", ["caffe", "tensorflow"])
def test_qat_from_other_frontends_exports_what_torch_measured(frontend, data, one_thread,
                                                              tmp_path):
    import qcc
    from qcc.exporters.onnx import export_onnx

    x_train, x_test, y_train, y_test = data
    if frontend == "caffe":
        proto, weights = _caffe(tmp_path)
        model, kwargs, layout = proto, {"weights": weights}, (0, 1, 2, 3)
    else:
        model, kwargs, layout = _tensorflow(tmp_path), {}, (0, 2, 3, 1)  # NHWC
    x_train, x_test = x_train.transpose(layout).copy(), x_test.transpose(layout).copy()
    torch.manual_seed(0)
    qmodel = qcc.qat.prepare(model, [x_train[:256]], {"weight_bits": 8, "act_bits": 8,
                                                          "scheme": "fixed"},
                             **kwargs)
    before = _torch_accuracy(qmodel, x_test, y_test)
    opt = torch.optim.Adam(qmodel.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    qmodel.train()
    for _ in range(3):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(qmodel(xt[idx]).reshape(len(idx), -1),
                                              yt[idx]).backward()
            opt.step()
    torch_acc = _torch_accuracy(qmodel, x_test, y_test)
    print(f"\n{frontend} digits W8A8 QAT: before {before:.4f}  after {torch_acc:.4f}")
    assert torch_acc > max(before, 0.8)  # the steps trained it

    path = tmp_path / f"{frontend}_fake_quant.onnx"
    export_onnx(qcc.qat.convert(qmodel), path)
    ort_acc = _ort_accuracy(path, x_test, y_test)
    print(f"fake-quant ONNX in onnxruntime: {ort_acc:.4f}")
    assert abs(ort_acc - torch_acc) <= 0.005
