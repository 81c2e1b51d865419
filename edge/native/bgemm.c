#include "bgemm.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BINLAND_X86 1
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

/* ---------------------------------------------------------------- portable */

#define PORTABLE_MR 4
#define PORTABLE_NR 8

/* Row i's word kk: a[i * lda + kk], or a[i * lda + koff[kk]] for a direct
 * convolution. Each kernel body is written once, inlined into a plain and a
 * direct entry point (koff NULL folds away in the plain one). */
#define A_WORDS(kk) (koff ? a + koff[kk] : a + (kk))
#define INLINE static inline __attribute__((always_inline))

#define PORTABLE_BODY                                                   \
  int32_t acc[PORTABLE_MR][PORTABLE_NR] = {{0}};                        \
  for (int kk = 0; kk < k; ++kk) {                                      \
    const uint32_t* bk = b + (size_t)kk * PORTABLE_NR;                  \
    const uint32_t* ak = A_WORDS(kk);                                   \
    for (int i = 0; i < PORTABLE_MR; ++i) {                             \
      const uint32_t ai = ak[(size_t)i * lda];                          \
      for (int j = 0; j < PORTABLE_NR; ++j) {                           \
        acc[i][j] += __builtin_popcount(ai ^ bk[j]);                    \
      }                                                                 \
    }                                                                   \
  }                                                                     \
  for (int i = 0; i < PORTABLE_MR; ++i) {                               \
    memcpy(c + (size_t)i * ldc, acc[i], sizeof(acc[i]));                \
  }

static uint32_t pack_portable(const float* in, int n) {
  uint32_t bits = 0;
  if (n == 32) {
    for (int i = 0; i < 32; ++i) bits |= (uint32_t)(in[i] < 0.0f) << i;
  } else {
    for (int i = 0; i < n; ++i) bits |= (uint32_t)(in[i] < 0.0f) << i;
  }
  return bits;
}

INLINE void body_portable(const uint32_t* a, size_t lda, const int32_t* koff, const uint32_t* b,
                          int k, int32_t* c, size_t ldc) {
  PORTABLE_BODY
}
static void kernel_portable(const uint32_t* a, size_t lda, const uint32_t* b, int k, int32_t* c,
                            size_t ldc) {
  body_portable(a, lda, NULL, b, k, c, ldc);
}
static void direct_portable(const uint32_t* a, size_t lda, const int32_t* koff, const uint32_t* b,
                            int k, int32_t* c, size_t ldc) {
  body_portable(a, lda, koff, b, k, c, ldc);
}

#ifdef BINLAND_X86
/* Same loop, compiled with the POPCNT instruction (without it GCC calls a
 * libgcc bit-twiddling routine). */
__attribute__((target("popcnt"))) INLINE void body_popcnt(const uint32_t* a, size_t lda,
                                                          const int32_t* koff, const uint32_t* b,
                                                          int k, int32_t* c, size_t ldc) {
  PORTABLE_BODY
}
__attribute__((target("popcnt"))) static void kernel_popcnt(const uint32_t* a, size_t lda,
                                                            const uint32_t* b, int k, int32_t* c,
                                                            size_t ldc) {
  body_popcnt(a, lda, NULL, b, k, c, ldc);
}
__attribute__((target("popcnt"))) static void direct_popcnt(const uint32_t* a, size_t lda,
                                                            const int32_t* koff, const uint32_t* b,
                                                            int k, int32_t* c, size_t ldc) {
  body_popcnt(a, lda, koff, b, k, c, ldc);
}

/* ------------------------------------------------------ AVX-512 VPOPCNTDQ */

#define AVX512_MR 8
#define AVX512_NR 32

/* 16 accumulators, named one by one: as arrays, GCC zeroed them in memory
 * (rep stos) and spilled some inside the loop. */
