/* The native half of our CPU engine: a decoder layer, the LM head and the embedding, in
 * float32, on weights kept in their GGUF block formats (see quant.h) or dense.
 *
 * Two promises shape every function here.
 *
 * Row invariance. Each output row is computed by the same instructions in the same order
 * whatever the number of rows in the call, the cache length or the thread count: a
 * token's hidden state, keys, values and logits are bit-identical whether it is decoded
 * alone or verified among drafts. That is what makes every speculative method exactly
 * lossless, not merely within a tolerance. So: products sum over k in one fixed order
 * (8 lanes x 2 accumulators, then a fixed reduction); norms and attention reduce per row
 * in a fixed order; element-wise maths (exp, tanh) gives an element the same result
 * wherever it sits: eight-lane code pads a row's tail rather than switching to a scalar
 * path for the elements left over; threads split outputs, never sums.
 *
 * Few bytes. Decoding reads every weight once per step, so speed is bytes read. Weights
 * stay as the file's blocks and are dequantized into a small float buffer, row by row for
 * a few input rows (the buffer stays in L1) or a chunk of rows at a time for a prefill
 * (the buffer then serves many passes). The dequantized value equals gguf's dequantized
 * float32 exactly, so the products equal those of dense float32 weights bit for bit.
 *
 * Compiled with -O3 -mavx2 -mfma -mf16c -pthread; the caller checks the CPU first. Threads
 * come from pool.h.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks.h"
#include "dot8.h"
#include "pool.h"
#include "quant.h"

#define MAX_PASS_ROWS 6 /* 12 accumulators + 2 weight vectors + 1 input: 15 of 16 registers */
#define SMALL_BUFFER 4096   /* floats of weights dequantized at a time for a few rows (L1) */
#define LARGE_BUFFER 65536  /* ... and for many rows (L2), reused by every pass */

typedef struct {
    const uint8_t* data; /* row n starts at data + n * row_bytes */
    long row_bytes;
    int type;            /* a GGML type id (quant.h) */
    long n, k;           /* [out, in] */
    int act8;            /* 1: multiply 8-bit activations where the type has such kernels (dot8.h) */
} ss_weight;

/* ------------------------------------------------------------------ products */


/* y[r, n] (+ bias[n]) for R input rows (a constant, so the accumulators stay in registers)
 * and float32 weight rows n = 0..nrows-1 at W + n * ldw, over columns k0..k1 (multiples
 * of 16, or K): between two column ranges a weight row's accumulators wait in acc
 * ([nrows][R][2] vectors), so they add in the same order as in one pass over K. */
#define PASS(R)                                                                                 \
    static void pass_##R(const float* x, long K, const float* W, long ldw, long nrows,          \
                         const float* bias, float* y, long ldy, __m256* acc, long k0, long k1) { \
        const long K16 = K & ~15L, K8 = K & ~7L, end = k1 < K16 ? k1 : K16;                     \
        for (long n = 0; n < nrows; n++) {                                                      \
            const float* w = W + n * ldw;                                                       \
            __m256(*an)[2] = (__m256(*)[2])(acc + n * 2 * R);                                   \
            __m256 a[R][2];                                                                     \
            UNROLL for (int r = 0; r < R; r++) {                                                \
                a[r][0] = k0 ? an[r][0] : _mm256_setzero_ps();                                  \
                a[r][1] = k0 ? an[r][1] : _mm256_setzero_ps();                                  \
            }                                                                                   \
            for (long k = k0; k < end; k += 16) {                                               \
                const __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);      \
                UNROLL for (int r = 0; r < R; r++) {                                            \
                    a[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * K + k), w0, a[r][0]);     \
                    a[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * K + k + 8), w1, a[r][1]); \
                }                                                                               \
            }                                                                                   \
            if (k1 < K) {                                                                       \
                UNROLL for (int r = 0; r < R; r++) an[r][0] = a[r][0], an[r][1] = a[r][1];      \
                continue;                                                                       \
            }                                                                                   \
            UNROLL for (int r = 0; r < R; r++) {                                                \
                const float* xr = x + r * K;                                                    \
                if (K8 > K16)                                                                   \
                    a[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + K16), _mm256_loadu_ps(w + K16), a[r][0]); \
                float s = hsum(_mm256_add_ps(a[r][0], a[r][1]));                                \
                for (long k = K8; k < K; k++) s += xr[k] * w[k];                                \
                y[r * ldy + n] = bias ? s + bias[n] : s;                                        \
            }                                                                                   \
        }                                                                                       \
    }

PASS(1)
PASS(2)
PASS(3)
PASS(4)
PASS(5)
PASS(6)

typedef void (*pass_fn)(const float*, long, const float*, long, long, const float*, float*, long,
                        __m256*, long, long);
static const pass_fn PASSES[MAX_PASS_ROWS + 1] = {0, pass_1, pass_2, pass_3, pass_4, pass_5, pass_6};

static void* thread_buffer(int slot, long bytes);

/* All M rows against float32 weight rows, in passes of near-equal size (9 rows: 5 + 4).
 * A pass goes over the columns in tiles of at most PASS_TILE, so that its input rows' tile stays
 * in L1 while every weight row goes by (over all K, six rows of a wide layer's input
 * would be read from L2 for every weight row). */
