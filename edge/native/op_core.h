/* What every op file (op_*.c, bconv_core.c, float_ops.c) shares: errors, sizes, the checks
 * prepare makes against the tensors (64-bit geometry, budgets), option readers, the row split
 * of the row-wise ops, the float quantize of one row (bitpacking with a fused MUL/ADD), and the
 * op table: each op's entry points, which op_table.c calls by kind. The delegate never
 * includes this file; it sees ops through lce_ops.h.
 *
 * Dependencies point one way: delegate -> op_table.c -> op_*.c, float_ops.c -> op_core.c. */
#ifndef BINLAND_OP_CORE_H_
#define BINLAND_OP_CORE_H_

#include <stddef.h>
#include <stdint.h>

#include "lce_ops.h"

/* The loops around the GEMM (im2col, output transform, pooling, unpacking)
 * are plain C that GCC vectorizes well; on x86 compile them for AVX-512 and
 * AVX2 too and pick at load time. Results are identical on every clone: no
 * FMA contraction (-ffp-contract=off), same IEEE operations. The two
 * exceptions, the float epilogues with the avx512-vpopcntdq and the avx2
 * kernels, are written with intrinsics (epilogue_fast_avx512,
 * epilogue_fast_avx2), with those same operations.
 * Such functions stay static, each in the file of its callers: GCC 12 exports the
 * resolver of an extern one from the library, whatever its visibility. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* ------------------------------------------------------------ helpers */

/* Formats the message into err and returns -1. */
int fail(char* err, size_t err_len, const char* fmt, ...);

/* In 64 bits: channels_in comes from the model's options and may be INT_MAX. */
static inline int packed_size(int channels) { return (int)(((int64_t)channels + 31) / 32); }

static inline size_t round64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/* a * b and a + b, saturating at SIZE_MAX: sizes computed from a crafted model's shapes must
 * not wrap around before they are compared with the budgets. */
