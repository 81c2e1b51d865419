/* How a binary convolution computes (LceBconv2d's run, for op_bconv2d.c): each task's
 * scratch, the two ways of reading the windows (im2col rows, or in place from zero-padded
 * copies of the input rows: direct), the GEMM calls, and the output transform with whatever
 * was fused into it (the absorbed quantize, the concat slot, the skip ADD). The output
 * transform and both paths share this file: the vectorized clones stay static (op_core.h). */
#include <math.h>
#include <string.h>

#include "bconv_core.h"

/* The AVX-512 and AVX2 epilogues: compiled with target attributes, used with their kernels. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EPILOGUE_X86 1
#endif

/* ------------------------------------------------------- output transform */

/* Sum of tap_sums over the taps of `pixel` that fall outside the image. */
static int zero_padding_correction(const lce_op* op, int pixel, int32_t* sums) {
  const int per_image = op->out_h * op->out_w;
  const int oy = (pixel % per_image) / op->out_w;
  const int ox = pixel % op->out_w;
  const int y0 = oy * op->stride_h - op->pad_top;
  const int x0 = ox * op->stride_w - op->pad_left;
  int any = 0;
  for (int ky = 0; ky < op->filter_h; ++ky) {
    const int y = y0 + ky * op->dilation_h;
    for (int kx = 0; kx < op->filter_w; ++kx) {
      const int x = x0 + kx * op->dilation_w;
      if (y >= 0 && y < op->in_h && x >= 0 && x < op->in_w) continue;
      const int32_t* t = op->tap_sums + (size_t)(ky * op->filter_w + kx) * op->out_c;
      if (!any) {
        memset(sums, 0, sizeof(int32_t) * (size_t)op->out_c);
        any = 1;
      }
      for (int o = 0; o < op->out_c; ++o) sums[o] += t[o];
    }
  }
  return any;
}

/* `row`: where a float output row goes (NULL: its place in `output`). */
static inline void bconv_epilogue(const lce_op* op, const int32_t* acc_row, int pixel, void* output,
                                  int32_t* correction, float* row) {
  const int og = op->out_per_group;
  const int group_stride = op->blocks_per_group * op->gemm->nr;
  if (op->out_type == kTfLiteInt32) {
    const int words = packed_size(op->out_c);
    uint32_t* out = (uint32_t*)output + (size_t)pixel * words;
    memset(out, 0, sizeof(uint32_t) * (size_t)words);
    for (int g = 0; g < op->groups; ++g) {
      const int32_t* a = acc_row + (size_t)g * group_stride;
      for (int j = 0; j < og; ++j) {
        const int o = g * og + j;
        out[o >> 5] |= (uint32_t)(a[j] > op->thresholds[o]) << (o & 31);
      }
    }
    return;
  }
  const int corrected = op->tap_sums && zero_padding_correction(op, pixel, correction);
  const int32_t lo = op->clamp_lo, hi = op->clamp_hi;
  if (op->out_type == kTfLiteFloat32) {
    float* out = row ? row : (float*)output + (size_t)pixel * op->out_c;
    for (int g = 0; g < op->groups; ++g) {
      const int32_t* a = acc_row + (size_t)g * group_stride;
      const float* m = op->multiplier + (size_t)g * og;
      const float* b = op->bias + (size_t)g * og;
      float* o = out + (size_t)g * og;
      if (corrected) {
        const int32_t* s = correction + (size_t)g * og;
        for (int j = 0; j < og; ++j) {
          int32_t x = 2 * a[j] + s[j];
          x = x < lo ? lo : (x > hi ? hi : x);
          o[j] = (float)x * m[j] + b[j];
        }
      } else {
        for (int j = 0; j < og; ++j) {
          int32_t x = 2 * a[j];
          x = x < lo ? lo : (x > hi ? hi : x);
          o[j] = (float)x * m[j] + b[j];
        }
      }
    }
    return;
  }
  int8_t* out = (int8_t*)output + (size_t)pixel * op->out_c;
  for (int g = 0; g < op->groups; ++g) {
    const int32_t* a = acc_row + (size_t)g * group_stride;
    for (int j = 0; j < og; ++j) {
      const int o = g * og + j;
      int32_t x = 2 * a[j];
      x = x < lo ? lo : (x > hi ? hi : x);
      const float y = (float)x * op->multiplier[o] + op->bias[o];
      /* TfLiteRound rounds half away from zero, like roundf. */
      float r = roundf(y);
      if (r > 127.0f) r = 127.0f;
      if (r < -128.0f) r = -128.0f;
      out[o] = (int8_t)r;
    }
  }
}

