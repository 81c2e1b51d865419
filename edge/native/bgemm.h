/* Binary GEMM micro-kernels: popcount(a XOR b) summed over 32-bit words.
 *
 * Layout: A is row-major, one row of k words per output pixel (lda words
 * apart). B is "lane-packed": for each word index k, nr consecutive words,
 * one per output channel, so a kernel loads a vector of channels and XORs it
 * with one broadcast word of A. That keeps every SIMD lane a separate output
 * channel (no horizontal sums) and matches LCE's 32-bit bitpacking as is.
 */
#ifndef BINLAND_BGEMM_H_
#define BINLAND_BGEMM_H_

#include <stddef.h>
#include <stdint.h>

/* c[i * ldc + j] = sum_k popcount(a[i * lda + kk] ^ b[kk * nr + j]) for
 * i < mr, j < nr. */
typedef void (*bgemm_kernel_fn)(const uint32_t* a, size_t lda, const uint32_t* b, int k,
                                int32_t* c, size_t ldc);

/* The same with row i's word kk at a[i * lda + koff[kk]]: a direct convolution
 * reads each pixel's window straight from the (padded) input rows, lda apart
 * from one output pixel to the next, with no im2col copy. */
typedef void (*bgemm_direct_fn)(const uint32_t* a, size_t lda, const int32_t* koff,
                                const uint32_t* b, int k, int32_t* c, size_t ldc);

/* Bitpacks n floats (n <= 32): bit i = in[i] < 0 (so 0.0 and -0.0 give 0,
 * as LCE's x86 and aarch64 kernels do); bits from n up are 0. */
typedef uint32_t (*pack_floats_fn)(const float* in, int n);

/* Bitpacks a row of `channels` floats into ceil(channels/32) words. */
typedef void (*pack_row_fn)(const float* in, int channels, uint32_t* out);

typedef struct {
  const char* name; /* "avx512-vpopcntdq", "avx2", "neon", "popcnt", "portable" */
  int mr;           /* rows (pixels) per call */
  int nr;           /* lanes (output channels) per call */
  bgemm_kernel_fn kernel;
  bgemm_direct_fn direct;
  pack_floats_fn pack;
  pack_row_fn pack_row;
} bgemm_impl;

/* The kernel named `wanted` if this CPU runs it (NULL if it does not), or the
 * fastest one when `wanted` is NULL or empty. Naming a slower kernel lets the
 * tests compare every path on one machine. */
const bgemm_impl* bgemm_pick(const char* wanted);

/* Comma-separated names of the kernels this CPU runs, fastest first. */
const char* bgemm_available(void);

#endif