#define AVX512_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define AVX512_ZERO(i) __m512i acc##i##0 = _mm512_setzero_si512(), acc##i##1 = acc##i##0;
#define AVX512_STEP(i)                                                               \
  {                                                                                  \
    const __m512i ai = _mm512_set1_epi32((int)ak[(size_t)(i) * lda]);                \
    acc##i##0 =                                                                      \
        _mm512_add_epi32(acc##i##0, _mm512_popcnt_epi32(_mm512_xor_si512(ai, b0)));  \
    acc##i##1 =                                                                      \
        _mm512_add_epi32(acc##i##1, _mm512_popcnt_epi32(_mm512_xor_si512(ai, b1)));  \
  }
#define AVX512_STORE(i)                                                      \
  _mm512_storeu_si512((void*)(c + (size_t)(i) * ldc), acc##i##0);           \
  _mm512_storeu_si512((void*)(c + (size_t)(i) * ldc + 16), acc##i##1);

__attribute__((target("avx512f,avx512vpopcntdq"))) INLINE void body_avx512(
    const uint32_t* a, size_t lda, const int32_t* koff, const uint32_t* b, int k, int32_t* c,
    size_t ldc) {
  AVX512_ROWS(AVX512_ZERO)
  for (int kk = 0; kk < k; ++kk) {
    const __m512i b0 = _mm512_loadu_si512((const void*)(b + (size_t)kk * AVX512_NR));
    const __m512i b1 = _mm512_loadu_si512((const void*)(b + (size_t)kk * AVX512_NR + 16));
    const uint32_t* ak = A_WORDS(kk);
    AVX512_ROWS(AVX512_STEP)
  }
  AVX512_ROWS(AVX512_STORE)
}
__attribute__((target("avx512f,avx512vpopcntdq"))) static void kernel_avx512(
    const uint32_t* a, size_t lda, const uint32_t* b, int k, int32_t* c, size_t ldc) {
  body_avx512(a, lda, NULL, b, k, c, ldc);
}
__attribute__((target("avx512f,avx512vpopcntdq"))) static void direct_avx512(
    const uint32_t* a, size_t lda, const int32_t* koff, const uint32_t* b, int k, int32_t* c,
    size_t ldc) {
  body_avx512(a, lda, koff, b, k, c, ldc);
}

__attribute__((target("avx512f"))) static uint32_t pack_avx512(const float* in, int n) {
  if (n < 32) return pack_portable(in, n);
  const __m512 zero = _mm512_setzero_ps();
  const uint32_t lo = _mm512_cmp_ps_mask(_mm512_loadu_ps(in), zero, _CMP_LT_OQ);
  const uint32_t hi = _mm512_cmp_ps_mask(_mm512_loadu_ps(in + 16), zero, _CMP_LT_OQ);
  return lo | (hi << 16);
}

/* ------------------------------------------------------------------- AVX2 */

__attribute__((target("avx2"))) static uint32_t pack_avx2(const float* in, int n) {
  if (n < 32) return pack_portable(in, n);
  const __m256 zero = _mm256_setzero_ps();
  uint32_t bits = 0;
  for (int q = 0; q < 4; ++q) {
    const __m256 lt = _mm256_cmp_ps(_mm256_loadu_ps(in + 8 * q), zero, _CMP_LT_OQ);
    bits |= (uint32_t)_mm256_movemask_ps(lt) << (8 * q);
  }
  return bits;
}

/* AVX2 has no vector popcount. Two ways to count, and each call takes the
 * one that is faster for its k:
 *
 * - nibble table (k < AVX2_HS_MIN): per 256-bit vector of a XOR b, vpsrlw,
 *   2 vpand, 2 vpshufb (a 16-entry table per nibble) and 2 vpaddb into byte
 *   counters: 8 vector instructions per 256 binary MACs, widened to 32 bits
 *   every 31 words (31 * 8 = 248 fits a byte) with 2 more per vector;
 * - Harley-Seal (k >= AVX2_HS_MIN): words go 4 at a time through carry-save
 *   adders (bitwise full adders, 5 logic instructions each) that keep, per
 *   vector, the running bits of weight 1 (`ones`) and 2 (`twos`); only the
 *   bits of weight 4 that come out of each group of 4 words are counted with
 *   the table. 4 XORs + 3 adders + 1 count = 26 instructions per 4 words
 *   instead of 32, and 3 of them shuffles or shifts instead of 12. But a call
 *   ends by counting ones and twos too, about 18 instructions per vector
 *   instead of 2.
 *
 * Measured on Zen 4 with this path forced (4 vector ALUs; README, "AVX2
 * kernel"): the two break even at 24-28 words, Harley-Seal is 1.11x faster at
 * 72 (the paper model's 3x3 convs over 256 channels), the table is faster
 * below 24 (the pose model's 9-18). On cores with one shuffle port (Intel) the
 * table costs more and the break-even is likely lower. */
#define AVX2_MR 4
#define AVX2_NR 16
#define AVX2_HS_MIN 24

/* 32-byte constants, loaded from memory: built with _mm256_set1_epi8, GCC
 * materialized each one in every call (mov + vmovd + vpbroadcast). */
enum { AVX2_TABLE, AVX2_TABLE2, AVX2_LOW_NIBBLE, AVX2_ONE8, AVX2_FOUR8, AVX2_ONE16 };
static const uint8_t avx2_constants[6][32] __attribute__((aligned(32))) = {
    /* bits set in each nibble, and twice that */
    {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4},
    {0, 2, 2, 4, 2, 4, 4, 6, 2, 4, 4, 6, 4, 6, 6, 8, 0, 2, 2, 4, 2, 4, 4, 6, 2, 4, 4, 6, 4, 6, 6, 8},
    {15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
     15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15},
    {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4},
    /* int16 ones (little endian) */
    {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0},
};
#define AVX2_CONST(name) _mm256_load_si256((const __m256i*)avx2_constants[name])

/* Bits set in each byte of x, looked up per nibble in table t. */
#define AVX2_COUNT(t, x)                                                     \
  _mm256_add_epi8(                                                           \
      _mm256_shuffle_epi8(t, _mm256_and_si256(x, low_nibble)),               \
      _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(x, 4), low_nibble)))

/* ---- nibble table: 4 rows x 16 channels (8 vectors) */

/* The widened sums go to c after each 31-word chunk (stored after the first,
 * added after the next ones; below AVX2_HS_MIN there is one chunk): kept in
 * registers too, they made GCC spill the byte counters inside the loop. */
__attribute__((target("avx2"))) INLINE void nibble_avx2(const uint32_t* a, size_t lda,
                                                        const int32_t* koff, const uint32_t* b,
                                                        int k, int32_t* c, size_t ldc) {
  const __m256i table = AVX2_CONST(AVX2_TABLE);
  const __m256i low_nibble = AVX2_CONST(AVX2_LOW_NIBBLE);
  for (int k0 = 0; k0 < k; k0 += 31) {
    const int k1 = k0 + 31 < k ? k0 + 31 : k;
    __m256i bytes0[AVX2_MR], bytes1[AVX2_MR];
    for (int i = 0; i < AVX2_MR; ++i) {
      bytes0[i] = _mm256_setzero_si256();
      bytes1[i] = _mm256_setzero_si256();
    }
    for (int kk = k0; kk < k1; ++kk) {
      const __m256i b0 = _mm256_loadu_si256((const __m256i*)(b + (size_t)kk * AVX2_NR));
      const __m256i b1 = _mm256_loadu_si256((const __m256i*)(b + (size_t)kk * AVX2_NR + 8));
      const uint32_t* ak = A_WORDS(kk);
      for (int i = 0; i < AVX2_MR; ++i) {
        const __m256i ai = _mm256_set1_epi32((int)ak[(size_t)i * lda]);
        bytes0[i] = _mm256_add_epi8(bytes0[i], AVX2_COUNT(table, _mm256_xor_si256(ai, b0)));
        bytes1[i] = _mm256_add_epi8(bytes1[i], AVX2_COUNT(table, _mm256_xor_si256(ai, b1)));
      }
    }
    const __m256i one8 = AVX2_CONST(AVX2_ONE8), one16 = AVX2_CONST(AVX2_ONE16);
    for (int i = 0; i < AVX2_MR; ++i) {
      __m256i s0 = _mm256_madd_epi16(_mm256_maddubs_epi16(bytes0[i], one8), one16);
      __m256i s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(bytes1[i], one8), one16);
      __m256i* c0 = (__m256i*)(c + (size_t)i * ldc);
      __m256i* c1 = (__m256i*)(c + (size_t)i * ldc + 8);
      if (k0) {
        s0 = _mm256_add_epi32(s0, _mm256_loadu_si256(c0));
        s1 = _mm256_add_epi32(s1, _mm256_loadu_si256(c1));
      }
      _mm256_storeu_si256(c0, s0);
      _mm256_storeu_si256(c1, s1);
    }
  }
}

/* ---- Harley-Seal: 2 rows x 16 channels (4 vectors) at a time */

/* A byte counter of weight 4 gains at most 8 per group of 4 words: 31 groups
 * (124 words) fit, 248. */
#define AVX2_HS_CHUNK 124

/* h:l = a + b + c on every bit (a full adder, 5 logic instructions). */
#define AVX2_CSA(h, l, a, b, c)                                           \
  {                                                                       \
    const __m256i u_ = _mm256_xor_si256(a, b);                            \
    h = _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(u_, c)); \
    l = _mm256_xor_si256(u_, c);                                          \
  }

