# C-contiguous float32 arrays as the compiled kernels take them (included by _conv.pyx,
# _blocked.pyx and _norm.pyx, after `import numpy as np` and `cimport numpy as cnp`).

cdef inline bint _f32_c(a):
    """a is a C-contiguous float32 ndarray."""
    return type(a) is np.ndarray and cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT32 \
        and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a)


cdef inline float* _fp(a):
    """The data of the ndarray a (a C-contiguous float32 one)."""
    return <float*>cnp.PyArray_DATA(<cnp.ndarray>a)
