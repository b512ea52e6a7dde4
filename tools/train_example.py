"""Train the embedded example of `qcc quantize`: a small CNN with BatchNorm on
scikit-learn's digits, written as ONNX with its calibration and test data.

    pip install torch==2.13.0 scikit-learn onnx
    python tools/train_example.py            # writes qcc/examples/digits/

The network: three 3x3 convs (16, 32, 32 channels; the last two stride 2), each
followed by BatchNorm and ReLU, global average pooling and a linear layer to 10
classes, on 1x8x8 images scaled to [0, 1]. The ONNX graph is written with
onnx.helper from the trained weights (Conv, BatchNormalization with its running
statistics, Relu, GlobalAveragePool, Flatten, Gemm), so no exporter is involved.
Outputs: model.onnx, calib.npz (256 training images, key "input"), test.npz (the
held-out images and "labels").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT = Path(__file__).parents[1] / "qcc" / "examples" / "digits"


def data(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(x, digits.target, test_size=0.25, random_state=seed,
                            stratify=digits.target)


def train(x, y, seed: int, epochs: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    return net.eval()


def to_onnx(net):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def init(name, t):
        inits.append(numpy_helper.from_array(t.detach().numpy().astype(np.float32), name))
        return name

    convs = [m for m in net if m.__class__.__name__ == "Conv2d"]
    bns = [m for m in net if m.__class__.__name__ == "BatchNorm2d"]
    x = "input"
    for i, (conv, bn) in enumerate(zip(convs, bns, strict=True), 1):
        nodes.append(helper.make_node(
            "Conv", [x, init(f"conv{i}.weight", conv.weight), init(f"conv{i}.bias", conv.bias)],
            [f"conv{i}"], name=f"conv{i}", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
            strides=list(conv.stride)))
        nodes.append(helper.make_node(
            "BatchNormalization",
            [f"conv{i}", init(f"bn{i}.weight", bn.weight), init(f"bn{i}.bias", bn.bias),
             init(f"bn{i}.running_mean", bn.running_mean),
             init(f"bn{i}.running_var", bn.running_var)],
            [f"bn{i}"], name=f"bn{i}", epsilon=bn.eps))
        nodes.append(helper.make_node("Relu", [f"bn{i}"], [f"relu{i}"], name=f"relu{i}"))
        x = f"relu{i}"
    fc = net[-1]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"),
              helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", init("fc.weight", fc.weight),
                                        init("fc.bias", fc.bias)], ["logits"], name="fc",
                               transB=1)]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=8, producer_name="qcc tools/train_example.py")
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("-o", "--out", type=Path, default=OUT)
    args = ap.parse_args()
    import onnx
    import torch

    x_train, x_test, y_train, y_test = data(args.seed)
    net = train(x_train, y_train, args.seed, args.epochs)
    with torch.no_grad():
        acc = (net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
    args.out.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(net), args.out / "model.onnx")
    rng = np.random.default_rng(args.seed)
    calib = x_train[rng.choice(len(x_train), 256, replace=False)]
    np.savez_compressed(args.out / "calib.npz", input=calib)
    np.savez_compressed(args.out / "test.npz", input=x_test, labels=y_test.astype(np.int64))
    print(f"test accuracy (torch) {acc:.4f} on {len(y_test)} images; wrote {args.out}")


if __name__ == "__main__":
    main()
