/* y[m, n] = bias[n] + sum_k x[m, k] * W[n, k] for a few rows m: the products of decoding.
 *
 * Why our own kernel: one decoding step multiplies one row (and a verification 2-16
 * rows) by every weight matrix. Those products are bound by reading the weights from
 * memory, so M rows should cost about what one does; MKL's float32 kernels on the AVX2
 * CPU we measure on make 2 rows cost 1.5x one and 8 rows 2.7x, which is what decides
 * whether drafting pays. Here each weight row is streamed once per group of up to 4 input
 * rows, sequentially through memory, and the next group finds it in cache.
 *
 * Every output is summed in the same order whatever M, the grouping or the thread count
 * (8 lanes x 4 accumulators over k, then a fixed reduction), so the logits of a token
 * are bit-identical whether it is decoded alone or verified among drafts.
 *
 * W is [N, K] row-major (the usual [out, in] weight layout) with row stride ldw; x is
 * [M, K] contiguous; y is [M, N] contiguous; W is float32 or bfloat16 (rows_dot_bf16),
 * x and y float32. Compiled with -mavx2 -mfma -fopenmp.
 */
#include <immintrin.h>

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

/* Outputs n0..n1-1 for G input rows (G a constant, so the accumulators stay in registers),
 * with weights of type WT read by LOAD / SCALAR. */
#define GROUP(NAME, G, WT, LOAD, SCALAR)                                                     \
    static void NAME(const float* x, long K, const WT* W, long ldw, long n0, long n1,        \
                     const float* bias, float* y, long ldy) {                                 \
        const long K32 = K & ~31L, K8 = K & ~7L;                                              \
        for (long n = n0; n < n1; n++) {                                                      \
            const WT* w = W + n * ldw;                                                        \
            __m256 a[G][4];                                                                   \
            for (int g = 0; g < G; g++)                                                       \
                for (int u = 0; u < 4; u++) a[g][u] = _mm256_setzero_ps();                    \
            for (long k = 0; k < K32; k += 32) {                                              \
                const __m256 w0 = LOAD(w + k), w1 = LOAD(w + k + 8);                          \
                const __m256 w2 = LOAD(w + k + 16), w3 = LOAD(w + k + 24);                    \
                for (int g = 0; g < G; g++) {                                                 \
                    const float* xg = x + g * K + k;                                          \
                    a[g][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xg), w0, a[g][0]);              \
                    a[g][1] = _mm256_fmadd_ps(_mm256_loadu_ps(xg + 8), w1, a[g][1]);          \
                    a[g][2] = _mm256_fmadd_ps(_mm256_loadu_ps(xg + 16), w2, a[g][2]);         \
                    a[g][3] = _mm256_fmadd_ps(_mm256_loadu_ps(xg + 24), w3, a[g][3]);         \
                }                                                                             \
            }                                                                                 \
            for (int g = 0; g < G; g++) {                                                     \
                const float* xg = x + g * K;                                                  \
                for (long k = K32; k < K8; k += 8)                                            \
                    a[g][0] = _mm256_fmadd_ps(_mm256_loadu_ps(xg + k), LOAD(w + k), a[g][0]); \
                float s = hsum(_mm256_add_ps(_mm256_add_ps(a[g][0], a[g][1]),                 \
                                             _mm256_add_ps(a[g][2], a[g][3])));               \
                for (long k = K8; k < K; k++) s += xg[k] * SCALAR(w + k);                     \
                y[g * ldy + n] = bias ? s + bias[n] : s;                                      \
            }                                                                                 \
        }                                                                                     \
    }

GROUP(f32_1, 1, float, LOAD_F32, scalar_f32)
GROUP(f32_2, 2, float, LOAD_F32, scalar_f32)
GROUP(f32_3, 3, float, LOAD_F32, scalar_f32)
GROUP(f32_4, 4, float, LOAD_F32, scalar_f32)
GROUP(bf16_1, 1, unsigned short, LOAD_BF16, scalar_bf16)
GROUP(bf16_2, 2, unsigned short, LOAD_BF16, scalar_bf16)
GROUP(bf16_3, 3, unsigned short, LOAD_BF16, scalar_bf16)
GROUP(bf16_4, 4, unsigned short, LOAD_BF16, scalar_bf16)

/* Row groups of 3 (4 and 2 for the remainders that 3 does not divide into), per block of
 * `block` outputs: the first group streams the block's weights from memory, the later
 * groups read them from cache. Blocks are shared out among `threads` OpenMP threads. */
#define ROWS(NAME, WT, P)                                                                     \
    void NAME(const float* x, long M, long K, const WT* W, long ldw, long N, const float* bias, \
              float* y, long block, int threads) {                                            \
        const long nblocks = (N + block - 1) / block;                                         \
        _Pragma("omp parallel for num_threads(threads) schedule(static) if (threads > 1)")   \
        for (long b = 0; b < nblocks; b++) {                                                  \
            const long n0 = b * block, n1 = n0 + block < N ? n0 + block : N;                  \
            long m = 0;                                                                       \
            for (; M - m > 4 || M - m == 3; m += 3)                                           \
                P##_3(x + m * K, K, W, ldw, n0, n1, bias, y + m * N, N);                      \
            if (M - m == 4) P##_4(x + m * K, K, W, ldw, n0, n1, bias, y + m * N, N);          \
            if (M - m == 2) P##_2(x + m * K, K, W, ldw, n0, n1, bias, y + m * N, N);          \
            if (M - m == 1) P##_1(x + m * K, K, W, ldw, n0, n1, bias, y + m * N, N);          \
        }                                                                                     \
    }

/* float32 weights */
ROWS(rows_dot, float, f32)
/* bfloat16 weights (x, bias and y stay float32: the caller converts) */
ROWS(rows_dot_bf16, unsigned short, bf16)
