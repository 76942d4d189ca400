#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How to pick the next character from the model's logits.
public struct SamplingOptions: Sendable {
    public var temperature: Float = 1
    public var topK: Int? = nil
    public var seed: UInt64 = 0

    public init(temperature: Float = 1, topK: Int? = nil, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
    }

    public func validate() throws {
        guard temperature > 0, temperature.isFinite else { throw CharRNNError.invalidOption("--temperature must be a positive number") }
        if let k = topK, k <= 0 { throw CharRNNError.invalidOption("--top-k must be positive, got \(k)") }
    }
}

/// Batch-1 stateful generation: feed the prime one symbol at a time, then sample, feed the sample back.
///
/// Per symbol: hu = Uᵀh (one [H, 3H] matrix-vector product), the same gate kernel as training,
/// logits = Kᵀh + c. The input side is a row of the input table, as in training.
public final class Sampler {
    public let weights: Parameters
    private let table: FloatBuffer
    private var h: FloatBuffer
    private var next: FloatBuffer
    private let hu: FloatBuffer
    private let logits: FloatBuffer

    public init(weights: Parameters) {
        self.weights = weights
        let c = weights.config
        table = FloatBuffer(count: c.vocab * 3 * c.units)
        InputTable.forward(weights, into: table.base)
        h = FloatBuffer(count: c.units)
        next = FloatBuffer(count: c.units)
        hu = FloatBuffer(count: 3 * c.units)
        logits = FloatBuffer(count: c.vocab)
    }

    /// Advances the state by one symbol and returns the logits for the symbol after it.
    public func feed(_ id: Int32) -> UnsafeBufferPointer<Float> {
        let c = weights.config
        let units = c.units
        gemv(weights[.recurrentKernel], trans: true, rows: units, cols: 3 * units, h.base, into: hu.base)
        GRU.cellForward(
            units: units, xw: table.base + Int(id) * 3 * units, hu: hu.base, b1: weights[.bias] + 3 * units,
            hPrev: h.base, hNext: next.base, cache: nil)
        swap(&h, &next)
        logits.base.update(from: weights[.denseBias], count: c.vocab)
        gemv(weights[.denseKernel], trans: true, rows: units, cols: c.vocab, h.base, into: logits.base, beta: 1)
        return UnsafeBufferPointer(start: logits.base, count: c.vocab)
    }

    /// Feeds `prime` then produces `length` sampled ids, handing each to `emit` as soon as it exists.
    public func generate(prime: [Int32], length: Int, options: SamplingOptions, emit: (Int32) -> Void) {
        precondition(!prime.isEmpty, "generation needs at least one prime symbol")
        h.zero()
        var rng = RandomSource(seed: options.seed, stream: 0x5A3E)
        var last = UnsafeBufferPointer<Float>(start: nil, count: 0)
        for id in prime { last = feed(id) }
        for _ in 0..<length {
            let id = Sampler.sample(last, options: options, rng: &rng)
            emit(id)
            last = feed(id)
        }
    }

    /// Draws one id from softmax(logits / temperature), restricted to the k largest when top-k is set.
    public static func sample(_ logits: UnsafeBufferPointer<Float>, options: SamplingOptions, rng: inout RandomSource) -> Int32 {
        let v = logits.count
        var keep = Array(0..<v)
        if let k = options.topK, k < v {
            keep.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            keep.removeSubrange(k...)
        }
        var m = -Float.infinity
        for i in keep { m = max(m, logits[i]) }
        var weights = [Double](repeating: 0, count: keep.count)
        var total = 0.0
        for (n, i) in keep.enumerated() {
            weights[n] = Double(expf((logits[i] - m) / options.temperature))
            total += weights[n]
        }
        var u = Double(rng.next() >> 11) * 0x1p-53 * total
        for (n, w) in weights.enumerated() {
            u -= w
            if u < 0 { return Int32(keep[n]) }
        }
        return Int32(keep[keep.count - 1])
    }
}
