/* Products with 8-bit activations: the weights' own integer quants times input rows
 * quantized to int8, summed by integer instructions.
 *
 * Why: dequantizing weights to float32 costs a conversion and an FMA per weight before the
 * product's own FMA, so on the larger models a decoding step is bound by arithmetic, not
 * by the bytes it reads (docs/engine.md). Quantizing the input row once instead (a few
 * thousand values per product) lets the integer multiply-add instructions take 32
 * weights at a time; that is how llama.cpp runs its K-quants, and why its decoding steps
 * were faster than ours on Qwen2.5-Coder-1.5B.
 *
 * It is a different sum from the float32 one (the activations are rounded to 8 bits), so
 * it is a mode of its own (`activations="int8"`), never mixed with the float path within
 * a model. Within the mode, exactness holds as it does for float32: an input row is
 * quantized by itself (its blocks' scales depend on it alone), integer sums are exact,
 * and each output's float operations run in one fixed order whatever the number of rows,
 * the thread count or the chunking, so every output row is bit-identical whether a token
 * is decoded alone or verified among drafts.
 *
 * An input row of K values (K a multiple of 32) becomes, per 32-value block j, a scale
 * d[j] = max|x| / 127 and quants q = round(x / d[j]) in [-127, 127], plus the block's sums
 * of quants times its scale, per 16 (s16) and per 32 (s32): the corrections for weight
 * formats whose quants carry an offset (Q4_0, Q5_0, Q6_K) or a min (Q4_1, Q4_K). A block's
 * result is then (weight scale * d[j]) * (sum of integer products), plus the offset or
 * min times s16/s32.
 */
#ifndef SELFSPEC_DOT8_H
#define SELFSPEC_DOT8_H

#include <math.h>

#include "blocks.h"
#include "quant.h"

/* Bytes of one quantized input row, either form, padded to a cache line: K quants, then
 * for 32-value blocks the float arrays d[K/32], s16[K/16] and s32[K/32], for 256-value
 * blocks d[K/256] and the int16 sums bs[K/16]. */
static inline long ss_x8_row_bytes(long K) { return (K + K / 2 + 63) & ~63L; }

typedef struct {
    const int8_t* q;
    const float *d, *s16, *s32; /* d per block; s16, s32: 32-value blocks only */
    const int16_t* bs;          /* 256-value blocks only */
} ss_x8_row;

static inline ss_x8_row ss_x8_view(const uint8_t* row, long K, int B) {
    const float* d = (const float*)(row + K);
    ss_x8_row v = {(const int8_t*)row, d, d + K / 32, d + K / 32 + K / 16, (const int16_t*)(d + K / B)};
    return v;
}

static inline float ss__hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int ss__hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* Quantize one input row in blocks of B = 32 or 256 values. A row holding an infinity or
 * a NaN gets NaN scales, so every product with it is NaN, as in float32, rather than a
 * silently wrong finite number. */
static inline void ss_x8_quantize_row(const float* x, long K, int B, uint8_t* row) {
    int8_t* q = (int8_t*)row;
    float* d = (float*)(row + K);
    float* s16 = d + K / 32;
    float* s32 = s16 + K / 16;
    int16_t* bs = (int16_t*)(d + K / B);
    const __m256 sign = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps();
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (long b = 0; b < K / B; b++) {
        const float* xb = x + B * b;
        __m256 amax = zero, bad = zero;
        for (int i = 0; i < B; i += 8) {
            const __m256 v = _mm256_loadu_ps(xb + i);
            amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v));
            bad = _mm256_add_ps(bad, _mm256_mul_ps(v, zero)); /* NaN if any is not finite */
        }
        const float m = ss__hmax(amax);
        const int finite = _mm256_movemask_ps(_mm256_cmp_ps(bad, zero, _CMP_NEQ_UQ)) == 0;
        const float db = finite ? m / 127.0f : NAN;
        const __m256 id = _mm256_set1_ps(finite && m > 0.0f ? 127.0f / m : 0.0f);
        d[b] = db;
        for (int j = 0; j < B / 32; j++) {
            __m256i qi[4];
            for (int i = 0; i < 4; i++)
                qi[i] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 32 * j + 8 * i), id));
            /* packs interleaves 128-bit lanes; the permutation puts the 32 quants in order */
            const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(qi[0], qi[1]), _mm256_packs_epi32(qi[2], qi[3]));
            _mm256_storeu_si256((__m256i*)(q + B * b + 32 * j), _mm256_permutevar8x32_epi32(p, order));
            const int lo = ss__hsum_i32(_mm256_add_epi32(qi[0], qi[1]));
            const int hi = ss__hsum_i32(_mm256_add_epi32(qi[2], qi[3]));
            const long g = (B * b + 32 * j) / 16; /* the first of the two 16-value groups */
            if (B == 32) {
                s16[g] = db * (float)lo;
                s16[g + 1] = db * (float)hi;
                s32[b] = db * (float)(lo + hi);
            } else {
                bs[g] = (int16_t)lo;
                bs[g + 1] = (int16_t)hi;
            }
        }
    }
}

