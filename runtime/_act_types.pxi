# qcc_act, the conv epilogue's description, and its kinds (runtime/_common.h):
# declared once for the modules that pass it to their kernels (included before
# their own declarations).

cdef extern from "_common.h" nogil:
    ctypedef struct qcc_act:
        int kind
        float lo, hi
        const float* base
        Py_ssize_t plane
        int channels
        const float* mul
        const float* shift
        const float* add
        const float* fq_scale
        const float* fq_zero
        int fq_per_channel
        float qmin, qmax
    int QCC_ACT_NONE, QCC_ACT_RELU, QCC_ACT_CLIP, QCC_ACT_HARD_SWISH
    int QCC_ACT_HARD_SIGMOID, QCC_ACT_SIGMOID
