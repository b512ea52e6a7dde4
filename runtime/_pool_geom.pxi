# qcc_pool_geom, a pool's geometry (runtime/_pool_geom.h): declared once for the
# modules that pass it to their kernels (_pool.pyx, _blocked.pyx; included before
# their own declarations).

cdef extern from "_pool_geom.h" nogil:
    ctypedef struct qcc_pool_geom:
        int sp[3]
        int k[3]
        int osp[3]
        int st[3]
        int pb[3]
        int pe[3]
        int dl[3]