/* 32 unsigned weight quants times 32 signed input quants: eight int32 sums of four
 * adjacent products (lanes 0-3: bytes 0-15, lanes 4-7: bytes 16-31). Exact: a pair of
 * products is at most 2 * 63 * 127 in magnitude (Q6_K), inside int16. */
static inline __m256i ss__dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

static inline __m256i ss__load32(const void* p) { return _mm256_loadu_si256((const __m256i*)p); }

/* ---- one weight row against R input rows -------------------------------------------- *
 * Each takes a weight row of K weights and R <= DOT8_MAX_ROWS quantized input rows and
 * writes R sums. The float operations per output are the same for every R (two vector
 * accumulators alternating by group, then fixed reductions), so R changes speed only. */
#define DOT8_MAX_ROWS 4
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* The K-quants take input rows in 256-value blocks, one scale per super-block, so that
 * their sub-block scales multiply in the integer domain (the multiply-add that pairs the
 * products anyway) and a super-block needs one conversion to float per input row. */
#define X8_BLOCK_q4_k 256
#define X8_BLOCK_q6_k 256

/* Q4_K: per 64 weights, one 32-byte load gives sub-block 2j (low nibbles) and 2j+1 (high);
 * sum (sc * q * x) over the super-block in int32, times d * x's scale; the mins come in as
 * sum (m * x's 16-value sums), times dmin * x's scale. Bounded: |sum| < 8 * 32 * 15 * 127 * 63. */
ALWAYS_INLINE void dot8_row_q4_k(const uint8_t* row, long K, const ss_x8_row* x, const int R, float* out) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[DOT8_MAX_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (long ib = 0; ib < K / SS_QK_K; ib++) {
        const ss_block_q4_k* b = (const ss_block_q4_k*)row + ib;
        prefetch_ahead(b, PREFETCH_LINES_q4_k);
        const __m128i sm = q4_k_scale_bytes(b);
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm)); /* sc0..7, twice */
        const __m128i mn = _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm));
        const __m256i mn2 = _mm256_set_m128i(_mm_unpackhi_epi16(mn, mn), _mm_unpacklo_epi16(mn, mn));
        const float d = ss__f16(b->d), dmin = ss__f16(b->dmin);
        __m256i isum[DOT8_MAX_ROWS];
        UNROLL for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
        UNROLL for (int j = 0; j < 4; j++) {
            const __m256i q = ss__load32(b->qs + 32 * j);
            const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m256i s_lo = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * j))));
            const __m256i s_hi = _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(0x0100 + 0x0202 * (2 * j + 1))));
            UNROLL for (int r = 0; r < R; r++) {
                const int8_t* xq = x[r].q + SS_QK_K * ib + 64 * j;
                const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ss__load32(xq)), s_lo);
                const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, ss__load32(xq + 32)), s_hi);
                isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(p0, p1));
            }
        }
        UNROLL for (int r = 0; r < R; r++) {
            const float xd = x[r].d[ib];
            const __m256i im = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)(x[r].bs + 16 * ib)), mn2);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), _mm256_cvtepi32_ps(isum[r]), acc[r]);
            acc[r] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * xd), _mm256_cvtepi32_ps(im), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < R; r++) out[r] = hsum(acc[r]);
}

/* Q6_K: quants 0..63 as unsigned bytes (quant.h's unpacking without the -32), each 16 times
 * its signed scale in int32; the offset is -32 * sum (scale * x's 16-value sums), also in
 * int32. A 32-weight run spans two scale groups: the low 128 bits of its pair sums take the
 * first, the high 128 bits the second. Bounded: |sum| < 16 * 16 * 63 * 127 * 128. */
