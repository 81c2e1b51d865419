/* The builtin float ops the delegate runs between its LCE ops: MAX_POOL_2D
 * and RESIZE_NEAREST_NEIGHBOR, with TFLite's reference semantics (a pooling
 * window counts only its in-image taps; nearest-neighbour source indices as
 * TFLite's GetNearestNeighbor computes them, in float). Both are exact: a max
 * and a copy give the same bits in every runtime. */
#ifndef BINLAND_FLOAT_OPS_H_
#define BINLAND_FLOAT_OPS_H_

#include <stddef.h>

#include "lce_ops.h"

/* 1 if `node` (a builtin MAX_POOL_2D / RESIZE_NEAREST_NEIGHBOR) is one we run:
 * float32 in and out, a supported activation, a constant output size. */
int float_op_supported(const TfLiteContext* context, const TfLiteNode* node, int builtin_code);

/* Reads the node's options; returns 0, or -1 with err set. */
int float_op_init(lce_op* op, int builtin_code, int node_index, const TfLiteNode* node,
                  const bgemm_impl* gemm, char* err, size_t err_len);

/* Checks shapes and builds the resize index tables; 0, or -1 with err set. */
int float_op_prepare(lce_op* op, const TfLiteContext* context, const TfLiteTensor* in,
                     const TfLiteTensor* out, char* err, size_t err_len);

void float_op_run(const lce_op* op, const float* input, float* output, thread_pool* pool);

void float_op_release(lce_op* op);

#endif /* BINLAND_FLOAT_OPS_H_ */
