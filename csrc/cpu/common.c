/* common.c: helpers shared by every C kernel (lrnn/common.h). */
#include "lrnn/common.h"

const char *lrnn_status_string(lrnn_status status) {
  switch (status) {
    case LRNN_OK: return "ok";
    case LRNN_ERR_DTYPE: return "unsupported dtype";
    case LRNN_ERR_SHAPE: return "invalid shape";
    case LRNN_ERR_ARGUMENT: return "invalid argument";
    case LRNN_ERR_CUDA: return "CUDA launch failed";
  }
  return "unknown status";
}