ALWAYS_INLINE void dot8_row_q6_k(const uint8_t* row, long K, const ss_x8_row* x, const int R, float* out) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2h = _mm256_set1_epi8(0x30);
    const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, /* low: 1st */
                                          2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3); /* high: 2nd */
    __m256 acc[DOT8_MAX_ROWS];
    UNROLL for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (long ib = 0; ib < K / SS_QK_K; ib++) {
        const ss_block_q6_k* b = (const ss_block_q6_k*)row + ib;
        prefetch_ahead(b, PREFETCH_LINES_q6_k);
        const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)b->scales));
        const float d = ss__f16(b->d);
        __m256i isum[DOT8_MAX_ROWS];
        UNROLL for (int r = 0; r < R; r++) {
            const __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i*)(x[r].bs + 16 * ib)), sc);
            isum[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
        }
        UNROLL for (int h = 0; h < 2; h++) {
            const __m256i A = ss__load32(b->ql + 64 * h), B = ss__load32(b->ql + 64 * h + 32);
            const __m256i H = ss__load32(b->qh + 32 * h);
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m2h)),
                _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m2h)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m2h)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(H, 2), m2h))};
            UNROLL for (int s = 0; s < 4; s++) {
                const int js = 4 * h + s; /* the run's 32 values of x in this super-block */
                /* scales 2js (low 128 bits) and 2js + 1 (high): 32-bit word js, then a byte pick */
                const __m256i scale = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc, _mm256_set1_epi32(js)), pick);
                UNROLL for (int r = 0; r < R; r++) {
                    const __m256i xq = ss__load32(x[r].q + SS_QK_K * ib + 32 * js);
                    isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(_mm256_maddubs_epi16(q[s], xq), scale));
                }
            }
        }
        UNROLL for (int r = 0; r < R; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * x[r].d[ib]), _mm256_cvtepi32_ps(isum[r]), acc[r]);
    }
    UNROLL for (int r = 0; r < R; r++) out[r] = hsum(acc[r]);
}

/* The legacy 32-weight formats: a block's weights are dw * q + ow, q its 32 byte quants
 * (unsigned, or signed for Q8_0), dw and ow from its header (ow multiplies x's block sum). */
ALWAYS_INLINE __m256i ss__nibbles32(const uint8_t* qs) {
    const __m128i v = _mm_loadu_si128((const __m128i*)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0f));
}

ALWAYS_INLINE __m256i quants8_q4_0(const uint8_t* block) { return ss__nibbles32(((const ss_block_q4_0*)block)->qs); }

ALWAYS_INLINE __m256i quants8_q4_1(const uint8_t* block) { return ss__nibbles32(((const ss_block_q4_1*)block)->qs); }

/* Q5_0: bit i of qh is the fifth bit of weight i; byte i of the broadcast qh is qh's byte
 * i / 8, and a mask with bit i % 8 picks the weight's bit. */
ALWAYS_INLINE __m256i quants8_q5_0(const uint8_t* block) {
    const ss_block_q5_0* b = (const ss_block_q5_0*)block;
    int32_t qh;
    memcpy(&qh, b->qh, sizeof qh);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh), _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL, 0x0303030303030303LL));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return _mm256_or_si256(ss__nibbles32(b->qs), _mm256_and_si256(set, _mm256_set1_epi8(16)));
}

ALWAYS_INLINE __m256i quants8_q8_0(const uint8_t* block) { return ss__load32(((const ss_block_q8_0*)block)->qs); }

/* Eight f16 fields, `stride` bytes apart, as floats (F16C, as ss__f16); lanes past cnt
 * repeat the last field's bits, then are zeroed (live: the lanes below cnt). All in registers: eight scalar stores
 * reloaded as one vector would stall on store forwarding. */
ALWAYS_INLINE __m256 ss__f16x8(const uint8_t* p, long stride, int cnt, __m256i live) {
#define SS__FIELD(i) ss__u16(p + ((i) < cnt ? (i) : cnt - 1) * stride)
    __m128i h = _mm_cvtsi32_si128(SS__FIELD(0));
    h = _mm_insert_epi16(h, SS__FIELD(1), 1);
    h = _mm_insert_epi16(h, SS__FIELD(2), 2);
    h = _mm_insert_epi16(h, SS__FIELD(3), 3);
    h = _mm_insert_epi16(h, SS__FIELD(4), 4);
    h = _mm_insert_epi16(h, SS__FIELD(5), 5);
    h = _mm_insert_epi16(h, SS__FIELD(6), 6);
    h = _mm_insert_epi16(h, SS__FIELD(7), 7);
#undef SS__FIELD
    return _mm256_and_ps(_mm256_cvtph_ps(h), _mm256_castsi256_ps(live));
}

