/* GGUF weight blocks to float32, bit for bit what gguf-py's `gguf.quants.dequantize` returns.
 *
 * Why: the engine multiplies decoding rows by the weights as they lie in the GGUF file,
 * dequantizing one row (or a slice of one) at a time into an L1-sized scratch buffer, so
 * the quantized model never exists in memory as float32. Decoding stays lossless only if
 * that scratch row holds exactly the numbers the Python reference would have produced, so
 * each format below follows gguf-py's float32 formula and order of operations (quants.py,
 * gguf 0.19.0); tests/test_quant_formats.py holds every format to it bit for bit.
 *
 * Why the vector paths can use FMA and still be exact: an f16 scale has 11 significant
 * bits, a K-quant sub-scale at most 8 and a quant at most 6, so the scale products fit in
 * float32's 24-bit significand: `d * q` is exact and `d * q + m` rounds once whether fused
 * or not. The one product that can round is Q6_K's (d * scale) * q (up to 25 bits); d *
 * scale is exact, so that is a single rounding of the exact product whatever the order,
 * and we keep gguf-py's order anyway.
 *
 * Each format has a scalar reference (`ss_ref_*`, a line-by-line transcription of
 * gguf-py, also the fallback when the compiler is not given AVX2, FMA and F16C) and a
 * vectorized row function (`ss_dequant_row_*`); `ss_dequant_row` picks the fastest one
 * compiled in,
 * and `ss_ref_dequant_row` is there for tests that hold the two paths to each other.
 * Block fields are read through memcpy, so rows may start at any byte address.
 */
#ifndef SELFSPEC_QUANT_H
#define SELFSPEC_QUANT_H

#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) || defined(__F16C__)
#include <immintrin.h>
#endif
/* The vector kernels need AVX2, FMA and F16C (-mavx2 -mfma -mf16c; every AVX2 CPU has all
 * three); without them ss_dequant_row falls back to the scalar references. */
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define SS_QUANT_SIMD 1
#else
#define SS_QUANT_SIMD 0
#endif

/* GGML type ids, as gguf.GGMLQuantizationType numbers them */
enum {
    SS_F32 = 0,
    SS_F16 = 1,
    SS_Q4_0 = 2,
    SS_Q4_1 = 3,
    SS_Q5_0 = 6,
    SS_Q8_0 = 8,
    SS_Q4_K = 12,
    SS_Q6_K = 14,
    SS_BF16 = 30
};

#define SS_QK 32   /* weights per block of the legacy formats */
#define SS_QK_K 256 /* weights per super-block of the K-quants */

/* Block layouts, byte for byte as ggml writes them. Every field is bytes (alignment 1):
 * a Q4_0 block is 18 bytes long, so its f16 scale is only 2-byte aligned in the file and
 * can be misaligned in a caller's buffer. f16 fields are little-endian IEEE half floats. */
typedef struct { uint8_t d[2]; uint8_t qs[SS_QK / 2]; } ss_block_q4_0;           /* d*(q-8) */
typedef struct { uint8_t d[2]; uint8_t m[2]; uint8_t qs[SS_QK / 2]; } ss_block_q4_1; /* d*q+m */
typedef struct { uint8_t d[2]; uint8_t qh[4]; uint8_t qs[SS_QK / 2]; } ss_block_q5_0; /* d*(q-16) */
typedef struct { uint8_t d[2]; int8_t qs[SS_QK]; } ss_block_q8_0;                /* d*q */
typedef struct {
    uint8_t d[2];    /* scale of the sub-block scales */
    uint8_t dmin[2]; /* scale of the sub-block mins */
    uint8_t scales[12]; /* 8 six-bit scales and 8 six-bit mins, packed */
    uint8_t qs[SS_QK_K / 2]; /* 4-bit quants, 64 bytes per pair of 32-weight sub-blocks */
} ss_block_q4_k; /* (d*sc)*q - dmin*m per 32-weight sub-block */
typedef struct {
    uint8_t ql[SS_QK_K / 2]; /* low 4 bits of each quant */
    uint8_t qh[SS_QK_K / 4]; /* high 2 bits, four quants per byte */
    int8_t scales[SS_QK_K / 16]; /* one signed scale per 16 weights */
    uint8_t d[2];
} ss_block_q6_k; /* (d*scale)*(q-32) per 16-weight group */