#define PASS_TILE 640
static void rows_pass(const float* x, long M, long K, const float* W, long ldw, long nrows,
                      const float* bias, float* y, long ldy) {
    const long passes = (M + MAX_PASS_ROWS - 1) / MAX_PASS_ROWS;
    /* Tiles of near-equal width (a multiple of 16): 576 columns are one tile, not 512 + 64. */
    const long tiles = (K + PASS_TILE - 1) / PASS_TILE;
    const long tile = ((K + tiles - 1) / tiles + 15) & ~15L;
    __m256* acc = tiles > 1 ? thread_buffer(1, nrows * 2 * MAX_PASS_ROWS * sizeof(__m256)) : 0;
    for (long m = 0, p = 0; m < M; p++) {
        const long r = next_share(M - m, passes - p);
        for (long k0 = 0; k0 < K; k0 += tile) {
            const long k1 = k0 + tile < K ? k0 + tile : K;
            PASSES[r](x + m * K, K, W, ldw, nrows, bias, y + m * ldy, ldy, acc, k0, k1);
        }
        m += r;
    }
}

/* What a fused kernel prepares once per block of groups: the block, and for the
 * K-quants the per-group scales (and mins) unpacked from the super-block's header
 * (kquant_prep, blocks.h). A legacy format's "block" is its run of 32-weight blocks;
 * GROUPS is how many 32-weight groups one preparation serves. */
typedef struct {
    const void* block;
} legacy_prep;

#define GROUPS_q4_0 1
#define GROUPS_q4_1 1
#define GROUPS_q8_0 1
#define GROUPS_q5_0 1
#define GROUPS_q4_k 8
#define GROUPS_q6_k 8
#define PREP_T_q4_0 legacy_prep
#define PREP_T_q4_1 legacy_prep
#define PREP_T_q8_0 legacy_prep
#define PREP_T_q5_0 legacy_prep
#define PREP_T_q4_k kquant_prep
#define PREP_T_q6_k kquant_prep

static inline legacy_prep prep_legacy(const uint8_t* row, long jb, long block_bytes) {
    legacy_prep p = {row + jb * block_bytes};
    return p;
}
#define prep_q4_0(row, jb) prep_legacy(row, jb, sizeof(ss_block_q4_0))
#define prep_q4_1(row, jb) prep_legacy(row, jb, sizeof(ss_block_q4_1))
#define prep_q8_0(row, jb) prep_legacy(row, jb, sizeof(ss_block_q8_0))
#define prep_q5_0(row, jb) prep_legacy(row, jb, sizeof(ss_block_q5_0))

/* Decoding's and verification's products (up to 8 rows) on the commonest block formats,
 * with no buffer: each group of 32 weights is dequantized into four registers (exactly as
 * quant.h writes them) and used at once by every input row (past 4 rows the compiler
 * keeps some accumulators on the stack, still cheaper than a buffer and a second pass). The accumulation order is pass_R's: over one group, lanes
 * k..k+7 and k+16..k+23 go to the first accumulator, k+8..k+15 and k+24..k+31 to the
 * second, so the sums equal those over the dense float32 weights bit for bit. */
static inline void load32_q4_0(const legacy_prep* p, int s, __m256 w[4]) {
    const ss_block_q4_0* b = (const ss_block_q4_0*)p->block + s;
    const __m256i m4 = _mm256_set1_epi32(0x0f), eight = _mm256_set1_epi32(8);
    const __m256 d = _mm256_set1_ps(ss__f16(b->d));
    const __m256i w0 = ss__u8x8(b->qs), w1 = ss__u8x8(b->qs + 8);
    w[0] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(w0, m4), eight)));
    w[1] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(w1, m4), eight)));
    w[2] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(w0, 4), eight)));
    w[3] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(w1, 4), eight)));
}

static inline void load32_q4_1(const legacy_prep* p, int s, __m256 w[4]) {
    const ss_block_q4_1* b = (const ss_block_q4_1*)p->block + s;
    const __m256i m4 = _mm256_set1_epi32(0x0f);
    __m256 d, m;
    ss__f16_pair(b->d, &d, &m);
    const __m256i w0 = ss__u8x8(b->qs), w1 = ss__u8x8(b->qs + 8);
    w[0] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(w0, m4)), m);
    w[1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_and_si256(w1, m4)), m);
    w[2] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_srli_epi32(w0, 4)), m);
    w[3] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_srli_epi32(w1, 4)), m);
}

static inline void load32_q8_0(const legacy_prep* p, int s, __m256 w[4]) {
    const ss_block_q8_0* b = (const ss_block_q8_0*)p->block + s;
    const __m256 d = _mm256_set1_ps(ss__f16(b->d));
    for (int i = 0; i < 4; i++) w[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(ss__i8x8(b->qs + 8 * i)), d);
}

/* Q5_0: d*(q - 16) with q = lo + 16*h, h bit i of qh for weight i. As one rounding,
 * fma(d, lo, h ? -0 : -16d): d*(q - 16) is exact in float32 (an f16 times a 5-bit
 * integer), so the fma returns quant.h's value, the sign of a zero included. Bit 8i + lane
 * of qh is shifted into the lane's sign bit, which picks the addend. */
