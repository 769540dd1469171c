/* lrnn/common.h: what every lrnn C kernel shares — status codes, element types and the
 * conventions of the C boundary. No torch, no allocation, no threads.
 *
 * Conventions for every op:
 *  - One params struct per op (`lrnn_<op>_params`): raw pointers, sizes and strides.
 *  - Strides are counted in elements (not bytes); a stride of 0 broadcasts that dimension.
 *  - A complex tensor is interleaved (re, im) and its strides count complex elements.
 *  - Kernels compute the slice of work they are given and return a status; the caller
 *    (the ops layer) allocates, checks arguments first and runs slices in parallel. */
#ifndef LRNN_COMMON_H
#define LRNN_COMMON_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lrnn_status {
  LRNN_OK = 0,
  LRNN_ERR_DTYPE = 1,      /* unsupported element type or type combination */
  LRNN_ERR_SHAPE = 2,      /* negative or inconsistent sizes */
  LRNN_ERR_ARGUMENT = 3,   /* a required pointer is NULL or a range is out of bounds */
  LRNN_ERR_CUDA = 4        /* a CUDA launch failed (see cudaGetLastError) */
} lrnn_status;

typedef enum lrnn_dtype {
  LRNN_F32 = 0,
  LRNN_F64 = 1,
  LRNN_BF16 = 2,
  LRNN_F16 = 3,
  LRNN_C64 = 4,    /* complex64: two float32 */
  LRNN_C128 = 5    /* complex128: two float64 */
} lrnn_dtype;

/* Short human-readable text for a status, for error messages. */
const char *lrnn_status_string(lrnn_status status);

#ifdef __cplusplus
}
#endif

#endif /* LRNN_COMMON_H */
