# The conv epilogue's activation as a qcc_act (included by _conv.pyx and _blocked.pyx,
# which include _act_types.pxi and cimport memset).


cdef qcc_act _activation(activation) except *:
    """None, "relu", ("clip", lo, hi), "hard_swish", ("hard_sigmoid", alpha, beta) or
    "sigmoid" as a qcc_act (no residual, no fake-quant)."""
    cdef qcc_act act
    memset(&act, 0, sizeof(act))
    if activation is None:
        return act
    if activation in ("relu", "hard_swish", "sigmoid"):
        act.kind = {"relu": QCC_ACT_RELU, "hard_swish": QCC_ACT_HARD_SWISH,
                    "sigmoid": QCC_ACT_SIGMOID}[activation]
        return act
    if isinstance(activation, tuple) and len(activation) == 3 and \
            activation[0] in ("clip", "hard_sigmoid"):
        act.kind = QCC_ACT_CLIP if activation[0] == "clip" else QCC_ACT_HARD_SIGMOID
        act.lo = <float>float(activation[1])
        act.hi = <float>float(activation[2])
        return act
    raise ValueError(f"conv activation {activation!r}: expected None, 'relu', ('clip', "
                     "lo, hi), 'hard_swish', ('hard_sigmoid', alpha, beta) or 'sigmoid'")
