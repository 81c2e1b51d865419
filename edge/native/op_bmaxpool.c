/* LceBMaxPool2d: bitwise AND over the in-image part of each window. */
#include "op_core.h"

int bmaxpool_init(lce_op* op, const uint8_t* buf, size_t len, char* err, size_t err_len) {
  if (read_int_option(op, buf, len, "stride_height", 1, 0, &op->stride_h, err, err_len) ||
      read_int_option(op, buf, len, "stride_width", 1, 0, &op->stride_w, err, err_len) ||
      read_int_option(op, buf, len, "filter_height", 1, 0, &op->filter_h, err, err_len) ||
      read_int_option(op, buf, len, "filter_width", 1, 0, &op->filter_w, err, err_len) ||
      read_padding(op, buf, len, err, err_len)) {
    return -1;
  }
  if (op->stride_h < 1 || op->stride_w < 1 || op->filter_h < 1 || op->filter_w < 1) {
    return fail(err, err_len, "%s (node %d): strides and filter sizes must be >= 1", op->name,
                op->node_index);
  }
  return 0;
}

int bmaxpool_prepare(lce_op* op, const TfLiteTensor* in, const TfLiteTensor* out, char* err,
                     size_t err_len) {
  op->stride_h = op->option_stride_h;
  op->stride_w = op->option_stride_w;
  if (in->type != kTfLiteInt32 || in->dims->size != 4) {
    return fail(err, err_len, "%s (node %d): input must be a 4-D int32 (bitpacked) tensor",
                op->name, op->node_index);
  }
  if (out->type != kTfLiteInt32) {
    return fail(err, err_len, "%s (node %d): output must be int32 (bitpacked)", op->name,
                op->node_index);
  }
  op->batch = in->dims->data[0];
  op->in_h = in->dims->data[1];
  op->in_w = in->dims->data[2];
  op->in_words = in->dims->data[3];
  if (lce_window_geometry(op, "height", op->in_h, op->filter_h, 1, op->padding_same,
                          &op->stride_h, &op->out_h, &op->pad_top, err, err_len) ||
      lce_window_geometry(op, "width", op->in_w, op->filter_w, 1, op->padding_same,
                          &op->stride_w, &op->out_w, &op->pad_left, err, err_len)) {
    return -1;
  }
  const int expected[4] = {op->batch, op->out_h, op->out_w, op->in_words};
  return check_output_dims(op, out, 4, expected, err, err_len);
}

typedef struct {
  const lce_op* op;
  const uint32_t* input;
  uint32_t* output;
} pool_job;

VECTOR_CLONES static void bmaxpool_task(void* arg, int task, int thread_id) {
  (void)thread_id;
  const pool_job* job = arg;
  const lce_op* op = job->op;
  const int n = task / op->out_h;
  const int oy = task % op->out_h;
  const int words = op->in_words;
  const int y0 = oy * op->stride_h - op->pad_top;
  int ky0, ky1;
  window_taps(y0, op->filter_h, op->in_h, &ky0, &ky1);
  uint32_t* out = job->output + ((size_t)n * op->out_h + oy) * op->out_w * words;
  for (int ox = 0; ox < op->out_w; ++ox, out += words) {
    const int x0 = ox * op->stride_w - op->pad_left;
    int kx0, kx1;
    window_taps(x0, op->filter_w, op->in_w, &kx0, &kx1);
    for (int w = 0; w < words; ++w) out[w] = ~0u;
    for (int ky = ky0; ky < ky1; ++ky) {
      /* The row's start, then the in-image pixels: x0 may be negative (left padding). */
      const uint32_t* row = job->input + ((size_t)n * op->in_h + (y0 + ky)) * op->in_w * words;
      for (int kx = kx0; kx < kx1; ++kx) {
        const uint32_t* px = row + (size_t)(x0 + kx) * words;
        for (int w = 0; w < words; ++w) out[w] &= px[w];
      }
    }
  }
}

int bmaxpool_run(lce_op* op, const void* input, void* output, thread_pool* pool) {
  pool_job job = {op, input, output};
  pool_run(pool, op->batch * op->out_h, bmaxpool_task, &job);
  return 0;
}