/* How far ahead the epilogue prefetches the rows it will write into a concat. */
#define PREFETCH_PIXELS 16

/* Where pixel p's slice starts in the concat this op writes into (and in the ADD operand):
 * the concat's rows are strided slices of a big tensor, so the rows PREFETCH_PIXELS ahead
 * are fetched now. */
static inline __attribute__((always_inline)) size_t into_row(const lce_op* op, size_t p,
                                                             const int add) {
  const size_t cat_c = (size_t)op->into->channels;
  const size_t at = p * cat_c + (size_t)op->into_offset;
  const size_t ahead = at + PREFETCH_PIXELS * cat_c;
  for (int j = 0; j < op->out_c; j += 16) {
    __builtin_prefetch(op->into_data + ahead + j, 1);
    if (add) __builtin_prefetch(op->into_add + ahead + j, 0);
  }
  return at;
}

/* The fast epilogues' ten flag combinations (own + quantize * 2 + into * 4 + add * 8; add
 * only with into, and at least one output), each a case calling CALL(own, quant, into, add)
 * with constants, so that every combination compiles to its own loop. One list for the
 * portable, AVX2 and AVX-512 dispatchers. */
#define EPILOGUE_FLAG_CASES(CALL)   \
  case 1: CALL(1, 0, 0, 0); return;  \
  case 3: CALL(1, 1, 0, 0); return;  \
  case 4: CALL(0, 0, 1, 0); return;  \
  case 5: CALL(1, 0, 1, 0); return;  \
  case 6: CALL(0, 1, 1, 0); return;  \
  case 7: CALL(1, 1, 1, 0); return;  \
  case 12: CALL(0, 0, 1, 1); return; \
  case 13: CALL(1, 0, 1, 1); return; \
  case 14: CALL(0, 1, 1, 1); return; \
  case 15: CALL(1, 1, 1, 1); return;

/* Where the fast float epilogues write pixel p, NULL where its flag is 0: its own output
 * row (own), its slice of the concat (into) and the ADD operand's (add), and the absorbed
 * quantize's bit-packed row (quant). out_c and words (packed_size(out_c)) are the caller's,
 * hoisted out of its row loop. Shared by the three of them, called once per row; the flags
 * are constants there, so the NULLs fold away. */
typedef struct {
  float* mine;
  float* dst;
  const float* other;
  uint32_t* bits;
} epilogue_row;

static inline __attribute__((always_inline)) epilogue_row row_targets(
    const lce_op* op, float* output, size_t p, int out_c, int words, const int own,
    const int quant, const int into, const int add) {
  epilogue_row row;
  row.mine = own ? output + p * out_c : NULL;
  const size_t at = into ? into_row(op, p, add) : 0;
  row.dst = into ? op->into_data + at : NULL;
  row.other = add ? op->into_add + at : NULL;
  row.bits = quant ? (uint32_t*)op->then_output + p * words : NULL;
  return row;
}

/* The common epilogue in one pass over each pixel's channels: float output of
 * one group with no zero-padding correction, and an absorbed quantize (if any)
 * that stores none of its MUL / ADD outputs. v is the conv's output; the
 * quantize packs t = fl(fl(v * qm) + qa) < 0 with qm = 1 and qa = 0 where its
 * MUL or ADD is absent: v * 1 = v, and r + 0 differs from r only when r = -0
 * (giving +0), which packs the same; so every bit is the unfused one. The
 * flags are constants in each caller, so each combination is its own loop. */
