import COpenBLAS

/// Row-major sgemm with the shapes spelled out: C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C.
///
/// `lda`, `ldb`, `ldc` default to the dense row strides, so strided views (a slice of columns of a wider
/// matrix) pass their own. The product is cut into `Parallel.chunks` blocks along its larger side (rows of C
/// or columns of C), each a single-threaded sgemm: every element is still one dot product over k, and the
/// cut depends only on the shape, so the result does not depend on the thread count.
public func gemm(
    _ a: UnsafePointer<Float>, transA: Bool = false,
    _ b: UnsafePointer<Float>, transB: Bool = false,
    into c: UnsafeMutablePointer<Float>,
    m: Int, n: Int, k: Int,
    alpha: Float = 1, beta: Float = 0,
    lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil
) {
    let (lda, ldb, ldc) = (lda ?? (transA ? m : k), ldb ?? (transB ? k : n), ldc ?? n)
    Parallel.forEachChunk { chunk in
        if m >= n {
            let r = Parallel.range(chunk, of: m)
            gemmSerial(
                a + (transA ? r.lowerBound : r.lowerBound * lda), transA: transA, b, transB: transB,
                into: c + r.lowerBound * ldc, m: r.count, n: n, k: k, alpha: alpha, beta: beta, lda: lda, ldb: ldb, ldc: ldc)
        } else {
            let r = Parallel.range(chunk, of: n)
            gemmSerial(
                a, transA: transA, b + (transB ? r.lowerBound * ldb : r.lowerBound), transB: transB,
                into: c + r.lowerBound, m: m, n: r.count, k: k, alpha: alpha, beta: beta, lda: lda, ldb: ldb, ldc: ldc)
        }
    }
}

/// One sgemm call on the calling thread; for code that already runs inside a `Parallel` chunk.
@inline(__always)
func gemmSerial(
    _ a: UnsafePointer<Float>, transA: Bool, _ b: UnsafePointer<Float>, transB: Bool,
    into c: UnsafeMutablePointer<Float>, m: Int, n: Int, k: Int,
    alpha: Float = 1, beta: Float = 0, lda: Int, ldb: Int, ldc: Int
) {
    guard m > 0, n > 0 else { return }
    BLASRuntime.ensureSingleThreaded()
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Row-major sgemv on the calling thread: y[n] = alpha · A[m, n]ᵀ · x + beta · y, A with row stride `lda`.
@inline(__always)
func gemvTransposed(
    _ a: UnsafePointer<Float>, rows m: Int, cols n: Int, lda: Int,
    _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, alpha: Float = 1, beta: Float = 0
) {
    guard n > 0 else { return }
    BLASRuntime.ensureSingleThreaded()
    cblas_sgemv(CblasRowMajor, CblasTrans, Int32(m), Int32(n), alpha, a, Int32(lda), x, 1, beta, y, 1)
}

/// The OpenBLAS runtime: which kernel it picked, and how many threads the computation uses.
///
/// The threads are ours (`Parallel`), not OpenBLAS's: OpenBLAS is kept at one thread per call.
public enum BLASRuntime {
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    public static var threads: Int { Parallel.threads }

    public static func setThreads(_ n: Int) {
        precondition(n > 0, "thread count must be positive")
        Parallel.threads = n
    }

    /// Runs `body` with OpenBLAS splitting each call over `threads` itself. For batch-1 generation only: a
    /// [1, H]×[H, 3H] product per symbol is too short (~0.1 ms) for our chunks, whose second thread has to be
    /// woken every time, while OpenBLAS's workers spin between calls. Never around `Parallel` chunks.
    public static func withLibraryThreads<T>(_ body: () -> T) -> T {
        ensureSingleThreaded()
        openblas_set_num_threads(Int32(Parallel.threads))
        defer { openblas_set_num_threads(1) }
        return body()
    }

    /// OpenBLAS starts with one thread per core; set it to one once, before the first product.
    private static let singleThreaded: Void = openblas_set_num_threads(1)

    @inline(__always)
    static func ensureSingleThreaded() { singleThreaded }
}
