/* The four LCE custom ops, with LCE 0.16's exact semantics:
 *
 *   LceQuantize     float/int8 [..., C]  -> int32 [..., ceil(C/32)]
 *                   channel c goes to word c/32, bit c%32 (LSB first);
 *                   bit 1 means x < 0 (int8: q < zero_point); padding bits 0.
 *   LceDequantize   int32 bits -> float +1/-1 (int8: zp +- round(1/scale)).
 *   LceBconv2d      accum = sum popcount(in XOR filter) over the window;
 *                   float/int8 out: clamp'(2*accum) * m' + b' with LCE's fused
 *                   m' = -m, b' = b + K*m (K = kh*kw*channels_in_per_group);
 *                   bitpacked out: bit = accum > threshold.
 *   LceBMaxPool2d   bitwise AND over the in-image part of each window.
 */
#ifndef BINLAND_LCE_OPS_H_
#define BINLAND_LCE_OPS_H_

#include <stddef.h>
#include <stdint.h>

#include "bgemm.h"
#include "tflite_abi.h"
#include "threadpool.h"

typedef enum { OP_QUANTIZE, OP_DEQUANTIZE, OP_BCONV2D, OP_BMAXPOOL2D } lce_op_kind;

typedef struct {
  lce_op_kind kind;
  char name[48];
  int node_index;
  int inputs[5];
  int num_inputs;
  int output;

  /* options */
  int stride_h, stride_w, dilation_h, dilation_w;
  int padding_same; /* 1 SAME, 0 VALID */
  int pad_value;    /* bconv: what out-of-image taps count as: 1 (+1) or 0 */
  int activation;   /* 0 none, 1 relu, 2 relu_n1_to_1, 3 relu6 */
  int channels_in;  /* bconv: unpacked input channels */
  int filter_h, filter_w;

  /* shapes, set by prepare */
  int in_type, out_type;
  int batch, in_h, in_w, in_words;
  int out_h, out_w, out_c; /* bconv: out_c = unpacked output channels */
  int pad_top, pad_left;
  int rows, channels; /* (de)quantize: rows and unpacked channels */
  float in_scale, out_scale;
  int32_t in_zero_point, out_zero_point;
  size_t out_bytes;

  /* bconv */
  int groups, words_per_group, kernel_words, out_per_group, blocks_per_group;
  int backtransform; /* K */
  int32_t clamp_lo, clamp_hi;
  const bgemm_impl* gemm;
  int ready; /* one-time setup (weight packing) done */
  uint32_t* packed_filter;
  float* multiplier;
  float* bias;
  int32_t* thresholds;
  int32_t* tap_sums; /* [kh*kw][out_c], only for SAME with zero padding */

  /* BINLAND_PROFILE */
  double profile_seconds;
  long profile_calls;
} lce_op;

/* Parses options and copies tensor indices; returns 0, or -1 with err set. */
int lce_op_init(lce_op* op, const char* custom_name, int node_index, const TfLiteNode* node,
                const bgemm_impl* gemm, char* err, size_t err_len);

/* Checks types and shapes against the tensors; returns 0, or -1 with err. */
int lce_op_prepare(lce_op* op, const TfLiteContext* context, char* err, size_t err_len);

/* Constant inputs (filter, multipliers...) are read from context->tensors;
 * `input` and `output` are the activation buffers (possibly our own). */
int lce_op_run(lce_op* op, const TfLiteContext* context, const void* input, void* output,
               thread_pool* pool, char* err, size_t err_len);

void lce_op_release(lce_op* op);

#endif