static inline void load32_q5_0(const legacy_prep* p, int s, __m256 w[4]) {
    const ss_block_q5_0* b = (const ss_block_q5_0*)p->block + s;
    const __m256i m4 = _mm256_set1_epi32(0x0f);
    const __m256i to_sign = _mm256_setr_epi32(31, 30, 29, 28, 27, 26, 25, 24), eight = _mm256_set1_epi32(8);
    const __m256 d = _mm256_set1_ps(ss__f16(b->d));
    const __m256 low = _mm256_mul_ps(d, _mm256_set1_ps(-16.0f)), high = _mm256_set1_ps(-0.0f);
    int32_t qh;
    memcpy(&qh, b->qh, sizeof qh);
    const __m256i qhs = _mm256_set1_epi32(qh);
    const __m256i w0 = ss__u8x8(b->qs), w1 = ss__u8x8(b->qs + 8);
    const __m256i lo[4] = {_mm256_and_si256(w0, m4), _mm256_and_si256(w1, m4),
                           _mm256_srli_epi32(w0, 4), _mm256_srli_epi32(w1, 4)};
    __m256i shift = to_sign; /* 31 - (8i + lane) */
    for (int i = 0; i < 4; i++, shift = _mm256_sub_epi32(shift, eight)) {
        const __m256i h = _mm256_sllv_epi32(qhs, shift);
        const __m256 add = _mm256_blendv_ps(low, high, _mm256_castsi256_ps(h));
        w[i] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lo[i]), add);
    }
}

/* Q4_K: group s of a super-block is its sub-block s; (d*sc)*q - dmin*m as quant.h, with
 * the eight scales and mins unpacked once per super-block by prep_q4_k. */
static inline void load32_q4_k(const kquant_prep* p, int s, __m256 w[4]) {
    const ss_block_q4_k* b = (const ss_block_q4_k*)p->block;
    const __m256 d = _mm256_set1_ps(p->scale[s]), m = _mm256_set1_ps(p->scale[8 + s]);
    const uint8_t* qs = b->qs + 32 * (s / 2);
    const __m256i m4 = _mm256_set1_epi32(0x0f);
    for (int i = 0; i < 4; i++) {
        const __m256i q = ss__u8x8(qs + 8 * i);
        const __m256i n = s & 1 ? _mm256_srli_epi32(q, 4) : _mm256_and_si256(q, m4);
        w[i] = _mm256_fmsub_ps(d, _mm256_cvtepi32_ps(n), m);
    }
}

/* Q6_K: group s of a super-block is run s % 4 of half s / 4 (quant.h's layout); its two
 * 16-weight scale groups give (d*scale) * q, the sixteen d*scale products made once per
 * super-block by prep_q6_k. */
static inline void load32_q6_k(const kquant_prep* p, int s, __m256 w[4]) {
    const ss_block_q6_k* b = (const ss_block_q6_k*)p->block;
    const int h = s / 4, run = s % 4;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2h = _mm256_set1_epi8(0x30);
    const __m256i L = _mm256_loadu_si256((const __m256i*)(b->ql + 64 * h + 32 * (run & 1)));
    const __m256i H = _mm256_loadu_si256((const __m256i*)(b->qh + 32 * h));
    const __m256i lo = _mm256_and_si256(run < 2 ? L : _mm256_srli_epi16(L, 4), m4);
    const __m256i hs = run == 0 ? _mm256_slli_epi16(H, 4)
                       : run == 1 ? _mm256_slli_epi16(H, 2)
                       : run == 2 ? H
                                  : _mm256_srli_epi16(H, 2);
    const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_and_si256(hs, m2h)),
                                      _mm256_set1_epi8(32));
    /* scales 8h + 2 run and 8h + 2 run + 1, i.e. 2s and 2s + 1 */
    const __m256 d0 = _mm256_set1_ps(p->scale[2 * s]), d1 = _mm256_set1_ps(p->scale[2 * s + 1]);
    const __m128i q0 = _mm256_castsi256_si128(q), q1 = _mm256_extracti128_si256(q, 1);
    w[0] = _mm256_mul_ps(ss__ps_lo8(q0), d0);
    w[1] = _mm256_mul_ps(ss__ps_hi8(q0), d0);
    w[2] = _mm256_mul_ps(ss__ps_lo8(q1), d1);
    w[3] = _mm256_mul_ps(ss__ps_hi8(q1), d1);
}

#define MAX_FUSED_ROWS 8
typedef void (*fused_fn)(const float*, long, const uint8_t*, long, long, const float*, float*, long);

/* fused_FMT_R_NW: R input rows against NW weight rows at a time (every output keeps its
 * own two accumulators, so NW only adds independent FMA chains: one input row has just
 * two, which wait on the FMA latency). A remainder of weight rows goes to the NW = 1 form. */
