/* The op table: lce_op_init, lce_op_prepare, lce_op_run and lce_op_release (lce_ops.h) for
 * every kind of op, each handed to the op's own file (op_quantize.c, op_dequantize.c,
 * op_bconv2d.c, op_bmaxpool.c, op_concat.c, float_ops.c), with what all of them share: an Lce
 * op's inputs and outputs, every tensor's checks, the buffers a run needs. */
#include <string.h>

#include "float_ops.h"
#include "op_core.h"

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
    if (bconv2d_init(op, buf, len, err, err_len)) return -1;
  } else if (op->kind == OP_BMAXPOOL2D) {
    if (bmaxpool_init(op, buf, len, err, err_len)) return -1;
  }
  op->option_stride_h = op->stride_h;
  op->option_stride_w = op->stride_w;
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
    case OP_QUANTIZE: status = quantize_prepare(op, context, in, out, err, err_len); break;
    case OP_DEQUANTIZE: status = dequantize_prepare(op, in, out, err, err_len); break;
    case OP_BMAXPOOL2D: status = bmaxpool_prepare(op, in, out, err, err_len); break;
    case OP_CONCAT: status = concat_prepare(op, context, out, err, err_len); break;
    case OP_MAXPOOL:
    case OP_RESIZE: status = float_op_prepare(op, context, in, out, err, err_len); break;
    default: status = bconv2d_prepare(op, context, in, out, err, err_len); break;
  }
  if (status) return status;
  op->out_bytes = element_count(out->dims) * (size_t)type_size(out->type);
  return 0;
}

int lce_op_run(lce_op* op, const TfLiteContext* context, const void* input, void* output,
               thread_pool* pool, char* err, size_t err_len) {
  if (!input || !output) {
    return fail(err, err_len, "%s (node %d): input or output has no buffer", op->name,
                op->node_index);
  }
  switch (op->kind) {
    case OP_QUANTIZE: return quantize_run(op, input, output, pool, err, err_len);
    case OP_DEQUANTIZE: return dequantize_run(op, input, output, pool, err, err_len);
    case OP_CONCAT: return concat_run(op, output, pool, err, err_len);
    case OP_MAXPOOL:
    case OP_RESIZE: float_op_run(op, (const float*)input, (float*)output, pool); return 0;
    case OP_BMAXPOOL2D: return bmaxpool_run(op, input, output, pool);
    case OP_BCONV2D: return bconv2d_run(op, context, input, output, pool, err, err_len);
  }
  return fail(err, err_len, "unknown op");
}

void lce_op_release(lce_op* op) {
  float_op_release(op);
  bconv2d_release(op);
}
