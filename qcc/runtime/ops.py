"""The runtime's kernel table: one table, filled by one decorator, read when a plan is
compiled.

An entry maps (op class, operand kind) to a *builder*. The kind is `"int"` when the
op's first operand has an integer or quantized element type, `"float"` otherwise
(read from the IR's types once, at plan time); an entry registered without a kind
serves both. A builder runs once per op of a plan: it decodes the op's attributes
(strides, pads, qtypes, multipliers, zero points), packs the constant operands it
is given, and returns the step's function of arrays (a `Kernel`). Nothing is
decided again when the step runs.

Float layers go to the compiled kernels (`qcc.runtime.kernels`), integer layers to
`qcc.runtime.int8`, the Ascend ops to `qcc.runtime.ascend_ops`, reshape / transpose /
split to `qcc.runtime.shape_ops` (attributes decoded here, not on every call); the
other element-wise, shape and normalization ops run their numpy semantics from
`qcc.dialects.qnn_eval`, the same functions canonicalize folds constants with.
"""

# The table is filled by the modules below as they are imported (core and qnn_eval
# fallbacks, then the float layers, then the quant ops), in that order.
from qcc.runtime import kernels as C
from qcc.runtime.kernel_table import (
    ELTWISE,
    TABLE,
    Builder,
    Consts,
    Kernel,
    build,
    is_f32,
    kernel,
    operand_kind,
)
from qcc.runtime.layer_ops import (
    ConvSpec,
    Epilogue,
    activation_args,
    activation_of,
    batch_norm_affine,
    conv_kernel,
    epilogue_runs,
    extend_epilogue,
    gelu_kernel,
    layer_norm_kernel,
)
from qcc.runtime.quant_ops import (
    add_activation,
    fake_quant_into,
    fake_quant_params,
    fold_at_compile_time,
    fuse,
    in_place,
    per_tensor_fake_quant,
)

__all__ = [
    "C", "ELTWISE", "Consts", "Kernel", "Builder", "TABLE", "kernel", "operand_kind", "build",
    "is_f32", "Epilogue", "ConvSpec", "conv_kernel", "epilogue_runs", "extend_epilogue",
    "activation_of", "activation_args", "layer_norm_kernel", "gelu_kernel",
    "batch_norm_affine", "per_tensor_fake_quant", "fake_quant_params", "fake_quant_into",
    "fold_at_compile_time", "add_activation", "in_place", "fuse",
]
