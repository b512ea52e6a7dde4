"""qcc: a quantization compiler for neural networks, built on xDSL."""

__version__ = "0.1.0"