static inline __attribute__((always_inline)) void epilogue_fast(
    const lce_op* op, const int32_t* c, int ldc, int p0, int count, float* output, float* yq,
    const int own, const int quant, const int into, const int add) {
  const int out_c = op->out_c;
  const int words = packed_size(out_c);
  const int32_t lo = op->clamp_lo, hi = op->clamp_hi;
  const float* restrict m = op->multiplier;
  const float* restrict b = op->bias;
  const float* restrict qm = op->then_mul;
  const float* restrict qa = op->then_add;
  for (int r = 0; r < count; ++r) {
    const size_t p = (size_t)(p0 + r);
    const int32_t* restrict acc = c + (size_t)r * ldc;
    /* quant 0: the bits are packed from yq after the loop, their row found there (kept
     * live across the loop, it made GCC 12 spill on aarch64). */
    const epilogue_row row = row_targets(op, output, p, out_c, words, own, 0, into, add);
    /* The outputs never overlap the inputs or each other. */
#pragma GCC ivdep
    for (int j = 0; j < out_c; ++j) {
      int32_t x = 2 * acc[j];
      x = x < lo ? lo : (x > hi ? hi : x);
      const float v = (float)x * m[j] + b[j];
      if (own) row.mine[j] = v;
      if (quant) yq[j] = v * qm[j] + qa[j];
      if (into) row.dst[j] = add ? v + row.other[j] : v;
    }
    if (quant) op->gemm->pack_row(yq, out_c, (uint32_t*)op->then_output + p * words);
  }
}

#ifdef EPILOGUE_X86
/* epilogue_fast written out for AVX-512 (the avx512-vpopcntdq kernel path):
 * the quantize's compare goes straight to a bit mask, with no float staging
 * row and no call per pixel. The same IEEE operations in the same order:
 * cvt, mul, add (no FMA), so the floats and bits are epilogue_fast's. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void
epilogue_fast_avx512_body(const lce_op* op, const int32_t* c, int ldc, int p0, int count,
                          float* output, const int own, const int quant, const int into,
                          const int add) {
  const int out_c = op->out_c;
  const int words = packed_size(out_c);
  const int vecs = (out_c + 15) / 16;
  const __mmask16 tail = (__mmask16)(out_c % 16 ? (1u << (out_c % 16)) - 1u : 0xffffu);
  const __m512i lo = _mm512_set1_epi32(op->clamp_lo), hi = _mm512_set1_epi32(op->clamp_hi);
  const __m512 zero = _mm512_setzero_ps();
  const float* m = op->multiplier;
  const float* b = op->bias;
  const float* qm = op->then_mul;
  const float* qa = op->then_add;
  for (int r = 0; r < count; ++r) {
    const int32_t* acc = c + (size_t)r * ldc;
    const epilogue_row row =
        row_targets(op, output, (size_t)(p0 + r), out_c, words, own, quant, into, add);
    uint32_t word = 0;
    for (int v = 0; v < vecs; ++v) {
      const int j = 16 * v;
      const __mmask16 k = v == vecs - 1 ? tail : (__mmask16)0xffffu;
      __m512i x = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(k, acc + j), 1);
      x = _mm512_min_epi32(_mm512_max_epi32(x, lo), hi);
      const __m512 f = _mm512_add_ps(
          _mm512_mul_ps(_mm512_cvtepi32_ps(x), _mm512_maskz_loadu_ps(k, m + j)),
          _mm512_maskz_loadu_ps(k, b + j));
      if (own) _mm512_mask_storeu_ps(row.mine + j, k, f);
      if (quant) {
        const __m512 t = _mm512_add_ps(_mm512_mul_ps(f, _mm512_maskz_loadu_ps(k, qm + j)),
                                       _mm512_maskz_loadu_ps(k, qa + j));
        const uint32_t lt = _mm512_mask_cmp_ps_mask(k, t, zero, _CMP_LT_OQ);
        if (v & 1) {
          row.bits[v >> 1] = word | (lt << 16);
        } else if (v == vecs - 1) {
          row.bits[v >> 1] = lt;
        } else {
          word = lt;
        }
      }
      if (into) {
        _mm512_mask_storeu_ps(row.dst + j, k,
                              add ? _mm512_add_ps(f, _mm512_maskz_loadu_ps(k, row.other + j)) : f);
      }
    }
  }
}

__attribute__((target("avx512f"))) static void epilogue_fast_avx512(
    const lce_op* op, const int32_t* c, int ldc, int p0, int count, float* output, int flags) {
  switch (flags) {
#define CALL(own, quant, into, add) \
  epilogue_fast_avx512_body(op, c, ldc, p0, count, output, own, quant, into, add)
    EPILOGUE_FLAG_CASES(CALL)
#undef CALL
    default: return;
  }
}
/* epilogue_fast written out for AVX2 (the avx2 kernel path), 8 channels at a
 * time: the quantize's compare goes to 8 bits with vmovmskps, 4 vectors make a
 * word, with no float staging row and no pack call per pixel. The channels
 * past the last multiple of 8 run as epilogue_fast does. The same IEEE
 * operations in the same order as epilogue_fast's: cvt, mul, add (no FMA), so
 * the floats and bits are its own. */
