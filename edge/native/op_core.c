/* Helpers every op file shares (op_core.h): errors, type sizes, the op reset, option
 * readers, the checks prepare makes against the tensors, window geometry, the row split and
 * the float quantize of one row. */
#include "op_core.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbuf.h"

int fail(char* err, size_t err_len, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(err, err_len, fmt, args);
  va_end(args);
  return -1;
}

int type_size(int type) {
  switch (type) {
    case kTfLiteFloat32:
    case kTfLiteInt32: return 4;
    case kTfLiteInt8:
    case kTfLiteUInt8: return 1;
    default: return 0;
  }
}

const char* type_name(int type) {
  switch (type) {
    case kTfLiteFloat32: return "float32";
    case kTfLiteInt32: return "int32";
    case kTfLiteInt8: return "int8";
    case kTfLiteUInt8: return "uint8";
    default: return "unsupported type";
  }
}

void lce_op_reset(lce_op* op, const char* name, int node_index, const bgemm_impl* gemm) {
  memset(op, 0, sizeof(*op));
  snprintf(op->name, sizeof(op->name), "%s", name);
  op->node_index = node_index;
  op->gemm = gemm;
  op->output = -1;
  for (int i = 0; i < 5; ++i) op->inputs[i] = kTfLiteOptionalTensor;
  op->pre_mul = op->pre_add = op->pre_mul_out = op->pre_add_out = -1;
  op->pre_mul_node = op->pre_add_node = -1;
  op->add_other = op->add_node = op->cat_out = -1;
}

/* ------------------------------------------------------------- options */

int read_int_option(const lce_op* op, const uint8_t* buf, size_t len, const char* key,
                    int required, int fallback, int* out, char* err, size_t err_len) {
  flex_value v;
  if (flex_map_lookup(buf, len, key, &v) != 0) {
    return fail(err, err_len, "%s (node %d): custom options are not a flexbuffer map", op->name,
                op->node_index);
  }
  if (v.kind == FLEX_MISSING) {
    if (required) {
      return fail(err, err_len, "%s (node %d): option '%s' is missing", op->name, op->node_index,
                  key);
    }
    *out = fallback;
    return 0;
  }
  if (v.kind != FLEX_INT || v.i < INT_MIN || v.i > INT_MAX) {
    return fail(err, err_len, "%s (node %d): option '%s' is not an integer", op->name,
                op->node_index, key);
  }
  *out = (int)v.i;
  return 0;
}

/* LCE 0.16 writes padding as the TFLite enum (0 SAME, 1 VALID); older
 * converters wrote the string. */
int read_padding(lce_op* op, const uint8_t* buf, size_t len, char* err, size_t err_len) {
  flex_value v;
  if (flex_map_lookup(buf, len, "padding", &v) != 0 || v.kind == FLEX_MISSING) {
    return fail(err, err_len, "%s (node %d): option 'padding' is missing", op->name,
                op->node_index);
  }
  if (v.kind == FLEX_INT && (v.i == 0 || v.i == 1)) {
    op->padding_same = v.i == 0;
    return 0;
  }
  if (v.kind == FLEX_STRING) {
    if ((v.slen == 4 && (!memcmp(v.s, "SAME", 4) || !memcmp(v.s, "same", 4)))) {
      op->padding_same = 1;
      return 0;
    }
    if ((v.slen == 5 && (!memcmp(v.s, "VALID", 5) || !memcmp(v.s, "valid", 5)))) {
      op->padding_same = 0;
      return 0;
    }
  }
  return fail(err, err_len, "%s (node %d): unsupported padding value", op->name, op->node_index);
}

/* -------------------------------------------------------------- checks */

int dims_equal(const TfLiteIntArray* dims, int n, const int* expected) {
  if (!dims || dims->size != n) return 0;
  for (int i = 0; i < n; ++i) {
    if (dims->data[i] != expected[i]) return 0;
  }
  return 1;
}

static void format_dims(const TfLiteIntArray* dims, char* out, size_t len) {
  size_t used = (size_t)snprintf(out, len, "[");
  for (int i = 0; dims && i < dims->size && i < LCE_MAX_RANK && used < len; ++i) {
    used += (size_t)snprintf(out + used, len - used, i ? ", %d" : "%d", dims->data[i]);
  }
  if (dims && dims->size > LCE_MAX_RANK && used < len) {
    used += (size_t)snprintf(out + used, len - used, ", ...");
  }
  if (used < len) snprintf(out + used, len - used, "]");
}

int check_output_dims(const lce_op* op, const TfLiteTensor* out, int n, const int* expected,
                      char* err, size_t err_len) {
  if (dims_equal(out->dims, n, expected)) return 0;
  char have[96], want[96];
  format_dims(out->dims, have, sizeof(have));
  TfLiteIntArray* tmp = malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)n);
  if (!tmp) return fail(err, err_len, "out of memory");
  tmp->size = n;
  memcpy(tmp->data, expected, sizeof(int) * (size_t)n);
  format_dims(tmp, want, sizeof(want));
  free(tmp);
  return fail(err, err_len,
              "%s (node %d): output shape %s does not match the computed shape %s (resizing "
              "inputs of LCE models is not supported)",
              op->name, op->node_index, have, want);
}

