#include "float_ops.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_core.h"

static int is_float4d(const TfLiteContext* context, int t) {
  if (t < 0 || (size_t)t >= context->tensors_size) return 0;
  const TfLiteTensor* x = &context->tensors[t];
  return x->type == kTfLiteFloat32 && x->dims && x->dims->size == 4;
}

int float_op_supported(const TfLiteContext* context, const TfLiteNode* node, int builtin_code) {
  if (!node || !node->inputs || !node->outputs || node->outputs->size != 1 || !node->builtin_data ||
      node->inputs->size < 1 || !is_float4d(context, node->inputs->data[0]) ||
      !is_float4d(context, node->outputs->data[0])) {
    return 0;
  }
  if (builtin_code == kTfLiteBuiltinMaxPool2d) {
    const TfLitePoolParamsPrefix* p = node->builtin_data;
    return node->inputs->size == 1 && p->activation >= kTfLiteActNone &&
           p->activation <= kTfLiteActRelu6 && p->stride_width > 0 && p->stride_height > 0 &&
           p->filter_width > 0 && p->filter_height > 0 &&
           (p->padding == kTfLitePaddingSame || p->padding == kTfLitePaddingValid);
  }
  if (builtin_code == kTfLiteBuiltinResizeNearestNeighbor) {
    /* The output size must be a constant: the output shape is then fixed. */
    if (node->inputs->size != 2) return 0;
    const int size = node->inputs->data[1];
    return size >= 0 && (size_t)size < context->tensors_size &&
           context->tensors[size].allocation_type == kTfLiteMmapRo;
  }
  return 0;
}

int float_op_init(lce_op* op, int builtin_code, int node_index, const TfLiteNode* node,
                  const bgemm_impl* gemm, char* err, size_t err_len) {
  const int pool = builtin_code == kTfLiteBuiltinMaxPool2d;
  lce_op_reset(op, pool ? "MAX_POOL_2D" : "RESIZE_NEAREST_NEIGHBOR", node_index, gemm);
  op->kind = pool ? OP_MAXPOOL : OP_RESIZE;
  if (!node->inputs || node->inputs->size < 1 || !node->outputs || node->outputs->size != 1 ||
      !node->builtin_data) {
    snprintf(err, err_len, "%s (node %d): expected an input, an output and options", op->name,
             node_index);
    return -1;
  }
  op->inputs[0] = node->inputs->data[0];
  op->num_inputs = 1;
  /* resize: the constant output size, checked against the output's shape in prepare
   * (inputs[1], outside num_inputs: it is no activation) */
  if (!pool && node->inputs->size == 2) op->inputs[1] = node->inputs->data[1];
  op->output = node->outputs->data[0];
  if (pool) {
    const TfLitePoolParamsPrefix* p = node->builtin_data;
    op->filter_h = p->filter_height;
    op->filter_w = p->filter_width;
    op->option_stride_h = op->stride_h = p->stride_height;
    op->option_stride_w = op->stride_w = p->stride_width;
    op->padding_same = p->padding == kTfLitePaddingSame;
    op->activation = p->activation;
    if (op->activation < kTfLiteActNone || op->activation > kTfLiteActRelu6) {
      snprintf(err, err_len, "%s (node %d): fused activation %d is not supported", op->name,
               node_index, op->activation);
      return -1;
    }
  } else {
    const TfLiteResizeNearestNeighborParams* p = node->builtin_data;
    op->align_corners = p->align_corners;
    op->half_pixel_centers = p->half_pixel_centers;
  }
  return 0;
}

/* TFLite's GetNearestNeighbor, in float as it computes it. */
static int nearest(int value, int in_size, int out_size, int align_corners, int half_pixel) {
  const float scale = (align_corners && out_size > 1)
                          ? (float)(in_size - 1) / (float)(out_size - 1)
                          : (float)in_size / (float)out_size;
  const float offset = half_pixel ? 0.5f : 0.0f;
  const float at = ((float)value + offset) * scale;
  int source = align_corners ? (int)roundf(at) : (int)floorf(at);
  if (source > in_size - 1) source = in_size - 1;
  if (half_pixel && source < 0) source = 0;
  return source;
}