__attribute__((target("avx2"))) static inline __attribute__((always_inline)) void
epilogue_fast_avx2_body(const lce_op* op, const int32_t* c, int ldc, int p0, int count,
                        float* output, const int own, const int quant, const int into,
                        const int add) {
  const int out_c = op->out_c;
  const int words = packed_size(out_c);
  const int full = out_c / 8 * 8;
  const int32_t clamp_lo = op->clamp_lo, clamp_hi = op->clamp_hi;
  const __m256i lo = _mm256_set1_epi32(clamp_lo), hi = _mm256_set1_epi32(clamp_hi);
  const __m256 zero = _mm256_setzero_ps();
  const float* m = op->multiplier;
  const float* b = op->bias;
  const float* qm = op->then_mul;
  const float* qa = op->then_add;
  for (int r = 0; r < count; ++r) {
    const int32_t* acc = c + (size_t)r * ldc;
    const epilogue_row row =
        row_targets(op, output, (size_t)(p0 + r), out_c, words, own, quant, into, add);
    uint32_t word = 0;
    int j = 0;
    for (; j < full; j += 8) {
      __m256i x = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i*)(acc + j)), 1);
      x = _mm256_min_epi32(_mm256_max_epi32(x, lo), hi);
      const __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(x), _mm256_loadu_ps(m + j)),
                                     _mm256_loadu_ps(b + j));
      if (own) _mm256_storeu_ps(row.mine + j, f);
      if (quant) {
        const __m256 t =
            _mm256_add_ps(_mm256_mul_ps(f, _mm256_loadu_ps(qm + j)), _mm256_loadu_ps(qa + j));
        word |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(t, zero, _CMP_LT_OQ)) << (j & 31);
        if ((j & 31) == 24) {
          row.bits[j >> 5] = word;
          word = 0;
        }
      }
      if (into) {
        _mm256_storeu_ps(row.dst + j, add ? _mm256_add_ps(f, _mm256_loadu_ps(row.other + j)) : f);
      }
    }
    for (; j < out_c; ++j) {
      int32_t x = 2 * acc[j];
      x = x < clamp_lo ? clamp_lo : (x > clamp_hi ? clamp_hi : x);
      const float v = (float)x * m[j] + b[j];
      if (own) row.mine[j] = v;
      if (quant) word |= (uint32_t)(v * qm[j] + qa[j] < 0.0f) << (j & 31);
      if (into) row.dst[j] = add ? v + row.other[j] : v;
    }
    /* The last word, if the channels do not fill it (its high bits stay 0). */
    if (quant && (out_c & 31)) row.bits[out_c >> 5] = word;
  }
}

__attribute__((target("avx2"))) static void epilogue_fast_avx2(const lce_op* op, const int32_t* c,
                                                               int ldc, int p0, int count,
                                                               float* output, int flags) {
  switch (flags) {
#define CALL(own, quant, into, add) \
  epilogue_fast_avx2_body(op, c, ldc, p0, count, output, own, quant, into, add)
    EPILOGUE_FLAG_CASES(CALL)
#undef CALL
    default: return;
  }
}
#endif


