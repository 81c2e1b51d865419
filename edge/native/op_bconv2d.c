/* LceBconv2d: accum = sum popcount(in XOR filter) over the window; float/int8 out:
 * clamp'(2*accum) * m' + b' with LCE's fused m' = -m, b' = b + K*m (K = kh*kw*channels_in per
 * group); bitpacked out: bit = accum > threshold. Its options, prepare (shapes, the window
 * path, the memory it will take), the one-time weight packing, run and release; the tasks
 * that compute it are in bconv_core.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bconv_core.h"

int bconv2d_init(lce_op* op, const uint8_t* buf, size_t len, char* err, size_t err_len) {
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
                op->node_index, op->pad_value);
  }
  if (op->activation < 0 || op->activation > 3) {
    return fail(err, err_len,
                "%s (node %d): fused activation %d is not supported (none, relu, "
                "relu_n1_to_1, relu6 are)",
                op->name, op->node_index, op->activation);
  }
  if (op->stride_h < 1 || op->stride_w < 1 || op->dilation_h < 1 || op->dilation_w < 1) {
    return fail(err, err_len, "%s (node %d): strides and dilations must be >= 1", op->name,
                op->node_index);
  }
  if (op->channels_in < 1) {
    return fail(err, err_len, "%s (node %d): channels_in must be >= 1", op->name, op->node_index);
  }
  return 0;
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

int bconv2d_prepare(lce_op* op, const TfLiteContext* context, const TfLiteTensor* in,
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

  /* The AVX-512 and AVX2 epilogues go with their kernels (whose CPU checks cover them). */
  op->epilogue_avx512 = !strcmp(op->gemm->name, "avx512-vpopcntdq");
  op->epilogue_avx2 = !strcmp(op->gemm->name, "avx2");
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

int bconv2d_run(lce_op* op, const TfLiteContext* context, const void* input, void* output,
                thread_pool* pool, char* err, size_t err_len) {
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
  pool_run(pool, tasks, bconv_im2col_task, &job);
  if (job.failed) return fail(err, err_len, "%s: out of memory", op->name);
  return 0;
}

void bconv2d_release(lce_op* op) {
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