#define FUSED(FMT, R, NW)                                                                       \
    static void fused_##FMT##_##R##_##NW(const float* x, long K, const uint8_t* W, long rb,    \
                                         long nrows, const float* bias, float* y, long ldy) {  \
        long n = 0;                                                                             \
        for (; n + NW <= nrows; n += NW) {                                                      \
            PREP_T_##FMT p[NW];                                                                 \
            __m256 a[R][NW][2];                                                                 \
            UNROLL for (int r = 0; r < R; r++) UNROLL for (int i = 0; i < NW; i++)              \
                a[r][i][0] = a[r][i][1] = _mm256_setzero_ps();                                  \
            for (long jb = 0; jb < K / 32; jb += GROUPS_##FMT) {                                \
                UNROLL for (int i = 0; i < NW; i++) {                                           \
                    p[i] = prep_##FMT(W + (n + i) * rb, jb);                                    \
                    prefetch_ahead(p[i].block, PREFETCH_LINES_##FMT);                           \
                }                                                                               \
                UNROLL for (int s = 0; s < GROUPS_##FMT; s++) {                                 \
                    const float* xk = x + 32 * (jb + s);                                        \
                    UNROLL for (int i = 0; i < NW; i++) {                                       \
                        __m256 w[4];                                                            \
                        load32_##FMT(&p[i], s, w);                                              \
                        UNROLL for (int r = 0; r < R; r++) {                                    \
                            const float* xr = xk + r * K;                                       \
                            a[r][i][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xr), w[0], a[r][i][0]);      \
                            a[r][i][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 8), w[1], a[r][i][1]);  \
                            a[r][i][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 16), w[2], a[r][i][0]); \
                            a[r][i][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 24), w[3], a[r][i][1]); \
                        }                                                                       \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
            UNROLL for (int r = 0; r < R; r++) UNROLL for (int i = 0; i < NW; i++) {            \
                const float v = hsum(_mm256_add_ps(a[r][i][0], a[r][i][1]));                    \
                y[r * ldy + n + i] = bias ? v + bias[n + i] : v;                                \
            }                                                                                   \
        }                                                                                       \
        if (NW > 1 && n < nrows)                                                                \
            fused_##FMT##_##R##_1(x, K, W + n * rb, rb, nrows - n, bias ? bias + n : 0, y + n, ldy); \
    }

#define FUSED_ALL(FMT)                                                                          \
    FUSED(FMT, 1, 1) FUSED(FMT, 2, 1) FUSED(FMT, 3, 1) FUSED(FMT, 4, 1) FUSED(FMT, 5, 1)        \
    FUSED(FMT, 6, 1) FUSED(FMT, 7, 1) FUSED(FMT, 8, 1) FUSED(FMT, 1, 2) FUSED(FMT, 2, 2)      \
    static const fused_fn FUSED_##FMT[MAX_FUSED_ROWS + 1] = {0, fused_##FMT##_1_2,            \
        fused_##FMT##_2_2, fused_##FMT##_3_1, fused_##FMT##_4_1, fused_##FMT##_5_1,             \
        fused_##FMT##_6_1, fused_##FMT##_7_1, fused_##FMT##_8_1};

FUSED_ALL(q4_0)
FUSED_ALL(q4_1)
FUSED_ALL(q8_0)
FUSED_ALL(q5_0)
FUSED_ALL(q4_k)
FUSED_ALL(q6_k)

static const fused_fn* fused_for(int type) {
    switch (type) {
    case SS_Q4_0: return FUSED_q4_0;
    case SS_Q4_1: return FUSED_q4_1;
    case SS_Q8_0: return FUSED_q8_0;
    case SS_Q5_0: return FUSED_q5_0;
    case SS_Q4_K: return FUSED_q4_k;
    case SS_Q6_K: return FUSED_q6_k;
    default: return 0;
    }
}

/* Buffers per thread (the caller's and the pool's helpers; slot 0: dequantized weights
 * and attention scores, slot 1: a pass's accumulators, slots 2 and 3: the caller's input
 * rows quantized to 8 bits in 32- and 256-value blocks, read by every thread of the loop), grown as needed and kept:
 * threads live for the process. */
static void* thread_buffer(int slot, long bytes) {
    static __thread void* buf[4] = {0, 0, 0, 0};
    static __thread long cap[4] = {0, 0, 0, 0};
    if (bytes > cap[slot]) {
        free(buf[slot]);
        buf[slot] = aligned_alloc(64, (size_t)((bytes + 63) & ~63L));
        cap[slot] = buf[slot] ? bytes : 0;
    }
    return buf[slot];
}

/* One chunk of an ss_linear call: a few weight rows against every input row. */
typedef struct {
    const float* x;
    long M, chunk;
    const ss_weight* w;
    const float* bias;
    float* y;
    const fused_fn* fused;
    const dot8_fn* dot8;  /* with x8, the input rows quantized: 8-bit activations */
    const uint8_t* x8;
} linear_task;

static void linear_chunk(const linear_task* t, long c) {
    const ss_weight* w = t->w;
    const long K = w->k, N = w->n, M = t->M;
    const long n0 = c * t->chunk, rows = n0 + t->chunk < N ? t->chunk : N - n0;
    const uint8_t* src = w->data + n0 * w->row_bytes;
    const float* bias = t->bias ? t->bias + n0 : 0;
    if (t->dot8) {
        dot8_rows(t->dot8, t->x8, M, K, src, w->row_bytes, rows, bias, t->y + n0, N);
    } else if (t->fused) {
        t->fused[M](t->x, K, src, w->row_bytes, rows, bias, t->y + n0, N);
    } else if (w->type == SS_F32) {
        rows_pass(t->x, M, K, (const float*)src, w->row_bytes / (long)sizeof(float), rows, bias,
                  t->y + n0, N);
    } else {
        float* buf = thread_buffer(0, rows * K * (long)sizeof(float));
        for (long n = 0; n < rows; n++) ss_dequant_row(w->type, src + n * w->row_bytes, K, buf + n * K);
        rows_pass(t->x, M, K, buf, K, rows, bias, t->y + n0, N);
    }
}