_Static_assert(sizeof(ss_block_q4_0) == 18, "Q4_0 block size");
_Static_assert(sizeof(ss_block_q4_1) == 20, "Q4_1 block size");
_Static_assert(sizeof(ss_block_q5_0) == 22, "Q5_0 block size");
_Static_assert(sizeof(ss_block_q8_0) == 34, "Q8_0 block size");
_Static_assert(sizeof(ss_block_q4_k) == 144, "Q4_K block size");
_Static_assert(sizeof(ss_block_q6_k) == 210, "Q6_K block size");

/* Weights per block: 1, 32 or 256; 0 if unsupported. */
static inline int ss_block_size(int type) {
    switch (type) {
    case SS_F32: case SS_F16: case SS_BF16: return 1;
    case SS_Q4_0: case SS_Q4_1: case SS_Q5_0: case SS_Q8_0: return SS_QK;
    case SS_Q4_K: case SS_Q6_K: return SS_QK_K;
    default: return 0;
    }
}

/* Bytes per block; 0 if unsupported. */
static inline int ss_block_bytes(int type) {
    switch (type) {
    case SS_F32: return 4;
    case SS_F16: case SS_BF16: return 2;
    case SS_Q4_0: return (int)sizeof(ss_block_q4_0);
    case SS_Q4_1: return (int)sizeof(ss_block_q4_1);
    case SS_Q5_0: return (int)sizeof(ss_block_q5_0);
    case SS_Q8_0: return (int)sizeof(ss_block_q8_0);
    case SS_Q4_K: return (int)sizeof(ss_block_q4_k);
    case SS_Q6_K: return (int)sizeof(ss_block_q6_k);
    default: return 0;
    }
}

/* Bytes of one row of K weights (K a multiple of the block size); 0 if unsupported. */
static inline long ss_row_bytes(int type, long K) {
    const int bs = ss_block_size(type);
    return bs ? K / bs * ss_block_bytes(type) : 0;
}

/* ---- scalar helpers ---------------------------------------------------------------- */

static inline uint16_t ss__u16(const uint8_t* p) {
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float ss__bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Half to float by bit manipulation, as numpy's astype(float32) does it: exact for every
 * finite half, and a NaN keeps its payload and stays signaling (the F16C instruction would
 * quiet it, which is why F16 rows fix NaN lanes up, below). */
static inline float ss_ref_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return ss__bits_f32(sign | 0x7f800000u | (man << 13)); /* inf, NaN */
    if (exp != 0) return ss__bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return ss__bits_f32(sign); /* signed zero */
    /* Subnormal half: man * 2^-24. Shift the leading one up to the implicit-bit position,
     * lowering the exponent by one per shift. */
    uint32_t e = 113; /* float exponent field of 2^-14, the smallest normal half */
    while (!(man & 0x400u)) {
        man <<= 1;
        e--;
    }
    return ss__bits_f32(sign | (e << 23) | ((man & 0x3ffu) << 13));
}

/* Scale fields: the F16C instruction where compiled in. It quiets a signaling NaN, which
 * cannot change a result: every scale is then multiplied, and a product quiets it anyway. */
static inline float ss__f16(const uint8_t* p) {
#if defined(__F16C__)
    return _cvtsh_ss(ss__u16(p));
#else
    return ss_ref_f16_to_f32(ss__u16(p));
#endif
}

/* Q4_K's 12 scale bytes hold eight 6-bit scales and eight 6-bit mins. Sub-blocks 0-3 use
 * the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 take their low 4 bits
 * from a nibble of bytes 8-11 (scale: low nibble, min: high nibble) and their top 2 bits
 * from the spare top bits of bytes 0-3 (scales) and 4-7 (mins). */
static inline void ss__q4_k_scale_min(const uint8_t* s, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 0x3f;
        mn[j] = s[4 + j] & 0x3f;
        sc[4 + j] = (uint8_t)((s[8 + j] & 0x0f) | ((s[j] >> 2) & 0x30));
        mn[4 + j] = (uint8_t)((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30));
    }
}

