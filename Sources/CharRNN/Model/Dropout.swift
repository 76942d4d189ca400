/// Inverted dropout on a recurrent layer's output sequence: between stacked layers and before the Dense layer,
/// in training only (evaluation, validation and generation see every unit).
///
/// Forward:   y = x ⊙ m        m[n, j] = 1/(1 − p) with probability 1 − p, else 0       x, y, m [T·b, H]
/// Backward:  dx = dy ⊙ m
///
/// A mask is a pure function of (seed, global step, layer, global batch row): each row draws its T·H values
/// from a stream of its own. So a shard's masks are the same whichever process computes it, a resumed run
/// draws the masks the uninterrupted one drew, and nothing is stored or sent but the rate and the seed.
public struct Dropout: Equatable, Sendable {
    public var rate: Float
    public var seed: UInt64

    public init(rate: Float, seed: UInt64) {
        self.rate = rate
        self.seed = seed
    }

    /// Fills layer `layer`'s mask for a shard whose first row is batch row `firstRow` of global step `step`:
    /// time-major [T·b, H], as the layer's output states.
    func mask(
        _ m: UnsafeMutablePointer<Float>, step: Int, firstRow: Int, layer: Int, rows b: Int, steps: Int, units h: Int
    ) {
        let keep = 1 / (1 - rate)
        // One block per row: rows draw from their own streams, so any thread may draw any row.
        Parallel.forEach(blocks: b) { i in
            var rng = RandomSource(
                seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(step + 1),
                stream: UInt64(layer) << 40 | UInt64(firstRow + i))
            for t in 0..<steps {
                let row = m + (t * b + i) * h
                for j in 0..<h { row[j] = rng.nextUnitFloat() < rate ? 0 : keep }
            }
        }
    }

    /// y = x ⊙ m over n floats (the forward pass), or dx = dy ⊙ m in place (the backward pass: x == y).
    static func apply(_ m: UnsafePointer<Float>, to x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        Parallel.forEachRange(of: n) { range in
            for k in range { y[k] = x[k] * m[k] }
        }
    }
}