VECTOR_CLONES static void epilogue_block(const lce_op* op, const int32_t* c, int ldc, int p0,
                                         int count, void* output, int32_t* correction,
                                         float* y, float* yq) {
  const lce_op* q = op->then_quantize;
  const lce_op* into = op->into;
  const int words = packed_size(op->out_c);
  const int out_c = op->out_c;
  if (op->out_type == kTfLiteFloat32 && op->groups == 1 && !op->tap_sums &&
      (!q || (!q->pre_mul_data && !q->pre_add_data))) {
    const int own = !into || op->write_own;
    const int add = into && op->into_add;
    float* out = (float*)output;
    /* own + quantize * 2 + into * 4 + add * 8 */
    const int flags = own + (q ? 2 : 0) + (into ? 4 : 0) + (add ? 8 : 0);
#ifdef EPILOGUE_X86
    if (op->epilogue_avx512) {
      epilogue_fast_avx512(op, c, ldc, p0, count, out, flags);
      return;
    }
    if (op->epilogue_avx2) {
      epilogue_fast_avx2(op, c, ldc, p0, count, out, flags);
      return;
    }
#endif
    switch (flags) {
#define CALL(own, quant, into, add) \
  epilogue_fast(op, c, ldc, p0, count, out, yq, own, quant, into, add)
      EPILOGUE_FLAG_CASES(CALL)
#undef CALL
      default: break; /* no output at all: cannot happen */
    }
  }
  for (int r = 0; r < count; ++r) {
    const size_t p = (size_t)(p0 + r);
    float* row = NULL;
    if (into) row = op->write_own ? (float*)output + p * out_c : y;
    bconv_epilogue(op, c + (size_t)r * ldc, (int)p, output, correction, row);
    if (!row) row = (float*)output + p * out_c;
    if (q) {
      /* The next op's quantize of this pixel, while its floats are in L1. */
      quantize_float_row(q, row, p, yq, (uint32_t*)op->then_output + p * words);
    }
    if (into) {
      /* Straight into the concat (+ ADD) output: the runtime's fl(y + other). Its
       * rows are strided slices of a big tensor: fetch a few pixels ahead. */
      const size_t at = p * (size_t)into->channels + (size_t)op->into_offset;
      float* dst = op->into_data + at;
      const size_t ahead = at + PREFETCH_PIXELS * (size_t)into->channels;
      for (int j = 0; j < out_c; j += 16) {
        __builtin_prefetch(op->into_data + ahead + j, 1);
        if (op->into_add) __builtin_prefetch(op->into_add + ahead + j, 0);
      }
      if (op->into_add) {
        const float* other = op->into_add + at;
        for (int j = 0; j < out_c; ++j) dst[j] = row[j] + other[j];
      } else {
        memcpy(dst, row, sizeof(float) * (size_t)out_c);
      }
    }
  }
}

/* ---------------------------------------------------------------- scratch */

/* One task's scratch: a_bytes of windows (A), c_bytes of accumulators (C), then the epilogue's
 * per-op tap sums and one or two rows of float output (y, and yq when the op both writes into a
 * concat and quantizes). NULL (and job->failed set) when the pool cannot provide it. */
typedef struct {
  uint32_t* a;
  int32_t* c;
  int32_t* correction;
  float* y;
  float* yq;
} bconv_scratch;