/* ---- scalar references: gguf-py's dequantize_blocks, one weight at a time ---------- */

static inline void ss_ref_row_f32(const void* src, long K, float* dst) {
    memcpy(dst, src, (size_t)K * sizeof(float)); /* a view: NaN payloads and all */
}

static inline void ss_ref_row_f16(const void* src, long K, float* dst) {
    const uint8_t* p = (const uint8_t*)src;
    for (long i = 0; i < K; i++) dst[i] = ss_ref_f16_to_f32(ss__u16(p + 2 * i));
}

/* bfloat16 is the top half of a float32: (int16 -> int32) << 16, bits unchanged. */
static inline void ss_ref_row_bf16(const void* src, long K, float* dst) {
    const uint8_t* p = (const uint8_t*)src;
    for (long i = 0; i < K; i++) dst[i] = ss__bits_f32((uint32_t)ss__u16(p + 2 * i) << 16);
}

/* Legacy 32-weight blocks: weight i < 16 is the low nibble of qs[i], weight 16 + i the
 * high nibble of qs[i]. */
static inline void ss_ref_row_q4_0(const void* src, long K, float* dst) {
    const ss_block_q4_0* b = (const ss_block_q4_0*)src;
    for (long ib = 0; ib < K / SS_QK; ib++, b++, dst += SS_QK) {
        const float d = ss__f16(b->d);
        for (int i = 0; i < SS_QK / 2; i++) {
            dst[i] = d * (float)((int)(b->qs[i] & 0x0f) - 8);
            dst[i + SS_QK / 2] = d * (float)((int)(b->qs[i] >> 4) - 8);
        }
    }
}

static inline void ss_ref_row_q4_1(const void* src, long K, float* dst) {
    const ss_block_q4_1* b = (const ss_block_q4_1*)src;
    for (long ib = 0; ib < K / SS_QK; ib++, b++, dst += SS_QK) {
        const float d = ss__f16(b->d), m = ss__f16(b->m);
        for (int i = 0; i < SS_QK / 2; i++) {
            dst[i] = d * (float)(b->qs[i] & 0x0f) + m;
            dst[i + SS_QK / 2] = d * (float)(b->qs[i] >> 4) + m;
        }
    }
}

/* Q5_0: the fifth bit of weight i is bit i of the little-endian 32-bit qh. */
static inline void ss_ref_row_q5_0(const void* src, long K, float* dst) {
    const ss_block_q5_0* b = (const ss_block_q5_0*)src;
    for (long ib = 0; ib < K / SS_QK; ib++, b++, dst += SS_QK) {
        const float d = ss__f16(b->d);
        const uint32_t qh = (uint32_t)b->qh[0] | (uint32_t)b->qh[1] << 8 |
                            (uint32_t)b->qh[2] << 16 | (uint32_t)b->qh[3] << 24;
        for (int i = 0; i < SS_QK / 2; i++) {
            const int lo = (b->qs[i] & 0x0f) | (int)((qh >> i) & 1) << 4;
            const int hi = (b->qs[i] >> 4) | (int)((qh >> (i + 16)) & 1) << 4;
            dst[i] = d * (float)(lo - 16);
            dst[i + SS_QK / 2] = d * (float)(hi - 16);
        }
    }
}

static inline void ss_ref_row_q8_0(const void* src, long K, float* dst) {
    const ss_block_q8_0* b = (const ss_block_q8_0*)src;
    for (long ib = 0; ib < K / SS_QK; ib++, b++, dst += SS_QK) {
        const float d = ss__f16(b->d);
        for (int i = 0; i < SS_QK; i++) dst[i] = (float)b->qs[i] * d;
    }
}

/* Q4_K: bytes 32j..32j+31 of qs hold sub-block 2j in their low nibbles and 2j+1 in
 * their high nibbles. */