/* scales8_FMT: dw and ow of cnt <= 8 consecutive blocks (zero past cnt). */
ALWAYS_INLINE void scales8_q4_0(const uint8_t* b, int cnt, __m256i live, __m256* dw, __m256* ow) {
    *dw = ss__f16x8(b, sizeof(ss_block_q4_0), cnt, live);
    *ow = _mm256_mul_ps(*dw, _mm256_set1_ps(-8.0f));
}
ALWAYS_INLINE void scales8_q4_1(const uint8_t* b, int cnt, __m256i live, __m256* dw, __m256* ow) {
    *dw = ss__f16x8(b, sizeof(ss_block_q4_1), cnt, live);
    *ow = ss__f16x8(b + 2, sizeof(ss_block_q4_1), cnt, live);
}
ALWAYS_INLINE void scales8_q5_0(const uint8_t* b, int cnt, __m256i live, __m256* dw, __m256* ow) {
    *dw = ss__f16x8(b, sizeof(ss_block_q5_0), cnt, live);
    *ow = _mm256_mul_ps(*dw, _mm256_set1_ps(-16.0f));
}
ALWAYS_INLINE void scales8_q8_0(const uint8_t* b, int cnt, __m256i live, __m256* dw, __m256* ow) {
    *dw = ss__f16x8(b, sizeof(ss_block_q8_0), cnt, live);
    *ow = _mm256_setzero_ps();
}

#define X8_BLOCK_q4_0 32
#define X8_BLOCK_q4_1 32
#define X8_BLOCK_q5_0 32
#define X8_BLOCK_q8_0 32
#define SIGNED_q4_0 0
#define SIGNED_q4_1 0
#define SIGNED_q5_0 0
#define SIGNED_q8_0 1 /* signed quants: |w| times x with w's sign */

/* One block against R input rows: the integer dot product, then one FMA by the block's
 * scale (c, for row r at c[8 r]) into accumulator a of each row (acc[2 r + a]); called
 * with a constant a, so the accumulators stay in registers. */