/* Several products over one input, run as one parallel loop (a layer's q, k and v, or
 * its gate and up): one wake-up of the pool instead of several, and no thread idles at
 * the end of a small matrix while the other finishes it. */
#define MAX_LINEAR_SET 3
#define MAX_LINEAR_ITEMS 64
typedef struct {
    linear_task t[MAX_LINEAR_SET];
    long first[MAX_LINEAR_SET + 1];    /* matrix i's chunks are first[i]..first[i+1]-1 */
    long bound[MAX_LINEAR_ITEMS + 1];  /* item j's chunks are bound[j]..bound[j+1]-1 */
} linear_set;

static void linear_set_item(void* arg, long item) {
    const linear_set* set = (const linear_set*)arg;
    int i = 0;
    for (long c = set->bound[item]; c < set->bound[item + 1]; c++) {
        while (c >= set->first[i + 1]) i++;
        linear_chunk(&set->t[i], c - set->first[i]);
    }
}

/* y_i[M, N_i] = x[M, K] W_i^T (+ bias_i) for i < count: each weight's rows are shared out
 * among threads in chunks; each chunk is dequantized once into the thread's buffer (F32
 * weights are read in place, the commonest block formats in registers) and every input
 * row is run against it. */
static void linear_many(const float* x, long M, int count, const ss_weight* const* ws,
                        const float* const* biases, float* const* ys, int threads) {
    linear_set set;
    set.first[0] = 0;
    const uint8_t* x8[2] = {0, 0}; /* the rows quantized once per block size (32, 256) for the set */
    for (int i = 0; i < count; i++) {
        const ss_weight* w = ws[i];
        const long budget = M <= MAX_PASS_ROWS ? SMALL_BUFFER : LARGE_BUFFER;
        long chunk = budget / w->k;
        if (chunk < 1) chunk = 1;
        if (w->type == SS_F32 && chunk < 16) chunk = 16;
        const dot8_fn* dot8 = w->act8 ? dot8_for(w->type) : 0;
        const fused_fn* fused = !dot8 && M <= MAX_FUSED_ROWS ? fused_for(w->type) : 0;
        if (fused || dot8) chunk = 16;
        const int B = ss_block_size(w->type), form = B == SS_QK_K;
        if (dot8 && !x8[form]) {
            const long xs = ss_x8_row_bytes(w->k);
            uint8_t* q = thread_buffer(2 + form, M * xs);
            for (long m = 0; m < M; m++) ss_x8_quantize_row(x + m * w->k, w->k, B, q + m * xs);
            x8[form] = q;
        }
        set.t[i] = (linear_task){x, M, chunk, w, biases[i], ys[i], fused, dot8, x8[form]};
        set.first[i + 1] = set.first[i] + (w->n + chunk - 1) / chunk;
    }
    /* Items shrink as the loop goes (guided scheduling): each claim from the pool's
     * shared counter moves a cache line between cores, so early items are large, and
     * the last ones small, so that no thread waits long for another's last item. */
    const long total = set.first[count];
    long items = 0;
    set.bound[0] = 0;
    for (long done = 0; done < total; items++) {
        long size = threads > 1 ? (total - done + 2 * threads - 1) / (2 * threads) : total;
        if (items == MAX_LINEAR_ITEMS - 1) size = total - done;
        done += size;
        set.bound[items + 1] = done;
    }
    ss_parallel(items, linear_set_item, &set, threads);
}

void ss_linear(const float* x, long M, const ss_weight* w, const float* bias, float* y,
               int threads) {
    linear_many(x, M, 1, &w, &bias, &y, threads);
}

/* Rows `ids` of a weight, dequantized (the embedding lookup), times `scale` when not 0. */
void ss_rows(const ss_weight* w, const long* ids, long n, float scale, float* out) {
    for (long i = 0; i < n; i++) {
        float* o = out + i * w->k;
        ss_dequant_row(w->type, w->data + ids[i] * w->row_bytes, w->k, o);
        if (scale != 0.0f)
            for (long k = 0; k < w->k; k++) o[k] *= scale;
    }
}

/* Dequantize whole rows (tests and the dense copies that Hugging Face peers need). */
void ss_dequant_rows(int type, const uint8_t* W, long row_bytes, long n_rows, long K, float* out) {
    for (long n = 0; n < n_rows; n++) ss_dequant_row(type, W + n * row_bytes, K, out + n * K);
}

/* ------------------------------------------------------------------ row-wise maths */