static inline void ss_ref_row_q4_k(const void* src, long K, float* dst) {
    const ss_block_q4_k* b = (const ss_block_q4_k*)src;
    for (long ib = 0; ib < K / SS_QK_K; ib++, b++, dst += SS_QK_K) {
        const float d = ss__f16(b->d), dmin = ss__f16(b->dmin);
        uint8_t sc[8], mn[8];
        ss__q4_k_scale_min(b->scales, sc, mn);
        for (int j = 0; j < 4; j++) {
            const float d0 = d * (float)sc[2 * j], m0 = dmin * (float)mn[2 * j];
            const float d1 = d * (float)sc[2 * j + 1], m1 = dmin * (float)mn[2 * j + 1];
            for (int l = 0; l < 32; l++) {
                const uint8_t q = b->qs[32 * j + l];
                dst[64 * j + l] = d0 * (float)(q & 0x0f) - m0;
                dst[64 * j + 32 + l] = d1 * (float)(q >> 4) - m1;
            }
        }
    }
}

/* Q6_K, per 128-weight half h: weight 32s + l (s = 0..3, l = 0..31) takes its low 4 bits
 * from ql[64h + l] (s = 0, 2: low/high nibble) or ql[64h + 32 + l] (s = 1, 3), its high
 * 2 bits from bits 2s..2s+1 of qh[32h + l], and scale scales[(128h + 32s + l) / 16]. */
static inline void ss_ref_row_q6_k(const void* src, long K, float* dst) {
    const ss_block_q6_k* b = (const ss_block_q6_k*)src;
    for (long ib = 0; ib < K / SS_QK_K; ib++, b++, dst += SS_QK_K) {
        const float d = ss__f16(b->d);
        for (int h = 0; h < 2; h++) {
            const uint8_t* ql = b->ql + 64 * h;
            const uint8_t* qh = b->qh + 32 * h;
            for (int s = 0; s < 4; s++) {
                for (int l = 0; l < 32; l++) {
                    const int e = 128 * h + 32 * s + l;
                    const uint8_t lb = ql[(s & 1) * 32 + l];
                    const int lo = (s < 2) ? (lb & 0x0f) : (lb >> 4);
                    const int q = (lo | ((qh[l] >> (2 * s)) & 3) << 4) - 32;
                    const float ds = d * (float)b->scales[e / 16]; /* exact */
                    dst[e] = ds * (float)q;                         /* the one rounding */
                }
            }
        }
    }
}

/* Dispatch of the references by type; does nothing for an unsupported type. */
static inline void ss_ref_dequant_row(int type, const void* src, long K, float* dst) {
    switch (type) {
    case SS_F32: ss_ref_row_f32(src, K, dst); break;
    case SS_F16: ss_ref_row_f16(src, K, dst); break;
    case SS_BF16: ss_ref_row_bf16(src, K, dst); break;
    case SS_Q4_0: ss_ref_row_q4_0(src, K, dst); break;
    case SS_Q4_1: ss_ref_row_q4_1(src, K, dst); break;
    case SS_Q5_0: ss_ref_row_q5_0(src, K, dst); break;
    case SS_Q8_0: ss_ref_row_q8_0(src, K, dst); break;
    case SS_Q4_K: ss_ref_row_q4_k(src, K, dst); break;
    case SS_Q6_K: ss_ref_row_q6_k(src, K, dst); break;
    default: break;
    }
}

#if SS_QUANT_SIMD
/* ---- AVX2 kernels ------------------------------------------------------------------ *
 * Each kernel turns 8 quants at a time into 8 int32 lanes, converts them to float (exact:
 * they are small integers) and applies the scale with one multiply or FMA per 8 weights.
 * The 4-bit formats widen 8 packed bytes straight from the block (a load folded into
 * vpmovzxbd) and take both nibbles from the wide lanes: an AND for the low one, a shift
 * for the high one. That measured faster than unpacking nibbles into bytes first and
 * widening from a register; Q6_K, with quants spread over three arrays, does the byte
 * unpacking and then widens. Output stores bound the fastest kernels. */

/* 8 bytes at p, zero- or sign-extended to int32 lanes. */
static inline __m256i ss__u8x8(const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)p));
}
static inline __m256i ss__i8x8(const int8_t* p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p));
}

/* The low or high 8 bytes of v, as signed int8, widened to 8 floats. */
static inline __m256 ss__ps_lo8(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}
static inline __m256 ss__ps_hi8(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(v, v)));
}

