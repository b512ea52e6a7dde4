# The int8 layers' output stages (runtime/_int8_impl.h's qcc_i8_out): requantize,
# the Ascend dequant (and its quant), the residual stage, and the result arrays they
# write. Included by _int8.pyx (split out of it, unchanged).


def _multipliers(multiplier, int o):
    m = np.ascontiguousarray(np.broadcast_to(np.asarray(multiplier, np.float32).reshape(-1),
                                             (o,)), np.float32)
    return m


cdef int _half_best():
    cdef int level = 2
    while level > 0 and not qcc_h_supported(level):
        level -= 1
    return level


cdef int _half_level = _half_best()

STAGES = {"float32": (QCC_H_F32, np.float32), "float16": (QCC_H_F16, np.float16),
          "float16_as_float32": (QCC_H_F16F32, np.float32), "int8": (QCC_H_QUANT, np.int8)}
"""Outputs of the Ascend dequant stage (`dequant_stage`): kind and dtype."""


def requantize_stage(multiplier, int z_y, int qmin=-128, int qmax=127):
    """The output stage clip(rint(float32(acc) * multiplier[o]) + z_y, qmin, qmax) (int8;
    rint rounds half to even; `multiplier` float32, one per output channel or one)."""
    return ("requantize", multiplier, z_y, qmin, qmax)


def dequant_stage(scale, bint relu, out, quant=None):
    """The Ascend dequant as an output stage: v = float32(acc) * scale[o] (one per output
    channel or one), 0 where v < 0 with `relu`, written as `out` (a key of STAGES):
    float32 v, float16 v, float16 v as float32, or "int8": ascend.quant of float16 v,
    `quant` = (scale, offset, sqrt_mode, round_mode index), scale and offset cast to
    float16 (runtime/_half_impl.h; the numbers of qcc.runtime.half's separate steps)."""
    if out not in STAGES or (out == "int8") != (quant is not None):
        raise ValueError(f"dequant stage {out!r} with quant {quant!r}")
    if quant is None:
        return ("dequant", out, scale, relu, (0.0, 0.0, False, 0))
    qscale, qoffset, sqrt_mode, mode = quant
    if not 0 <= mode < 5:
        raise ValueError(f"dequant stage: round_mode index {mode} is not in 0..4")
    return ("dequant", out, scale, relu, (float(np.float16(qscale)),
                                          float(np.float16(qoffset)), sqrt_mode, mode))


def residual_stage(dequant, skip, bint res_first, bint relu, quant=None, bint keep_sum=True):
    """A `dequant_stage` writing float32 values ("float32" or "float16_as_float32")
    followed by a residual add: v + skip (skip + v with `res_first`: the add's operand
    order; skip float32 of the output's shape, or None: no add), relu'd with `relu`
    (NaN stays NaN), kept as float32 (`keep_sum`) and / or quantized by an
    ascend.quant (`quant` as in `dequant_stage`): the layer's output is the float32
    sum, its int8 quant, or the tuple (sum, quant). Numbers of the separate steps
    (numpy's float32 add)."""
    if dequant[0] != "dequant" or dequant[1] not in ("float32", "float16_as_float32"):
        raise ValueError(f"residual stage after {dequant[:2]!r}: expected a dequant "
                         f"stage writing float32 values")
    if not keep_sum and quant is None:
        raise ValueError("residual stage: keeps neither the sum nor its quant")
    q = None
    if quant is not None:
        q = dequant_stage(1.0, False, "int8", quant)[4]
    return ("residual", dequant[1], dequant[2], dequant[3], skip, res_first, relu, q,
            keep_sum)


def with_residual(stage, skip):
    """The `residual_stage` `stage` adding `skip` instead of its own residual (a
    stage made once, given each call's residual)."""
    return (*stage[:4], skip, *stage[5:])


cdef tuple _output(tuple shape, int channels, stage, int isa, qcc_i8_out* o):
    """The result array of a layer with output `stage` (None: int32) and the array of
    per-channel factors its pointers use (kept alive by the caller); fills `o`."""
    o.out = NULL
    o.y = NULL
    o.mult = NULL
    o.yh = NULL
    o.dscale = NULL
    o.zy = o.qmin = o.qmax = 0
    o.hst.kind = 0
    o.hisa = isa if isa < _half_level else _half_level
    o.res = NULL
    o.ysum = NULL
    o.yq = NULL
    o.res_first = o.relu2 = 0
    if stage is None:
        res = np.empty(shape, np.int32)
        o.out = <int32_t*>cnp.PyArray_DATA(res)
        return res, None
    if stage[0] == "requantize":
        _, multiplier, z_y, qmin, qmax = stage
        res = np.empty(shape, np.int8)
        factors = _multipliers(multiplier, channels)
        o.y = <int8_t*>cnp.PyArray_DATA(res)
        o.mult = <const float*>cnp.PyArray_DATA(factors)
        o.zy, o.qmin, o.qmax = z_y, qmin, qmax
        return res, factors
    if stage[0] == "residual":
        return _residual_output(shape, channels, stage, o)
    _, out, scale, relu, (qscale, qoffset, sqrt_mode, mode) = stage
    kind, dtype = STAGES[out]
    res = np.empty(shape, dtype)
    factors = _multipliers(scale, channels)
    o.yh = cnp.PyArray_DATA(res)
    o.dscale = <const float*>cnp.PyArray_DATA(factors)
    _set_stage(&o.hst, kind, relu, qscale, qoffset, sqrt_mode, mode)
    return res, factors


cdef tuple _residual_output(tuple shape, int channels, tuple stage, qcc_i8_out* o):
    """`_output` of a `residual_stage`: the float32 sum and / or its int8 quant (a
    tuple of both when both are kept)."""
    _, out, scale, relu, skip, res_first, relu2, quant, keep_sum = stage
    if skip is not None:
        skip = np.ascontiguousarray(skip, np.float32)   # its pointer is read below
    if skip is not None and skip.shape != shape:
        raise ValueError(f"residual stage: the residual {skip.shape} is not the "
                         f"output's shape {shape}")
    factors = _multipliers(scale, channels)
    o.dscale = <const float*>cnp.PyArray_DATA(factors)
    _set_stage(&o.hst, STAGES[out][0], relu, 0.0, 0.0, False, 0)
    if skip is not None:
        o.res = <const float*>cnp.PyArray_DATA(skip)
    o.res_first = res_first
    o.relu2 = relu2
    outs = []
    if keep_sum:
        total = np.empty(shape, np.float32)
        o.ysum = <float*>cnp.PyArray_DATA(total)
        outs.append(total)
    if quant is not None:
        q = np.empty(shape, np.int8)
        o.yq = <int8_t*>cnp.PyArray_DATA(q)
        _set_stage(&o.qst, 0, False, quant[0], quant[1], quant[2], quant[3])
        outs.append(q)
    return (outs[0] if len(outs) == 1 else tuple(outs)), (factors, skip)