/* The state of the 4 vectors (row i, channels 8v..8v+7), named one by one as
 * in the AVX-512 kernel. A 4-row call runs this twice, 2 rows each time: with
 * all 4 rows (24 state vectors for 16 registers) GCC spilled most of them and
 * it was slower; with 2 (12) it spills little more than the byte counters,
 * which a group touches once. */
#define AVX2_HS_VECS(X) X(0, 0) X(0, 1) X(1, 0) X(1, 1)
#define AVX2_HS_DECLARE(i, v) __m256i ones##i##v, twos##i##v, fours##i##v;
/* Row i's word kk + q XOR channels 8v..8v+7 of it; wq = A_WORDS(kk + q). */
#define AVX2_HS_X(i, v, q)                                                     \
  _mm256_xor_si256(_mm256_set1_epi32((int)w##q[(size_t)(i) * lda]),            \
                   _mm256_loadu_si256((const __m256i*)(b + (size_t)(kk + q) * AVX2_NR + 8 * (v))))
/* The k % 4 words left over come first, while ones = twos = 0: adding 1 to 3
 * words is then just their sum bits (no adder, a half adder, a full adder). */
#define AVX2_HS_LEFT0(i, v) \
  ones##i##v = _mm256_setzero_si256();  \
  twos##i##v = ones##i##v;
#define AVX2_HS_LEFT1(i, v)             \
  ones##i##v = AVX2_HS_X(i, v, 0);      \
  twos##i##v = _mm256_setzero_si256();
#define AVX2_HS_LEFT2(i, v)                                                  \
  {                                                                          \
    const __m256i x0 = AVX2_HS_X(i, v, 0), x1 = AVX2_HS_X(i, v, 1);          \
    ones##i##v = _mm256_xor_si256(x0, x1);                                   \
    twos##i##v = _mm256_and_si256(x0, x1);                                   \
  }
#define AVX2_HS_LEFT3(i, v)                                                  \
  {                                                                          \
    const __m256i x0 = AVX2_HS_X(i, v, 0), x1 = AVX2_HS_X(i, v, 1);          \
    const __m256i x2 = AVX2_HS_X(i, v, 2);                                   \
    AVX2_CSA(twos##i##v, ones##i##v, x0, x1, x2)                             \
  }
#define AVX2_HS_ZERO_FOURS(i, v) fours##i##v = _mm256_setzero_si256();
/* 4 words: 2 adders into ones (their carries ta, tb have weight 2), 1 adder
 * of those into twos, and the carries of weight 4 counted. */
#define AVX2_HS_GROUP(i, v)                                                                  \
  {                                                                                          \
    __m256i ta, tb, four;                                                                    \
    AVX2_CSA(ta, ones##i##v, ones##i##v, AVX2_HS_X(i, v, 0), AVX2_HS_X(i, v, 1))             \
    AVX2_CSA(tb, ones##i##v, ones##i##v, AVX2_HS_X(i, v, 2), AVX2_HS_X(i, v, 3))             \
    AVX2_CSA(four, twos##i##v, twos##i##v, ta, tb)                                           \
    fours##i##v = _mm256_add_epi8(fours##i##v, AVX2_COUNT(table, four));                     \
  }
/* Stores the 32-bit sums (first chunk) or adds them to c. */
#define AVX2_HS_STORE(i, v, sum)                                                          \
  {                                                                                       \
    __m256i* ci = (__m256i*)(c + (size_t)(i) * ldc + 8 * (v));                            \
    _mm256_storeu_si256(ci, first ? (sum) : _mm256_add_epi32(sum, _mm256_loadu_si256(ci))); \
  }
/* After a chunk that is not the last: 4 * fours (vpmaddubsw pairs the bytes
 * into 16 bits with weight 4, vpmaddwd pairs those into 32). */
#define AVX2_HS_PARTIAL(i, v)                                                                \
  {                                                                                          \
    const __m256i sum =                                                                      \
        _mm256_madd_epi16(_mm256_maddubs_epi16(fours##i##v, AVX2_CONST(AVX2_FOUR8)), one16); \
    AVX2_HS_STORE(i, v, sum)                                                                 \
  }
/* At the end: ones + 2 twos (at most 8 + 16 per byte, the second table counts
 * 2 per bit) and 4 fours (16-bit pair sums at most 2 * (24 + 4 * 248)). */
#define AVX2_HS_FINAL(i, v)                                                                 \
  {                                                                                         \
    const __m256i bytes = _mm256_add_epi8(AVX2_COUNT(table, ones##i##v),                    \
                                          AVX2_COUNT(AVX2_CONST(AVX2_TABLE2), twos##i##v)); \
    const __m256i words =                                                                   \
        _mm256_add_epi16(_mm256_maddubs_epi16(bytes, AVX2_CONST(AVX2_ONE8)),                \
                         _mm256_maddubs_epi16(fours##i##v, AVX2_CONST(AVX2_FOUR8)));        \
    AVX2_HS_STORE(i, v, _mm256_madd_epi16(words, one16))                                    \
  }

__attribute__((target("avx2"))) INLINE void harley_seal_avx2(const uint32_t* a, size_t lda,
                                                             const int32_t* koff,
                                                             const uint32_t* b, int k, int32_t* c,
                                                             size_t ldc) {
  const __m256i table = AVX2_CONST(AVX2_TABLE);
  const __m256i low_nibble = AVX2_CONST(AVX2_LOW_NIBBLE);
  const __m256i one16 = AVX2_CONST(AVX2_ONE16);
  AVX2_HS_VECS(AVX2_HS_DECLARE)
  int kk = 0; /* AVX2_HS_X reads words kk + q */
  {
    const uint32_t* w0 = A_WORDS(0);
    const uint32_t* w1 = A_WORDS(k > 1 ? 1 : 0);
    const uint32_t* w2 = A_WORDS(k > 2 ? 2 : 0);
    switch (k & 3) {
      case 0: AVX2_HS_VECS(AVX2_HS_LEFT0) break;
      case 1: AVX2_HS_VECS(AVX2_HS_LEFT1) break;
      case 2: AVX2_HS_VECS(AVX2_HS_LEFT2) break;
      default: AVX2_HS_VECS(AVX2_HS_LEFT3) break;
    }
  }
  kk = k & 3;
  int first = 1;
  for (;;) {
    const int k1 = kk + AVX2_HS_CHUNK < k ? kk + AVX2_HS_CHUNK : k;
    AVX2_HS_VECS(AVX2_HS_ZERO_FOURS)
    for (; kk < k1; kk += 4) {
      const uint32_t* w0 = A_WORDS(kk);
      const uint32_t* w1 = A_WORDS(kk + 1);
      const uint32_t* w2 = A_WORDS(kk + 2);
      const uint32_t* w3 = A_WORDS(kk + 3);
      AVX2_HS_VECS(AVX2_HS_GROUP)
    }
    if (kk >= k) break;
    AVX2_HS_VECS(AVX2_HS_PARTIAL)
    first = 0;
  }
  AVX2_HS_VECS(AVX2_HS_FINAL)
}

__attribute__((target("avx2"))) INLINE void body_avx2(const uint32_t* a, size_t lda,
                                                      const int32_t* koff, const uint32_t* b,
                                                      int k, int32_t* c, size_t ldc) {
  if (k < AVX2_HS_MIN) {
    nibble_avx2(a, lda, koff, b, k, c, ldc);
    return;
  }
  for (int i = 0; i < AVX2_MR; i += 2) {
    harley_seal_avx2(a + (size_t)i * lda, lda, koff, b, k, c + (size_t)i * ldc, ldc);
  }
}
__attribute__((target("avx2"))) static void kernel_avx2(const uint32_t* a, size_t lda,
                                                        const uint32_t* b, int k, int32_t* c,
                                                        size_t ldc) {
  body_avx2(a, lda, NULL, b, k, c, ldc);
}
__attribute__((target("avx2"))) static void direct_avx2(const uint32_t* a, size_t lda,
                                                        const int32_t* koff, const uint32_t* b,
                                                        int k, int32_t* c, size_t ldc) {
  body_avx2(a, lda, koff, b, k, c, ldc);
}
#endif /* BINLAND_X86 */

/* ------------------------------------------------------------------- NEON */

#if defined(__aarch64__)
#define NEON_MR 4
#define NEON_NR 8

static uint32_t pack_neon(const float* in, int n) {
  if (n < 32) return pack_portable(in, n);
  static const uint32_t weights[4] = {1, 2, 4, 8};
  const uint32x4_t w = vld1q_u32(weights);
  uint32_t bits = 0;
  for (int q = 0; q < 8; ++q) {
    const uint32x4_t lt = vcltq_f32(vld1q_f32(in + 4 * q), vdupq_n_f32(0.0f));
    bits |= vaddvq_u32(vandq_u32(lt, w)) << (4 * q);
  }
  return bits;
}

/* 8 byte counters (4 rows x 2 vectors of 4 channels), named one by one: as
 * arrays, GCC kept the widened sums on the stack, and a call of 9 words (9
 * loop iterations of 41 instructions) spent about 100 more outside its loop.
 * Each row has its own pointer (a load is one instruction with a register
 * offset), the loop does two words per iteration, and a chunk's first word
 * sets the counters instead of adding to zeroed ones. In llvm-mca
 * (benchmarks/neon_estimate.py) the loop then takes 1.76 cycles per 128-bit
 * EOR + CNT + ADD on the Cortex-A72 and A76 (Neoverse N1 model): both ASIMD
 * pipes busy, 1.17x their limit of 1.5, the rest being the broadcast of A
 * (one per row and word). It was 1.89 on the A72, bound by its 3-wide
 * dispatch. NR stays 8: the models' convs have 24, 32, 48 or 64 channels. */
#define NEON_ROWS(X) X(0) X(1) X(2) X(3)
#define NEON_DECLARE(i) uint8x16_t n##i##0, n##i##1;
#define NEON_COUNT(i, b) vcntq_u8(vreinterpretq_u8_u32(veorq_u32(ai, b)))
/* A chunk's first word sets the counters, the others add to them. */
#define NEON_SET(i)                              \
  {                                              \
    const uint32x4_t ai = vld1q_dup_u32(a##i + off); \
    n##i##0 = NEON_COUNT(i, b0);                 \
    n##i##1 = NEON_COUNT(i, b1);                 \
  }
#define NEON_ADD(i)                                  \
  {                                                  \
    const uint32x4_t ai = vld1q_dup_u32(a##i + off); \
    n##i##0 = vaddq_u8(n##i##0, NEON_COUNT(i, b0));  \
    n##i##1 = vaddq_u8(n##i##1, NEON_COUNT(i, b1));  \
  }
#define NEON_WORD(kk, STEP)                                                  \
  {                                                                          \
    const size_t off = koff ? (size_t)(ptrdiff_t)koff[kk] : (size_t)(kk);    \
    const uint32x4_t b0 = vld1q_u32(b + (size_t)(kk) * NEON_NR);             \
    const uint32x4_t b1 = vld1q_u32(b + (size_t)(kk) * NEON_NR + 4);         \
    NEON_ROWS(STEP)                                                          \
  }
/* Byte counts to 32 bits: stored after the first chunk of 31 words, added
 * after the next ones (the convs here have 9 to 36 words: one or two). */
#define NEON_WIDEN(i)                                                        \
  {                                                                          \
    int32_t* ci = c + (size_t)(i) * ldc;                                     \
    uint32x4_t w0 = vpaddlq_u16(vpaddlq_u8(n##i##0));                        \
    uint32x4_t w1 = vpaddlq_u16(vpaddlq_u8(n##i##1));                        \
    if (k0) {                                                                \
      w0 = vaddq_u32(w0, vreinterpretq_u32_s32(vld1q_s32(ci)));              \
      w1 = vaddq_u32(w1, vreinterpretq_u32_s32(vld1q_s32(ci + 4)));          \
    }                                                                        \
    vst1q_s32(ci, vreinterpretq_s32_u32(w0));                                \
    vst1q_s32(ci + 4, vreinterpretq_s32_u32(w1));                            \
  }

INLINE void body_neon(const uint32_t* a, size_t lda, const int32_t* koff, const uint32_t* b,
                      int k, int32_t* c, size_t ldc) {
  const uint32_t* a0 = a;
  const uint32_t* a1 = a + lda;
  const uint32_t* a2 = a + 2 * lda;
  const uint32_t* a3 = a + 3 * lda;
  if (k <= 0) {
    for (int i = 0; i < NEON_MR; ++i) memset(c + (size_t)i * ldc, 0, NEON_NR * sizeof(int32_t));
    return;
  }
  /* A byte counter gains at most 8 per word: 31 words fit (248). */
  for (int k0 = 0; k0 < k; k0 += 31) {
    const int k1 = k0 + 31 < k ? k0 + 31 : k;
    NEON_ROWS(NEON_DECLARE)
    NEON_WORD(k0, NEON_SET)
    int kk = k0 + 1;
    for (; kk + 2 <= k1; kk += 2) {
      NEON_WORD(kk, NEON_ADD)
      NEON_WORD(kk + 1, NEON_ADD)
    }
    if (kk < k1) NEON_WORD(kk, NEON_ADD)
    NEON_ROWS(NEON_WIDEN)
  }
}
static void kernel_neon(const uint32_t* a, size_t lda, const uint32_t* b, int k, int32_t* c,
                        size_t ldc) {
  body_neon(a, lda, NULL, b, k, c, ldc);
}
static void direct_neon(const uint32_t* a, size_t lda, const int32_t* koff, const uint32_t* b,
                        int k, int32_t* c, size_t ldc) {
  /* Two copies, so the loop never tests koff (GCC left the test inside). */
  if (koff) {
    body_neon(a, lda, koff, b, k, c, ldc);
  } else {
    body_neon(a, lda, NULL, b, k, c, ldc);
  }
}
#endif

/* ------------------------------------------------------------ row packing */

/* One call per row instead of one per word: the word packer inlines. */
#define DEFINE_PACK_ROW(name, pack, attr)                                  \
  attr static void name(const float* in, int channels, uint32_t* out) {  \
    int c0 = 0;                                                          \
    for (; c0 + 32 <= channels; c0 += 32) *out++ = pack(in + c0, 32);     \
    if (c0 < channels) *out = pack(in + c0, channels - c0);              \
  }

DEFINE_PACK_ROW(pack_row_portable, pack_portable, )
#ifdef BINLAND_X86
DEFINE_PACK_ROW(pack_row_avx2, pack_avx2, __attribute__((target("avx2"))))
DEFINE_PACK_ROW(pack_row_avx512, pack_avx512, __attribute__((target("avx512f"))))
#endif
#if defined(__aarch64__)
DEFINE_PACK_ROW(pack_row_neon, pack_neon, )
#endif

/* --------------------------------------------------------------- dispatch */

static const bgemm_impl impl_portable = {"portable",      PORTABLE_MR,   PORTABLE_NR,
                                         kernel_portable, direct_portable, pack_portable,
                                         pack_row_portable};
#ifdef BINLAND_X86
static const bgemm_impl impl_popcnt = {"popcnt",      PORTABLE_MR,   PORTABLE_NR,
                                       kernel_popcnt, direct_popcnt, pack_portable,
                                       pack_row_portable};
static const bgemm_impl impl_avx2 = {"avx2",      AVX2_MR,   AVX2_NR,          kernel_avx2,
                                     direct_avx2, pack_avx2, pack_row_avx2};
static const bgemm_impl impl_avx512 = {"avx512-vpopcntdq", AVX512_MR,     AVX512_NR,
                                       kernel_avx512,      direct_avx512, pack_avx512,
                                       pack_row_avx512};
#endif
#if defined(__aarch64__)
static const bgemm_impl impl_neon = {"neon",      NEON_MR,   NEON_NR,      kernel_neon,
                                     direct_neon, pack_neon, pack_row_neon};
#endif

static int list_candidates(const bgemm_impl** out) {
  int n = 0;
#ifdef BINLAND_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"))
    out[n++] = &impl_avx512;
  if (__builtin_cpu_supports("avx2")) out[n++] = &impl_avx2;
  if (__builtin_cpu_supports("popcnt")) out[n++] = &impl_popcnt;
#endif
#if defined(__aarch64__)
  out[n++] = &impl_neon;
#endif
  out[n++] = &impl_portable;
  return n;
}

const bgemm_impl* bgemm_pick(const char* wanted) {
  const bgemm_impl* candidates[8];
  const int n = list_candidates(candidates);
  if (!wanted || !*wanted) return candidates[0];
  for (int i = 0; i < n; ++i) {
    if (strcmp(candidates[i]->name, wanted) == 0) return candidates[i];
  }
  return NULL;
}

const char* bgemm_available(void) {
  static char names[128];
  if (!names[0]) {
    const bgemm_impl* candidates[8];
    const int n = list_candidates(candidates);
    char buf[128] = {0};
    for (int i = 0; i < n; ++i) {
      if (i) strcat(buf, ",");
      strcat(buf, candidates[i]->name);
    }
    memcpy(names, buf, sizeof(names));
  }
  return names;
}