static inline size_t mul_sat(size_t a, size_t b) {
  size_t r;
  return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

static inline size_t add_sat(size_t a, size_t b) {
  size_t r;
  return __builtin_add_overflow(a, b, &r) ? SIZE_MAX : r;
}

static inline const TfLiteTensor* tensor_at(const TfLiteContext* context, int index) {
  if (index < 0 || (size_t)index >= context->tensors_size) return NULL;
  return &context->tensors[index];
}

/* Bytes per element of the types our ops take (0 for any other), and their names. */
int type_size(int type);
const char* type_name(int type);

/* An empty op (no inputs, no fusion) named `name` for node `node_index`. */
void lce_op_reset(lce_op* op, const char* name, int node_index, const bgemm_impl* gemm);

/* ------------------------------------------------------------ options */

/* An int option of an Lce op's flexbuffer map; `fallback` when it is absent and not
 * `required`. Returns 0, or -1 with err set. */
int read_int_option(const lce_op* op, const uint8_t* buf, size_t len, const char* key,
                    int required, int fallback, int* out, char* err, size_t err_len);

/* The padding option into op->padding_same. Returns 0, or -1 with err set. */
int read_padding(lce_op* op, const uint8_t* buf, size_t len, char* err, size_t err_len);

/* ------------------------------------------------------------- checks */

/* Whether dims is exactly the n values of expected. */
int dims_equal(const TfLiteIntArray* dims, int n, const int* expected);

/* The output's shape is the one computed from the options; 0, or -1 with err saying both. */
int check_output_dims(const lce_op* op, const TfLiteTensor* out, int n, const int* expected,
                      char* err, size_t err_len);

/* Elements of a tensor check_tensor has passed. */
size_t element_count(const TfLiteIntArray* dims);

/* Rank, dimensions and size of any tensor an op touches; 0, or -1 with err set. */
int check_tensor(const lce_op* op, const TfLiteTensor* t, const char* what, int min_rank,
                 char* err, size_t err_len);

/* A constant operand of `type` holding `count` values; 0, or -1 with err set. */
int check_constant(const lce_op* op, const TfLiteTensor* t, const char* what, int type,
                   size_t count, char* err, size_t err_len);

/* An int8 output's scale and zero point as TFLite requires them. */
int check_int8(const lce_op* op, float scale, int32_t zero_point, char* err, size_t err_len);

/* TFLite's ComputePaddingHeightWidth for one axis ("height" or "width"), in 64-bit arithmetic
 * and bounded by the input: VALID needs the window inside the input, SAME pads at most the
 * input's size on either side. Sets *out and *pad_before, and *stride to 1 where the axis has a
 * single output pixel (the stride then changes nothing). Returns 0, or -1 with err set. */
int lce_window_geometry(const lce_op* op, const char* axis, int in, int filter, int dilation,
                        int same, int* stride, int* out, int* pad_before, char* err,
                        size_t err_len);

/* The taps [*k0, *k1) of a pooling window starting at `origin` (negative in
 * the padding) that fall inside [0, size): padding never counts. */
static inline void window_taps(int origin, int filter, int size, int* k0, int* k1) {
  *k0 = origin < 0 ? -origin : 0;
  *k1 = filter < size - origin ? filter : size - origin;
}

/* ------------------------------------------------------- row-wise ops */

/* The job of the ops that run in rows (quantize, dequantize, concat / ADD). */
typedef struct {
  const lce_op* op;
  const void* input;
  void* output;
  int rows_per_task;
  thread_pool* pool;
  int failed;
} rows_job;

int rows_per_task(int rows, int row_cost, thread_pool* pool);

/* Runs `task` over the op's rows (a rows_job of `op`, `input`, `output`, split by
 * rows_per_task at one row costing `channels`); 0, or -1 with "NAME: out of memory" in
 * `err` when a task could not get its scratch. */
int run_rows(lce_op* op, const void* input, void* output, thread_pool* pool,
             pool_task_fn task, char* err, size_t err_len);

/* Row r of a float quantize (with its fused MUL/ADD, if any) from `in`;
 * y: scratch for `channels` floats. */
void quantize_float_row(const lce_op* q, const float* in, size_t r, float* y, uint32_t* out);

/* ---------------------------------------------------------- op table
 * Each op's entry points (init reads the options, prepare checks the tensors and sizes the
 * op, run computes it, release frees what it allocated), called by op_table.c by kind. Builtin
 * ops are created by their own init in lce_ops.h (concat, ADD) and float_ops.h. */

/* op_quantize.c: LceQuantize */
int quantize_prepare(lce_op* op, const TfLiteContext* context, const TfLiteTensor* in,
                     const TfLiteTensor* out, char* err, size_t err_len);
int quantize_run(lce_op* op, const void* input, void* output, thread_pool* pool, char* err,
                 size_t err_len);

/* op_dequantize.c: LceDequantize */
int dequantize_prepare(lce_op* op, const TfLiteTensor* in, const TfLiteTensor* out, char* err,
                       size_t err_len);
int dequantize_run(lce_op* op, const void* input, void* output, thread_pool* pool, char* err,
                   size_t err_len);

/* op_bconv2d.c: LceBconv2d */
int bconv2d_init(lce_op* op, const uint8_t* buf, size_t len, char* err, size_t err_len);
int bconv2d_prepare(lce_op* op, const TfLiteContext* context, const TfLiteTensor* in,
                    const TfLiteTensor* out, char* err, size_t err_len);
int bconv2d_run(lce_op* op, const TfLiteContext* context, const void* input, void* output,
                thread_pool* pool, char* err, size_t err_len);
void bconv2d_release(lce_op* op);

/* op_bmaxpool.c: LceBMaxPool2d */
int bmaxpool_init(lce_op* op, const uint8_t* buf, size_t len, char* err, size_t err_len);
int bmaxpool_prepare(lce_op* op, const TfLiteTensor* in, const TfLiteTensor* out, char* err,
                     size_t err_len);
int bmaxpool_run(lce_op* op, const void* input, void* output, thread_pool* pool);

/* op_concat.c: builtin CONCATENATION and ADD */
int concat_prepare(lce_op* op, const TfLiteContext* context, const TfLiteTensor* out, char* err,
                   size_t err_len);
int concat_run(lce_op* op, void* output, thread_pool* pool, char* err, size_t err_len);

#endif /* BINLAND_OP_CORE_H_ */