static int carve_scratch(bconv_job* job, int thread_id, size_t a_bytes, size_t c_bytes,
                         bconv_scratch* out) {
  const lce_op* op = job->op;
  const size_t s_bytes = op->tap_sums ? sizeof(int32_t) * (size_t)op->out_c : 0;
  const size_t row_bytes = (sizeof(float) * (size_t)op->out_c + 63) / 64 * 64;
  const size_t y_bytes = (op->then_quantize ? row_bytes : 0) + (op->into ? row_bytes : 0);
  uint8_t* scratch = pool_scratch(job->pool, thread_id, a_bytes + c_bytes + s_bytes + y_bytes);
  if (!scratch) {
    job->failed = 1;
    return -1;
  }
  out->a = (uint32_t*)scratch;
  out->c = (int32_t*)(scratch + a_bytes);
  out->correction = (int32_t*)(scratch + a_bytes + c_bytes);
  out->y = (float*)(scratch + a_bytes + c_bytes + s_bytes);
  out->yq = op->into && op->then_quantize ? out->y + row_bytes / sizeof(float) : out->y;
  return 0;
}

/* ----------------------------------------------------------------- im2col */

/* One row of im2col for group g: the window's words, zero outside the image
 * (zero bits are +1, which is exactly LCE's pad_values=1; zero padding is
 * corrected in the epilogue). */
static inline void im2col_row(const lce_op* op, const uint32_t* input, int pixel, int g, uint32_t* row) {
  const int per_image = op->out_h * op->out_w;
  const int n = pixel / per_image;
  const int oy = (pixel % per_image) / op->out_w;
  const int ox = pixel % op->out_w;
  const int wg = op->words_per_group;
  const int y0 = oy * op->stride_h - op->pad_top;
  const int x0 = ox * op->stride_w - op->pad_left;
  for (int ky = 0; ky < op->filter_h; ++ky) {
    const int y = y0 + ky * op->dilation_h;
    for (int kx = 0; kx < op->filter_w; ++kx, row += wg) {
      const int x = x0 + kx * op->dilation_w;
      /* Plain loops: the rows are a few words long, shorter than a memcpy call. */
      if (y < 0 || y >= op->in_h || x < 0 || x >= op->in_w) {
        for (int q = 0; q < wg; ++q) row[q] = 0;
      } else {
        const uint32_t* src =
            input + (((size_t)n * op->in_h + y) * op->in_w + x) * op->in_words + (size_t)g * wg;
        for (int q = 0; q < wg; ++q) row[q] = src[q];
      }
    }
  }
}

/* Block versions: one (vectorized clone) call per task, not per pixel. */
VECTOR_CLONES static void im2col_block(const lce_op* op, const uint32_t* input, int p0, int count,
                                       int g, uint32_t* a) {
  const int k = op->kernel_words;
  const int wg = op->words_per_group;
  const int per_image = op->out_h * op->out_w;
  int n = p0 / per_image;
  int oy = (p0 % per_image) / op->out_w;
  int ox = p0 % op->out_w;
  const int span_h = (op->filter_h - 1) * op->dilation_h;
  const int span_w = (op->filter_w - 1) * op->dilation_w;
  const size_t image_words = (size_t)op->in_h * op->in_w * op->in_words;
  for (int r = 0; r < count; ++r) {
    const int y0 = oy * op->stride_h - op->pad_top;
    const int x0 = ox * op->stride_w - op->pad_left;
    if (y0 >= 0 && x0 >= 0 && y0 + span_h < op->in_h && x0 + span_w < op->in_w) {
      /* Interior pixel (most of them): no bounds checks, no index arithmetic per tap. */
      uint32_t* row = a + (size_t)r * k;
      const uint32_t* image = input + (size_t)n * image_words + (size_t)g * wg;
      for (int ky = 0; ky < op->filter_h; ++ky) {
        const uint32_t* src =
            image + ((size_t)(y0 + ky * op->dilation_h) * op->in_w + x0) * op->in_words;
        const size_t tap_step = (size_t)op->dilation_w * op->in_words;
        if (wg == 1) {
          for (int kx = 0; kx < op->filter_w; ++kx) *row++ = src[kx * tap_step];
          continue;
        }
        /* 64, 128, 256 channels: one fixed-size move per tap. */
        if (wg == 2 || wg == 4 || wg == 8) {
          for (int kx = 0; kx < op->filter_w; ++kx, row += wg) {
            const uint32_t* tap = src + kx * tap_step;
            if (wg == 2) {
              memcpy(row, tap, 8);
            } else if (wg == 4) {
              memcpy(row, tap, 16);
            } else {
              memcpy(row, tap, 32);
            }
          }
          continue;
        }
        for (int kx = 0; kx < op->filter_w; ++kx, row += wg) {
          const uint32_t* tap = src + kx * tap_step;
          for (int q = 0; q < wg; ++q) row[q] = tap[q];
        }
      }
    } else {
      im2col_row(op, input, p0 + r, g, a + (size_t)r * k);
    }
    if (++ox == op->out_w) {
      ox = 0;
      if (++oy == op->out_h) {
        oy = 0;
        ++n;
      }
    }
  }
}

