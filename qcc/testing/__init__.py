"""Helpers for tests and benchmarks: small but real models built in code.

`qcc.testing.models` builds ONNX `ModelProto`s (ResNet-18 for CIFAR, a CNN trained on
scikit-learn's digits, a transformer encoder block) from seeded random weights,
without torch and without downloads.
"""