/* Only for tensors check_tensor has passed: their counts fit (under LCE_MEMORY_BUDGET). */
size_t element_count(const TfLiteIntArray* dims) {
  size_t n = 1;
  for (int i = 0; i < dims->size; ++i) n *= (size_t)(dims->data[i] > 0 ? dims->data[i] : 0);
  return n;
}

/* Every tensor an op of ours touches passes this before any size is computed from it: rank
 * min_rank..LCE_MAX_RANK (constants may be scalars), every dimension at least 1, at most
 * LCE_MEMORY_BUDGET bytes. Then element counts, rows and pixels fit an int, and no product
 * of its dimensions can wrap. */
int check_tensor(const lce_op* op, const TfLiteTensor* t, const char* what, int min_rank,
                 char* err, size_t err_len) {
  if (!t || !t->dims) {
    return fail(err, err_len, "%s (node %d): the %s tensor is missing", op->name, op->node_index,
                what);
  }
  const TfLiteIntArray* dims = t->dims;
  if (dims->size < min_rank || dims->size > LCE_MAX_RANK) {
    return fail(err, err_len, "%s (node %d): the %s tensor has rank %d (%d to %d supported)",
                op->name, op->node_index, what, dims->size, min_rank, LCE_MAX_RANK);
  }
  size_t n = 1;
  for (int i = 0; i < dims->size; ++i) {
    if (dims->data[i] < 1) {
      char shape[96];
      format_dims(dims, shape, sizeof(shape));
      return fail(err, err_len, "%s (node %d): the %s tensor has shape %s (every dimension must "
                  "be at least 1)", op->name, op->node_index, what, shape);
    }
    n = mul_sat(n, (size_t)dims->data[i]);
  }
  const int size = type_size(t->type);
  if (mul_sat(n, (size_t)(size ? size : 1)) > LCE_MEMORY_BUDGET) {
    char shape[96];
    format_dims(dims, shape, sizeof(shape));
    return fail(err, err_len, "%s (node %d): the %s tensor %s is larger than the delegate's "
                "%zu MB limit", op->name, op->node_index, what, shape, LCE_MEMORY_BUDGET >> 20);
  }
  return 0;
}

/* A constant operand (weights, multipliers, thresholds, a fused MUL/ADD's constant): of `type`,
 * read-only memory of the model (it is read or packed once, so it must not change), holding at
 * least `count` values. */
int check_constant(const lce_op* op, const TfLiteTensor* t, const char* what, int type,
                   size_t count, char* err, size_t err_len) {
  if (check_tensor(op, t, what, 0, err, err_len)) return -1;
  if (t->type != type || t->allocation_type != kTfLiteMmapRo || !t->data) {
    return fail(err, err_len, "%s (node %d): the %s must be a constant %s tensor", op->name,
                op->node_index, what, type_name(type));
  }
  const size_t need = mul_sat(count, (size_t)type_size(type));
  if (t->bytes < need) {
    return fail(err, err_len, "%s (node %d): the %s holds %zu bytes, its shape needs %zu",
                op->name, op->node_index, what, t->bytes, need);
  }
  return 0;
}


/* An int8 output's scale and zero point as TFLite requires them. */
int check_int8(const lce_op* op, float scale, int32_t zero_point, char* err, size_t err_len) {
  if (!(scale > 0.0f) || !isfinite(scale)) {
    return fail(err, err_len, "%s (node %d): int8 output needs a positive scale", op->name,
                op->node_index);
  }
  if (zero_point < -128 || zero_point > 127) {
    return fail(err, err_len, "%s (node %d): int8 zero point %d is outside -128..127", op->name,
                op->node_index, (int)zero_point);
  }
  return 0;
}

