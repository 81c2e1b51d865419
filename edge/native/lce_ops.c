#include "lce_ops.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flexbuf.h"
#include "float_ops.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EPILOGUE_AVX512 1
#endif

static int fail(char* err, size_t err_len, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(err, err_len, fmt, args);
  va_end(args);
  return -1;
}

/* In 64 bits: channels_in comes from the model's options and may be INT_MAX. */
static int packed_size(int channels) { return (int)(((int64_t)channels + 31) / 32); }

static size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* a * b and a + b, saturating at SIZE_MAX: sizes computed from a crafted model's shapes must
 * not wrap around before they are compared with the budgets. */
static size_t mul_sat(size_t a, size_t b) {
  size_t r;
  return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

static size_t add_sat(size_t a, size_t b) {
  size_t r;
  return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

static const TfLiteTensor* tensor_at(const TfLiteContext* context, int index) {
  if (index < 0 || (size_t)index >= context->tensors_size) return NULL;
  return &context->tensors[index];
}

static int type_size(int type) {
  switch (type) {
    case kTfLiteFloat32:
    case kTfLiteInt32: return 4;
    case kTfLiteInt8:
    case kTfLiteUInt8: return 1;
    default: return 0;
  }
}

static const char* type_name(int type) {
  switch (type) {
    case kTfLiteFloat32: return "float32";
    case kTfLiteInt32: return "int32";
    case kTfLiteInt8: return "int8";
    case kTfLiteUInt8: return "uint8";
    default: return "unsupported type";
  }
}

/* ------------------------------------------------------------------ init */

static int read_int_option(const lce_op* op, const uint8_t* buf, size_t len, const char* key,
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
static int read_padding(lce_op* op, const uint8_t* buf, size_t len, char* err, size_t err_len) {
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

int lce_op_init_concat(lce_op* op, int node_index, const TfLiteNode* node, const bgemm_impl* gemm,
                       char* err, size_t err_len) {
  lce_op_reset(op, "CONCATENATION", node_index, gemm);
  op->kind = OP_CONCAT;
  if (!node->inputs || !node->outputs || node->inputs->size < 1 ||
      node->inputs->size > CONCAT_MAX_INPUTS || node->outputs->size != 1 || !node->builtin_data) {
    return fail(err, err_len, "CONCATENATION (node %d): expected 1 to %d inputs, 1 output and "
                "options", node_index, CONCAT_MAX_INPUTS);
  }
  /* TfLiteConcatenationParams: axis, then the fused activation. */
  const int* params = (const int*)node->builtin_data;
  if (params[1] != kTfLiteActNone) {
    return fail(err, err_len, "CONCATENATION (node %d): a fused activation is not supported",
                node_index);
  }
  op->axis = params[0];
  op->cat_n = node->inputs->size;
  for (int i = 0; i < op->cat_n; ++i) op->cat_in[i] = node->inputs->data[i];
  op->inputs[0] = op->cat_in[0];
  op->num_inputs = 1;
  op->output = node->outputs->data[0];
  return 0;
}

int lce_op_init_add(lce_op* op, int node_index, const TfLiteNode* node, const bgemm_impl* gemm,
                    char* err, size_t err_len) {
  lce_op_reset(op, "ADD", node_index, gemm);
  op->kind = OP_CONCAT;
  if (!node->inputs || node->inputs->size != 2 || !node->outputs || node->outputs->size != 1) {
    return fail(err, err_len, "ADD (node %d): expected 2 inputs and 1 output", node_index);
  }
  op->axis = -1;
  op->cat_n = 1;
  op->cat_in[0] = node->inputs->data[0];
  op->inputs[0] = op->cat_in[0];
  op->num_inputs = 1;
  op->add_other = node->inputs->data[1];
  op->add_node = node_index;
  op->output = node->outputs->data[0];
  return 0;
}

int lce_op_fuse_add(lce_op* op, int node_index, int other, int output, int store_concat,
                    char* err, size_t err_len) {
  if (op->kind != OP_CONCAT || op->add_other >= 0) {
    return fail(err, err_len, "ADD (node %d) cannot be fused into node %d", node_index,
                op->node_index);
  }
  op->add_other = other;
  op->add_node = node_index;
  op->cat_out = store_concat ? op->output : -1;
  op->output = output;
  return 0;
}

int lce_op_write_into(lce_op* bconv, lce_op* concat, int slot) {
  if (bconv->kind != OP_BCONV2D || concat->kind != OP_CONCAT || bconv->into || concat->cat_out >= 0 ||
      bconv->out_type != kTfLiteFloat32 || slot < 0 || slot >= concat->cat_n ||
      bconv->output != concat->cat_in[slot] || bconv->out_c != concat->cat_channels[slot] ||
      (long)concat->rows != (long)bconv->batch * bconv->out_h * bconv->out_w) {
    return 0;
  }
  int offset = 0;
  for (int i = 0; i < slot; ++i) offset += concat->cat_channels[i];
  bconv->into = concat;
  bconv->into_offset = offset;
  bconv->write_own = 1;
  return 1;
}

int lce_op_init(lce_op* op, const char* custom_name, int node_index, const TfLiteNode* node,
                const bgemm_impl* gemm, char* err, size_t err_len) {
  lce_op_reset(op, custom_name, node_index, gemm);

  if (!strcmp(custom_name, "LceQuantize")) {
    op->kind = OP_QUANTIZE;
  } else if (!strcmp(custom_name, "LceDequantize")) {
    op->kind = OP_DEQUANTIZE;
  } else if (!strcmp(custom_name, "LceBconv2d")) {
    op->kind = OP_BCONV2D;
  } else if (!strcmp(custom_name, "LceBMaxPool2d")) {
    op->kind = OP_BMAXPOOL2D;
  } else {
    return fail(err, err_len, "%s (node %d): this LCE op is not supported by the binland delegate",
                custom_name, node_index);
  }

  const int expected_inputs = op->kind == OP_BCONV2D ? 5 : 1;
  if (!node->inputs || !node->outputs || node->inputs->size != expected_inputs ||
      node->outputs->size != 1) {
    return fail(err, err_len, "%s (node %d): expected %d input(s) and 1 output", op->name,
                node_index, expected_inputs);
  }
  op->num_inputs = node->inputs->size;
  for (int i = 0; i < op->num_inputs; ++i) op->inputs[i] = node->inputs->data[i];
  op->output = node->outputs->data[0];

  const uint8_t* buf = (const uint8_t*)node->custom_initial_data;
  const size_t len = node->custom_initial_data_size > 0 ? (size_t)node->custom_initial_data_size : 0;

  if (op->kind == OP_BCONV2D) {
    if (read_int_option(op, buf, len, "stride_height", 1, 0, &op->stride_h, err, err_len) ||
        read_int_option(op, buf, len, "stride_width", 1, 0, &op->stride_w, err, err_len) ||
        read_int_option(op, buf, len, "dilation_height_factor", 1, 0, &op->dilation_h, err,
                        err_len) ||
        read_int_option(op, buf, len, "dilation_width_factor", 1, 0, &op->dilation_w, err,
                        err_len) ||
        read_int_option(op, buf, len, "pad_values", 1, 0, &op->pad_value, err, err_len) ||
        read_int_option(op, buf, len, "channels_in", 1, 0, &op->channels_in, err, err_len) ||
        read_int_option(op, buf, len, "fused_activation_function", 0, 0, &op->activation, err,
                        err_len) ||
        read_padding(op, buf, len, err, err_len)) {
      return -1;
    }
    if (op->pad_value != 0 && op->pad_value != 1) {
      return fail(err, err_len, "%s (node %d): pad_values must be 0 or 1, got %d", op->name,
                  node_index, op->pad_value);
    }
    if (op->activation < 0 || op->activation > 3) {
      return fail(err, err_len,
                  "%s (node %d): fused activation %d is not supported (none, relu, "
                  "relu_n1_to_1, relu6 are)",
                  op->name, node_index, op->activation);
    }
    if (op->stride_h < 1 || op->stride_w < 1 || op->dilation_h < 1 || op->dilation_w < 1) {
      return fail(err, err_len, "%s (node %d): strides and dilations must be >= 1", op->name,
                  node_index);
    }
    if (op->channels_in < 1) {
      return fail(err, err_len, "%s (node %d): channels_in must be >= 1", op->name, node_index);
    }
  } else if (op->kind == OP_BMAXPOOL2D) {
    if (read_int_option(op, buf, len, "stride_height", 1, 0, &op->stride_h, err, err_len) ||
        read_int_option(op, buf, len, "stride_width", 1, 0, &op->stride_w, err, err_len) ||
        read_int_option(op, buf, len, "filter_height", 1, 0, &op->filter_h, err, err_len) ||
        read_int_option(op, buf, len, "filter_width", 1, 0, &op->filter_w, err, err_len) ||
        read_padding(op, buf, len, err, err_len)) {
      return -1;
    }
    if (op->stride_h < 1 || op->stride_w < 1 || op->filter_h < 1 || op->filter_w < 1) {
      return fail(err, err_len, "%s (node %d): strides and filter sizes must be >= 1", op->name,
                  node_index);
    }
  }
  op->option_stride_h = op->stride_h;
  op->option_stride_w = op->stride_w;
  return 0;
}

int lce_op_fuse_pre(lce_op* op, int which, int node_index, int input, int constant,
                    int store_output, char* err, size_t err_len) {
  if (op->kind != OP_QUANTIZE) {
    return fail(err, err_len, "%s (node %d): only LceQuantize can absorb a MUL or ADD", op->name,
                op->node_index);
  }
  /* The chain is MUL -> ADD -> LceQuantize, fused from the quantize backwards. */
  if (which == PRE_ADD && (op->pre_add >= 0 || op->pre_mul >= 0)) {
    return fail(err, err_len, "%s (node %d): ADD node %d cannot be fused here", op->name,
                op->node_index, node_index);
  }
  if (which == PRE_MUL && op->pre_mul >= 0) {
    return fail(err, err_len, "%s (node %d): MUL node %d cannot be fused here", op->name,
                op->node_index, node_index);
  }
  const int out = op->inputs[0];
  if (which == PRE_MUL) {
    op->pre_mul = constant;
    op->pre_mul_node = node_index;
    op->pre_mul_out = store_output ? out : -1;
  } else {
    op->pre_add = constant;
    op->pre_add_node = node_index;
    op->pre_add_out = store_output ? out : -1;
  }
  op->inputs[0] = input;
  return 0;
}

void lce_op_set_pre_outputs(lce_op* op, void* mul_out, void* add_out) {
  op->pre_mul_data = mul_out;
  op->pre_add_data = add_out;
}

/* --------------------------------------------------------------- prepare */

static int dims_equal(const TfLiteIntArray* dims, int n, const int* expected) {
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

static int check_output_dims(const lce_op* op, const TfLiteTensor* out, int n, const int* expected,
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
static size_t element_count(const TfLiteIntArray* dims) {
  size_t n = 1;
  for (int i = 0; i < dims->size; ++i) n *= (size_t)(dims->data[i] > 0 ? dims->data[i] : 0);
  return n;
}

/* Every tensor an op of ours touches passes this before any size is computed from it: rank
 * min_rank..LCE_MAX_RANK (constants may be scalars), every dimension at least 1, at most
 * LCE_MEMORY_BUDGET bytes. Then element counts, rows and pixels fit an int, and no product
 * of its dimensions can wrap. */
static int check_tensor(const lce_op* op, const TfLiteTensor* t, const char* what, int min_rank,
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
static int check_constant(const lce_op* op, const TfLiteTensor* t, const char* what, int type,
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

static int prepare_quantize(lce_op* op, const TfLiteTensor* in, const TfLiteTensor* out, char* err,
                            size_t err_len) {
  if (in->type != kTfLiteFloat32 && in->type != kTfLiteInt8) {
    return fail(err, err_len, "%s (node %d): input must be float32 or int8, not %s", op->name,
                op->node_index, type_name(in->type));
  }
  if (out->type != kTfLiteInt32) {
    return fail(err, err_len, "%s (node %d): output must be int32 (bitpacked)", op->name,
                op->node_index);
  }
  const int n = in->dims->size;
  int expected[LCE_MAX_RANK];
  for (int i = 0; i < n; ++i) expected[i] = in->dims->data[i];
  op->channels = in->dims->data[n - 1];
  expected[n - 1] = packed_size(op->channels);
  if (check_output_dims(op, out, n, expected, err, err_len)) return -1;
  op->rows = (int)(element_count(in->dims) / (size_t)op->channels);
  op->in_zero_point = in->params.zero_point;
  op->scratch_bytes = round64(sizeof(float) * (size_t)op->channels);
  return 0;
}

/* A fused MUL / ADD operand: a float32 constant, a scalar or one value per channel; and,
 * when the quantize also stores that op's output, a float32 tensor of the input's shape. */
static int prepare_pre_constant(lce_op* op, const TfLiteContext* context, const TfLiteTensor* in,
                                int tensor, int stored, int node, const char* what, int* len,
                                char* err, size_t err_len) {
  if (tensor < 0) {
    *len = 0;
    return 0;
  }
  const TfLiteTensor* c = tensor_at(context, tensor);
  if (in->type != kTfLiteFloat32) {
    return fail(err, err_len, "%s (node %d): a fused %s (node %d) needs a float32 input",
                op->name, op->node_index, what, node);
  }
  if (!c || c->type != kTfLiteFloat32 || !c->data || !c->dims) {
    return fail(err, err_len, "%s (node %d): the fused %s (node %d) needs a float32 constant",
                op->name, op->node_index, what, node);
  }
  if (check_tensor(op, c, what, 0, err, err_len)) return -1;
  const size_t n = element_count(c->dims);
  int ok = n == 1 || (n == (size_t)op->channels && c->dims->size >= 1 &&
                      c->dims->data[c->dims->size - 1] == op->channels);
  if (!ok) {
    return fail(err, err_len,
                "%s (node %d): the fused %s (node %d) constant must be a scalar or one value "
                "per channel (%d)",
                op->name, op->node_index, what, node, op->channels);
  }
  if (check_constant(op, c, what, kTfLiteFloat32, n, err, err_len)) return -1;
  if (stored >= 0) {
    const TfLiteTensor* y = tensor_at(context, stored);
    if (check_tensor(op, y, what, 1, err, err_len)) return -1;
    if (y->type != kTfLiteFloat32 || !dims_equal(y->dims, in->dims->size, in->dims->data)) {
      return fail(err, err_len, "%s (node %d): the fused %s (node %d) output must be float32 "
                  "of the input's shape", op->name, op->node_index, what, node);
    }
  }
  *len = (int)n;
  if (!strcmp(what, "MUL")) {
    op->pre_mul_values = (const float*)c->data;
  } else {
    op->pre_add_values = (const float*)c->data;
  }
  return 0;
}

int lce_op_absorb(lce_op* op, lce_op* q) {
  if (q->kind != OP_QUANTIZE || op->then_quantize || q->absorbed || q->in_type != kTfLiteFloat32 ||
      q->inputs[0] != op->output) {
    return 0;
  }
  if (op->kind == OP_BCONV2D) {
    if (op->out_type != kTfLiteFloat32 || q->channels != op->out_c ||
        (long)q->rows != (long)op->batch * op->out_h * op->out_w) {
      return 0;
    }
  } else if (op->kind != OP_CONCAT || op->in_place || op->cat_n != 1 || op->add_other < 0 ||
             op->cat_out >= 0 || q->channels != op->channels || q->rows != op->rows) {
    return 0; /* only an ADD on its own, which writes its output row by row */
  }
  op->then_quantize = q;
  q->absorbed = 1;
  return 1;
}

/* An int8 output's scale and zero point as TFLite requires them. */
static int check_int8(const lce_op* op, float scale, int32_t zero_point, char* err,
                      size_t err_len) {
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

static int prepare_dequantize(lce_op* op, const TfLiteTensor* in, const TfLiteTensor* out,
                              char* err, size_t err_len) {
  if (in->type != kTfLiteInt32) {
    return fail(err, err_len, "%s (node %d): input must be int32 (bitpacked)", op->name,
                op->node_index);
  }
  if (out->type != kTfLiteFloat32 && out->type != kTfLiteInt8) {
    return fail(err, err_len, "%s (node %d): output must be float32 or int8, not %s", op->name,
                op->node_index, type_name(out->type));
  }
  const int n = out->dims->size;
  if (in->dims->size != n) {
    return fail(err, err_len, "%s (node %d): input and output ranks differ", op->name,
                op->node_index);
  }
  for (int i = 0; i < n - 1; ++i) {
    if (in->dims->data[i] != out->dims->data[i]) {
      return fail(err, err_len, "%s (node %d): input and output shapes differ", op->name,
                  op->node_index);
    }
  }
  op->channels = out->dims->data[n - 1];
  if (in->dims->data[n - 1] != packed_size(op->channels)) {
    return fail(err, err_len, "%s (node %d): %d packed words cannot hold %d channels", op->name,
                op->node_index, in->dims->data[n - 1], op->channels);
  }
  op->rows = (int)(element_count(out->dims) / (size_t)op->channels);
  op->out_scale = out->params.scale;
  op->out_zero_point = out->params.zero_point;
  if (out->type == kTfLiteInt8) {
    if (check_int8(op, op->out_scale, op->out_zero_point, err, err_len)) return -1;
    /* LCE: offset = round(1/scale); a 0 bit is zp + offset, a 1 bit zp - offset, saturated.
     * From 256 up every offset saturates both, so larger ones (which would overflow the
     * int conversion) are 256. */
    const float offset = roundf(1.0f / op->out_scale);
    const int32_t o = offset > 256.0f ? 256 : (int32_t)offset;
    op->zero_bit = op->out_zero_point + o > 127 ? 127 : op->out_zero_point + o;
    op->one_bit = op->out_zero_point - o < -128 ? -128 : op->out_zero_point - o;
  }
  return 0;
}

static int prepare_bmaxpool(lce_op* op, const TfLiteTensor* in, const TfLiteTensor* out, char* err,
                            size_t err_len) {
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

/* The run's task geometry, shared by prepare (which sizes the scratch for the largest tasks,
 * those of one thread, against the budget) and lce_op_run. */

/* Direct convs: tasks per thread at least (when the rows allow). More, smaller
 * tasks balance better when another process takes a core now and then; 8
 * measured at least as fast as 4 on the paper model, quiet or loaded. */
#define DIRECT_TASKS_PER_THREAD 8

/* Output rows per direct task: the padded input rows they read around 24 KB (in L1 while
 * every filter block streams past), and at least DIRECT_TASKS_PER_THREAD tasks per thread. */
static int direct_rows_per_task(const lce_op* op, int threads) {
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
static int direct_input_rows(const lce_op* op, int rows) {
  return (rows - 1) * op->stride_h + (op->filter_h - 1) * op->dilation_h + 1;
}

/* Row segments of a direct task: accumulators around 32 KB. */
static int direct_segment(const lce_op* op) {
  const int mr = op->gemm->mr;
  const int seg = 32768 / (op->ldc * 4) / mr * mr;
  return seg < mr ? mr : seg;
}

/* A direct task's windows: its padded rows, plus the slack the last kernel call of a row may
 * read past its end (mr pixels, stride * words apart); and its accumulators. */
static size_t direct_a_bytes(const lce_op* op, int in_rows) {
  const size_t words = (size_t)op->in_words;
  return round64(((size_t)in_rows * op->pad_w * words +
                  (size_t)op->gemm->mr * op->stride_w * words) * 4);
}

static size_t direct_c_bytes(const lce_op* op, int seg) {
  return round64(((size_t)seg + op->gemm->mr) * op->ldc * 4);
}

/* Pixels per im2col task: a task's im2col block around 24 KB so it stays in L1 while every
 * filter block streams past it; at least 4 tasks per thread. */
static int im2col_pixels_per_task(const lce_op* op, int pixels, int threads) {
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
static size_t im2col_a_bytes(const lce_op* op, int count) {
  const size_t rows = (size_t)((count + op->gemm->mr - 1) / op->gemm->mr) * op->gemm->mr;
  return round64(rows * op->kernel_words * 4);
}

static size_t im2col_c_bytes(const lce_op* op, int count) {
  const size_t rows = (size_t)((count + op->gemm->mr - 1) / op->gemm->mr) * op->gemm->mr;
  return round64(rows * op->ldc * 4);
}

/* What a task's scratch holds besides windows and accumulators: the zero-padding tap sums,
 * one or two float rows for the epilogue (carve_scratch). */
static size_t epilogue_bytes(const lce_op* op, int with_rows) {
  const size_t s_bytes = op->padding_same && op->pad_value == 0 ? 4 * (size_t)op->out_c : 0;
  return s_bytes + (with_rows ? 2 * round64(4 * (size_t)op->out_c) : 0);
}

/* The constant operands of a float / int8 output: multiplier and bias, folded with the
 * back-transformation (and an int8 output's scale and zero point) as LCE does, in double.
 * Into op->multiplier / op->bias when `store`; otherwise only checked: an int8 output
 * converts the result to an integer, which a NaN (from an infinite folded value) makes
 * undefined. */
static int fold_multiplier_bias(lce_op* op, const float* mul, const float* bias, int store,
                                char* err, size_t err_len) {
  const double scale = op->out_type == kTfLiteInt8 ? (double)op->out_scale : 1.0;
  const double zero_point = op->out_type == kTfLiteInt8 ? (double)op->out_zero_point : 0.0;
  for (int o = 0; o < op->out_c; ++o) {
    const double m = mul[o];
    const double b = bias[o];
    const float fm = (float)(-1.0 * m / scale);
    const float fb = (float)((b + (double)op->backtransform * m) / scale + zero_point);
    if (store) {
      op->multiplier[o] = fm;
      op->bias[o] = fb;
    } else if (op->out_type == kTfLiteInt8 && (!isfinite(fm) || !isfinite(fb))) {
      return fail(err, err_len, "%s (node %d): int8 output: multiplier or bias of channel %d "
                  "is not finite", op->name, op->node_index, o);
    }
  }
  return 0;
}

static int prepare_bconv(lce_op* op, const TfLiteContext* context, const TfLiteTensor* in,
                         const TfLiteTensor* out, char* err, size_t err_len) {
  const TfLiteTensor* filter = tensor_at(context, op->inputs[1]);
  if (in->type != kTfLiteInt32 || in->dims->size != 4) {
    return fail(err, err_len, "%s (node %d): input must be a 4-D int32 (bitpacked) tensor",
                op->name, op->node_index);
  }
  if (!filter || !filter->dims || filter->type != kTfLiteInt32 || filter->dims->size != 4) {
    return fail(err, err_len, "%s (node %d): filter must be a 4-D int32 (bitpacked) tensor",
                op->name, op->node_index);
  }
  if (check_tensor(op, filter, "filter", 4, err, err_len)) return -1;
  if (out->type != kTfLiteFloat32 && out->type != kTfLiteInt8 && out->type != kTfLiteInt32) {
    return fail(err, err_len, "%s (node %d): output must be float32, int8 or int32, not %s",
                op->name, op->node_index, type_name(out->type));
  }
  op->batch = in->dims->data[0];
  op->in_h = in->dims->data[1];
  op->in_w = in->dims->data[2];
  op->in_words = in->dims->data[3];
  if (op->in_words != packed_size(op->channels_in)) {
    return fail(err, err_len, "%s (node %d): input has %d words, channels_in=%d needs %d",
                op->name, op->node_index, op->in_words, op->channels_in,
                packed_size(op->channels_in));
  }
  op->out_c = filter->dims->data[0];
  op->filter_h = filter->dims->data[1];
  op->filter_w = filter->dims->data[2];
  op->words_per_group = filter->dims->data[3];
  if (op->words_per_group == op->in_words) {
    op->groups = 1;
  } else {
    if (op->in_words % op->words_per_group != 0) {
      return fail(err, err_len, "%s (node %d): filter depth %d does not divide %d input words",
                  op->name, op->node_index, op->words_per_group, op->in_words);
    }
    op->groups = op->in_words / op->words_per_group;
    const int group_size = op->channels_in / op->groups;
    if (op->channels_in % op->groups != 0 || group_size % 32 != 0 ||
        op->out_c % op->groups != 0) {
      return fail(err, err_len,
                  "%s (node %d): grouped convolution needs input channels per group a "
                  "multiple of 32 and output channels divisible by the groups",
                  op->name, op->node_index);
    }
  }
  op->out_per_group = op->out_c / op->groups;
  /* Both fit: the filter passed check_tensor, and channels_in matches the input's words. */
  op->kernel_words = op->filter_h * op->filter_w * op->words_per_group;
  const int64_t k_bits = (int64_t)op->filter_h * op->filter_w * (op->channels_in / op->groups);
  /* The epilogue doubles the accumulator (at most K) and adds a zero-padding correction (at
   * most K) in int32. */
  if (k_bits > (1 << 29)) {
    return fail(err, err_len, "%s (node %d): a %dx%d window over %d channels is more than "
                "2^29 bits", op->name, op->node_index, op->filter_h, op->filter_w,
                op->channels_in / op->groups);
  }
  op->backtransform = (int)k_bits;
  if (check_constant(op, filter, "filter", kTfLiteInt32,
                     (size_t)op->out_c * (size_t)op->kernel_words, err, err_len)) {
    return -1;
  }

  if (op->padding_same && op->pad_value == 0 &&
      (out->type != kTfLiteFloat32 || op->activation != 0)) {
    return fail(err, err_len,
                "%s (node %d): zero-padding is only supported with float output and no fused "
                "activation (as in LCE)",
                op->name, op->node_index);
  }

  if (out->type == kTfLiteInt32) {
    const TfLiteTensor* thr = tensor_at(context, op->inputs[4]);
    if (!thr || !thr->dims || thr->type != kTfLiteInt32 || thr->dims->size != 1 ||
        thr->dims->data[0] != op->out_c) {
      return fail(err, err_len, "%s (node %d): bitpacked output needs int32 thresholds [%d]",
                  op->name, op->node_index, op->out_c);
    }
    if (check_constant(op, thr, "thresholds", kTfLiteInt32, (size_t)op->out_c, err, err_len)) {
      return -1;
    }
  } else {
    const TfLiteTensor* mul = tensor_at(context, op->inputs[2]);
    const TfLiteTensor* bias = tensor_at(context, op->inputs[3]);
    if (!mul || !bias || !mul->dims || !bias->dims || mul->type != kTfLiteFloat32 ||
        bias->type != kTfLiteFloat32 || mul->dims->size != 1 || bias->dims->size != 1 ||
        mul->dims->data[0] != op->out_c || bias->dims->data[0] != op->out_c) {
      return fail(err, err_len,
                  "%s (node %d): float/int8 output needs float32 multiplier and bias [%d]",
                  op->name, op->node_index, op->out_c);
    }
    if (check_constant(op, mul, "multiplier", kTfLiteFloat32, (size_t)op->out_c, err,
                       err_len) ||
        check_constant(op, bias, "bias", kTfLiteFloat32, (size_t)op->out_c, err, err_len)) {
      return -1;
    }
    if (out->type == kTfLiteInt8) {
      op->out_scale = out->params.scale;
      op->out_zero_point = out->params.zero_point;
      if (check_int8(op, op->out_scale, op->out_zero_point, err, err_len) ||
          fold_multiplier_bias(op, mul->data, bias->data, 0, err, err_len)) {
        return -1;
      }
    }
  }

  op->stride_h = op->option_stride_h;
  op->stride_w = op->option_stride_w;
  if (lce_window_geometry(op, "height", op->in_h, op->filter_h, op->dilation_h,
                          op->padding_same, &op->stride_h, &op->out_h, &op->pad_top, err,
                          err_len) ||
      lce_window_geometry(op, "width", op->in_w, op->filter_w, op->dilation_w, op->padding_same,
                          &op->stride_w, &op->out_w, &op->pad_left, err, err_len)) {
    return -1;
  }
  const int expected[4] = {op->batch, op->out_h, op->out_w,
                           out->type == kTfLiteInt32 ? packed_size(op->out_c) : op->out_c};
  if (check_output_dims(op, out, 4, expected, err, err_len)) return -1;

  /* How the windows are read (see bconv_setup), and what that costs in memory. Everything
   * here is bounded by the checks above (sizes under the budget, windows within the input),
   * so none of it overflows before it is compared with the budgets. */
  const int nr = op->gemm->nr;
  op->blocks_per_group = (op->out_per_group + nr - 1) / nr;
  const size_t ldc = (size_t)op->groups * op->blocks_per_group * nr;
  if (ldc * 4 * (size_t)op->gemm->mr > LCE_SCRATCH_BUDGET) {
    return fail(err, err_len, "%s (node %d): %d output channels in %d groups need more than "
                "the %zu MB of scratch a task may take", op->name, op->node_index, op->out_c,
                op->groups, LCE_SCRATCH_BUDGET >> 20);
  }
  op->ldc = (int)ldc;
  /* Direct or im2col. Direct reads a row of output pixels' windows in place,
   * mr pixels per kernel call, so a row shorter than mr computes more pixels
   * past its end than in it; there im2col (which runs on across rows) is
   * better. Measured: direct is faster from 8x8 up (and at every channel
   * count), im2col at 4x4. */
  op->direct = op->conv_path == BCONV_DIRECT ||
               (op->conv_path == BCONV_AUTO && op->out_w >= op->gemm->mr);
  size_t scratch;
  if (op->direct) {
    op->pad_w = (op->out_w - 1) * op->stride_w + (op->filter_w - 1) * op->dilation_w + 1;
    scratch = direct_a_bytes(op, direct_input_rows(op, direct_rows_per_task(op, 1))) +
              direct_c_bytes(op, direct_segment(op));
  } else {
    op->pad_w = 0;
    const int pixels = op->batch * op->out_h * op->out_w;
    const int per = im2col_pixels_per_task(op, pixels, 1);
    scratch = add_sat(im2col_a_bytes(op, per), im2col_c_bytes(op, per));
  }
  op->scratch_bytes = add_sat(scratch, epilogue_bytes(op, 1));
  if (op->scratch_bytes > LCE_SCRATCH_BUDGET) {
    return fail(err, err_len, "%s (node %d): a task would need %zu MB of scratch, more than "
                "the %zu MB limit", op->name, op->node_index, op->scratch_bytes >> 20,
                LCE_SCRATCH_BUDGET >> 20);
  }
  /* bconv_setup's allocations: packed filter, word offsets, tap sums, per-channel values. */
  const size_t k = (size_t)op->kernel_words;
  size_t own = mul_sat(mul_sat(ldc, k), 4);
  own = add_sat(own, op->direct ? 4 * (size_t)op->groups * k : 0);
  own = add_sat(own, op->padding_same && op->pad_value == 0
                         ? 4 * (size_t)op->filter_h * op->filter_w * op->out_c : 0);
  op->own_bytes = add_sat(own, 5 * 4 * (size_t)op->out_c);
  if (op->own_bytes > LCE_MEMORY_BUDGET) {
    return fail(err, err_len, "%s (node %d): its packed weights would take %zu MB, more than "
                "the delegate's %zu MB limit", op->name, op->node_index, op->own_bytes >> 20,
                LCE_MEMORY_BUDGET >> 20);
  }
  return 0;
}

static int prepare_concat(lce_op* op, const TfLiteContext* context, const TfLiteTensor* out,
                          char* err, size_t err_len) {
  const int n = out->dims->size;
  if (out->type != kTfLiteFloat32 || (op->axis != n - 1 && op->axis != -1)) {
    return fail(err, err_len, "CONCATENATION (node %d): only float32 along the last axis is "
                "supported", op->node_index);
  }
  op->channels = out->dims->data[n - 1];
  op->rows = (int)(element_count(out->dims) / (size_t)op->channels);
  int64_t total = 0;
  for (int i = 0; i < op->cat_n; ++i) {
    const TfLiteTensor* in = tensor_at(context, op->cat_in[i]);
    if (check_tensor(op, in, "input", 1, err, err_len)) return -1;
    int ok = in->type == kTfLiteFloat32 && in->dims->size == n;
    for (int d = 0; ok && d < n - 1; ++d) ok = in->dims->data[d] == out->dims->data[d];
    if (!ok) {
      return fail(err, err_len, "CONCATENATION (node %d): input %d does not match the output",
                  op->node_index, i);
    }
    op->cat_channels[i] = in->dims->data[n - 1];
    total += op->cat_channels[i];
  }
  if (total != op->channels) {
    return fail(err, err_len,
                "CONCATENATION (node %d): %lld input channels for %d output channels",
                op->node_index, (long long)total, op->channels);
  }
  /* The concat's own output, still stored under a fused ADD, has the ADD's shape. */
  if (op->cat_out >= 0) {
    const TfLiteTensor* cat = tensor_at(context, op->cat_out);
    if (check_tensor(op, cat, "output", 1, err, err_len)) return -1;
    if (cat->type != kTfLiteFloat32 || !dims_equal(cat->dims, n, out->dims->data)) {
      return fail(err, err_len, "ADD (node %d): both operands must be float32 of one shape",
                  op->add_node);
    }
  }
  if (op->add_other >= 0) {
    const TfLiteTensor* other = tensor_at(context, op->add_other);
    if (check_tensor(op, other, "operand", 1, err, err_len)) return -1;
    if (other->type != kTfLiteFloat32 || !dims_equal(other->dims, n, out->dims->data)) {
      return fail(err, err_len, "ADD (node %d): both operands must be float32 of one shape",
                  op->add_node);
    }
  }
  op->scratch_bytes = round64(sizeof(float) * (size_t)op->channels);
  return 0;
}

int lce_op_prepare(lce_op* op, const TfLiteContext* context, char* err, size_t err_len) {
  const TfLiteTensor* in = tensor_at(context, op->inputs[0]);
  const TfLiteTensor* out = tensor_at(context, op->output);
  if (!in || !out || !in->dims || !out->dims) {
    return fail(err, err_len, "%s (node %d): missing input or output tensor", op->name,
                op->node_index);
  }
  if (check_tensor(op, in, "input", 1, err, err_len) ||
      check_tensor(op, out, "output", 1, err, err_len)) {
    return -1;
  }
  op->in_type = in->type;
  op->out_type = out->type;
  op->ready = 0;
  op->then_quantize = NULL;
  op->absorbed = 0;
  op->add_resize = NULL;
  op->into = NULL;
  op->in_place = 0;
  op->write_own = 0;
  op->scratch_bytes = op->own_bytes = 0;
  int status;
  switch (op->kind) {
    case OP_QUANTIZE:
      status = prepare_quantize(op, in, out, err, err_len) ||
               prepare_pre_constant(op, context, in, op->pre_mul, op->pre_mul_out,
                                    op->pre_mul_node, "MUL", &op->pre_mul_len, err, err_len) ||
               prepare_pre_constant(op, context, in, op->pre_add, op->pre_add_out,
                                    op->pre_add_node, "ADD", &op->pre_add_len, err, err_len);
      break;
    case OP_DEQUANTIZE: status = prepare_dequantize(op, in, out, err, err_len); break;
    case OP_BMAXPOOL2D:
      op->stride_h = op->option_stride_h;
      op->stride_w = op->option_stride_w;
      status = prepare_bmaxpool(op, in, out, err, err_len);
      break;
    case OP_CONCAT: status = prepare_concat(op, context, out, err, err_len); break;
    case OP_MAXPOOL:
    case OP_RESIZE: status = float_op_prepare(op, context, in, out, err, err_len); break;
    default: status = prepare_bconv(op, context, in, out, err, err_len); break;
  }
  if (status) return status;
  op->out_bytes = element_count(out->dims) * (size_t)type_size(out->type);
  return 0;
}

/* --------------------------------------------------- quantize/dequantize */

typedef struct {
  const lce_op* op;
  const void* input;
  void* output;
  int rows_per_task;
  thread_pool* pool;
  int failed;
} rows_job;

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
static inline void quantize_float_row(const lce_op* q, const float* in, size_t r, float* y,
                                      uint32_t* out) {
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

static void quantize_task(void* arg, int task, int thread_id) {
  (void)thread_id;
  const rows_job* job = arg;
  const lce_op* op = job->op;
  const int words = packed_size(op->channels);
  const int r0 = task * job->rows_per_task;
  const int r1 = r0 + job->rows_per_task < op->rows ? r0 + job->rows_per_task : op->rows;
  uint32_t* out = (uint32_t*)job->output + (size_t)r0 * words;
  if (op->in_type == kTfLiteFloat32) {
    rows_job* shared = (rows_job*)arg;
    const int channels = op->channels;
    float* y = pool_scratch(job->pool, thread_id, sizeof(float) * (size_t)channels);
    if (!y) {
      shared->failed = 1;
      return;
    }
    const float* in = (const float*)job->input + (size_t)r0 * channels;
    for (int r = r0; r < r1; ++r, in += channels, out += words) {
      quantize_float_row(op, in, (size_t)r, y, out);
    }
  } else {
    const int8_t* in = (const int8_t*)job->input + (size_t)r0 * op->channels;
    const int32_t zp = op->in_zero_point;
    for (int r = r0; r < r1; ++r, in += op->channels, out += words) {
      for (int w = 0; w < words; ++w) {
        const int c0 = w * 32;
        const int n = op->channels - c0 < 32 ? op->channels - c0 : 32;
        uint32_t bits = 0;
        for (int b = 0; b < n; ++b) bits |= (uint32_t)((int32_t)in[c0 + b] < zp) << b;
        out[w] = bits;
      }
    }
  }
}

VECTOR_CLONES static void dequantize_task(void* arg, int task, int thread_id) {
  (void)thread_id;
  const rows_job* job = arg;
  const lce_op* op = job->op;
  const int words = packed_size(op->channels);
  const int r0 = task * job->rows_per_task;
  const int r1 = r0 + job->rows_per_task < op->rows ? r0 + job->rows_per_task : op->rows;
  const uint32_t* in = (const uint32_t*)job->input + (size_t)r0 * words;
  if (op->out_type == kTfLiteFloat32) {
    float* out = (float*)job->output + (size_t)r0 * op->channels;
    for (int r = r0; r < r1; ++r, in += words, out += op->channels) {
      for (int c = 0; c < op->channels; ++c) {
        out[c] = (in[c >> 5] >> (c & 31)) & 1u ? -1.0f : 1.0f;
      }
    }
  } else {
    const int32_t zero_bit = op->zero_bit, one_bit = op->one_bit; /* prepare_dequantize */
    int8_t* out = (int8_t*)job->output + (size_t)r0 * op->channels;
    for (int r = r0; r < r1; ++r, in += words, out += op->channels) {
      for (int c = 0; c < op->channels; ++c) {
        out[c] = (int8_t)((in[c >> 5] >> (c & 31)) & 1u ? one_bit : zero_bit);
      }
    }
  }
}

static int rows_per_task(int rows, int row_cost, thread_pool* pool) {
  /* At least ~16k elements per task, but enough tasks to feed every thread. */
  int per = 16384 / (row_cost > 0 ? row_cost : 1);
  if (per < 1) per = 1;
  const int threads = pool_size(pool);
  const int balanced = (rows + threads - 1) / threads;
  if (per > balanced) per = balanced;
  return per > 0 ? per : 1;
}

/* --------------------------------------------------------------- concat */

VECTOR_CLONES static void concat_task(void* arg, int task, int thread_id) {
  rows_job* job = arg;
  const lce_op* op = job->op;
  const int r0 = task * job->rows_per_task;
  const int r1 = r0 + job->rows_per_task < op->rows ? r0 + job->rows_per_task : op->rows;
  const size_t channels = (size_t)op->channels;
  const float* other = (const float*)op->add_data;
  const lce_op* up = op->add_resize;
  const lce_op* q = op->then_quantize;
  /* the next binary conv's quantize of each row, while it is in L1 (y: scratch) */
  float* y = q ? pool_scratch(job->pool, thread_id, sizeof(float) * channels) : NULL;
  if (q && !y) {
    job->failed = 1;
    return;
  }
  for (int r = r0; r < r1; ++r) {
    float* dst = (float*)job->output + (size_t)r * channels;
    float* cat = op->cat_out_data ? op->cat_out_data + (size_t)r * channels : NULL;
    size_t at = (size_t)r;
    if (up) { /* row r is pixel (n, y, x) of the upsampled tensor */
      const int x = r % up->out_w, y = (r / up->out_w) % up->out_h, n = r / (up->out_w * up->out_h);
      at = ((size_t)n * up->in_h + (size_t)up->src_rows[y]) * up->in_w + (size_t)up->src_cols[x];
    }
    const float* add = other ? other + at * channels : NULL;
    float* row = dst;
    for (int i = 0; i < op->cat_n; ++i) {
      const int n = op->cat_channels[i];
      const float* src = (const float*)op->cat_data[i] + (size_t)r * (size_t)n;
      if (add) {
        for (int j = 0; j < n; ++j) dst[j] = src[j] + add[j];
        add += n;
      } else {
        memcpy(dst, src, sizeof(float) * (size_t)n);
      }
      if (cat) {
        memcpy(cat, src, sizeof(float) * (size_t)n);
        cat += n;
      }
      dst += n;
    }
    if (q) {
      quantize_float_row(q, row, (size_t)r, y,
                         (uint32_t*)op->then_output + (size_t)r * (size_t)packed_size(q->channels));
    }
  }
}

/* ------------------------------------------------------------- bmaxpool */

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

/* ----------------------------------------------------------------- bconv */

static int bconv_setup(lce_op* op, const TfLiteContext* context, char* err, size_t err_len) {
  const TfLiteTensor* filter = tensor_at(context, op->inputs[1]);
  const uint32_t* w = (const uint32_t*)filter->data;
  if (!w) {
    return fail(err, err_len, "%s (node %d): the filter has no data (it must be a constant)",
                op->name, op->node_index);
  }
  const int nr = op->gemm->nr;
  const int k = op->kernel_words;
  free(op->packed_filter);
  const size_t packed_words = (size_t)op->groups * op->blocks_per_group * k * nr;
  op->packed_filter = aligned_alloc(64, ((packed_words * 4 + 63) / 64) * 64);
  if (!op->packed_filter) return fail(err, err_len, "out of memory");
  /* Lane-packed: block b of group g holds, for each word kk, the kk-th word
   * of nr consecutive output channels (zero beyond the group's channels). */
  for (int g = 0; g < op->groups; ++g) {
    for (int b = 0; b < op->blocks_per_group; ++b) {
      uint32_t* dst = op->packed_filter + ((size_t)g * op->blocks_per_group + b) * k * nr;
      for (int kk = 0; kk < k; ++kk) {
        for (int j = 0; j < nr; ++j) {
          const int local = b * nr + j;
          const int o = g * op->out_per_group + local;
          dst[(size_t)kk * nr + j] = local < op->out_per_group ? w[(size_t)o * k + kk] : 0u;
        }
      }
    }
  }

  if (op->out_type == kTfLiteInt32) {
    const TfLiteTensor* thr = tensor_at(context, op->inputs[4]);
    if (!thr->data) return fail(err, err_len, "%s: thresholds have no data", op->name);
    free(op->thresholds);
    op->thresholds = malloc(sizeof(int32_t) * (size_t)op->out_c);
    if (!op->thresholds) return fail(err, err_len, "out of memory");
    memcpy(op->thresholds, thr->data, sizeof(int32_t) * (size_t)op->out_c);
  } else {
    const float* mul = (const float*)tensor_at(context, op->inputs[2])->data;
    const float* bias = (const float*)tensor_at(context, op->inputs[3])->data;
    if (!mul || !bias) return fail(err, err_len, "%s: multiplier/bias have no data", op->name);
    free(op->multiplier);
    free(op->bias);
    op->multiplier = malloc(sizeof(float) * (size_t)op->out_c);
    op->bias = malloc(sizeof(float) * (size_t)op->out_c);
    if (!op->multiplier || !op->bias) return fail(err, err_len, "out of memory");
    /* Fold the back-transformation K - 2*accum (and the int8 scale and zero
     * point) into one multiplier and bias, in double, as LCE does. */
    fold_multiplier_bias(op, mul, bias, 1, err, err_len);
    /* TFLite's int32 activation range, intersected with [-K, K], then mapped
     * onto the doubled accumulator 2*accum = K - y. */
    int32_t lo = INT32_MIN, hi = INT32_MAX;
    if (op->activation == 1) {
      lo = 0;
    } else if (op->activation == 2) {
      lo = -1;
      hi = 1;
    } else if (op->activation == 3) {
      lo = 0;
      hi = 6;
    }
    const int32_t K = op->backtransform;
    if (lo < -K) lo = -K;
    if (hi > K) hi = K;
    op->clamp_lo = K - hi;
    op->clamp_hi = K - lo;
  }

  free(op->tap_sums);
  op->tap_sums = NULL;
  if (op->padding_same && op->pad_value == 0) {
    /* Per tap, what the pad-as-+1 accumulation wrongly adds when the tap is
     * outside the image: sum_c w = channels - 2 * popcount(filter bits). */
    const int taps = op->filter_h * op->filter_w;
    const int channels = op->channels_in / op->groups;
    op->tap_sums = malloc(sizeof(int32_t) * (size_t)taps * op->out_c);
    if (!op->tap_sums) return fail(err, err_len, "out of memory");
    for (int t = 0; t < taps; ++t) {
      for (int o = 0; o < op->out_c; ++o) {
        int ones = 0;
        for (int q = 0; q < op->words_per_group; ++q) {
          ones += __builtin_popcount(w[(size_t)o * k + (size_t)t * op->words_per_group + q]);
        }
        op->tap_sums[(size_t)t * op->out_c + o] = channels - 2 * ones;
      }
    }
  }

  /* The direct path's word offsets (prepare_bconv chose the path, and pad_w). */
  free(op->koff);
  op->koff = NULL;
  if (op->direct) {
    const int words = op->in_words;
    const size_t row_words = (size_t)op->pad_w * words;
    op->koff = malloc(sizeof(int32_t) * (size_t)op->groups * k);
    if (!op->koff) return fail(err, err_len, "out of memory");
    for (int g = 0; g < op->groups; ++g) {
      int32_t* koff = op->koff + (size_t)g * k;
      for (int ky = 0; ky < op->filter_h; ++ky) {
        for (int kx = 0; kx < op->filter_w; ++kx) {
          for (int q = 0; q < op->words_per_group; ++q) {
            *koff++ = (int32_t)((size_t)ky * op->dilation_h * row_words +
                                (size_t)kx * op->dilation_w * words +
                                (size_t)g * op->words_per_group + (size_t)q);
          }
        }
      }
    }
  }

  /* The AVX-512 epilogue goes with the AVX-512 kernel (whose CPU check covers it). */
  op->epilogue_avx512 = !strcmp(op->gemm->name, "avx512-vpopcntdq");
  free(op->then_mul);
  free(op->then_add);
  op->then_mul = op->then_add = NULL;
  const lce_op* q = op->then_quantize;
  if (q) {
    op->then_mul = malloc(sizeof(float) * (size_t)op->out_c);
    op->then_add = malloc(sizeof(float) * (size_t)op->out_c);
    if (!op->then_mul || !op->then_add) return fail(err, err_len, "out of memory");
    for (int o = 0; o < op->out_c; ++o) {
      op->then_mul[o] = q->pre_mul < 0 ? 1.0f : q->pre_mul_values[q->pre_mul_len == 1 ? 0 : o];
      op->then_add[o] = q->pre_add < 0 ? 0.0f : q->pre_add_values[q->pre_add_len == 1 ? 0 : o];
    }
  }
  op->ready = 1;
  return 0;
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

/* One task's scratch: a_bytes of windows (A), c_bytes of accumulators (C), then the epilogue's
 * per-op tap sums and one or two rows of float output (y, and yq when the op both writes into a
 * concat and quantizes). NULL (and job->failed set) when the pool cannot provide it. */
typedef struct {
  uint32_t* a;
  int32_t* c;
  int32_t* correction;
  float* y;
  float* yq;
} bconv_scratch;

static int carve_scratch(bconv_job* job, int thread_id, size_t a_bytes, size_t c_bytes,
                         bconv_scratch* out) {
  const lce_op* op = job->op;
  const size_t s_bytes = op->tap_sums ? sizeof(int32_t) * (size_t)op->out_c : 0;
  const size_t row_bytes = (sizeof(float) * (size_t)op->out_c + 63) / 64 * 64;
  const size_t y_bytes = (op->then_quantize ? row_bytes : 0) + (op->into ? row_bytes : 0);
  uint8_t* scratch = pool_scratch(job->pool, thread_id, a_bytes + c_bytes + s_bytes + y_bytes);
  if (!scratch) {
    job->failed = 1;
    return -1;
  }
  out->a = (uint32_t*)scratch;
  out->c = (int32_t*)(scratch + a_bytes);
  out->correction = (int32_t*)(scratch + a_bytes + c_bytes);
  out->y = (float*)(scratch + a_bytes + c_bytes + s_bytes);
  out->yq = op->into && op->then_quantize ? out->y + row_bytes / sizeof(float) : out->y;
  return 0;
}

/* One row of im2col for group g: the window's words, zero outside the image
 * (zero bits are +1, which is exactly LCE's pad_values=1; zero padding is
 * corrected in the epilogue). */
static inline void im2col_row(const lce_op* op, const uint32_t* input, int pixel, int g, uint32_t* row) {
  const int per_image = op->out_h * op->out_w;
  const int n = pixel / per_image;
  const int oy = (pixel % per_image) / op->out_w;
  const int ox = pixel % op->out_w;
  const int wg = op->words_per_group;
  const int y0 = oy * op->stride_h - op->pad_top;
  const int x0 = ox * op->stride_w - op->pad_left;
  for (int ky = 0; ky < op->filter_h; ++ky) {
    const int y = y0 + ky * op->dilation_h;
    for (int kx = 0; kx < op->filter_w; ++kx, row += wg) {
      const int x = x0 + kx * op->dilation_w;
      /* Plain loops: the rows are a few words long, shorter than a memcpy call. */
      if (y < 0 || y >= op->in_h || x < 0 || x >= op->in_w) {
        for (int q = 0; q < wg; ++q) row[q] = 0;
      } else {
        const uint32_t* src =
            input + (((size_t)n * op->in_h + y) * op->in_w + x) * op->in_words + (size_t)g * wg;
        for (int q = 0; q < wg; ++q) row[q] = src[q];
      }
    }
  }
}

/* Sum of tap_sums over the taps of `pixel` that fall outside the image. */
static int zero_padding_correction(const lce_op* op, int pixel, int32_t* sums) {
  const int per_image = op->out_h * op->out_w;
  const int oy = (pixel % per_image) / op->out_w;
  const int ox = pixel % op->out_w;
  const int y0 = oy * op->stride_h - op->pad_top;
  const int x0 = ox * op->stride_w - op->pad_left;
  int any = 0;
  for (int ky = 0; ky < op->filter_h; ++ky) {
    const int y = y0 + ky * op->dilation_h;
    for (int kx = 0; kx < op->filter_w; ++kx) {
      const int x = x0 + kx * op->dilation_w;
      if (y >= 0 && y < op->in_h && x >= 0 && x < op->in_w) continue;
      const int32_t* t = op->tap_sums + (size_t)(ky * op->filter_w + kx) * op->out_c;
      if (!any) {
        memset(sums, 0, sizeof(int32_t) * (size_t)op->out_c);
        any = 1;
      }
      for (int o = 0; o < op->out_c; ++o) sums[o] += t[o];
    }
  }
  return any;
}

/* `row`: where a float output row goes (NULL: its place in `output`). */
static inline void bconv_epilogue(const lce_op* op, const int32_t* acc_row, int pixel, void* output,
                                  int32_t* correction, float* row) {
  const int og = op->out_per_group;
  const int group_stride = op->blocks_per_group * op->gemm->nr;
  if (op->out_type == kTfLiteInt32) {
    const int words = packed_size(op->out_c);
    uint32_t* out = (uint32_t*)output + (size_t)pixel * words;
    memset(out, 0, sizeof(uint32_t) * (size_t)words);
    for (int g = 0; g < op->groups; ++g) {
      const int32_t* a = acc_row + (size_t)g * group_stride;
      for (int j = 0; j < og; ++j) {
        const int o = g * og + j;
        out[o >> 5] |= (uint32_t)(a[j] > op->thresholds[o]) << (o & 31);
      }
    }
    return;
  }
  const int corrected = op->tap_sums && zero_padding_correction(op, pixel, correction);
  const int32_t lo = op->clamp_lo, hi = op->clamp_hi;
  if (op->out_type == kTfLiteFloat32) {
    float* out = row ? row : (float*)output + (size_t)pixel * op->out_c;
    for (int g = 0; g < op->groups; ++g) {
      const int32_t* a = acc_row + (size_t)g * group_stride;
      const float* m = op->multiplier + (size_t)g * og;
      const float* b = op->bias + (size_t)g * og;
      float* o = out + (size_t)g * og;
      if (corrected) {
        const int32_t* s = correction + (size_t)g * og;
        for (int j = 0; j < og; ++j) {
          int32_t x = 2 * a[j] + s[j];
          x = x < lo ? lo : (x > hi ? hi : x);
          o[j] = (float)x * m[j] + b[j];
        }
      } else {
        for (int j = 0; j < og; ++j) {
          int32_t x = 2 * a[j];
          x = x < lo ? lo : (x > hi ? hi : x);
          o[j] = (float)x * m[j] + b[j];
        }
      }
    }
    return;
  }
  int8_t* out = (int8_t*)output + (size_t)pixel * op->out_c;
  for (int g = 0; g < op->groups; ++g) {
    const int32_t* a = acc_row + (size_t)g * group_stride;
    for (int j = 0; j < og; ++j) {
      const int o = g * og + j;
      int32_t x = 2 * a[j];
      x = x < lo ? lo : (x > hi ? hi : x);
      const float y = (float)x * op->multiplier[o] + op->bias[o];
      /* TfLiteRound rounds half away from zero, like roundf. */
      float r = roundf(y);
      if (r > 127.0f) r = 127.0f;
      if (r < -128.0f) r = -128.0f;
      out[o] = (int8_t)r;
    }
  }
}

/* Block versions: one (vectorized clone) call per task, not per pixel. */
VECTOR_CLONES static void im2col_block(const lce_op* op, const uint32_t* input, int p0, int count,
                                       int g, uint32_t* a) {
  const int k = op->kernel_words;
  const int wg = op->words_per_group;
  const int per_image = op->out_h * op->out_w;
  int n = p0 / per_image;
  int oy = (p0 % per_image) / op->out_w;
  int ox = p0 % op->out_w;
  const int span_h = (op->filter_h - 1) * op->dilation_h;
  const int span_w = (op->filter_w - 1) * op->dilation_w;
  const size_t image_words = (size_t)op->in_h * op->in_w * op->in_words;
  for (int r = 0; r < count; ++r) {
    const int y0 = oy * op->stride_h - op->pad_top;
    const int x0 = ox * op->stride_w - op->pad_left;
    if (y0 >= 0 && x0 >= 0 && y0 + span_h < op->in_h && x0 + span_w < op->in_w) {
      /* Interior pixel (most of them): no bounds checks, no index arithmetic per tap. */
      uint32_t* row = a + (size_t)r * k;
      const uint32_t* image = input + (size_t)n * image_words + (size_t)g * wg;
      for (int ky = 0; ky < op->filter_h; ++ky) {
        const uint32_t* src =
            image + ((size_t)(y0 + ky * op->dilation_h) * op->in_w + x0) * op->in_words;
        const size_t tap_step = (size_t)op->dilation_w * op->in_words;
        if (wg == 1) {
          for (int kx = 0; kx < op->filter_w; ++kx) *row++ = src[kx * tap_step];
          continue;
        }
        /* 64, 128, 256 channels: one fixed-size move per tap. */
        if (wg == 2 || wg == 4 || wg == 8) {
          for (int kx = 0; kx < op->filter_w; ++kx, row += wg) {
            const uint32_t* tap = src + kx * tap_step;
            if (wg == 2) {
              memcpy(row, tap, 8);
            } else if (wg == 4) {
              memcpy(row, tap, 16);
            } else {
              memcpy(row, tap, 32);
            }
          }
          continue;
        }
        for (int kx = 0; kx < op->filter_w; ++kx, row += wg) {
          const uint32_t* tap = src + kx * tap_step;
          for (int q = 0; q < wg; ++q) row[q] = tap[q];
        }
      }
    } else {
      im2col_row(op, input, p0 + r, g, a + (size_t)r * k);
    }
    if (++ox == op->out_w) {
      ox = 0;
      if (++oy == op->out_h) {
        oy = 0;
        ++n;
      }
    }
  }
}

/* How far ahead the epilogue prefetches the rows it will write into a concat. */
#define PREFETCH_PIXELS 16

/* Where pixel p's slice starts in the concat this op writes into (and in the ADD operand):
 * the concat's rows are strided slices of a big tensor, so the rows PREFETCH_PIXELS ahead
 * are fetched now. Shared by both float epilogues. */
static inline __attribute__((always_inline)) size_t into_row(const lce_op* op, size_t p,
                                                             const int add) {
  const size_t cat_c = (size_t)op->into->channels;
  const size_t at = p * cat_c + (size_t)op->into_offset;
  const size_t ahead = at + PREFETCH_PIXELS * cat_c;
  for (int j = 0; j < op->out_c; j += 16) {
    __builtin_prefetch(op->into_data + ahead + j, 1);
    if (add) __builtin_prefetch(op->into_add + ahead + j, 0);
  }
  return at;
}

/* The common epilogue in one pass over each pixel's channels: float output of
 * one group with no zero-padding correction, and an absorbed quantize (if any)
 * that stores none of its MUL / ADD outputs. v is the conv's output; the
 * quantize packs t = fl(fl(v * qm) + qa) < 0 with qm = 1 and qa = 0 where its
 * MUL or ADD is absent: v * 1 = v, and r + 0 differs from r only when r = -0
 * (giving +0), which packs the same; so every bit is the unfused one. The
 * flags are constants in each caller, so each combination is its own loop. */
static inline __attribute__((always_inline)) void epilogue_fast(
    const lce_op* op, const int32_t* c, int ldc, int p0, int count, float* output, float* yq,
    const int own, const int quant, const int into, const int add) {
  const int out_c = op->out_c;
  const int words = packed_size(out_c);
  const int32_t lo = op->clamp_lo, hi = op->clamp_hi;
  const float* restrict m = op->multiplier;
  const float* restrict b = op->bias;
  const float* restrict qm = op->then_mul;
  const float* restrict qa = op->then_add;
  for (int r = 0; r < count; ++r) {
    const size_t p = (size_t)(p0 + r);
    const int32_t* restrict acc = c + (size_t)r * ldc;
    float* restrict mine = own ? output + p * out_c : NULL;
    const size_t at = into ? into_row(op, p, add) : 0;
    float* restrict dst = into ? op->into_data + at : NULL;
    const float* restrict other = add ? op->into_add + at : NULL;
    /* The outputs never overlap the inputs or each other. */
#pragma GCC ivdep
    for (int j = 0; j < out_c; ++j) {
      int32_t x = 2 * acc[j];
      x = x < lo ? lo : (x > hi ? hi : x);
      const float v = (float)x * m[j] + b[j];
      if (own) mine[j] = v;
      if (quant) yq[j] = v * qm[j] + qa[j];
      if (into) dst[j] = add ? v + other[j] : v;
    }
    if (quant) op->gemm->pack_row(yq, out_c, (uint32_t*)op->then_output + p * words);
  }
}

#ifdef EPILOGUE_AVX512
/* epilogue_fast written out for AVX-512 (the avx512-vpopcntdq kernel path):
 * the quantize's compare goes straight to a bit mask, with no float staging
 * row and no call per pixel. The same IEEE operations in the same order:
 * cvt, mul, add (no FMA), so the floats and bits are epilogue_fast's. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
epilogue_fast_avx512_body(const lce_op* op, const int32_t* c, int ldc, int p0, int count,
                          float* output, const int own, const int quant, const int into,
                          const int add) {
  const int out_c = op->out_c;
  const int words = packed_size(out_c);
  const int vecs = (out_c + 15) / 16;
  const __mmask16 tail = (__mmask16)(out_c % 16 ? (1u << (out_c % 16)) - 1u : 0xffffu);
  const __m512i lo = _mm512_set1_epi32(op->clamp_lo), hi = _mm512_set1_epi32(op->clamp_hi);
  const __m512 zero = _mm512_setzero_ps();
  const float* m = op->multiplier;
  const float* b = op->bias;
  const float* qm = op->then_mul;
  const float* qa = op->then_add;
  for (int r = 0; r < count; ++r) {
    const size_t p = (size_t)(p0 + r);
    const int32_t* acc = c + (size_t)r * ldc;
    float* mine = own ? output + p * out_c : NULL;
    const size_t at = into ? into_row(op, p, add) : 0;
    float* dst = into ? op->into_data + at : NULL;
    const float* other = add ? op->into_add + at : NULL;
    uint32_t* bits = quant ? (uint32_t*)op->then_output + p * words : NULL;
    uint32_t word = 0;
    for (int v = 0; v < vecs; ++v) {
      const int j = 16 * v;
      const __mmask16 k = v == vecs - 1 ? tail : (__mmask16)0xffffu;
      __m512i x = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(k, acc + j), 1);
      x = _mm512_min_epi32(_mm512_max_epi32(x, lo), hi);
      const __m512 f = _mm512_add_ps(
          _mm512_mul_ps(_mm512_cvtepi32_ps(x), _mm512_maskz_loadu_ps(k, m + j)),
          _mm512_maskz_loadu_ps(k, b + j));
      if (own) _mm512_mask_storeu_ps(mine + j, k, f);
      if (quant) {
        const __m512 t = _mm512_add_ps(_mm512_mul_ps(f, _mm512_maskz_loadu_ps(k, qm + j)),
                                       _mm512_maskz_loadu_ps(k, qa + j));
        const uint32_t lt = _mm512_mask_cmp_ps_mask(k, t, zero, _CMP_LT_OQ);
        if (v & 1) {
          bits[v >> 1] = word | (lt << 16);
        } else if (v == vecs - 1) {
          bits[v >> 1] = lt;
        } else {
          word = lt;
        }
      }
      if (into) {
        _mm512_mask_storeu_ps(dst + j, k,
                              add ? _mm512_add_ps(f, _mm512_maskz_loadu_ps(k, other + j)) : f);
      }
    }
  }
}

__attribute__((target("avx512f"))) static void epilogue_fast_avx512(
    const lce_op* op, const int32_t* c, int ldc, int p0, int count, float* output, int flags) {
  switch (flags) {
    case 1: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 1, 0, 0, 0); return;
    case 3: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 1, 1, 0, 0); return;
    case 4: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 0, 0, 1, 0); return;
    case 5: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 1, 0, 1, 0); return;
    case 6: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 0, 1, 1, 0); return;
    case 7: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 1, 1, 1, 0); return;
    case 12: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 0, 0, 1, 1); return;
    case 13: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 1, 0, 1, 1); return;
    case 14: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 0, 1, 1, 1); return;
    case 15: epilogue_fast_avx512_body(op, c, ldc, p0, count, output, 1, 1, 1, 1); return;
    default: return;
  }
}
#endif

VECTOR_CLONES static void epilogue_block(const lce_op* op, const int32_t* c, int ldc, int p0,
                                         int count, void* output, int32_t* correction,
                                         float* y, float* yq) {
  const lce_op* q = op->then_quantize;
  const lce_op* into = op->into;
  const int words = packed_size(op->out_c);
  const int out_c = op->out_c;
  if (op->out_type == kTfLiteFloat32 && op->groups == 1 && !op->tap_sums &&
      (!q || (!q->pre_mul_data && !q->pre_add_data))) {
    const int own = !into || op->write_own;
    const int add = into && op->into_add;
    float* out = (float*)output;
    /* own + quantize * 2 + into * 4 + add * 8 */
    const int flags = own + (q ? 2 : 0) + (into ? 4 : 0) + (add ? 8 : 0);
#ifdef EPILOGUE_AVX512
    if (op->epilogue_avx512) {
      epilogue_fast_avx512(op, c, ldc, p0, count, out, flags);
      return;
    }
#endif
    switch (flags) {
      case 1: epilogue_fast(op, c, ldc, p0, count, out, yq, 1, 0, 0, 0); return;
      case 3: epilogue_fast(op, c, ldc, p0, count, out, yq, 1, 1, 0, 0); return;
      case 4: epilogue_fast(op, c, ldc, p0, count, out, yq, 0, 0, 1, 0); return;
      case 5: epilogue_fast(op, c, ldc, p0, count, out, yq, 1, 0, 1, 0); return;
      case 6: epilogue_fast(op, c, ldc, p0, count, out, yq, 0, 1, 1, 0); return;
      case 7: epilogue_fast(op, c, ldc, p0, count, out, yq, 1, 1, 1, 0); return;
      case 12: epilogue_fast(op, c, ldc, p0, count, out, yq, 0, 0, 1, 1); return;
      case 13: epilogue_fast(op, c, ldc, p0, count, out, yq, 1, 0, 1, 1); return;
      case 14: epilogue_fast(op, c, ldc, p0, count, out, yq, 0, 1, 1, 1); return;
      case 15: epilogue_fast(op, c, ldc, p0, count, out, yq, 1, 1, 1, 1); return;
      default: break; /* no output at all: cannot happen */
    }
  }
  for (int r = 0; r < count; ++r) {
    const size_t p = (size_t)(p0 + r);
    float* row = NULL;
    if (into) row = op->write_own ? (float*)output + p * out_c : y;
    bconv_epilogue(op, c + (size_t)r * ldc, (int)p, output, correction, row);
    if (!row) row = (float*)output + p * out_c;
    if (q) {
      /* The next op's quantize of this pixel, while its floats are in L1. */
      quantize_float_row(q, row, p, yq, (uint32_t*)op->then_output + p * words);
    }
    if (into) {
      /* Straight into the concat (+ ADD) output: the runtime's fl(y + other). Its
       * rows are strided slices of a big tensor: fetch a few pixels ahead. */
      const size_t at = p * (size_t)into->channels + (size_t)op->into_offset;
      float* dst = op->into_data + at;
      const size_t ahead = at + PREFETCH_PIXELS * (size_t)into->channels;
      for (int j = 0; j < out_c; j += 16) {
        __builtin_prefetch(op->into_data + ahead + j, 1);
        if (op->into_add) __builtin_prefetch(op->into_add + ahead + j, 0);
      }
      if (op->into_add) {
        const float* other = op->into_add + at;
        for (int j = 0; j < out_c; ++j) dst[j] = row[j] + other[j];
      } else {
        memcpy(dst, row, sizeof(float) * (size_t)out_c);
      }
    }
  }
}

static void bconv_task(void* arg, int task, int thread_id) {
  bconv_job* job = arg;
  const lce_op* op = job->op;
  const bgemm_impl* gemm = op->gemm;
  const int mr = gemm->mr, nr = gemm->nr;
  const int k = op->kernel_words;
  const int p0 = task * job->pixels_per_task;
  const int p1 = p0 + job->pixels_per_task < job->pixels ? p0 + job->pixels_per_task : job->pixels;
  const int count = p1 - p0;
  const int rows = ((count + mr - 1) / mr) * mr;

  bconv_scratch sc;
  if (carve_scratch(job, thread_id, im2col_a_bytes(op, count), im2col_c_bytes(op, count), &sc)) {
    return;
  }
  uint32_t* a = sc.a;
  int32_t* c = sc.c;

  for (int g = 0; g < op->groups; ++g) {
    im2col_block(op, job->input, p0, count, g, a);
    if (rows > count) memset(a + (size_t)count * k, 0, sizeof(uint32_t) * (size_t)(rows - count) * k);
    for (int b = 0; b < op->blocks_per_group; ++b) {
      const uint32_t* panel =
          op->packed_filter + ((size_t)g * op->blocks_per_group + b) * (size_t)k * nr;
      int32_t* c_block = c + (size_t)(g * op->blocks_per_group + b) * nr;
      for (int r = 0; r < rows; r += mr) {
        gemm->kernel(a + (size_t)r * k, (size_t)k, panel, k, c_block + (size_t)r * job->ldc,
                     (size_t)job->ldc);
      }
    }
  }
  epilogue_block(op, c, job->ldc, p0, count, job->output, sc.correction, sc.y, sc.yq);
}

/* Into L2: the float output lines of pixels [p0, p1) that the epilogue
 * writes (the op's own rows, its slice of a concat) and the ADD operand's. */
static inline void prefetch_epilogue(const lce_op* op, void* output, int p0, int p1) {
  if (op->out_type != kTfLiteFloat32) return;
  const int out_c = op->out_c;
  const int own = !op->into || op->write_own;
  for (int p = p0; p < p1; ++p) {
    if (own) {
      const float* mine = (const float*)output + (size_t)p * out_c;
      for (int j = 0; j < out_c; j += 16) __builtin_prefetch(mine + j, 1, 2);
    }
    if (op->into) {
      const size_t at = (size_t)p * op->into->channels + (size_t)op->into_offset;
      for (int j = 0; j < out_c; j += 16) {
        __builtin_prefetch(op->into_data + at + j, 1, 2);
        if (op->into_add) __builtin_prefetch(op->into_add + at + j, 0, 2);
      }
    }
  }
}

/* Direct convolution: a task is a few output rows of one image. It copies the
 * input rows their windows read into scratch, zero-padded left and right, and
 * all-zero rows above and below the image (zero bits are +1, LCE's
 * pad_values=1; zero padding is corrected in the epilogue, as for im2col).
 * The kernel then reads each output pixel's window in place: pixel x of an
 * output row at x * stride_w * in_words plus the offsets koff. The last call
 * of a row may compute up to mr - 1 pixels past its end; their reads stay in
 * the scratch's slack and their accumulator rows are never used. */
static void bconv_direct_task(void* arg, int task, int thread_id) {
  bconv_job* job = arg;
  const lce_op* op = job->op;
  const bgemm_impl* gemm = op->gemm;
  const int mr = gemm->mr, nr = gemm->nr;
  const int k = op->kernel_words;
  const int words = op->in_words;
  const int n = task / job->tasks_per_image;
  const int oy0 = (task % job->tasks_per_image) * job->rows_per_task;
  const int oy1 = oy0 + job->rows_per_task < op->out_h ? oy0 + job->rows_per_task : op->out_h;
  const size_t row_words = (size_t)op->pad_w * words;
  const int in_rows = direct_input_rows(op, oy1 - oy0);
  const size_t lda = (size_t)op->stride_w * words;
  const size_t slack = (size_t)mr * lda;

  /* Within LCE_SCRATCH_BUDGET: prepare_bconv sized the largest task. */
  bconv_scratch sc;
  if (carve_scratch(job, thread_id, direct_a_bytes(op, in_rows),
                    direct_c_bytes(op, job->seg_pixels), &sc)) {
    return;
  }
  uint32_t* a = sc.a;
  int32_t* c = sc.c;

  /* Padded row px holds input column px - pad_left. */
  const int iy0 = oy0 * op->stride_h - op->pad_top;
  const int from = op->pad_left < op->pad_w ? op->pad_left : op->pad_w;
  int to = op->pad_left + op->in_w < op->pad_w ? op->pad_left + op->in_w : op->pad_w;
  if (to < from) to = from;
  const uint32_t* image = job->input + (size_t)n * op->in_h * op->in_w * words;
  for (int r = 0; r < in_rows; ++r) {
    uint32_t* dst = a + (size_t)r * row_words;
    const int iy = iy0 + r;
    if (iy < 0 || iy >= op->in_h) {
      memset(dst, 0, row_words * 4);
      continue;
    }
    memset(dst, 0, (size_t)from * words * 4);
    memcpy(dst + (size_t)from * words,
           image + ((size_t)iy * op->in_w + (size_t)(from - op->pad_left)) * words,
           (size_t)(to - from) * words * 4);
    memset(dst + (size_t)to * words, 0, (size_t)(op->pad_w - to) * words * 4);
  }
  memset(a + (size_t)in_rows * row_words, 0, slack * 4);

  /* A row in segments of seg pixels (a multiple of mr) whose accumulators
   * stay in L1 until the epilogue reads them. */
  const int seg = job->seg_pixels;
  for (int oy = oy0; oy < oy1; ++oy) {
    const uint32_t* row = a + (size_t)(oy - oy0) * op->stride_h * row_words;
    const int p_row = (n * op->out_h + oy) * op->out_w;
    for (int s0 = 0; s0 < op->out_w; s0 += seg) {
      const int s1 = s0 + seg < op->out_w ? s0 + seg : op->out_w;
      const int calls = op->groups * op->blocks_per_group * ((s1 - s0 + mr - 1) / mr);
      int call = 0;
      for (int g = 0; g < op->groups; ++g) {
        const int32_t* koff = op->koff + (size_t)g * k;
        for (int b = 0; b < op->blocks_per_group; ++b) {
          const uint32_t* panel =
              op->packed_filter + ((size_t)g * op->blocks_per_group + b) * (size_t)k * nr;
          int32_t* c_block = c + (size_t)(g * op->blocks_per_group + b) * nr;
          for (int x0 = s0; x0 < s1; x0 += mr, ++call) {
            gemm->direct(row + (size_t)x0 * lda, lda, koff, panel, k,
                         c_block + (size_t)(x0 - s0) * job->ldc, (size_t)job->ldc);
            /* The epilogue's float rows live in big tensors (the concat and
             * its addend often come from memory): while the kernel runs,
             * fetch the lines the epilogue will touch, a slice per call. */
            prefetch_epilogue(op, job->output, p_row + s0 + (int)((long)call * (s1 - s0) / calls),
                              p_row + s0 + (int)((long)(call + 1) * (s1 - s0) / calls));
          }
        }
      }
      epilogue_block(op, c, job->ldc, p_row + s0, s1 - s0, job->output, sc.correction, sc.y,
                     sc.yq);
    }
  }
}

/* ------------------------------------------------------------------- run */

int lce_op_run(lce_op* op, const TfLiteContext* context, const void* input, void* output,
               thread_pool* pool, char* err, size_t err_len) {
  if (!input || !output) {
    return fail(err, err_len, "%s (node %d): input or output has no buffer", op->name,
                op->node_index);
  }
  switch (op->kind) {
    case OP_QUANTIZE:
    case OP_DEQUANTIZE: {
      rows_job job;
      memset(&job, 0, sizeof(job));
      job.op = op;
      job.input = input;
      job.output = output;
      job.pool = pool;
      if ((op->pre_mul_out >= 0 && !op->pre_mul_data) ||
          (op->pre_add_out >= 0 && !op->pre_add_data)) {
        return fail(err, err_len, "%s (node %d): a fused op's output has no buffer", op->name,
                    op->node_index);
      }
      const int row_cost = op->channels;
      job.rows_per_task = rows_per_task(op->rows, row_cost, pool);
      const int tasks = (op->rows + job.rows_per_task - 1) / job.rows_per_task;
      pool_run(pool, tasks, op->kind == OP_QUANTIZE ? quantize_task : dequantize_task, &job);
      if (job.failed) return fail(err, err_len, "%s: out of memory", op->name);
      return 0;
    }
    case OP_CONCAT: {
      if (op->in_place) return 0; /* its binary convs wrote the output */
      for (int i = 0; i < op->cat_n; ++i) {
        if (!op->cat_data[i]) return fail(err, err_len, "CONCATENATION: input has no buffer");
      }
      if ((op->add_other >= 0 && !op->add_data) || (op->cat_out >= 0 && !op->cat_out_data)) {
        return fail(err, err_len, "ADD (node %d): input has no buffer", op->add_node);
      }
      rows_job job;
      memset(&job, 0, sizeof(job));
      job.op = op;
      job.output = output;
      job.pool = pool;
      job.rows_per_task = rows_per_task(op->rows, op->channels, pool);
      pool_run(pool, (op->rows + job.rows_per_task - 1) / job.rows_per_task, concat_task, &job);
      if (job.failed) return fail(err, err_len, "%s: out of memory", op->name);
      return 0;
    }
    case OP_MAXPOOL:
    case OP_RESIZE: float_op_run(op, (const float*)input, (float*)output, pool); return 0;
    case OP_BMAXPOOL2D: {
      pool_job job = {op, input, output};
      pool_run(pool, op->batch * op->out_h, bmaxpool_task, &job);
      return 0;
    }
    case OP_BCONV2D: {
      if (!op->ready && bconv_setup(op, context, err, err_len)) return -1;
      const lce_op* q = op->then_quantize;
      if (op->into && (!op->into_data || (op->into->add_other >= 0 && !op->into_add))) {
        return fail(err, err_len, "%s (node %d): the concat output has no buffer", op->name,
                    op->node_index);
      }
      if (q && (!op->then_output || (q->pre_mul_out >= 0 && !q->pre_mul_data) ||
                (q->pre_add_out >= 0 && !q->pre_add_data))) {
        return fail(err, err_len, "%s (node %d): the absorbed quantize's output has no buffer",
                    op->name, op->node_index);
      }
      bconv_job job;
      memset(&job, 0, sizeof(job));
      job.op = op;
      job.input = input;
      job.output = output;
      job.pool = pool;
      job.pixels = op->batch * op->out_h * op->out_w;
      job.ldc = op->ldc;
      const int threads = pool_size(pool);
      if (op->direct) {
        const int rows = direct_rows_per_task(op, threads);
        job.rows_per_task = rows;
        job.tasks_per_image = (op->out_h + rows - 1) / rows;
        job.seg_pixels = direct_segment(op);
        pool_run(pool, op->batch * job.tasks_per_image, bconv_direct_task, &job);
        if (job.failed) return fail(err, err_len, "%s: out of memory", op->name);
        return 0;
      }
      const int per = im2col_pixels_per_task(op, job.pixels, threads);
      job.pixels_per_task = per;
      const int tasks = (job.pixels + per - 1) / per;
      pool_run(pool, tasks, bconv_task, &job);
      if (job.failed) return fail(err, err_len, "%s: out of memory", op->name);
      return 0;
    }
  }
  return fail(err, err_len, "unknown op");
}

void lce_op_release(lce_op* op) {
  float_op_release(op);
  free(op->packed_filter);
  free(op->multiplier);
  free(op->bias);
  free(op->thresholds);
  free(op->tap_sums);
  free(op->koff);
  free(op->then_mul);
  free(op->then_add);
  op->koff = NULL;
  op->then_mul = op->then_add = NULL;
  op->packed_filter = NULL;
  op->multiplier = op->bias = NULL;
  op->thresholds = op->tap_sums = NULL;
}
