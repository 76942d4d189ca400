#ifndef PACKED_PRODUCT_H
#define PACKED_PRODUCT_H

#include <stddef.h>

/// Products C[m, n] = A[m, k]·B[k, n] whose right operand B is packed once and then multiplied many times: the
/// recurrent kernel U, read by every time step of every shard of a step. Each element of C is one chain of fused
/// multiply-adds in k order, c = fma(a[k−1], b[k−1], … fma(a[0], b[0], c₀)), rounded once per term, so its bits
/// depend only on the operands: not on m, n, how C is cut into blocks, the thread, or which path computes it.

/// Columns per strip of a packed operand: B is stored as ⌈n / 16⌉ strips of [k, 16] floats, zero-padded.
#define PP_STRIP 16

/// The code that runs the product; every path gives the same bits.
typedef enum {
    /// Scalar `fmaf` chains the compiler may vectorise: any CPU.
    pp_portable = 0,
    /// x86-64 with AVX2 and FMA: 6 × 16 tiles in 256-bit registers.
    pp_avx2 = 1,
    /// x86-64 with AVX-512F (and AVX2 for what is left over): 6 × 32 tiles in 512-bit registers.
    pp_avx512 = 2,
} pp_path;

/// Whether this CPU runs `path`.
int pp_runs(pp_path path);

/// The fastest path this CPU runs.
pp_path pp_best_path(void);

/// Floats `pp_pack` writes for a [k, n] operand.
size_t pp_packed_count(int k, int n);

/// Packs B [k, n] (row-major with row stride `ldb`; when `transposed`, B is read as the transpose of a row-major
/// [n, k] matrix with row stride `ldb`) into `packed`, `pp_packed_count(k, n)` floats.
void pp_pack(const float *b, ptrdiff_t ldb, int transposed, int k, int n, float *packed);

/// C[m, n] = A[m, k]·B[k, n] with B packed by `pp_pack`; A and C row-major with row strides `lda`, `ldc`. Each
/// chain starts from 0, or from C's own element when `accumulate` is non-zero.
void pp_multiply(pp_path path, int m, int n, int k, const float *a, ptrdiff_t lda, const float *packed, float *c,
                 ptrdiff_t ldc, int accumulate);

#endif
