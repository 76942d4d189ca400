import COpenBLAS
import Synchronization

/// Row-major sgemm with the shapes spelled out: C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C, or, with
/// `bias` [n], C = alpha · op(A) · op(B) + bias in every row (beta unused).
///
/// `lda`, `ldb`, `ldc` default to the dense row strides, so strided views (a slice of columns of a wider
/// matrix) pass their own. C is cut into `GemmTiles`, each a single-threaded sgemm: every element is still one
/// dot product over k, and the tiles depend only on the shape, so the result does not depend on the thread count.
///
/// `rowsDone`, if given, is called once per band of tile rows as soon as all of its tiles are written, on the
/// thread that wrote the last one: the caller can use those rows of C while the others are still computed.
/// Threads then take tiles roughly in order (`inIndexOrder`), so the bands end roughly in order.
public func gemm(
    _ a: UnsafePointer<Float>, transA: Bool = false,
    _ b: UnsafePointer<Float>, transB: Bool = false,
    into c: UnsafeMutablePointer<Float>,
    m: Int, n: Int, k: Int,
    alpha: Float = 1, beta: Float = 0, bias: UnsafePointer<Float>? = nil,
    lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil,
    rowsDone: ((Range<Int>) -> Void)? = nil
) {
    let (lda, ldb, ldc) = (lda ?? (transA ? m : k), ldb ?? (transB ? k : n), ldc ?? n)
    let tiles = GemmTiles(m: m, n: n)
    let left = Mutex([Int](repeating: tiles.colTiles, count: rowsDone == nil ? 0 : tiles.rowTiles))
    Parallel.forEach(blocks: tiles.count, inIndexOrder: rowsDone != nil) { t in
        defer {
            if let rowsDone {
                let band = t / tiles.colTiles
                if left.withLock({ $0[band] -= 1; return $0[band] == 0 }) { rowsDone(tiles[t].rows) }
            }
        }
        let (rows, cols) = tiles[t]
        let tile = c + rows.lowerBound * ldc + cols.lowerBound
        if let bias {
            for r in 0..<rows.count { (tile + r * ldc).update(from: bias + cols.lowerBound, count: cols.count) }
        }
        gemmSerial(
            a + (transA ? rows.lowerBound : rows.lowerBound * lda), transA: transA,
            b + (transB ? cols.lowerBound * ldb : cols.lowerBound), transB: transB,
            into: tile, m: rows.count, n: cols.count, k: k, alpha: alpha, beta: bias == nil ? beta : 1,
            lda: lda, ldb: ldb, ldc: ldc)
    }
}

/// How `gemm` cuts C [m, n]: tiles of at most `rows` × `cols`, row-major over the grid, the last row and column
/// of tiles shorter. A function of (m, n) alone. Each tile re-packs its k-long strips of A and B, so a tile must
/// be large enough to amortise that: on one core a 512 × 384 tile of the tutorial's weight gradient runs at the
/// rate of the whole product, 256 × 256 tiles ≈ 15 % slower (BENCHMARKS.md). 384 = 3 · 128 cuts a GRU's 3H
/// columns evenly; the weight gradient, [1024, 3072], offers 16 tiles.
struct GemmTiles {
    static let rows = 512
    static let cols = 384

    let rowTiles: Int
    let colTiles: Int
    let m: Int
    let n: Int

    init(m: Int, n: Int) {
        (self.m, self.n) = (m, n)
        rowTiles = Parallel.blocks(of: m, size: Self.rows)
        colTiles = Parallel.blocks(of: n, size: Self.cols)
    }

    var count: Int { rowTiles * colTiles }

    subscript(t: Int) -> (rows: Range<Int>, cols: Range<Int>) {
        (Parallel.range(t / colTiles, of: m, size: Self.rows), Parallel.range(t % colTiles, of: n, size: Self.cols))
    }
}

/// One sgemm call on the calling thread; for code that already runs inside a `Parallel` block.
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
/// The threads are ours (`Parallel`), not OpenBLAS's: OpenBLAS is kept at one thread per call, except in
/// `withLibraryThreads`.
public enum BLASRuntime {
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    public static var threads: Int { Parallel.threads }

    /// Sets the compute threads (`--threads`), the calling thread included.
    public static func setThreads(_ n: Int) {
        Parallel.setThreads(n)
    }

    /// Runs `body` with OpenBLAS splitting each call over `threads` itself. For generation only: a [1, H]×[H, 3H]
    /// product per symbol is too short (~0.1 ms) to cut into our blocks, while OpenBLAS's workers spin between
    /// calls; generation carries no bitwise contract. Never around `Parallel` blocks.
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
