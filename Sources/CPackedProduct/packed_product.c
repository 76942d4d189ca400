// Why not OpenBLAS: its sgemm packs both operands on every call. A recurrent time step multiplies the same U by a
// new h, and cut into blocks for threads, every block's call re-packed all of h (dg backward) and its columns of
// U: 8 % of a one-core step at the tutorial's size (BENCHMARKS.md). OpenBLAS has no call that takes a packed
// operand, so this file packs U once per step and runs the products itself.
#include "packed_product.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

size_t pp_packed_count(int k, int n) {
    return (size_t)k * (size_t)((n + PP_STRIP - 1) / PP_STRIP * PP_STRIP);
}

void pp_pack(const float *b, ptrdiff_t ldb, int transposed, int k, int n, float *packed) {
    // Row by row of the strip, so that writes are sequential and reads are one stream (or, transposed, 16
    // streams) walking forward: a step packs all of U twice (12 MB each at the tutorial's size).
    for (int s = 0; s < n; s += PP_STRIP) {
        int w = n - s < PP_STRIP ? n - s : PP_STRIP;
        float *strip = packed + (size_t)s * (size_t)k;
        for (int i = 0; i < k; i++) {
            float *out = strip + (size_t)i * PP_STRIP;
            for (int j = 0; j < w; j++) out[j] = transposed ? b[(ptrdiff_t)(s + j) * ldb + i] : b[(ptrdiff_t)i * ldb + s + j];
            for (int j = w; j < PP_STRIP; j++) out[j] = 0;
        }
    }
}

// One row of C against one strip: the reference every other path must equal bit for bit.
static void portable_row(int k, const float *a, const float *strip, float *c, int w, int accumulate) {
    float acc[PP_STRIP];
    for (int j = 0; j < PP_STRIP; j++) acc[j] = accumulate && j < w ? c[j] : 0;
    for (int i = 0; i < k; i++) {
        float x = a[i];
        for (int j = 0; j < PP_STRIP; j++) acc[j] = fmaf(x, strip[(size_t)i * PP_STRIP + j], acc[j]);
    }
    memcpy(c, acc, sizeof(float) * (size_t)w);
}

static void portable(int m, int n, int k, const float *a, ptrdiff_t lda, const float *packed, float *c, ptrdiff_t ldc,
                     int accumulate) {
    for (int s = 0; s < n; s += PP_STRIP) {
        int w = n - s < PP_STRIP ? n - s : PP_STRIP;
        for (int r = 0; r < m; r++) portable_row(k, a + r * lda, packed + (size_t)s * (size_t)k, c + r * ldc + s, w, accumulate);
    }
}

#if defined(__x86_64__)
// The 1–5 rows left below the 6-row tiles: TILE(mr, ...) with mr a constant, so each row count gets its own code.
#define LEFTOVER_ROWS(left, TILE, ...)    \
    switch (left) {                       \
    case 5: TILE(5, __VA_ARGS__); break;  \
    case 4: TILE(4, __VA_ARGS__); break;  \
    case 3: TILE(3, __VA_ARGS__); break;  \
    case 2: TILE(2, __VA_ARGS__); break;  \
    case 1: TILE(1, __VA_ARGS__); break;  \
    default: break;                       \
    }

// mr (≤ 6) rows of C against one strip, 12 accumulators: each k reads two vectors of the strip and broadcasts mr
// elements of A, for 2·mr multiply-adds; A's rows stream from cache unpacked. Always inlined with a constant mr,
// so each row count gets its own unrolled code.
__attribute__((target("avx2,fma"), always_inline)) static inline void
avx2_tile(int mr, int k, const float *a, ptrdiff_t lda, const float *strip, float *c, ptrdiff_t ldc, int w, int accumulate) {
    __m256 lo[6], hi[6];
    for (int r = 0; r < 6; r++) {
        lo[r] = hi[r] = _mm256_setzero_ps();
        if (r < mr && accumulate) {
            float t[PP_STRIP] = {0};
            memcpy(t, c + r * ldc, sizeof(float) * (size_t)w);
            lo[r] = _mm256_loadu_ps(t);
            hi[r] = _mm256_loadu_ps(t + 8);
        }
    }
    for (int i = 0; i < k; i++) {
        __m256 b0 = _mm256_loadu_ps(strip + (size_t)i * PP_STRIP), b1 = _mm256_loadu_ps(strip + (size_t)i * PP_STRIP + 8);
        for (int r = 0; r < 6; r++) {
            if (r < mr) {
                __m256 x = _mm256_broadcast_ss(a + r * lda + i);
                lo[r] = _mm256_fmadd_ps(x, b0, lo[r]);
                hi[r] = _mm256_fmadd_ps(x, b1, hi[r]);
            }
        }
    }
    for (int r = 0; r < mr; r++) {
        if (w == PP_STRIP) {
            _mm256_storeu_ps(c + r * ldc, lo[r]);
            _mm256_storeu_ps(c + r * ldc + 8, hi[r]);
        } else {
            float t[PP_STRIP];
            _mm256_storeu_ps(t, lo[r]);
            _mm256_storeu_ps(t + 8, hi[r]);
            memcpy(c + r * ldc, t, sizeof(float) * (size_t)w);
        }
    }
}

