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
 *
 * Fusion: a float LceQuantize may absorb the builtin MUL and/or ADD (by a
 * constant, per channel or scalar, no fused activation) that produce its input
 * (a folded BatchNorm before a binary conv). It then packs fl(fl(x*m)+a) < 0,
 * the same IEEE operations the runtime would do, and skips two float passes.
 *
 * OP_CONCAT is the builtin CONCATENATION (float32, last axis) of binary conv
 * outputs, optionally with the builtin ADD of another tensor that reads it (the
 * HPM block's concat + skip). When every input comes from a binary conv in the
 * same partition, each conv writes its rows straight into the (summed) output
 * and the concat itself does nothing; otherwise it copies (and adds).
 *
 * OP_MAXPOOL and OP_RESIZE are the builtin float MAX_POOL_2D and
 * RESIZE_NEAREST_NEIGHBOR (float_ops.h). They are exact (a max, a copy), and
 * the delegate takes them only next to its other ops, so that the hourglass's
 * pooling and upsampling no longer split it into many partitions.
 *
 * This header is what the delegate sees of the ops. Each op has its own file
 * (op_quantize.c, op_dequantize.c, op_bconv2d.c with its tasks in
 * bconv_core.c, op_bmaxpool.c, op_concat.c, float_ops.c for the two builtin
 * float ops), over the helpers they share (op_core.h); op_table.c hands
 * lce_op_init / _prepare / _run / _release to the op of each kind.
 */
#ifndef BINLAND_LCE_OPS_H_
#define BINLAND_LCE_OPS_H_

#include <stddef.h>
#include <stdint.h>

#include "bgemm.h"
#include "tflite_abi.h"
#include "threadpool.h"

typedef enum {
  OP_QUANTIZE,
  OP_DEQUANTIZE,
  OP_BCONV2D,
  OP_BMAXPOOL2D,
  OP_CONCAT,
  OP_MAXPOOL, /* builtin MAX_POOL_2D, float32 (float_ops.c) */
  OP_RESIZE   /* builtin RESIZE_NEAREST_NEIGHBOR, float32 (float_ops.c) */
} lce_op_kind;
/* Binary conv paths (option conv): pick by shape, always direct, always im2col. */
enum { BCONV_AUTO = 0, BCONV_DIRECT = 1, BCONV_IM2COL = 2 };
#define LCE_OP_KINDS 7
#define CONCAT_MAX_INPUTS 16

/* What a model may make the delegate use, checked in prepare so that a crafted model gets an
 * error instead of a giant allocation, an endless run or an out-of-bounds read. Every tensor
 * one of our ops reads or writes (activations and constants) holds at most LCE_MEMORY_BUDGET
 * bytes; a partition's own memory (the tensors it owns, packed weights and tables, and each
 * thread's scratch) is at most LCE_MEMORY_BUDGET in all; one task's scratch at most
 * LCE_SCRATCH_BUDGET. Measured: the paper model at 256x256 holds 17 and 19 MB in its two
 * partitions, with at most 62 KB of scratch a task. */
#define LCE_MEMORY_BUDGET ((size_t)512 << 20)
#define LCE_SCRATCH_BUDGET ((size_t)64 << 20)
/* The largest tensor rank our ops take. */
#define LCE_MAX_RANK 8

typedef struct lce_op_s {
  lce_op_kind kind;
  char name[48];
  int node_index;
  int inputs[5];
  int num_inputs;
  int output;

  /* options; stride_*: what the kernels use, the option's stride except where an axis has
   * one output pixel (set to 1 there, which computes the same: lce_window_geometry) */
  int option_stride_h, option_stride_w;
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
  int32_t zero_bit, one_bit; /* dequantize to int8: what a 0 and a 1 bit become */
  size_t out_bytes;
  /* Set by prepare, for the partition's memory budget: the most scratch one task of this op
   * takes, and what it allocates for itself (packed weights, tables). */
  size_t scratch_bytes, own_bytes;

  /* bconv */
  int groups, words_per_group, kernel_words, out_per_group, blocks_per_group;
  int ldc; /* accumulator row length: groups * blocks_per_group * nr */
  int backtransform; /* K */
  int32_t clamp_lo, clamp_hi;
  const bgemm_impl* gemm;
  int ready; /* one-time setup (weight packing) done */
  uint32_t* packed_filter;
  float* multiplier;
  float* bias;
  int32_t* thresholds;
  int32_t* tap_sums; /* [kh*kw][out_c], only for SAME with zero padding */
  /* How the GEMM reads the windows: im2col rows, or in place from zero-padded
   * copies of the input rows (direct: no im2col, the small-channel convs'
   * main cost). conv_path is the delegate's choice (option conv); direct is
   * what setup decided for this op; pad_w: padded row width in pixels; koff:
   * [groups][kernel_words] offsets of a window's words in the padded rows. */
  int conv_path;
  int direct, pad_w;
  int32_t* koff;
  /* The absorbed quantize's MUL and ADD as per-channel arrays (1 and 0 where
   * absent), for the one-pass epilogue. */
  float* then_mul;
  float* then_add;
  int epilogue_avx512; /* that epilogue in AVX-512 intrinsics (with the avx512 kernel) */
  int epilogue_avx2;   /* that epilogue in AVX2 intrinsics (with the avx2 kernel) */

  /* quantize: fused MUL / ADD by a constant before it (tensor indices, -1 if
   * absent). *_out: that op's float output, stored only when someone outside
   * the partition reads it (-1 otherwise). */
  int pre_mul, pre_add, pre_mul_out, pre_add_out;
  int pre_mul_node, pre_add_node;
  int pre_mul_len, pre_add_len; /* 1 (scalar) or channels */
  void* pre_mul_data; /* set before each run by lce_op_set_pre_outputs */
  void* pre_add_data;
  const float* pre_mul_values; /* the constants, set by prepare */
  const float* pre_add_values;

  /* bconv with float output: a float LceQuantize of that output (with its fused
   * MUL/ADD) done in this op's epilogue, pixel by pixel while the row is in
   * cache; then_output is set before each run. quantize: absorbed = done so. */
  struct lce_op_s* then_quantize;
  void* then_output;
  int absorbed;

  /* concat: its inputs, their channels; add_other: the ADD's other operand
   * (-1 without); output is the ADD's output then. */
  int cat_in[CONCAT_MAX_INPUTS];
  int cat_channels[CONCAT_MAX_INPUTS];
  int cat_n, add_other, add_node, in_place, axis;
  const void* cat_data[CONCAT_MAX_INPUTS]; /* set per run by the delegate */
  const void* add_data;
  int cat_out;        /* with a fused ADD: the concat's own output when someone reads it, else -1 */
  /* An ADD whose other operand is a nearest-neighbour upsampling only it reads
   * (the hourglass's low branch coming back up): reads the resize's input
   * through its index tables, and the resize itself does nothing. */
  const struct lce_op_s* add_resize;
  float* cat_out_data; /* set per run */
  /* bconv: writes its rows into concat `into` at channel into_offset (plus the
   * addend), and its own output too when write_own; pointers set per run. */
  struct lce_op_s* into;
  int into_offset, write_own;
  float* into_data;
  const float* into_add;

  /* resize: the input row / column each output row / column copies */
  int32_t* src_rows;
  int32_t* src_cols;
  int align_corners, half_pixel_centers;

  /* BINLAND_PROFILE */
  double profile_seconds;
  long profile_calls;
} lce_op;

enum { PRE_MUL = 0, PRE_ADD = 1 };

/* The op table (op_table.c). */

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

/* Concat and ADD (op_concat.c). */

/* A builtin CONCATENATION node as an OP_CONCAT. Returns 0 or -1 + err. */
int lce_op_init_concat(lce_op* op, int node_index, const TfLiteNode* node, const bgemm_impl* gemm,
                       char* err, size_t err_len);

/* A builtin ADD of two float32 tensors of one shape, as a one-input OP_CONCAT
 * plus the other operand. */
int lce_op_init_add(lce_op* op, int node_index, const TfLiteNode* node, const bgemm_impl* gemm,
                    char* err, size_t err_len);

/* Fuses the builtin ADD (node_index) of `other` and the concat's output into it;
 * store_concat: the concat's own output is still read elsewhere. */
int lce_op_fuse_add(lce_op* concat, int node_index, int other, int output, int store_concat,
                    char* err, size_t err_len);

/* Lets `bconv` write its output straight into `concat` at the channels of input
 * `slot`; call for every input, then set write_own. Returns 1 if it can. */
int lce_op_write_into(lce_op* bconv, lce_op* concat, int slot);

/* Quantize fusion (op_quantize.c). */

/* Fuses a builtin MUL or ADD (`which`) of `input` by the constant tensor
 * `constant` into a quantize op whose current input is that op's output.
 * `store_output` keeps writing the op's float output. Returns 0 or -1 + err. */
int lce_op_fuse_pre(lce_op* op, int which, int node_index, int input, int constant,
                    int store_output, char* err, size_t err_len);

/* Lets `op` compute `quantize` as it writes each output row, when it can: a
 * binary conv with float output (in its epilogue) or an ADD on its own (not
 * written in place), whose output is the quantize's input. Returns 1 if
 * linked. After prepare (and, for an ADD, after the concats are linked). */
int lce_op_absorb(lce_op* op, lce_op* quantize);

/* Where a fused quantize also stores its MUL / ADD output (NULL: not stored). */
void lce_op_set_pre_outputs(lce_op* op, void* mul_out, void* add_out);

#endif
