import CPackedProduct
import XCTest

@testable import CharRNN

final class PackedProductTests: XCTestCase {
    /// Every path computes each element as one chain of fused multiply-adds in k order, the definition the bits
    /// rest on; checked against that chain written out, over shapes that exercise every tile row count (1–6 and
    /// more), partial strips, strided operands, both packings and both starts.
    func testEveryPathEqualsTheFusedChainBitForBit() {
        let paths = [pp_portable, pp_avx2, pp_avx512].filter { pp_runs($0) != 0 }
        var rng = RandomSource(seed: 7)
        for (m, n, k) in [(1, 1, 1), (5, 17, 3), (6, 16, 100), (7, 40, 33), (13, 15, 64), (64, 32, 200), (9, 80, 50)] {
            for transposed in [false, true] {
                for accumulate in [false, true] {
                    let (lda, ldb, ldc) = (k + 3, (transposed ? k : n) + 2, n + 5)
                    let a = (0..<(m * lda)).map { _ in rng.nextUnitFloat() - 0.5 }
                    let b = (0..<((transposed ? n : k) * ldb)).map { _ in rng.nextUnitFloat() - 0.5 }
                    let c0 = (0..<(m * ldc)).map { _ in rng.nextUnitFloat() - 0.5 }
                    func bAt(_ i: Int, _ j: Int) -> Float { transposed ? b[j * ldb + i] : b[i * ldb + j] }
                    var expected = c0
                    for r in 0..<m {
                        for j in 0..<n {
                            var acc: Float = accumulate ? c0[r * ldc + j] : 0
                            for i in 0..<k { acc.addProduct(a[r * lda + i], bAt(i, j)) }
                            expected[r * ldc + j] = acc
                        }
                    }
                    var packed = [Float](repeating: .nan, count: PackedProduct.count(k: k, n: n))
                    PackedProduct.pack(b, ldb: ldb, transposed: transposed, k: k, n: n, into: &packed)
                    for path in paths {
                        var c = c0
                        PackedProduct.multiply(a, lda: lda, packed, into: &c, ldc: ldc, m: m, n: n, k: k, accumulate: accumulate, path: path)
                        XCTAssertEqual(
                            c.map(\.bitPattern), expected.map(\.bitPattern),
                            "m \(m) n \(n) k \(k) transposed \(transposed) accumulate \(accumulate) path \(path.rawValue)")
                    }
                }
            }
        }
    }

    /// The fused chain is what sets these results apart from a plain sum: a case where rounding every product
    /// first loses the answer, so a path that did not fuse (or summed in another order) would fail above.
    func testTheChainIsFused() {
        let x: Float = 1 + .ulpOfOne
        let a: [Float] = [-1, x]
        let b: [Float] = [1 + 2 * .ulpOfOne, x]
        var packed = [Float](repeating: 0, count: PackedProduct.count(k: 2, n: 1))
        PackedProduct.pack(b, ldb: 1, transposed: false, k: 2, n: 1, into: &packed)
        var c: [Float] = [0]
        PackedProduct.multiply(a, lda: 2, packed, into: &c, ldc: 1, m: 1, n: 1, k: 2)
        // −(1 + 2ε) + x², x² = 1 + 2ε + ε²: fused it leaves ε² exactly; x² rounded alone (to 1 + 2ε) leaves 0.
        XCTAssertEqual(c[0], Float.ulpOfOne * Float.ulpOfOne)
    }
}
