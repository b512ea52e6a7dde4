"""Examples shipped with qcc. `digits()` is the model `qcc quantize` runs with no
arguments: a small CNN with BatchNorm trained on scikit-learn's digits by
tools/train_example.py, with its calibration and test data."""

from pathlib import Path

HERE = Path(__file__).parent


def digits() -> tuple[Path, Path, Path]:
    """(model.onnx, calib.npz, test.npz) of the digits example."""
    d = HERE / "digits"
    return d / "model.onnx", d / "calib.npz", d / "test.npz"