int float_op_prepare(lce_op* op, const TfLiteContext* context, const TfLiteTensor* in,
                     const TfLiteTensor* out, char* err, size_t err_len) {
  if (in->type != kTfLiteFloat32 || out->type != kTfLiteFloat32 || in->dims->size != 4 ||
      out->dims->size != 4) {
    snprintf(err, err_len, "%s (node %d): input and output must be 4-D float32", op->name,
             op->node_index);
    return -1;
  }
  op->batch = in->dims->data[0];
  op->in_h = in->dims->data[1];
  op->in_w = in->dims->data[2];
  op->channels = in->dims->data[3];
  op->out_h = out->dims->data[1];
  op->out_w = out->dims->data[2];
  /* lce_op_prepare has checked both shapes: every dimension at least 1, sizes in the budget. */
  op->rows = op->batch * op->out_h * op->out_w;
  if (out->dims->data[0] != op->batch || out->dims->data[3] != op->channels) {
    snprintf(err, err_len, "%s (node %d): output shape does not match the input", op->name,
             op->node_index);
    return -1;
  }
  if (op->kind == OP_MAXPOOL) {
    /* TFLite's ComputePaddingHeightWidth, one axis at a time, bounded by the input. */
    int out_h, out_w;
    op->stride_h = op->option_stride_h;
    op->stride_w = op->option_stride_w;
    if (lce_window_geometry(op, "height", op->in_h, op->filter_h, 1, op->padding_same,
                            &op->stride_h, &out_h, &op->pad_top, err, err_len) ||
        lce_window_geometry(op, "width", op->in_w, op->filter_w, 1, op->padding_same,
                            &op->stride_w, &out_w, &op->pad_left, err, err_len)) {
      return -1;
    }
    if (out_h != op->out_h || out_w != op->out_w) {
      snprintf(err, err_len, "%s (node %d): output shape does not match the window", op->name,
               op->node_index);
      return -1;
    }
    return 0;
  }
  const int size = op->inputs[1];
  const TfLiteTensor* hw =
      size >= 0 && (size_t)size < context->tensors_size ? &context->tensors[size] : NULL;
  if (!hw || hw->type != kTfLiteInt32 || !hw->data || hw->bytes != 2 * sizeof(int32_t)) {
    snprintf(err, err_len, "%s (node %d): the size input must be 2 constant int32", op->name,
             op->node_index);
    return -1;
  }
  const int32_t* wanted = hw->data;
  if (wanted[0] != op->out_h || wanted[1] != op->out_w) {
    snprintf(err, err_len, "%s (node %d): the size input says %dx%d but the output is %dx%d",
             op->name, op->node_index, (int)wanted[0], (int)wanted[1], op->out_h, op->out_w);
    return -1;
  }
  free(op->src_rows);
  free(op->src_cols);
  op->src_rows = malloc(sizeof(int32_t) * (size_t)op->out_h);
  op->src_cols = malloc(sizeof(int32_t) * (size_t)op->out_w);
  if (!op->src_rows || !op->src_cols) {
    snprintf(err, err_len, "%s: out of memory", op->name);
    return -1;
  }
  for (int y = 0; y < op->out_h; ++y) {
    op->src_rows[y] = nearest(y, op->in_h, op->out_h, op->align_corners, op->half_pixel_centers);
  }
  for (int x = 0; x < op->out_w; ++x) {
    op->src_cols[x] = nearest(x, op->in_w, op->out_w, op->align_corners, op->half_pixel_centers);
  }
  return 0;
}

typedef struct {
  const lce_op* op;
  const float* input;
  float* output;
} float_job;

/* One output row of a max pool: the max over the window's in-image taps, then
 * the activation's clamp, as TFLite's reference kernel. */
VECTOR_CLONES static void maxpool_task(void* arg, int task, int thread_id) {
  (void)thread_id;
  const float_job* job = arg;
  const lce_op* op = job->op;
  const int n = task / op->out_h, oy = task % op->out_h;
  const size_t channels = (size_t)op->channels;
  float lo = -FLT_MAX, hi = FLT_MAX;
  if (op->activation == kTfLiteActRelu) lo = 0.0f;
  if (op->activation == kTfLiteActRelu6) lo = 0.0f, hi = 6.0f;
  if (op->activation == kTfLiteActReluN1To1) lo = -1.0f, hi = 1.0f;
  const int y0 = oy * op->stride_h - op->pad_top;
  int ky0, ky1;
  window_taps(y0, op->filter_h, op->in_h, &ky0, &ky1);
  float* out = job->output + ((size_t)n * op->out_h + oy) * op->out_w * channels;
  for (int ox = 0; ox < op->out_w; ++ox, out += channels) {
    const int x0 = ox * op->stride_w - op->pad_left;
    int kx0, kx1;
    window_taps(x0, op->filter_w, op->in_w, &kx0, &kx1);
    for (size_t c = 0; c < channels; ++c) out[c] = -FLT_MAX;
    for (int ky = ky0; ky < ky1; ++ky) {
      const float* row = job->input + (((size_t)n * op->in_h + (y0 + ky)) * op->in_w) * channels;
      for (int kx = kx0; kx < kx1; ++kx) {
        const float* px = row + (size_t)(x0 + kx) * channels;
        for (size_t c = 0; c < channels; ++c) out[c] = px[c] > out[c] ? px[c] : out[c];
      }
    }
    for (size_t c = 0; c < channels; ++c) {
      const float v = out[c] < lo ? lo : out[c];
      out[c] = v > hi ? hi : v;
    }
  }
}

/* One output row of a nearest-neighbour resize: pixel copies. */
static void resize_task(void* arg, int task, int thread_id) {
  (void)thread_id;
  const float_job* job = arg;
  const lce_op* op = job->op;
  const int n = task / op->out_h, oy = task % op->out_h;
  const size_t channels = (size_t)op->channels;
  const float* row = job->input + ((size_t)n * op->in_h + op->src_rows[oy]) * op->in_w * channels;
  float* out = job->output + ((size_t)n * op->out_h + oy) * op->out_w * channels;
  for (int ox = 0; ox < op->out_w; ++ox, out += channels) {
    memcpy(out, row + (size_t)op->src_cols[ox] * channels, sizeof(float) * channels);
  }
}

void float_op_run(const lce_op* op, const float* input, float* output, thread_pool* pool) {
  float_job job = {op, input, output};
  pool_run(pool, op->batch * op->out_h, op->kind == OP_MAXPOOL ? maxpool_task : resize_task, &job);
}

void float_op_release(lce_op* op) {
  free(op->src_rows);
  free(op->src_cols);
  op->src_rows = op->src_cols = NULL;
}
