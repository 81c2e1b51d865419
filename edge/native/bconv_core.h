/* What the binary convolution's two files share: op_bconv2d.c (options, prepare, weight
 * packing, run) and bconv_core.c (its tasks: the im2col and direct window paths, the GEMM
 * calls, the output transform). */
#ifndef BINLAND_BCONV_CORE_H_
#define BINLAND_BCONV_CORE_H_

#include <stddef.h>
#include <stdint.h>

#include "op_core.h"

/* The run's task geometry, shared by prepare (which sizes the scratch for the largest tasks,
 * those of one thread, against the budget), bconv2d_run and the tasks. */

/* Direct convs: tasks per thread at least (when the rows allow). More, smaller
 * tasks balance better when another process takes a core now and then; 8
 * measured at least as fast as 4 on the paper model, quiet or loaded. */
#define DIRECT_TASKS_PER_THREAD 8

/* Output rows per direct task: the padded input rows they read around 24 KB (in L1 while
 * every filter block streams past), and at least DIRECT_TASKS_PER_THREAD tasks per thread. */
static inline int direct_rows_per_task(const lce_op* op, int threads) {
  const size_t row_bytes = (size_t)op->pad_w * op->in_words * 4;
  const int span_h = (op->filter_h - 1) * op->dilation_h;
  int rows = (int)(24576 / row_bytes);
  rows = rows > span_h + 1 ? (rows - span_h - 1) / op->stride_h + 1 : 1;
  const int tasks = DIRECT_TASKS_PER_THREAD * threads;
  const int balanced = (op->batch * op->out_h + tasks - 1) / tasks;
  if (threads > 1 && rows > balanced) rows = balanced;
  if (rows > op->out_h) rows = op->out_h;
  return rows < 1 ? 1 : rows;
}

/* The padded input rows `rows` output rows read. */
static inline int direct_input_rows(const lce_op* op, int rows) {
  return (rows - 1) * op->stride_h + (op->filter_h - 1) * op->dilation_h + 1;
}

/* Row segments of a direct task: accumulators around 32 KB. */
static inline int direct_segment(const lce_op* op) {
  const int mr = op->gemm->mr;
  const int seg = 32768 / (op->ldc * 4) / mr * mr;
  return seg < mr ? mr : seg;
}

/* A direct task's windows: its padded rows, plus the slack the last kernel call of a row may
 * read past its end (mr pixels, stride * words apart); and its accumulators. */
static inline size_t direct_a_bytes(const lce_op* op, int in_rows) {
  const size_t words = (size_t)op->in_words;
  return round64(((size_t)in_rows * op->pad_w * words +
                  (size_t)op->gemm->mr * op->stride_w * words) * 4);
}

static inline size_t direct_c_bytes(const lce_op* op, int seg) {
  return round64(((size_t)seg + op->gemm->mr) * op->ldc * 4);
}

/* Pixels per im2col task: a task's im2col block around 24 KB so it stays in L1 while every
 * filter block streams past it; at least 4 tasks per thread. */
static inline int im2col_pixels_per_task(const lce_op* op, int pixels, int threads) {
  const int mr = op->gemm->mr;
  int per = 24576 / (op->kernel_words * 4);
  per = (per / mr) * mr;
  if (per < mr) per = mr;
  if (per > 128) per = 128;
  const int balanced = (pixels + 4 * threads - 1) / (4 * threads);
  if (threads > 1 && per > balanced) per = ((balanced + mr - 1) / mr) * mr;
  return per;
}

/* An im2col task of `count` pixels: its rows (a multiple of mr) of windows and of
 * accumulators. */
static inline size_t im2col_a_bytes(const lce_op* op, int count) {
  const size_t rows = (size_t)((count + op->gemm->mr - 1) / op->gemm->mr) * op->gemm->mr;
  return round64(rows * op->kernel_words * 4);
}

static inline size_t im2col_c_bytes(const lce_op* op, int count) {
  const size_t rows = (size_t)((count + op->gemm->mr - 1) / op->gemm->mr) * op->gemm->mr;
  return round64(rows * op->ldc * 4);
}

typedef struct {
  const lce_op* op;
  const uint32_t* input;
  void* output;
  thread_pool* pool;
  int pixels_per_task;
  int pixels;
  int ldc; /* accumulator row length: groups * blocks_per_group * nr */
  int rows_per_task, tasks_per_image, seg_pixels; /* direct */
  int failed;
} bconv_job;

/* The pool tasks of a binary conv (bconv_core.c): pixels_per_task pixels through im2col, or
 * rows_per_task output rows of one image read in place (direct). */
void bconv_im2col_task(void* arg, int task, int thread_id);
void bconv_direct_task(void* arg, int task, int thread_id);

#endif /* BINLAND_BCONV_CORE_H_ */
