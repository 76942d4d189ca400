#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Mean sparse softmax cross-entropy over N rows of V logits.
///
/// Forward:   loss = (1/N) Σ_n [log Σ_v exp(l[n, v]) − l[n, y_n]]
/// Backward:  dl[n, v] = (softmax(l[n])_v − [v = y_n]) / N       (written over the logits)
public enum SoftmaxCrossEntropy {
    /// Rows per block: 64 rows of the tutorial's 65 symbols are ≈ 50 µs of work; its 6,400 rows give 100 blocks.
    static let rowsPerBlock = 64

    /// `target(n)` gives row n's target id. Returns the mean loss; replaces logits by their gradient
    /// when `gradient` is true.
    public static func apply(
        _ logits: UnsafeMutablePointer<Float>, rows n: Int, vocab v: Int, gradient: Bool,
        target: (Int) -> Int
    ) -> Double {
        let scale = 1 / Float(n)
        // Rows are independent; each block of rows sums its own losses and the blocks' sums are added in order.
        return Parallel.sum(of: n, blockSize: rowsPerBlock) { rows in
            var total = 0.0
            for r in rows {
                let row = logits + r * v
                var m = -Float.infinity
                for k in 0..<v { m = max(m, row[k]) }
                var sum: Float = 0
                for k in 0..<v { sum += expf(row[k] - m) }
                let y = target(r)
                total += Double(logf(sum) + m - row[y])
                if gradient {
                    let inv = scale / sum
                    for k in 0..<v { row[k] = expf(row[k] - m) * inv }
                    row[y] -= scale
                }
            }
            return total
        } / Double(n)
    }
}
