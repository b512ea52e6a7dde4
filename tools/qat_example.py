"""Quantization-aware training of the embedded digits CNN at W4A4 (range learning).

    python tools/qat_example.py [--epochs 4] [--bn-fold] [-o out/]

Prints float, post-training (W4A4) and QAT accuracies, then writes the trained
model's fake-quant ONNX, record and encodings (qcc.qat.amct.save_quant_retrain_model).
Needs torch, scikit-learn (the training images) and onnxruntime (the float accuracy).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--bn-fold", action="store_true")
    ap.add_argument("-o", "--out", type=Path, default=Path("qat_out"))
    args = ap.parse_args()
    import onnxruntime as ort
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import qcc
    from qcc.examples import digits
    from qcc.qat import amct

    start = time.time()
    model, calib, _ = digits()
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, d.target, test_size=0.25, random_state=0, stratify=d.target)

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(None, {"input": x_test[i:i + 1]})[0]
                             for i in range(len(x_test))])
    float_acc = np.mean(logits.argmax(1) == y_test)

    config = {"weight_bits": 4, "act_bits": 4, "scheme": "range_learning",
              "bn_fold": args.bn_fold, "freeze_bn_delay": 40}
    qmodel = qcc.qat.prepare(model, calib, config)
    print(qmodel.code)

    def accuracy() -> float:
        qmodel.eval()
        with torch.no_grad():
            return float(np.mean(qmodel(torch.from_numpy(x_test)).argmax(1).numpy() == y_test))

    ptq_acc = accuracy()
    torch.manual_seed(0)
    opt = torch.optim.Adam(qmodel.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train.astype(np.int64))
    for epoch in range(args.epochs):
        qmodel.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(qmodel(xt[idx]), yt[idx]).backward()
            opt.step()
        print(f"epoch {epoch + 1}: QAT accuracy {accuracy():.4f}")
    print(f"float {float_acc:.4f}  W4A4 PTQ {ptq_acc:.4f}  W4A4 QAT {accuracy():.4f}  "
          f"({time.time() - start:.1f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = args.out / "retrain.json"
    amct.create_quant_retrain_config(cfg, model, **config)
    for kind, path in amct.save_quant_retrain_model(cfg, qmodel, args.out / "digits").items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