int lce_window_geometry(const lce_op* op, const char* axis, int in, int filter, int dilation,
                        int same, int* stride, int* out, int* pad_before, char* err,
                        size_t err_len) {
  /* In 64 bits: filter, dilation and stride come from the model and may be INT_MAX. The
   * options were checked at init; this keeps a division by zero out of reach regardless. */
  if (filter < 1 || dilation < 1 || *stride < 1) {
    return fail(err, err_len, "%s (node %d): filter, stride and dilation must be >= 1 in %s",
                op->name, op->node_index, axis);
  }
  const int64_t extent = (int64_t)(filter - 1) * dilation + 1;
  const int64_t s = *stride;
  if (!same && extent > in) {
    return fail(err, err_len, "%s (node %d): the window spans %lld pixels in %s (filter %d, "
                "dilation %d), more than the input's %d (VALID padding)", op->name,
                op->node_index, (long long)extent, axis, filter, dilation, in);
  }
  const int64_t n = same ? ((int64_t)in + s - 1) / s : ((int64_t)in - extent) / s + 1;
  int64_t total = (n - 1) * s + extent - in;
  if (total < 0) total = 0;
  /* The larger side is after. A real model pads about (filter - 1) / 2 a side (dilated:
   * times the dilation), the input's size at most (a 3x3 window on a 1x1 map); a wider
   * overhang is a window or a dilation beyond the input, and the direct convolution's
   * scratch grows with it (2^29 was 24 GB). */
  if (total - total / 2 > in) {
    return fail(err, err_len, "%s (node %d): the window spans %lld pixels in %s (filter %d, "
                "dilation %d) and would need %lld pixels of SAME padding on one side, more "
                "than the input's %d", op->name, op->node_index, (long long)extent, axis,
                filter, dilation, (long long)(total - total / 2), in);
  }
  *out = (int)n;
  *pad_before = (int)(total / 2);
  /* One output pixel: the stride is never applied, and the direct convolution's reads past
   * a row's end (stride * words apart) stay small. */
  if (n == 1) *stride = 1;
  return 0;
}

/* ------------------------------------------------------------ row-wise ops */

int rows_per_task(int rows, int row_cost, thread_pool* pool) {
  /* At least ~16k elements per task, but enough tasks to feed every thread. */
  int per = 16384 / (row_cost > 0 ? row_cost : 1);
  if (per < 1) per = 1;
  const int threads = pool_size(pool);
  const int balanced = (rows + threads - 1) / threads;
  if (per > balanced) per = balanced;
  return per > 0 ? per : 1;
}

int run_rows(lce_op* op, const void* input, void* output, thread_pool* pool,
             pool_task_fn task, char* err, size_t err_len) {
  rows_job job;
  memset(&job, 0, sizeof(job));
  job.op = op;
  job.input = input;
  job.output = output;
  job.pool = pool;
  job.rows_per_task = rows_per_task(op->rows, op->channels, pool);
  const int tasks = (op->rows + job.rows_per_task - 1) / job.rows_per_task;
  pool_run(pool, tasks, task, &job);
  if (job.failed) return fail(err, err_len, "%s: out of memory", op->name);
  return 0;
}

/* y = x * m (+ a): the runtime's MUL then ADD, one IEEE operation each (no
 * contraction, -ffp-contract=off), so the signs are the runtime's bit for bit. */
VECTOR_CLONES static void affine_row(const float* x, int channels, const float* m, int m_len,
                                     const float* a, int a_len, float* mul_out, float* y) {
  if (m && a) {
    const float m0 = m[0], a0 = a[0];
    if (m_len == 1 && a_len == 1) {
      for (int c = 0; c < channels; ++c) y[c] = x[c] * m0 + a0;
    } else if (m_len == 1) {
      for (int c = 0; c < channels; ++c) y[c] = x[c] * m0 + a[c];
    } else if (a_len == 1) {
      for (int c = 0; c < channels; ++c) y[c] = x[c] * m[c] + a0;
    } else {
      for (int c = 0; c < channels; ++c) y[c] = x[c] * m[c] + a[c];
    }
    if (mul_out) {
      if (m_len == 1) {
        for (int c = 0; c < channels; ++c) mul_out[c] = x[c] * m0;
      } else {
        for (int c = 0; c < channels; ++c) mul_out[c] = x[c] * m[c];
      }
    }
  } else if (m) {
    if (m_len == 1) {
      const float m0 = m[0];
      for (int c = 0; c < channels; ++c) y[c] = x[c] * m0;
    } else {
      for (int c = 0; c < channels; ++c) y[c] = x[c] * m[c];
    }
  } else {
    if (a_len == 1) {
      const float a0 = a[0];
      for (int c = 0; c < channels; ++c) y[c] = x[c] + a0;
    } else {
      for (int c = 0; c < channels; ++c) y[c] = x[c] + a[c];
    }
  }
}

/* Row r of a float quantize (with its fused MUL/ADD, if any) from `in`;
 * y: scratch for `channels` floats. */
void quantize_float_row(const lce_op* q, const float* in, size_t r, float* y, uint32_t* out) {
  const int channels = q->channels;
  const float* mul = q->pre_mul >= 0 ? q->pre_mul_values : NULL;
  const float* add = q->pre_add >= 0 ? q->pre_add_values : NULL;
  if (!mul && !add) {
    q->gemm->pack_row(in, channels, out);
    return;
  }
  float* mul_out = q->pre_mul_data ? (float*)q->pre_mul_data + r * (size_t)channels : NULL;
  float* add_out = q->pre_add_data ? (float*)q->pre_add_data + r * (size_t)channels : NULL;
  /* A stored ADD (or lone MUL) output is the row itself; otherwise scratch. */
  float* row = add_out ? add_out : (add ? y : (mul_out ? mul_out : y));
  affine_row(in, channels, mul, q->pre_mul_len, add, q->pre_add_len, add ? mul_out : NULL, row);
  q->gemm->pack_row(row, channels, out);
}