/* Two adjacent f16 fields (Q4_1's d and m) in one conversion, each broadcast. */
static inline void ss__f16_pair(const uint8_t* p, __m256* a, __m256* b) {
    int32_t both;
    memcpy(&both, p, sizeof both);
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(both));
    *a = _mm256_broadcastss_ps(f);
    *b = _mm256_broadcastss_ps(_mm_movehdup_ps(f));
}

static inline void ss_dequant_row_f32(const void* src, long K, float* dst) {
    ss_ref_row_f32(src, K, dst);
}

/* F16: the conversion instruction is exact for every finite half. NaN lanes (never seen in
 * real weights, so behind a branch that is not taken) are redone by the reference to keep
 * numpy's unquieted payload. One NaN test covers 16 halves. */
static inline void ss_dequant_row_f16(const void* src, long K, float* dst) {
    const uint8_t* p = (const uint8_t*)src;
    long i = 0;
    const __m256i abs_mask = _mm256_set1_epi16(0x7fff), inf = _mm256_set1_epi16(0x7c00);
    for (; i + 16 <= K; i += 16) {
        const __m256i h = _mm256_loadu_si256((const __m256i*)(p + 2 * i));
        const __m256i nan = _mm256_cmpgt_epi16(_mm256_and_si256(h, abs_mask), inf);
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
        if (__builtin_expect(!_mm256_testz_si256(nan, nan), 0)) ss_ref_row_f16(p + 2 * i, 16, dst + i);
    }
    ss_ref_row_f16(p + 2 * i, K - i, dst + i);
}

static inline void ss_dequant_row_bf16(const void* src, long K, float* dst) {
    const uint8_t* p = (const uint8_t*)src;
    long i = 0;
    for (; i + 8 <= K; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(p + 2 * i)));
        _mm256_storeu_si256((__m256i*)(dst + i), _mm256_slli_epi32(w, 16));
    }
    ss_ref_row_bf16(p + 2 * i, K - i, dst + i);
}

/* Legacy 4-bit blocks: bytes 0-7 give weights 0-7 (low nibbles) and 16-23 (high), bytes
 * 8-15 give weights 8-15 and 24-31. */
static inline void ss_dequant_row_q4_0(const void* src, long K, float* dst) {
    const ss_block_q4_0* b = (const ss_block_q4_0*)src;
    const __m256i m4 = _mm256_set1_epi32(0x0f), eight = _mm256_set1_epi32(8);
    for (long ib = 0; ib < K / SS_QK; ib++, b++, dst += SS_QK) {
        const __m256 d = _mm256_set1_ps(ss__f16(b->d));
        const __m256i w0 = ss__u8x8(b->qs), w1 = ss__u8x8(b->qs + 8);
        const __m256i q[4] = {_mm256_and_si256(w0, m4), _mm256_and_si256(w1, m4),
                              _mm256_srli_epi32(w0, 4), _mm256_srli_epi32(w1, 4)};
        for (int j = 0; j < 4; j++) {
            const __m256 qf = _mm256_cvtepi32_ps(_mm256_sub_epi32(q[j], eight));
            _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(d, qf));
        }
    }
}

/* Q4_1: d*q + m as one FMA (d*q is exact, so this is gguf-py's single rounding). */
static inline void ss_dequant_row_q4_1(const void* src, long K, float* dst) {
    const ss_block_q4_1* b = (const ss_block_q4_1*)src;
    const __m256i m4 = _mm256_set1_epi32(0x0f);
    for (long ib = 0; ib < K / SS_QK; ib++, b++, dst += SS_QK) {
        __m256 d, m;
        ss__f16_pair(b->d, &d, &m);
        const __m256i w0 = ss__u8x8(b->qs), w1 = ss__u8x8(b->qs + 8);
        const __m256i q[4] = {_mm256_and_si256(w0, m4), _mm256_and_si256(w1, m4),
                              _mm256_srli_epi32(w0, 4), _mm256_srli_epi32(w1, 4)};
        for (int j = 0; j < 4; j++)
            _mm256_storeu_ps(dst + 8 * j, _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q[j]), m));
    }
}

/* Q5_0: the fifth bit of weight i, bit i of qh, is brought to bit 4 of lane i by a per-lane
 * variable right shift, then masked: weights 0-23 shift qh << 4 right by i; weights 24-31
 * shift qh >> 4 right by i - 8 (qh << 4 would have lost their bits). */