#define DOT8_BLOCK_LEGACY(FMT)                                                                   \
    ALWAYS_INLINE void dot8_block_##FMT(const uint8_t* block, const ss_x8_row* x, long jb,       \
                                        const float* c, const int R, __m256* acc, const int a) { \
        prefetch_ahead(block, PREFETCH_LINES_##FMT);                                             \
        const __m256i q = quants8_##FMT(block);                                                  \
        const __m256i aq = SIGNED_##FMT ? _mm256_sign_epi8(q, q) : q;                            \
        UNROLL for (int r = 0; r < R; r++) {                                                     \
            __m256i xq = ss__load32(x[r].q + SS_QK * jb);                                        \
            if (SIGNED_##FMT) xq = _mm256_sign_epi8(xq, q);                                      \
            const __m256 s = _mm256_cvtepi32_ps(ss__dot_u8s8(aq, xq));                           \
            acc[2 * r + a] = _mm256_fmadd_ps(s, _mm256_broadcast_ss(&c[8 * r]), acc[2 * r + a]); \
        }                                                                                        \
    }

/* Eight blocks at a time: their scales (dw times x's block scales) and offsets (ow times
 * x's block sums) in vector operations, then per block one integer dot product and one
 * FMA, alternating between two accumulators. A row's last group may hold fewer than eight
 * blocks: its missing lanes are zero and never read. */
#define DOT8_ROW_LEGACY(FMT, BLOCK)                                                              \
    DOT8_BLOCK_LEGACY(FMT)                                                                       \
    ALWAYS_INLINE void dot8_row_##FMT(const uint8_t* row, long K, const ss_x8_row* x, const int R, \
                                      float* out) {                                              \
        __m256 acc[2 * DOT8_MAX_ROWS], off[DOT8_MAX_ROWS];                                       \
        UNROLL for (int r = 0; r < R; r++) acc[2 * r] = acc[2 * r + 1] = off[r] = _mm256_setzero_ps(); \
        const long nb = K / SS_QK;                                                               \
        for (long j0 = 0; j0 < nb; j0 += 8) {                                                    \
            const int cnt = nb - j0 < 8 ? (int)(nb - j0) : 8;                                    \
            const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt),                      \
                                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));  \
            const uint8_t* blocks = row + j0 * (long)sizeof(BLOCK);                              \
            float c[8 * DOT8_MAX_ROWS];                                                          \
            __m256 dwv, owv;                                                                     \
            scales8_##FMT(blocks, cnt, live, &dwv, &owv);                                              \
            UNROLL for (int r = 0; r < R; r++) {                                                 \
                _mm256_storeu_ps(c + 8 * r, _mm256_mul_ps(dwv, _mm256_maskload_ps(x[r].d + j0, live))); \
                if (!SIGNED_##FMT)                                                               \
                    off[r] = _mm256_fmadd_ps(owv, _mm256_maskload_ps(x[r].s32 + j0, live), off[r]); \
            }                                                                                    \
            if (cnt == 8) {                                                                      \
                UNROLL for (int i = 0; i < 8; i++)                                               \
                    dot8_block_##FMT(blocks + i * sizeof(BLOCK), x, j0 + i, c + i, R, acc, i & 1); \
            } else {                                                                             \
                for (int i = 0; i < cnt; i++) {                                                  \
                    if (i & 1)                                                                   \
                        dot8_block_##FMT(blocks + i * sizeof(BLOCK), x, j0 + i, c + i, R, acc, 1); \
                    else                                                                         \
                        dot8_block_##FMT(blocks + i * sizeof(BLOCK), x, j0 + i, c + i, R, acc, 0); \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        UNROLL for (int r = 0; r < R; r++)                                                       \
            out[r] = hsum(_mm256_add_ps(acc[2 * r], acc[2 * r + 1])) + hsum(off[r]);             \
    }

DOT8_ROW_LEGACY(q4_0, ss_block_q4_0)
DOT8_ROW_LEGACY(q4_1, ss_block_q4_1)
DOT8_ROW_LEGACY(q5_0, ss_block_q5_0)
DOT8_ROW_LEGACY(q8_0, ss_block_q8_0)

/* ---- a chunk of weight rows against M input rows ------------------------------------ */

typedef void (*dot8_fn)(const uint8_t* x8, long xs, long K, const uint8_t* W, long rb, long nrows,
                        const float* bias, float* y, long ldy);

/* dot8_FMT_R: R input rows (stride xs bytes) against weight rows 0..nrows-1 (stride rb). */
#define DOT8(FMT, R)                                                                             \
    static void dot8_##FMT##_##R(const uint8_t* x8, long xs, long K, const uint8_t* W, long rb,   \
                                 long nrows, const float* bias, float* y, long ldy) {            \
        ss_x8_row x[R];                                                                          \
        UNROLL for (int r = 0; r < R; r++) x[r] = ss_x8_view(x8 + r * xs, K, X8_BLOCK_##FMT);    \
        for (long n = 0; n < nrows; n++) {                                                       \
            float o[R];                                                                          \
            dot8_row_##FMT(W + n * rb, K, x, R, o);                                              \
            UNROLL for (int r = 0; r < R; r++) y[r * ldy + n] = bias ? o[r] + bias[n] : o[r];    \
        }                                                                                        \
    }
#define DOT8_ALL(FMT)                                                                            \
    DOT8(FMT, 1) DOT8(FMT, 2) DOT8(FMT, 3) DOT8(FMT, 4)                                          \
    static const dot8_fn DOT8_##FMT[DOT8_MAX_ROWS + 1] = {0, dot8_##FMT##_1, dot8_##FMT##_2,    \
                                                          dot8_##FMT##_3, dot8_##FMT##_4};
DOT8_ALL(q4_0)
DOT8_ALL(q4_1)
DOT8_ALL(q5_0)
DOT8_ALL(q8_0)
DOT8_ALL(q4_k)
DOT8_ALL(q6_k)

/* The kernels of a weight type, or 0 where it has none (it then keeps the float path). */
static inline const dot8_fn* dot8_for(int type) {
    switch (type) {
    case SS_Q4_0: return DOT8_q4_0;
    case SS_Q4_1: return DOT8_q4_1;
    case SS_Q5_0: return DOT8_q5_0;
    case SS_Q8_0: return DOT8_q8_0;
    case SS_Q4_K: return DOT8_q4_k;
    case SS_Q6_K: return DOT8_q6_k;
    default: return 0;
    }
}

/* M input rows against a chunk of weight rows, in groups of near-equal size. */
static inline void dot8_rows(const dot8_fn* fns, const uint8_t* x8, long M, long K, const uint8_t* W,
                             long rb, long nrows, const float* bias, float* y, long ldy) {
    const long xs = ss_x8_row_bytes(K), groups = (M + DOT8_MAX_ROWS - 1) / DOT8_MAX_ROWS;
    for (long m = 0, g = 0; m < M; g++) {
        const long r = next_share(M - m, groups - g);
        fns[r](x8 + m * xs, xs, K, W, rb, nrows, bias, y + m * ldy, ldy);
        m += r;
    }
}

#endif /* SELFSPEC_DOT8_H */
