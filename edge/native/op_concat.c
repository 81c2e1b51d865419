/* The builtin CONCATENATION (float32, last axis) of binary conv outputs, optionally with the
 * builtin ADD of another tensor that reads it (the HPM block's concat + skip), and a builtin
 * ADD of two float32 tensors on its own (a one-input concat plus the other operand). When
 * every input comes from a binary conv in the same partition, each conv writes its rows
 * straight into the (summed) output (lce_op_write_into) and the concat itself does nothing;
 * otherwise it copies (and adds), and an ADD on its own may pack the quantize that reads its
 * sum as it writes each row. */
#include <string.h>

#include "op_core.h"

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

int concat_prepare(lce_op* op, const TfLiteContext* context, const TfLiteTensor* out, char* err,
                   size_t err_len) {
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

int concat_run(lce_op* op, void* output, thread_pool* pool, char* err, size_t err_len) {
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
