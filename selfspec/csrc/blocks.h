/* What both kinds of product kernel (float32 in engine.c, 8-bit activations in dot8.h)
 * do the same way as they stream a weight row: unpack a K-quant super-block's scales once
 * for its eight 32-weight groups, and prefetch the bytes ahead. */
#ifndef SELFSPEC_BLOCKS_H
#define SELFSPEC_BLOCKS_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quant.h"

/* The sum of a vector's eight lanes, in one fixed order. */
static inline float hsum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

#define UNROLL _Pragma("GCC unroll 8")

/* The next share when `left` rows go out in `parts` near-equal groups (9 rows in 2: 5 + 4). */
static inline long next_share(long left, long parts) { return (left + parts - 1) / parts; }

typedef struct {
    const void* block;
    float scale[16]; /* Q4_K: d*sc of the 8 sub-blocks, then dmin*m; Q6_K: d*scale of 16 */
} kquant_prep;

/* Streaming weights from memory, the hardware prefetcher alone leaves a one-row product
 * waiting on loads about half the time: each preparation asks for the bytes PREFETCH_AHEAD
 * further on (about two rows ahead), one cache line per 64 bytes its blocks span. */
#define PREFETCH_AHEAD 2048
#define PREFETCH_LINES_q4_0 1
#define PREFETCH_LINES_q4_1 1
#define PREFETCH_LINES_q8_0 1
#define PREFETCH_LINES_q5_0 1
#define PREFETCH_LINES_q4_k 3 /* 144-byte super-blocks */
#define PREFETCH_LINES_q6_k 4 /* 210-byte super-blocks */
static inline void prefetch_ahead(const void* block, int lines) {
    const char* ahead = (const char*)block + PREFETCH_AHEAD;
    for (int l = 0; l < lines; l++) _mm_prefetch(ahead + 64 * l, _MM_HINT_T0);
}

/* Q4_K's eight sub-block scales (times d) and mins (times dmin) of the super-block that
 * holds 32-weight group jb of a row; the products d*sc and dmin*m are exact (quant.h). */
/* Q4_K's eight 6-bit scales (bytes 0-7) and mins (bytes 8-15): quant.h's
 * ss__q4_k_scale_min on four bytes at a time. */
static inline __m128i q4_k_scale_bytes(const ss_block_q4_k* b) {
    uint32_t w[3];
    memcpy(w, b->scales, sizeof w);
    const uint32_t lo6 = 0x3f3f3f3f, lo4 = 0x0f0f0f0f, hi2 = 0x30303030;
    const uint64_t sc = (w[0] & lo6) | (uint64_t)((w[2] & lo4) | ((w[0] >> 2) & hi2)) << 32;
    const uint64_t mn = (w[1] & lo6) | (uint64_t)(((w[2] >> 4) & lo4) | ((w[1] >> 2) & hi2)) << 32;
    return _mm_set_epi64x((long long)mn, (long long)sc);
}

static inline kquant_prep prep_q4_k(const uint8_t* row, long jb) {
    kquant_prep p = {(const ss_block_q4_k*)row + jb / 8};
    const ss_block_q4_k* b = (const ss_block_q4_k*)p.block;
    const __m128i sm = q4_k_scale_bytes(b);
    const __m256 d = _mm256_set1_ps(ss__f16(b->d)), dmin = _mm256_set1_ps(ss__f16(b->dmin));
    _mm256_storeu_ps(p.scale, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm))));
    _mm256_storeu_ps(p.scale + 8, _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(sm, sm)))));
    return p;
}

/* Q6_K's sixteen 16-weight scales times d (exact), for the super-block of group jb. */
static inline kquant_prep prep_q6_k(const uint8_t* row, long jb) {
    kquant_prep p = {(const ss_block_q6_k*)row + jb / 8};
    const ss_block_q6_k* b = (const ss_block_q6_k*)p.block;
    const __m256 d = _mm256_set1_ps(ss__f16(b->d));
    const __m128i sc = _mm_loadu_si128((const __m128i*)b->scales);
    _mm256_storeu_ps(p.scale, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc))));
    const __m128i hi = _mm_srli_si128(sc, 8);
    _mm256_storeu_ps(p.scale + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    return p;
}

#endif /* SELFSPEC_BLOCKS_H */