void bconv_im2col_task(void* arg, int task, int thread_id) {
  bconv_job* job = arg;
  const lce_op* op = job->op;
  const bgemm_impl* gemm = op->gemm;
  const int mr = gemm->mr, nr = gemm->nr;
  const int k = op->kernel_words;
  const int p0 = task * job->pixels_per_task;
  const int p1 = p0 + job->pixels_per_task < job->pixels ? p0 + job->pixels_per_task : job->pixels;
  const int count = p1 - p0;
  const int rows = ((count + mr - 1) / mr) * mr;

  bconv_scratch sc;
  if (carve_scratch(job, thread_id, im2col_a_bytes(op, count), im2col_c_bytes(op, count), &sc)) {
    return;
  }
  uint32_t* a = sc.a;
  int32_t* c = sc.c;

  for (int g = 0; g < op->groups; ++g) {
    im2col_block(op, job->input, p0, count, g, a);
    if (rows > count) memset(a + (size_t)count * k, 0, sizeof(uint32_t) * (size_t)(rows - count) * k);
    for (int b = 0; b < op->blocks_per_group; ++b) {
      const uint32_t* panel =
          op->packed_filter + ((size_t)g * op->blocks_per_group + b) * (size_t)k * nr;
      int32_t* c_block = c + (size_t)(g * op->blocks_per_group + b) * nr;
      for (int r = 0; r < rows; r += mr) {
        gemm->kernel(a + (size_t)r * k, (size_t)k, panel, k, c_block + (size_t)r * job->ldc,
                     (size_t)job->ldc);
      }
    }
  }
  epilogue_block(op, c, job->ldc, p0, count, job->output, sc.correction, sc.y, sc.yq);
}

/* ----------------------------------------------------------------- direct */

/* Into L2: the float output lines of pixels [p0, p1) that the epilogue
 * writes (the op's own rows, its slice of a concat) and the ADD operand's. */
static inline void prefetch_epilogue(const lce_op* op, void* output, int p0, int p1) {
  if (op->out_type != kTfLiteFloat32) return;
  const int out_c = op->out_c;
  const int own = !op->into || op->write_own;
  for (int p = p0; p < p1; ++p) {
    if (own) {
      const float* mine = (const float*)output + (size_t)p * out_c;
      for (int j = 0; j < out_c; j += 16) __builtin_prefetch(mine + j, 1, 2);
    }
    if (op->into) {
      const size_t at = (size_t)p * op->into->channels + (size_t)op->into_offset;
      for (int j = 0; j < out_c; j += 16) {
        __builtin_prefetch(op->into_data + at + j, 1, 2);
        if (op->into_add) __builtin_prefetch(op->into_add + at + j, 0, 2);
      }
    }
  }
}

/* Direct convolution: a task is a few output rows of one image. It copies the
 * input rows their windows read into scratch, zero-padded left and right, and
 * all-zero rows above and below the image (zero bits are +1, LCE's
 * pad_values=1; zero padding is corrected in the epilogue, as for im2col).
 * The kernel then reads each output pixel's window in place: pixel x of an
 * output row at x * stride_w * in_words plus the offsets koff. The last call
 * of a row may compute up to mr - 1 pixels past its end; their reads stay in
 * the scratch's slack and their accumulator rows are never used. */
