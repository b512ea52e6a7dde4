"""qcc: a quantization compiler for neural networks, built on xDSL.

    import qcc
    module = qcc.load("model.onnx")
    qcc.passes.run(module, "canonicalize")
    outputs = qcc.runtime.run(module, {"x": x})
"""

from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"


def load(path, *, weights: str | os.PathLike | None = None,
         input_shapes: dict[str, tuple[int, ...]] | None = None,
         inputs: list[str] | None = None, outputs: list[str] | None = None,
         example_inputs=None, dynamic_shapes=None):
    """Import a model, the frontend chosen by extension: `.mlir`, `.onnx`, `.prototxt`
    (Caffe; `weights` is its `.caffemodel`), `.pb` (or a SavedModel directory, `.keras`
    file or Keras model; `inputs`/`outputs` name a TensorFlow graph's input and output
    nodes), `.pt2` (`torch.export.save`); or a `torch.nn.Module` with
    `example_inputs=(x,)`."""
    from qcc import ir

    if _is_tensorflow(path):
        from qcc.frontends.tensorflow import load_tensorflow

        return load_tensorflow(path, input_shapes or None, inputs, outputs)
    if not isinstance(path, str | os.PathLike):
        from qcc.frontends.pytorch import load_pytorch

        return load_pytorch(path, example_inputs, dynamic_shapes=dynamic_shapes,
                            input_shapes=input_shapes)
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".mlir":
        return ir.load_module(path)
    if ext == ".onnx":
        from qcc.frontends.onnx import load_onnx

        return load_onnx(path, input_shapes=input_shapes or None)
    if ext in (".pt2", ".pt", ".pth"):
        from qcc.frontends.pytorch import load_exported

        return load_exported(path, input_shapes=input_shapes)
    if ext == ".prototxt":
        from qcc.frontends.caffe import load_caffe

        return load_caffe(path, weights, input_shapes=input_shapes or None)
    from qcc.ir import IRError

    raise IRError(f"{path}: unknown model format '{ext}' (supported: .mlir, .onnx, "
                  ".prototxt, .pb, a SavedModel directory, .keras, .pt2)")


def _is_tensorflow(model) -> bool:
    if not isinstance(model, str | os.PathLike):
        return type(model).__module__.startswith(("keras", "tensorflow", "tf_keras"))
    path = Path(model)
    return path.suffix.lower() in (".pb", ".keras") or (
        path.is_dir() and (path / "saved_model.pb").is_file())


def quantize(model, calib, config=None, outdir=None, *, example_inputs=None,
             dynamic_shapes=None, **options):
    """The whole post-training job (`qcc quantize`): see `qcc.flow.quantize.quantize`.
    A `torch.nn.Module` needs `example_inputs=(x,)`; its files are named after its class."""
    from qcc.flow.quantize import quantize as run

    if not isinstance(model, str | os.PathLike) and example_inputs is not None:
        options.setdefault("name", type(model).__name__.lower())
        model = load(model, example_inputs=example_inputs, dynamic_shapes=dynamic_shapes,
                     input_shapes=options.pop("input_shapes", None))
    return run(model, calib, config, outdir, **options)


def __getattr__(name: str):
    if name in ("passes", "runtime", "ir", "qat"):
        import importlib

        return importlib.import_module(f"qcc.{name}")
    raise AttributeError(name)