static inline void ss_dequant_row_q5_0(const void* src, long K, float* dst) {
    const ss_block_q5_0* b = (const ss_block_q5_0*)src;
    const __m256i m4 = _mm256_set1_epi32(0x0f), sixteen = _mm256_set1_epi32(16);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i shift[4] = {lane, _mm256_add_epi32(lane, _mm256_set1_epi32(8)),
                              _mm256_add_epi32(lane, _mm256_set1_epi32(16)),
                              _mm256_add_epi32(lane, _mm256_set1_epi32(16))};
    for (long ib = 0; ib < K / SS_QK; ib++, b++, dst += SS_QK) {
        const __m256 d = _mm256_set1_ps(ss__f16(b->d));
        uint32_t qh;
        memcpy(&qh, b->qh, sizeof qh); /* little-endian, as gguf-py reads it */
        const __m256i h_lo = _mm256_set1_epi32((int32_t)(qh << 4));
        const __m256i h_hi = _mm256_set1_epi32((int32_t)(qh >> 4));
        const __m256i w0 = ss__u8x8(b->qs), w1 = ss__u8x8(b->qs + 8);
        const __m256i lo[4] = {_mm256_and_si256(w0, m4), _mm256_and_si256(w1, m4),
                               _mm256_srli_epi32(w0, 4), _mm256_srli_epi32(w1, 4)};
        for (int j = 0; j < 4; j++) {
            const __m256i h = _mm256_srlv_epi32(j < 3 ? h_lo : h_hi, shift[j]);
            const __m256i q = _mm256_sub_epi32(_mm256_or_si256(lo[j], _mm256_and_si256(h, sixteen)), sixteen);
            _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(q)));
        }
    }
}

static inline void ss_dequant_row_q8_0(const void* src, long K, float* dst) {
    const ss_block_q8_0* b = (const ss_block_q8_0*)src;
    for (long ib = 0; ib < K / SS_QK; ib++, b++, dst += SS_QK) {
        const __m256 d = _mm256_set1_ps(ss__f16(b->d));
        for (int j = 0; j < SS_QK; j += 8)
            _mm256_storeu_ps(dst + j, _mm256_mul_ps(_mm256_cvtepi32_ps(ss__i8x8(b->qs + j)), d));
    }
}

/* Q4_K: (d*sc)*q - dmin*m as one FMA per 8 weights (both products exact, as in gguf-py). */
static inline void ss_dequant_row_q4_k(const void* src, long K, float* dst) {
    const ss_block_q4_k* b = (const ss_block_q4_k*)src;
    const __m256i m4 = _mm256_set1_epi32(0x0f);
    for (long ib = 0; ib < K / SS_QK_K; ib++, b++, dst += SS_QK_K) {
        const float d = ss__f16(b->d), dmin = ss__f16(b->dmin);
        uint8_t sc[8], mn[8];
        ss__q4_k_scale_min(b->scales, sc, mn);
        for (int j = 0; j < 4; j++) {
            const __m256 d0 = _mm256_set1_ps(d * (float)sc[2 * j]);
            const __m256 m0 = _mm256_set1_ps(dmin * (float)mn[2 * j]);
            const __m256 d1 = _mm256_set1_ps(d * (float)sc[2 * j + 1]);
            const __m256 m1 = _mm256_set1_ps(dmin * (float)mn[2 * j + 1]);
            float* o = dst + 64 * j;
            for (int l = 0; l < 32; l += 8) {
                const __m256i w = ss__u8x8(b->qs + 32 * j + l);
                const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(w, m4));
                const __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 4));
                _mm256_storeu_ps(o + l, _mm256_fmsub_ps(d0, lo, m0));
                _mm256_storeu_ps(o + 32 + l, _mm256_fmsub_ps(d1, hi, m1));
            }
        }
    }
}

/* dst[0..15] = q[i] * d for 16 int8 quants. */
static inline void ss__store16_mul(__m128i q, __m256 d, float* dst) {
    _mm256_storeu_ps(dst, _mm256_mul_ps(ss__ps_lo8(q), d));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(ss__ps_hi8(q), d));
}

