public import CPackedProduct

/// Products whose right operand is packed once and multiplied many times (`packed_product.h`): the recurrent
/// kernel U against every time step's h (forward) or dg (backward). Each element of C is one chain of fused
/// multiply-adds in k order, so its bits depend only on the operands, never on how C is cut into blocks, which
/// thread computes a block, or which path (AVX-512, AVX2 or portable) runs it.
public enum PackedProduct {
    /// The path this process runs: the fastest this CPU has. All paths give the same bits (PackedProductTests).
    public static let path = pp_best_path()

    /// Floats a packed [k, n] operand takes.
    public static func count(k: Int, n: Int) -> Int { pp_packed_count(Int32(k), Int32(n)) }

    /// Packs B [k, n], row-major with row stride `ldb`, or, `transposed`, the transpose of a row-major [n, k].
    public static func pack(_ b: UnsafePointer<Float>, ldb: Int, transposed: Bool, k: Int, n: Int, into packed: UnsafeMutablePointer<Float>) {
        pp_pack(b, ldb, transposed ? 1 : 0, Int32(k), Int32(n), packed)
    }

    /// C[m, n] = A[m, k]·B[k, n], B packed by `pack`; with `accumulate`, C's elements start the chains instead of 0.
    @inline(__always)
    public static func multiply(
        _ a: UnsafePointer<Float>, lda: Int, _ packed: UnsafePointer<Float>, into c: UnsafeMutablePointer<Float>, ldc: Int,
        m: Int, n: Int, k: Int, accumulate: Bool = false, path: pp_path = path
    ) {
        pp_multiply(path, Int32(m), Int32(n), Int32(k), a, lda, packed, c, ldc, accumulate ? 1 : 0)
    }
}