// The rows of C against one strip in 6-row tiles, then the 1–5 rows left.
__attribute__((target("avx2,fma"))) static void
avx2_strip(int m, int k, const float *a, ptrdiff_t lda, const float *strip, float *c, ptrdiff_t ldc, int w, int accumulate) {
    int r = 0;
    for (; r + 6 <= m; r += 6) avx2_tile(6, k, a + r * lda, lda, strip, c + r * ldc, ldc, w, accumulate);
    LEFTOVER_ROWS(m - r, avx2_tile, k, a + r * lda, lda, strip, c + r * ldc, ldc, w, accumulate);
}

__attribute__((target("avx2,fma"))) static void
avx2(int m, int n, int k, const float *a, ptrdiff_t lda, const float *packed, float *c, ptrdiff_t ldc, int accumulate) {
    for (int s = 0; s < n; s += PP_STRIP) {
        int w = n - s < PP_STRIP ? n - s : PP_STRIP;
        avx2_strip(m, k, a, lda, packed + (size_t)s * (size_t)k, c + s, ldc, w, accumulate);
    }
}

// mr (≤ 6) rows of C against two whole strips side by side, 12 accumulators of 512 bits: each k reads one vector
// of each strip and broadcasts mr elements of A, for 2·mr multiply-adds.
__attribute__((target("avx512f"), always_inline)) static inline void
avx512_tile(int mr, int k, const float *a, ptrdiff_t lda, const float *s0, const float *s1, float *c, ptrdiff_t ldc,
            int accumulate) {
    __m512 lo[6], hi[6];
    for (int r = 0; r < 6; r++) {
        lo[r] = r < mr && accumulate ? _mm512_loadu_ps(c + r * ldc) : _mm512_setzero_ps();
        hi[r] = r < mr && accumulate ? _mm512_loadu_ps(c + r * ldc + PP_STRIP) : _mm512_setzero_ps();
    }
    for (int i = 0; i < k; i++) {
        __m512 b0 = _mm512_loadu_ps(s0 + (size_t)i * PP_STRIP), b1 = _mm512_loadu_ps(s1 + (size_t)i * PP_STRIP);
        for (int r = 0; r < 6; r++) {
            if (r < mr) {
                __m512 x = _mm512_set1_ps(a[r * lda + i]);
                lo[r] = _mm512_fmadd_ps(x, b0, lo[r]);
                hi[r] = _mm512_fmadd_ps(x, b1, hi[r]);
            }
        }
    }
    for (int r = 0; r < mr; r++) {
        _mm512_storeu_ps(c + r * ldc, lo[r]);
        _mm512_storeu_ps(c + r * ldc + PP_STRIP, hi[r]);
    }
}

// Pairs of whole strips in 512-bit tiles; a strip left over, or a partial one, takes the AVX2 code, which gives
// the same bits.
__attribute__((target("avx512f,avx2,fma"))) static void
avx512(int m, int n, int k, const float *a, ptrdiff_t lda, const float *packed, float *c, ptrdiff_t ldc, int accumulate) {
    int s = 0;
    for (; s + 2 * PP_STRIP <= n; s += 2 * PP_STRIP) {
        const float *s0 = packed + (size_t)s * (size_t)k, *s1 = s0 + (size_t)PP_STRIP * (size_t)k;
        int r = 0;
        for (; r + 6 <= m; r += 6) avx512_tile(6, k, a + r * lda, lda, s0, s1, c + r * ldc + s, ldc, accumulate);
        LEFTOVER_ROWS(m - r, avx512_tile, k, a + r * lda, lda, s0, s1, c + r * ldc + s, ldc, accumulate);
    }
    if (s < n) avx2(m, n - s, k, a, lda, packed + (size_t)s * (size_t)k, c + s, ldc, accumulate);
}
#endif

int pp_runs(pp_path path) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    switch (path) {
    case pp_portable: return 1;
    case pp_avx2: return avx2;
    case pp_avx512: return avx2 && __builtin_cpu_supports("avx512f");
    }
    return 0;
#else
    return path == pp_portable;
#endif
}

pp_path pp_best_path(void) {
    if (pp_runs(pp_avx512)) return pp_avx512;
    if (pp_runs(pp_avx2)) return pp_avx2;
    return pp_portable;
}

void pp_multiply(pp_path path, int m, int n, int k, const float *a, ptrdiff_t lda, const float *packed, float *c,
                 ptrdiff_t ldc, int accumulate) {
    if (m <= 0 || n <= 0) return;
#if defined(__x86_64__)
    if (path == pp_avx2) {
        avx2(m, n, k, a, lda, packed, c, ldc, accumulate);
        return;
    }
    if (path == pp_avx512) {
        avx512(m, n, k, a, lda, packed, c, ldc, accumulate);
        return;
    }
#endif
    portable(m, n, k, a, lda, packed, c, ldc, accumulate);
}
