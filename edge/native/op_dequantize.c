/* LceDequantize: int32 bits -> float +1/-1 (int8: zp +- round(1/scale)). */
#include <math.h>
#include <string.h>

#include "op_core.h"

int dequantize_prepare(lce_op* op, const TfLiteTensor* in, const TfLiteTensor* out, char* err,
                       size_t err_len) {
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

int dequantize_run(lce_op* op, const void* input, void* output, thread_pool* pool, char* err,
                   size_t err_len) {
  return run_rows(op, input, output, pool, dequantize_task, err, err_len);
}
