"""Runtime kernels of the data-movement ops whose attributes qnn_eval decodes on every
call (`qnn.reshape`, `qnn.transpose`, `qnn.split`), registered in the kernel table of
`qcc.runtime.ops` with their attributes decoded once, when the plan is built.

The same arrays as qnn_eval's: a reshape is a view of its operand, the parts of a split
C-contiguous (views where they already are), a transpose a new C-contiguous array (a
float32 one written into the step's buffer), but for a transpose and split whose parts
only kernels that copy from any strides read (`_parts_read_in_place`): views.
A transformer exports about one such op for every two of its layers' other ops: ViT-Tiny
has 110 of them, and decoding their properties (xDSL attributes) was several
microseconds each per run.
"""

from __future__ import annotations

import numpy as np

from qcc.dialects import qnn, quant
from qcc.dialects.base import get_int, get_ints
from qcc.runtime.ops import ELTWISE, Kernel, is_f32, kernel


@kernel(qnn.ReshapeOp)
def _reshape(op, consts):
    shape = list(get_ints(op.properties.get("shape")))
    copied = tuple(get_ints(op.properties.get("copy_dims")))

    def run(x):
        if not copied:
            return x.reshape(shape)
        dims = list(shape)
        for i in copied:  # a copied (symbolic) dim of the input
            dims[i] = x.shape[i]
        return x.reshape(dims)

    return Kernel(run)


@kernel(qnn.TransposeOp)
def _transpose(op, consts):
    perm = tuple(get_ints(op.properties.get("perm")))
    f32 = is_f32(op.operands[0]) and is_f32(op.results[0])
    # a transpose moving the last dim: AVX-512 tiles (numpy's copy of a (1, 3, 197,
    # 64) array to (1, 3, 64, 197) took 24 us, the tiles 8); numpy copies rows as fast
    copy = ELTWISE.transpose if ELTWISE is not None and f32 and perm and \
        perm[-1] != len(perm) - 1 else None

    def run(x, out=None):
        if out is None:  # a copy even where the transpose keeps the layout: fresh
            return x.transpose(perm).copy(order="C")
        if copy is not None and x.dtype == np.float32:
            return copy(x, perm, out=out)
        np.copyto(out, x.transpose(perm))
        return out

    if _parts_read_in_place(op):
        return Kernel(lambda x: x.transpose(perm))   # a view: not fresh
    # the step's preallocated buffers are float32
    return Kernel(run, fresh=True, takes_out=f32)


def _parts_read_in_place(transpose) -> bool:
    """Whether `transpose`'s only user is a split whose parts only reshapes read, and
    those only a fake-quant, a multiply or a transpose (kernels that write their own
    buffer from any strides, in one pass: `_eltwise.transpose`): then the transpose
    and the split give views (a fake-quantized attention's query, key and value;
    copying the whole (3, 1, 3, 197, 64) array first took ViT-Tiny 20 us a block)."""
    users = [u.operation for u in transpose.results[0].uses]
    if len(users) != 1 or not isinstance(users[0], qnn.SplitOp):
        return False
    reshapes = [u.operation for part in users[0].results for u in part.uses]
    return all(isinstance(r, qnn.ReshapeOp) and all(
        isinstance(u.operation, quant.FakeQuantOp | qnn.MulOp | qnn.TransposeOp)
        for u in r.results[0].uses) for r in reshapes)


@kernel(qnn.SplitOp)
def _split(op, consts):
    sizes = list(get_ints(op.properties.get("sizes")))
    axis = get_int(op.properties.get("axis"))
    # the parts as slices (np.split's own Python took 20 us a call: an attention's
    # query, key and value); the last part runs to the end, as np.split's
    starts = [0, *np.cumsum(sizes)[:-1].tolist()]
    ends = [*starts[1:], None]
    index = [(slice(None),) * axis + (slice(a, b),) for a, b in zip(starts, ends, strict=True)] \
        if axis >= 0 else [(Ellipsis, slice(a, b)) + (slice(None),) * (-axis - 1)
                           for a, b in zip(starts, ends, strict=True)]
    src = op.operands[0].owner
    if isinstance(src, qnn.TransposeOp) and _parts_read_in_place(src):
        return Kernel(lambda x: [x[i] for i in index])   # views of the view

    def run(x):
        return [np.ascontiguousarray(x[i]) for i in index]

    # not fresh: a part that is already contiguous (a split along the first dim) is a
    # view of x, which a follower must not update in place
    return Kernel(run)