/* Sum of x[0..n-1] in a fixed order: 8 lanes, then the lanes, then the tail. */
static inline float dot(const float* a, const float* b, long n) {
    __m256 acc = _mm256_setzero_ps();
    long i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* RMSNorm of one row: x / rms(x) * w, or * (1 + w) for Gemma (offset 1). */
static void rms_norm_row(const float* x, const float* w, long C, float eps, float offset, float* out) {
    const float r = 1.0f / sqrtf(dot(x, x, C) / (float)C + eps);
    for (long c = 0; c < C; c++) out[c] = x[c] * r * (offset + w[c]);
}

void ss_rms_norm(const float* x, long T, long C, const float* w, float eps, float offset, float* out) {
    for (long t = 0; t < T; t++) rms_norm_row(x + t * C, w, C, eps, offset, out + t * C);
}

/* Rotary embedding, rotate-half convention, of n_heads heads of size D in place. */
static void rope_row(float* x, long n_heads, long D, const float* cos, const float* sin) {
    const long half = D / 2;
    for (long h = 0; h < n_heads; h++) {
        float* v = x + h * D;
        for (long i = 0; i < half; i++) {
            const float a = v[i], b = v[i + half];
            v[i] = a * cos[i] - b * sin[i];
            v[i + half] = b * cos[i + half] + a * sin[i + half];
        }
    }
}

static inline float gelu_tanh(float x) {
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* ------------------------------------------------------------------ a decoder layer */

typedef struct {
    long dim, hidden, n_heads, n_kv_heads, head_dim;
    float eps, norm_offset, query_scale, attn_softcap; /* softcap 0: none */
    int gelu;   /* 0: SiLU-gated MLP, 1: GELU(tanh)-gated (Gemma) */
    long window; /* sliding-window size of this layer, 0: full attention */
} ss_config;

typedef struct {
    const float* attn_norm;
    ss_weight q, k, v, o;
    const float *bq, *bk, *bv; /* may be 0 */
    const float* mlp_norm;
    ss_weight gate, up, down;
    const float *post_attn_norm, *post_mlp_norm; /* Gemma-2/3 sandwich norms, may be 0 */
    const float *q_norm, *k_norm; /* Gemma-3 per-head RMSNorm of queries and keys, may be 0 */
} ss_layer_weights;

/* dot(q, k_s) for four keys at once: each key summed exactly as dot() sums it (one
 * 8-lane accumulator over d, then the lanes, then the tail), as four independent chains. */
static inline void dot4(const float* q, const float* k, long D, float out[4]) {
    __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    long d = 0;
    for (; d + 8 <= D; d += 8) {
        const __m256 qv = _mm256_loadu_ps(q + d);
        for (int i = 0; i < 4; i++) a[i] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + i * D + d), a[i]);
    }
    for (int i = 0; i < 4; i++) {
        float s = hsum(a[i]);
        for (long e = d; e < D; e++) s += q[e] * k[i * D + e];
        out[i] = s;
    }
}

/* out[0..D-1] += sum_s w[s] v_s over value rows s0..s1-1, in key order, eight vectors of
 * accumulators at a time; from s0 = 0, out starts at zero. Carrying out between key
 * ranges adds in the same order as one pass over all keys. */
static void weighted_sum_part(const float* w, const float* v, long s0, long s1, long D, float* out) {
    const long D8 = D & ~7L;
    for (long d0 = 0; d0 < D8; d0 += 64) {
        const long nv = (D8 - d0) / 8 < 8 ? (D8 - d0) / 8 : 8;
        __m256 acc[8];
        for (int j = 0; j < 8; j++) acc[j] = s0 && j < nv ? _mm256_loadu_ps(out + d0 + 8 * j) : _mm256_setzero_ps();
        if (nv == 8) {
            for (long s = s0; s < s1; s++) {
                const __m256 ws = _mm256_set1_ps(w[s]);
                const float* vs = v + s * D + d0;
                UNROLL for (int j = 0; j < 8; j++)
                    acc[j] = _mm256_fmadd_ps(ws, _mm256_loadu_ps(vs + 8 * j), acc[j]);
            }
        } else {
            for (long s = s0; s < s1; s++) {
                const __m256 ws = _mm256_set1_ps(w[s]);
                for (long j = 0; j < nv; j++)
                    acc[j] = _mm256_fmadd_ps(ws, _mm256_loadu_ps(v + s * D + d0 + 8 * j), acc[j]);
            }
        }
        for (long j = 0; j < nv; j++) _mm256_storeu_ps(out + d0 + 8 * j, acc[j]);
    }
    for (long d = D8; d < D; d++) {
        float a = s0 ? out[d] : 0.0f;
        for (long s = s0; s < s1; s++) a += w[s] * v[s * D + d];
        out[d] = a;
    }
}

/* e^x on eight lanes for x <= 88 (softmax: scores minus their maximum; SiLU: -g capped),
 * as Cephes' expf does it: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial
 * (relative error about 1e-7), then 2^n put into the exponent bits. Below -87 the result
 * is clamped to about 1.6e-38 (a normal float), which neither a softmax weight nor
 * 1 + e^-g can tell from zero. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x); /* ln 2, high part */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);       /* and the rest */
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* scores[0..n-1] <- softmax(scores): the maximum, then e^(s - max) eight at a time (the
 * tail padded to eight in a buffer, so every score goes through the same arithmetic)
 * summed in eight lanes, then one division. The order depends only on n. */
static void softmax_row(float* scores, long n) {
    const long n8 = n & ~7L;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (long s = 0; s < n8; s += 8) mv = _mm256_max_ps(mv, _mm256_loadu_ps(scores + s));
    float m = -INFINITY, lanes[8];
    _mm256_storeu_ps(lanes, mv);
    for (int i = 0; i < 8; i++) m = lanes[i] > m ? lanes[i] : m;
    for (long s = n8; s < n; s++) m = scores[s] > m ? scores[s] : m;
    const __m256 mb = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (long s = 0; s < n8; s += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + s), mb));
        _mm256_storeu_ps(scores + s, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (n > n8) {
        for (int i = 0; i < 8; i++) lanes[i] = n8 + i < n ? scores[n8 + i] : m;
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(lanes), mb));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                                 _mm256_set1_epi32((int)(n - n8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))));
        _mm256_storeu_ps(lanes, e);
        for (long s = n8; s < n; s++) scores[s] = lanes[s - n8];
        sum = _mm256_add_ps(sum, e);
    }
    const float inv = 1.0f / hsum(sum);
    const __m256 iv = _mm256_set1_ps(inv);
    for (long s = 0; s < n8; s += 8) _mm256_storeu_ps(scores + s, _mm256_mul_ps(_mm256_loadu_ps(scores + s), iv));
    for (long s = n8; s < n; s++) scores[s] *= inv;
}

