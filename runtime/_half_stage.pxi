# The parameters of a float16 stage (qcc_h_stage, runtime/_half_impl.h) and their
# setter: one declaration for the modules that fill them (_half.pyx, _int8.pyx).
# Included after numpy and libc.stdint's int8_t are imported.

cdef extern from "_half_impl.h" nogil:
    ctypedef struct qcc_h_stage:
        int kind, relu
        float scale, offset
        int sqrt_mode, mode
        int8_t nan_value

with np.errstate(invalid="ignore"):
    _NAN_INT8_VALUE = int(np.array([np.nan], np.float32).astype(np.int8)[0])
cdef int8_t _NAN_INT8 = _NAN_INT8_VALUE   # a quant stage's int8 of NaN: numpy's cast


cdef inline void _set_stage(qcc_h_stage* st, int kind, bint relu, float scale, float offset,
                            bint sqrt_mode, int mode) noexcept nogil:
    """st = (kind, relu) of a dequant and (scale, offset, sqrt_mode, mode) of a quant."""
    st.kind = kind
    st.relu = relu
    st.scale = scale
    st.offset = offset
    st.sqrt_mode = sqrt_mode
    st.mode = mode
    st.nan_value = _NAN_INT8