/* 32 signed Q6_K quants spanning two 16-weight scale groups: (d*scale) * q. */
static inline void ss__q6_k_32(__m256i q, float d, const int8_t* scales, float* dst) {
    const __m256 d0 = _mm256_set1_ps(d * (float)scales[0]); /* exact */
    const __m256 d1 = _mm256_set1_ps(d * (float)scales[1]);
    ss__store16_mul(_mm256_castsi256_si128(q), d0, dst);
    ss__store16_mul(_mm256_extracti128_si256(q, 1), d1, dst + 16);
}

/* Q6_K, per 128-weight half: A = ql[0..31], B = ql[32..63], H = qh[0..31]; the four runs
 * of 32 weights are (A & 15 | (H & 3) << 4), (B & 15 | (H >> 2 & 3) << 4),
 * (A >> 4 | (H >> 4 & 3) << 4), (B >> 4 | (H >> 6) << 4), each minus 32. The 16-bit shifts
 * spill bits across bytes; the masks after them drop the spill. */
static inline void ss_dequant_row_q6_k(const void* src, long K, float* dst) {
    const ss_block_q6_k* b = (const ss_block_q6_k*)src;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2h = _mm256_set1_epi8(0x30);
    const __m256i bias = _mm256_set1_epi8(32);
    for (long ib = 0; ib < K / SS_QK_K; ib++, b++, dst += SS_QK_K) {
        const float d = ss__f16(b->d);
        for (int h = 0; h < 2; h++) {
            const __m256i A = _mm256_loadu_si256((const __m256i*)(b->ql + 64 * h));
            const __m256i B = _mm256_loadu_si256((const __m256i*)(b->ql + 64 * h + 32));
            const __m256i H = _mm256_loadu_si256((const __m256i*)(b->qh + 32 * h));
            const __m256i A4 = _mm256_srli_epi16(A, 4), B4 = _mm256_srli_epi16(B, 4);
            const __m256i q0 = _mm256_or_si256(_mm256_and_si256(A, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(H, 4), m2h));
            const __m256i q1 = _mm256_or_si256(_mm256_and_si256(B, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(H, 2), m2h));
            const __m256i q2 = _mm256_or_si256(_mm256_and_si256(A4, m4), _mm256_and_si256(H, m2h));
            const __m256i q3 = _mm256_or_si256(_mm256_and_si256(B4, m4),
                                               _mm256_and_si256(_mm256_srli_epi16(H, 2), m2h));
            const int8_t* sc = b->scales + 8 * h;
            float* o = dst + 128 * h;
            ss__q6_k_32(_mm256_sub_epi8(q0, bias), d, sc, o);
            ss__q6_k_32(_mm256_sub_epi8(q1, bias), d, sc + 2, o + 32);
            ss__q6_k_32(_mm256_sub_epi8(q2, bias), d, sc + 4, o + 64);
            ss__q6_k_32(_mm256_sub_epi8(q3, bias), d, sc + 6, o + 96);
        }
    }
}
#endif /* SS_QUANT_SIMD */

/* Dequantize one row of K weights (K a multiple of the block size) from src to
 * dst[0..K-1]; does nothing for an unsupported type. */
static inline void ss_dequant_row(int type, const void* src, long K, float* dst) {
#if SS_QUANT_SIMD
    switch (type) {
    case SS_F32: ss_dequant_row_f32(src, K, dst); break;
    case SS_F16: ss_dequant_row_f16(src, K, dst); break;
    case SS_BF16: ss_dequant_row_bf16(src, K, dst); break;
    case SS_Q4_0: ss_dequant_row_q4_0(src, K, dst); break;
    case SS_Q4_1: ss_dequant_row_q4_1(src, K, dst); break;
    case SS_Q5_0: ss_dequant_row_q5_0(src, K, dst); break;
    case SS_Q8_0: ss_dequant_row_q8_0(src, K, dst); break;
    case SS_Q4_K: ss_dequant_row_q4_k(src, K, dst); break;
    case SS_Q6_K: ss_dequant_row_q6_k(src, K, dst); break;
    default: break;
    }
#else
    ss_ref_dequant_row(type, src, K, dst);
#endif
}

#endif /* SELFSPEC_QUANT_H */