/* g <- SiLU(g) * u = g / (1 + e^-g) * u over a row, eight lanes at a time (a tail goes
 * through a padded buffer, so every element meets the same arithmetic wherever it sits).
 * e^-g is clamped to e^88 (still finite) for g < -88, where SiLU rounds to almost zero. */
static inline __m256 silu_mul8(__m256 g, __m256 u) {
    const __m256 e = exp8(_mm256_min_ps(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(88.0f)));
    return _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), u);
}

static void silu_mul_row(float* g, const float* u, long n) {
    long j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(g + j, silu_mul8(_mm256_loadu_ps(g + j), _mm256_loadu_ps(u + j)));
    if (j < n) {
        float gb[8] = {0}, ub[8] = {0};
        memcpy(gb, g + j, sizeof(float) * (n - j));
        memcpy(ub, u + j, sizeof(float) * (n - j));
        _mm256_storeu_ps(gb, silu_mul8(_mm256_loadu_ps(gb), _mm256_loadu_ps(ub)));
        memcpy(g + j, gb, sizeof(float) * (n - j));
    }
}

/* Attention of one query row (position p) for G heads that share one key-value head
 * (q and out [G, D] contiguous; scores [G, n]): each cached key and value is read once
 * for all G heads, while every head's scores, softmax and weighted sum are computed in
 * the same fixed order as for a head alone, whatever G, the number of query rows or the
 * cache length. */
#define VALUE_BLOCK 16 /* values that stay in L1 while every head of the group uses them */
static void attend_heads(const ss_config* cfg, const float* q, long G, const float* kc,
                         const float* vc, long p, float* scores, float* out) {
    const long D = cfg->head_dim;
    const long lo = cfg->window > 0 && p - cfg->window + 1 > 0 ? p - cfg->window + 1 : 0;
    const long n = p - lo + 1;
    const float *k = kc + lo * D, *v = vc + lo * D;
    long s = 0;
    for (; s + 4 <= n; s += 4)
        for (long j = 0; j < G; j++) dot4(q + j * D, k + s * D, D, scores + j * n + s);
    for (; s < n; s++)
        for (long j = 0; j < G; j++) scores[j * n + s] = dot(q + j * D, k + s * D, D);
    for (long j = 0; j < G; j++) {
        float* sj = scores + j * n;
        for (s = 0; s < n; s++) {
            float x = sj[s] * cfg->query_scale;
            if (cfg->attn_softcap > 0.0f) x = tanhf(x / cfg->attn_softcap) * cfg->attn_softcap;
            sj[s] = x;
        }
        softmax_row(sj, n);
    }
    for (long s0 = 0; s0 < n; s0 += VALUE_BLOCK) {
        const long s1 = s0 + VALUE_BLOCK < n ? s0 + VALUE_BLOCK : n;
        for (long j = 0; j < G; j++) weighted_sum_part(scores + j * n, v, s0, s1, D, out + j * D);
    }
}

/* One item of a layer's attention: a query row and `per` heads of one key-value group. */
typedef struct {
    const ss_config* cfg;
    const float *q, *kc, *vc;
    long S, pos, parts; /* parts: items per (query row, key-value head) */
    float* out;
} attention_task;

static void attention_item(void* arg, long item) {
    const attention_task* a = (const attention_task*)arg;
    const long D = a->cfg->head_dim, H = a->cfg->n_heads, Hkv = a->cfg->n_kv_heads;
    const long groups = H / Hkv, per = (groups + a->parts - 1) / a->parts;
    const long part = item % a->parts, g = item / a->parts % Hkv, t = item / a->parts / Hkv;
    const long h0 = g * groups + part * per;
    const long G = h0 + per <= (g + 1) * groups ? per : (g + 1) * groups - h0;
    if (G <= 0) return;
    float* scores = thread_buffer(0, G * (a->pos + t + 1) * (long)sizeof(float));
    attend_heads(a->cfg, a->q + (t * H + h0) * D, G, a->kc + g * a->S * D, a->vc + g * a->S * D,
                 a->pos + t, scores, a->out + (t * H + h0) * D);
}

static void residual_norm_add(const ss_config* cfg, float* h, const float* out, const float* post,
                              long T, float* tmp) {
    const long C = cfg->dim;
    for (long t = 0; t < T; t++) {
        const float* o = out + t * C;
        if (post) {
            rms_norm_row(o, post, C, cfg->eps, cfg->norm_offset, tmp);
            o = tmp;
        }
        for (long c = 0; c < C; c++) h[t * C + c] += o[c];
    }
}

/* Layer i on hidden states h [T, C] (in place) at positions pos..pos+T-1, writing its
 * keys and values into kc, vc [n_kv_heads, S, head_dim]; cos, sin [pos+T, head_dim]. */
