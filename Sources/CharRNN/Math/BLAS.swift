import COpenBLAS

/// Row-major sgemm with the shapes spelled out: C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C.
///
/// `lda`, `ldb`, `ldc` default to the dense row strides, so strided views (a slice of columns of a wider
/// matrix) pass their own.
@inline(__always)
public func gemm(
    _ a: UnsafePointer<Float>, transA: Bool = false,
    _ b: UnsafePointer<Float>, transB: Bool = false,
    into c: UnsafeMutablePointer<Float>,
    m: Int, n: Int, k: Int,
    alpha: Float = 1, beta: Float = 0,
    lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil
) {
    guard m > 0, n > 0 else { return }
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha,
        a, Int32(lda ?? (transA ? m : k)),
        b, Int32(ldb ?? (transB ? k : n)),
        beta, c, Int32(ldc ?? n))
}

/// Row-major sgemv: y[m] = alpha · A[m, n] · x + beta · y, or with A transposed y[n] = A^T x.
@inline(__always)
public func gemv(
    _ a: UnsafePointer<Float>, trans: Bool = false, rows m: Int, cols n: Int,
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, alpha: Float = 1, beta: Float = 0
) {
    cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(n), x, 1, beta, y, 1)
}

/// The OpenBLAS runtime: which kernel it picked, and how many threads it uses.
public enum BLASRuntime {
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}
