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

#define PORTABLE_BODY                                                   \
  int32_t acc[PORTABLE_MR][PORTABLE_NR] = {{0}};                        \
  for (int kk = 0; kk < k; ++kk) {                                      \
    const uint32_t* bk = b + (size_t)kk * PORTABLE_NR;                  \
    for (int i = 0; i < PORTABLE_MR; ++i) {                             \
      const uint32_t ai = a[(size_t)i * lda + kk];                      \
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

static void kernel_portable(const uint32_t* a, size_t lda, const uint32_t* b, int k, int32_t* c,
                            size_t ldc) {
  PORTABLE_BODY
}

#ifdef BINLAND_X86
/* Same loop, compiled with the POPCNT instruction (without it GCC calls a
 * libgcc bit-twiddling routine). */
__attribute__((target("popcnt"))) static void kernel_popcnt(const uint32_t* a, size_t lda,
                                                            const uint32_t* b, int k, int32_t* c,
                                                            size_t ldc) {
  PORTABLE_BODY
}

/* ------------------------------------------------------ AVX-512 VPOPCNTDQ */

#define AVX512_MR 8
#define AVX512_NR 32

__attribute__((target("avx512f,avx512vpopcntdq"))) static void kernel_avx512(
    const uint32_t* a, size_t lda, const uint32_t* b, int k, int32_t* c, size_t ldc) {
  __m512i acc0[AVX512_MR], acc1[AVX512_MR];
  for (int i = 0; i < AVX512_MR; ++i) {
    acc0[i] = _mm512_setzero_si512();
    acc1[i] = _mm512_setzero_si512();
  }
  for (int kk = 0; kk < k; ++kk) {
    const __m512i b0 = _mm512_loadu_si512((const void*)(b + (size_t)kk * AVX512_NR));
    const __m512i b1 = _mm512_loadu_si512((const void*)(b + (size_t)kk * AVX512_NR + 16));
    for (int i = 0; i < AVX512_MR; ++i) {
      const __m512i ai = _mm512_set1_epi32((int)a[(size_t)i * lda + kk]);
      acc0[i] = _mm512_add_epi32(acc0[i], _mm512_popcnt_epi32(_mm512_xor_si512(ai, b0)));
      acc1[i] = _mm512_add_epi32(acc1[i], _mm512_popcnt_epi32(_mm512_xor_si512(ai, b1)));
    }
  }
  for (int i = 0; i < AVX512_MR; ++i) {
    _mm512_storeu_si512((void*)(c + (size_t)i * ldc), acc0[i]);
    _mm512_storeu_si512((void*)(c + (size_t)i * ldc + 16), acc1[i]);
  }
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

/* No vector popcount: count nibbles with a 16-entry shuffle table, sum the
 * byte counts for up to 31 words (31 * 8 = 248 fits a byte), then widen. */
#define AVX2_MR 4
#define AVX2_NR 16

__attribute__((target("avx2"))) static void kernel_avx2(const uint32_t* a, size_t lda,
                                                        const uint32_t* b, int k, int32_t* c,
                                                        size_t ldc) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2,
                                         1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low_nibble = _mm256_set1_epi8(0x0f);
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i sum0[AVX2_MR], sum1[AVX2_MR];
  for (int i = 0; i < AVX2_MR; ++i) {
    sum0[i] = _mm256_setzero_si256();
    sum1[i] = _mm256_setzero_si256();
  }
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
      for (int i = 0; i < AVX2_MR; ++i) {
        const __m256i ai = _mm256_set1_epi32((int)a[(size_t)i * lda + kk]);
        const __m256i x0 = _mm256_xor_si256(ai, b0);
        const __m256i x1 = _mm256_xor_si256(ai, b1);
        const __m256i c0 = _mm256_add_epi8(
            _mm256_shuffle_epi8(table, _mm256_and_si256(x0, low_nibble)),
            _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x0, 4), low_nibble)));
        const __m256i c1 = _mm256_add_epi8(
            _mm256_shuffle_epi8(table, _mm256_and_si256(x1, low_nibble)),
            _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x1, 4), low_nibble)));
        bytes0[i] = _mm256_add_epi8(bytes0[i], c0);
        bytes1[i] = _mm256_add_epi8(bytes1[i], c1);
      }
    }
    for (int i = 0; i < AVX2_MR; ++i) {
      sum0[i] = _mm256_add_epi32(
          sum0[i], _mm256_madd_epi16(_mm256_maddubs_epi16(bytes0[i], ones8), ones16));
      sum1[i] = _mm256_add_epi32(
          sum1[i], _mm256_madd_epi16(_mm256_maddubs_epi16(bytes1[i], ones8), ones16));
    }
  }
  for (int i = 0; i < AVX2_MR; ++i) {
    _mm256_storeu_si256((__m256i*)(c + (size_t)i * ldc), sum0[i]);
    _mm256_storeu_si256((__m256i*)(c + (size_t)i * ldc + 8), sum1[i]);
  }
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

