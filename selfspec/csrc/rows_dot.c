/* y[m, n] = bias[n] + sum_k x[m, k] * W[n, k] for a few rows m: the products of decoding.
 *
 * Why our own kernel: one decoding step multiplies one row (and a verification 2-16
 * rows) by every weight matrix. Those products are bound by reading the weights from
 * memory, so M rows should cost about what one does; MKL's float32 kernels on the AVX2
 * CPU we measure on make 2 rows cost 1.5x one and 8 rows 2.7x, which is what decides
 * whether drafting pays. Here each weight row is streamed once, sequentially, for up to
 * 6 input rows at a time (each weight vector loaded once, used by every row), with one
 * accumulator pair per input row; more rows take more passes over each block of weights,
 * which the later passes find in cache.
 *
 * Every output is summed in the same order whatever M, the pass split or the thread count
 * (8 lanes x 2 accumulators over k, then a fixed reduction), so the logits of a token
 * are bit-identical whether it is decoded alone or verified among drafts.
 *
 * W is [N, K] row-major (the usual [out, in] weight layout) with row stride ldw; x is
 * [M, K] contiguous; y is [M, N] contiguous; W is float32 or bfloat16 (rows_dot_bf16),
 * x and y float32. Compiled with -mavx2 -mfma -fopenmp.
 */
#include <immintrin.h>

#define MAX_PASS_ROWS 6 /* 12 accumulators + 2 weight vectors + 1 input: 15 of 16 registers */

static inline float hsum(__m256 v) {
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* Weight loaders: 8 consecutive weights as floats. bfloat16 is the top half of a float32,
 * so widening is exact: a shift of each 16-bit value into the high half. */
#define LOAD_F32(p) _mm256_loadu_ps(p)
#define LOAD_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(p))), 16))

static inline float scalar_f32(const float* p) { return *p; }
static inline float scalar_bf16(const unsigned short* p) {
    union { unsigned int u; float f; } v = {.u = (unsigned int)*p << 16};
    return v.f;
}

#define UNROLL _Pragma("GCC unroll 8")

/* Outputs n0..n1-1 for R input rows (R a constant, so the accumulators stay in registers),
 * with weights of type WT read by LOAD / SCALAR. */
#define PASS(NAME, R, WT, LOAD, SCALAR)                                                       \
    static void NAME(const float* x, long K, const WT* W, long ldw, long n0, long n1,         \
                     const float* bias, float* y, long ldy) {                                  \
        const long K16 = K & ~15L, K8 = K & ~7L;                                               \
        for (long n = n0; n < n1; n++) {                                                       \
            const WT* w = W + n * ldw;                                                         \
            __m256 a[R][2];                                                                    \
            UNROLL for (int r = 0; r < R; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();        \
            for (long k = 0; k < K16; k += 16) {                                               \
                const __m256 w0 = LOAD(w + k), w1 = LOAD(w + k + 8);                           \
                UNROLL for (int r = 0; r < R; r++) {                                           \
                    a[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * K + k), w0, a[r][0]);    \
                    a[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * K + k + 8), w1, a[r][1]);\
                }                                                                              \
            }                                                                                  \
            UNROLL for (int r = 0; r < R; r++) {                                               \
                const float* xr = x + r * K;                                                   \
                if (K8 > K16) a[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + K16), LOAD(w + K16), a[r][0]); \
                float s = hsum(_mm256_add_ps(a[r][0], a[r][1]));                               \
                for (long k = K8; k < K; k++) s += xr[k] * SCALAR(w + k);                      \
                y[r * ldy + n] = bias ? s + bias[n] : s;                                       \
            }                                                                                  \
        }                                                                                      \
    }

#define PASSES(P, WT, LOAD, SCALAR)         \
    PASS(P##_1, 1, WT, LOAD, SCALAR)        \
    PASS(P##_2, 2, WT, LOAD, SCALAR)        \
    PASS(P##_3, 3, WT, LOAD, SCALAR)        \
    PASS(P##_4, 4, WT, LOAD, SCALAR)        \
    PASS(P##_5, 5, WT, LOAD, SCALAR)        \
    PASS(P##_6, 6, WT, LOAD, SCALAR)        \
    typedef void (*P##_fn)(const float*, long, const WT*, long, long, long, const float*, float*, long); \
    static const P##_fn P##_pass[MAX_PASS_ROWS + 1] = {0, P##_1, P##_2, P##_3, P##_4, P##_5, P##_6};

PASSES(f32, float, LOAD_F32, scalar_f32)
PASSES(bf16, unsigned short, LOAD_BF16, scalar_bf16)

/* Per block of `block` outputs, the M rows in as few passes as possible, of near-equal
 * size (9 rows: 5 + 4); the first pass streams the block's weights from memory, the later
 * ones read them from cache. Blocks are shared out among `threads` OpenMP threads. */
#define ROWS(NAME, WT, P)                                                                     \
    void NAME(const float* x, long M, long K, const WT* W, long ldw, long N, const float* bias, \
              float* y, long block, int threads) {                                            \
        const long nblocks = (N + block - 1) / block;                                         \
        const long passes = (M + MAX_PASS_ROWS - 1) / MAX_PASS_ROWS;                          \
        _Pragma("omp parallel for num_threads(threads) schedule(static) if (threads > 1)")   \
        for (long b = 0; b < nblocks; b++) {                                                  \
            const long n0 = b * block, n1 = n0 + block < N ? n0 + block : N;                  \
            for (long m = 0, p = 0; m < M; p++) {                                             \
                const long r = (M - m + passes - p - 1) / (passes - p);                       \
                P##_pass[r](x + m * K, K, W, ldw, n0, n1, bias, y + m * N, N);                \
                m += r;                                                                       \
            }                                                                                 \
        }                                                                                     \
    }

/* float32 weights */
ROWS(rows_dot, float, f32)
/* bfloat16 weights (x, bias and y stay float32: the caller converts) */
ROWS(rows_dot_bf16, unsigned short, bf16)