static int ss_layer(const ss_config* cfg, const ss_layer_weights* w, float* h, long T, long pos,
                    float* kc, float* vc, long S, const float* cos, const float* sin,
                    int skip_attn, int skip_mlp, int threads) {
    const long C = cfg->dim, D = cfg->head_dim, H = cfg->n_heads, Hkv = cfg->n_kv_heads;
    const long I = cfg->hidden;
    const long width = (H + 2 * Hkv) * D > 2 * I ? (H + 2 * Hkv) * D : 2 * I;
    const long xw = H * D > C ? H * D : C; /* a normed input, or the attention output */
    float* x = (float*)malloc(sizeof(float) * T * (xw + width + C + C));
    if (!x) return -1;
    float* big = x + T * xw;   /* q | k | v, or gate | up */
    float* att = big + T * width; /* attention output, then MLP output [T, C] */
    float* tmp = att + T * C;     /* one normed row per residual add */
    if (!skip_attn) {
        float *q = big, *k = q + T * H * D, *v = k + T * Hkv * D;
        ss_rms_norm(h, T, C, w->attn_norm, cfg->eps, cfg->norm_offset, x);
        const ss_weight* qkv[3] = {&w->q, &w->k, &w->v};
        linear_many(x, T, 3, qkv, (const float* const[3]){w->bq, w->bk, w->bv}, (float* const[3]){q, k, v}, threads);
        for (long t = 0; t < T; t++) {
            const float *c = cos + (pos + t) * D, *s = sin + (pos + t) * D;
            if (w->q_norm) ss_rms_norm(q + t * H * D, H, D, w->q_norm, cfg->eps, cfg->norm_offset, q + t * H * D);
            if (w->k_norm) ss_rms_norm(k + t * Hkv * D, Hkv, D, w->k_norm, cfg->eps, cfg->norm_offset, k + t * Hkv * D);
            rope_row(q + t * H * D, H, D, c, s);
            rope_row(k + t * Hkv * D, Hkv, D, c, s);
            for (long g = 0; g < Hkv; g++) {
                memcpy(kc + (g * S + pos + t) * D, k + (t * Hkv + g) * D, sizeof(float) * D);
                memcpy(vc + (g * S + pos + t) * D, v + (t * Hkv + g) * D, sizeof(float) * D);
            }
        }
        float* o = x; /* the normed input is no longer needed: attention output [T, H D] */
        /* Whole groups read each key once; only with fewer groups than threads (one
         * token of a model with one key-value head) are a group's heads split. Splitting
         * more, for balance, lets two threads read the same keys from memory: slower. */
        long parts = 1;
        if (threads > T * Hkv) {
            parts = (threads + T * Hkv - 1) / (T * Hkv);
            if (parts > H / Hkv) parts = H / Hkv;
        }
        attention_task task = {cfg, q, kc, vc, S, pos, parts, o};
        ss_parallel(T * Hkv * parts, attention_item, &task, threads);
        ss_linear(o, T, &w->o, 0, att, threads);
        residual_norm_add(cfg, h, att, w->post_attn_norm, T, tmp);
    }
    if (!skip_mlp) {
        float *gate = big, *up = big + T * I;
        ss_rms_norm(h, T, C, w->mlp_norm, cfg->eps, cfg->norm_offset, x);
        const ss_weight* gate_up[2] = {&w->gate, &w->up};
        linear_many(x, T, 2, gate_up, (const float* const[2]){0, 0}, (float* const[2]){gate, up}, threads);
        if (cfg->gelu)
            for (long j = 0; j < T * I; j++) gate[j] = gelu_tanh(gate[j]) * up[j];
        else
            for (long t = 0; t < T; t++) silu_mul_row(gate + t * I, up + t * I, I);
        ss_linear(gate, T, &w->down, 0, att, threads);
        residual_norm_add(cfg, h, att, w->post_mlp_norm, T, tmp);
    }
    free(x);
    return 0;
}

/* Layers 0..n-1 of a range in one call (one crossing from Python per pass): layer i
 * reads cfgs[i], ws[i], its caches kcs[i], vcs[i], its rotary tables coss[i], sins[i]
 * (Gemma-3's local and global layers rotate with different bases) and skip flags.
 * Returns 0, or -1 when memory for the activations could not be allocated (h is then
 * partly updated). */
int ss_layers(long n, const ss_config* cfgs, const ss_layer_weights* ws, float* h, long T,
               long pos, float* const* kcs, float* const* vcs, long S, const float* const* coss,
               const float* const* sins, const uint8_t* skip_attn, const uint8_t* skip_mlp,
               int threads) {
    for (long i = 0; i < n; i++)
        if (ss_layer(&cfgs[i], &ws[i], h, T, pos, kcs[i], vcs[i], S, coss[i], sins[i], skip_attn[i],
                     skip_mlp[i], threads))
            return -1;
    return 0;
}

/* Logits [T, N] = soft-cap(norm(h) W^T) with the final norm and an LM head (or any
 * restricted head). softcap 0: none. */
int ss_logits(const float* h, long T, long C, const float* norm, float eps, float offset,
               const ss_weight* head, float softcap, float* out, int threads) {
    float* x = (float*)malloc(sizeof(float) * T * C);
    if (!x) return -1;
    ss_rms_norm(h, T, C, norm, eps, offset, x);
    ss_linear(x, T, head, 0, out, threads);
    free(x);
    if (softcap > 0.0f)
        for (long j = 0; j < T * head->n; j++) out[j] = tanhf(out[j] / softcap) * softcap;
    return 0;
}