static void kernel_neon(const uint32_t* a, size_t lda, const uint32_t* b, int k, int32_t* c,
                        size_t ldc) {
  uint32x4_t sum0[NEON_MR], sum1[NEON_MR];
  for (int i = 0; i < NEON_MR; ++i) {
    sum0[i] = vdupq_n_u32(0);
    sum1[i] = vdupq_n_u32(0);
  }
  for (int k0 = 0; k0 < k; k0 += 31) {
    const int k1 = k0 + 31 < k ? k0 + 31 : k;
    uint8x16_t bytes0[NEON_MR], bytes1[NEON_MR];
    for (int i = 0; i < NEON_MR; ++i) {
      bytes0[i] = vdupq_n_u8(0);
      bytes1[i] = vdupq_n_u8(0);
    }
    for (int kk = k0; kk < k1; ++kk) {
      const uint32x4_t b0 = vld1q_u32(b + (size_t)kk * NEON_NR);
      const uint32x4_t b1 = vld1q_u32(b + (size_t)kk * NEON_NR + 4);
      for (int i = 0; i < NEON_MR; ++i) {
        const uint32x4_t ai = vdupq_n_u32(a[(size_t)i * lda + kk]);
        bytes0[i] = vaddq_u8(bytes0[i], vcntq_u8(vreinterpretq_u8_u32(veorq_u32(ai, b0))));
        bytes1[i] = vaddq_u8(bytes1[i], vcntq_u8(vreinterpretq_u8_u32(veorq_u32(ai, b1))));
      }
    }
    for (int i = 0; i < NEON_MR; ++i) {
      sum0[i] = vpadalq_u16(sum0[i], vpaddlq_u8(bytes0[i]));
      sum1[i] = vpadalq_u16(sum1[i], vpaddlq_u8(bytes1[i]));
    }
  }
  for (int i = 0; i < NEON_MR; ++i) {
    vst1q_s32(c + (size_t)i * ldc, vreinterpretq_s32_u32(sum0[i]));
    vst1q_s32(c + (size_t)i * ldc + 4, vreinterpretq_s32_u32(sum1[i]));
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

static const bgemm_impl impl_portable = {"portable", PORTABLE_MR, PORTABLE_NR, kernel_portable,
                                         pack_portable, pack_row_portable};
#ifdef BINLAND_X86
static const bgemm_impl impl_popcnt = {"popcnt", PORTABLE_MR, PORTABLE_NR, kernel_popcnt,
                                       pack_portable, pack_row_portable};
static const bgemm_impl impl_avx2 = {"avx2", AVX2_MR, AVX2_NR, kernel_avx2, pack_avx2,
                                     pack_row_avx2};
static const bgemm_impl impl_avx512 = {"avx512-vpopcntdq", AVX512_MR, AVX512_NR, kernel_avx512,
                                       pack_avx512, pack_row_avx512};
#endif
#if defined(__aarch64__)
static const bgemm_impl impl_neon = {"neon", NEON_MR, NEON_NR, kernel_neon, pack_neon,
                                     pack_row_neon};
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
