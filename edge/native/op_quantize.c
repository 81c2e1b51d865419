/* LceQuantize: float/int8 [..., C] -> int32 [..., ceil(C/32)], channel c to word c/32, bit c%32
 * (LSB first); bit 1 means x < 0 (int8: q < zero_point); padding bits 0. A float quantize may
 * absorb the builtin MUL and/or ADD by a constant that produce its input (lce_op_fuse_pre),
 * and may itself be absorbed by the op that writes its input (lce_op_absorb). */
#include <string.h>

#include "op_core.h"

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

int quantize_prepare(lce_op* op, const TfLiteContext* context, const TfLiteTensor* in,
                     const TfLiteTensor* out, char* err, size_t err_len) {
  return prepare_quantize(op, in, out, err, err_len) ||
         prepare_pre_constant(op, context, in, op->pre_mul, op->pre_mul_out, op->pre_mul_node,
                              "MUL", &op->pre_mul_len, err, err_len) ||
         prepare_pre_constant(op, context, in, op->pre_add, op->pre_add_out, op->pre_add_node,
                              "ADD", &op->pre_add_len, err, err_len);
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

int quantize_run(lce_op* op, const void* input, void* output, thread_pool* pool, char* err,
                 size_t err_len) {
  if ((op->pre_mul_out >= 0 && !op->pre_mul_data) ||
      (op->pre_add_out >= 0 && !op->pre_add_data)) {
    return fail(err, err_len, "%s (node %d): a fused op's output has no buffer", op->name,
                op->node_index);
  }
  return run_rows(op, input, output, pool, quantize_task, err, err_len);
}
