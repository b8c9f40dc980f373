#include <cblas.h>
#include <lapacke.h>
#include <malloc.h>

/* Keeps blocks below 256 MiB in glibc's heap, and freed memory until 1 GiB is free, so a training step reuses the
   previous step's activations instead of faulting in fresh zero pages from mmap (see BLAS.configured). */
static inline void ligand_keep_heap(void) {
#ifdef M_MMAP_THRESHOLD
    mallopt(M_MMAP_THRESHOLD, 1 << 28);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}