void bconv_direct_task(void* arg, int task, int thread_id) {
  bconv_job* job = arg;
  const lce_op* op = job->op;
  const bgemm_impl* gemm = op->gemm;
  const int mr = gemm->mr, nr = gemm->nr;
  const int k = op->kernel_words;
  const int words = op->in_words;
  const int n = task / job->tasks_per_image;
  const int oy0 = (task % job->tasks_per_image) * job->rows_per_task;
  const int oy1 = oy0 + job->rows_per_task < op->out_h ? oy0 + job->rows_per_task : op->out_h;
  const size_t row_words = (size_t)op->pad_w * words;
  const int in_rows = direct_input_rows(op, oy1 - oy0);
  const size_t lda = (size_t)op->stride_w * words;
  const size_t slack = (size_t)mr * lda;

  /* Within LCE_SCRATCH_BUDGET: prepare_bconv sized the largest task. */
  bconv_scratch sc;
  if (carve_scratch(job, thread_id, direct_a_bytes(op, in_rows),
                    direct_c_bytes(op, job->seg_pixels), &sc)) {
    return;
  }
  uint32_t* a = sc.a;
  int32_t* c = sc.c;

  /* Padded row px holds input column px - pad_left. */
  const int iy0 = oy0 * op->stride_h - op->pad_top;
  const int from = op->pad_left < op->pad_w ? op->pad_left : op->pad_w;
  int to = op->pad_left + op->in_w < op->pad_w ? op->pad_left + op->in_w : op->pad_w;
  if (to < from) to = from;
  const uint32_t* image = job->input + (size_t)n * op->in_h * op->in_w * words;
  for (int r = 0; r < in_rows; ++r) {
    uint32_t* dst = a + (size_t)r * row_words;
    const int iy = iy0 + r;
    if (iy < 0 || iy >= op->in_h) {
      memset(dst, 0, row_words * 4);
      continue;
    }
    memset(dst, 0, (size_t)from * words * 4);
    memcpy(dst + (size_t)from * words,
           image + ((size_t)iy * op->in_w + (size_t)(from - op->pad_left)) * words,
           (size_t)(to - from) * words * 4);
    memset(dst + (size_t)to * words, 0, (size_t)(op->pad_w - to) * words * 4);
  }
  memset(a + (size_t)in_rows * row_words, 0, slack * 4);

  /* A row in segments of seg pixels (a multiple of mr) whose accumulators
   * stay in L1 until the epilogue reads them. */
  const int seg = job->seg_pixels;
  for (int oy = oy0; oy < oy1; ++oy) {
    const uint32_t* row = a + (size_t)(oy - oy0) * op->stride_h * row_words;
    const int p_row = (n * op->out_h + oy) * op->out_w;
    for (int s0 = 0; s0 < op->out_w; s0 += seg) {
      const int s1 = s0 + seg < op->out_w ? s0 + seg : op->out_w;
      const int calls = op->groups * op->blocks_per_group * ((s1 - s0 + mr - 1) / mr);
      int call = 0;
      for (int g = 0; g < op->groups; ++g) {
        const int32_t* koff = op->koff + (size_t)g * k;
        for (int b = 0; b < op->blocks_per_group; ++b) {
          const uint32_t* panel =
              op->packed_filter + ((size_t)g * op->blocks_per_group + b) * (size_t)k * nr;
          int32_t* c_block = c + (size_t)(g * op->blocks_per_group + b) * nr;
          for (int x0 = s0; x0 < s1; x0 += mr, ++call) {
            gemm->direct(row + (size_t)x0 * lda, lda, koff, panel, k,
                         c_block + (size_t)(x0 - s0) * job->ldc, (size_t)job->ldc);
            /* The epilogue's float rows live in big tensors (the concat and
             * its addend often come from memory): while the kernel runs,
             * fetch the lines the epilogue will touch, a slice per call. */
            prefetch_epilogue(op, job->output, p_row + s0 + (int)((long)call * (s1 - s0) / calls),
                              p_row + s0 + (int)((long)(call + 1) * (s1 - s0) / calls));
          }
        }
      }
      epilogue_block(op, c, job->ldc, p_row + s0, s1 - s0, job->output, sc.correction, sc.y,
                     sc.yq);
    }
  }
}
