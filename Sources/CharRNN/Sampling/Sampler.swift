#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How to pick the next character from the model's logits.
public struct SamplingOptions: Sendable {
    public var temperature: Float = 1
    public var topK: Int? = nil
    /// Nucleus sampling: only the most likely symbols that together hold at least this probability.
    public var topP: Float? = nil
    public var seed: UInt64 = 0

    public init(temperature: Float = 1, topK: Int? = nil, topP: Float? = nil, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public func validate() throws {
        guard temperature > 0, temperature.isFinite else { throw CharRNNError.invalidOption("--temperature must be a positive number") }
        if let k = topK, k <= 0 { throw CharRNNError.invalidOption("--top-k must be positive, got \(k)") }
        if let p = topP, !(p > 0 && p <= 1) { throw CharRNNError.invalidOption("--top-p must be in (0, 1], got \(p)") }
    }
}

/// Stateful generation of `count` samples side by side: feed the prime one symbol at a time, then sample,
/// feed the samples back.
///
/// Per symbol and layer: h·U, then the same gate kernel as training; then logits = h·K + c from the top layer.
/// The input side is a row of the input table for layer 0, as in training, and h·W + b0 of the layer below
/// above it. The products run in OpenBLAS, threaded by OpenBLAS during `generate` (see
/// `BLASRuntime.withLibraryThreads`).
public final class Sampler {
    public let weights: Parameters
    public let count: Int
    private let table: FloatBuffer
    private var h: FloatBuffer          // [L, count, H]
    private var next: FloatBuffer       // [L, count, H]
    private var c: FloatBuffer          // [L, count, H]: an LSTM's cell states
    private var cNext: FloatBuffer      // [L, count, H]
    private let hu: FloatBuffer         // [count, G·H]
    private let xw: FloatBuffer         // [count, G·H]: the input side of layers above the first
    private let logits: FloatBuffer     // [count, V]

    /// From this many samples on, one sgemm beats a gemv per sample. Measured at H 1024 (Haswell kernel): sgemm
    /// costs ~1.1 ms for any count up to 8 (copying U into its packed layout dominates), a gemv ~0.22 ms.
    static let gemmRows = 5

    public init(weights: Parameters, count: Int = 1) {
        precondition(count > 0, "generation needs at least one sample")
        self.weights = weights
        self.count = count
        let config = weights.config
        let (width, states, cells) = (config.cell.gates * config.units, config.layers * count * config.units, config.cell == .lstm)
        table = FloatBuffer(count: config.vocab * width)
        InputTable.forward(weights, into: table.base)
        h = FloatBuffer(count: states)
        next = FloatBuffer(count: states)
        c = FloatBuffer(count: cells ? states : 0)
        cNext = FloatBuffer(count: cells ? states : 0)
        hu = FloatBuffer(count: count * width)
        xw = FloatBuffer(count: config.layers > 1 ? count * width : 0)
        logits = FloatBuffer(count: count * config.vocab)
    }

    /// Advances sample i's state by `ids[i]`; afterwards `logits(i)` scores the symbol after it.
    public func feed(_ ids: UnsafeBufferPointer<Int32>) {
        precondition(ids.count == count, "one symbol per sample")
        let config = weights.config
        let (b, units, v, layers, width) = (count, config.units, config.vocab, config.layers, config.cell.gates * config.units)
        for l in 0..<layers {
            let (state, output) = (h.base + l * b * units, next.base + l * b * units)
            if l > 0 {
                for i in 0..<b { (xw.base + i * width).update(from: weights[.bias(l)], count: width) }
                timesState(output - b * units, weights[.kernel(l)], cols: width, into: xw.base, beta: 1)
            }
            timesState(state, weights[.recurrentKernel(l)], cols: width, into: hu.base, beta: 0)
            for i in 0..<b {
                let input = l == 0 ? table.base + Int(ids[i]) * width : xw.base + i * width
                let (row, gates) = (l * b * units + i * units, hu.base + i * width)
                switch config.cell {
                case .gru:
                    GRU.cellForward(
                        units: 0..<units, of: units, xw: input, hu: gates, huStride: units, b1: weights[.bias(l)] + width,
                        hPrev: h.base + row, hNext: next.base + row, cache: nil)
                case .lstm:
                    LSTM.cellForward(
                        units: 0..<units, of: units, xw: input, hu: gates, huStride: units, cPrev: c.base + row,
                        hNext: next.base + row, cNext: cNext.base + row, cache: nil)
                }
            }
        }
        swap(&h, &next)
        swap(&c, &cNext)
        for i in 0..<b { (logits.base + i * v).update(from: weights[.denseBias], count: v) }
        timesState(h.base + (layers - 1) * b * units, weights[.denseKernel], cols: v, into: logits.base, beta: 1)
    }

    /// out = s·w + beta·out for every sample's row s of `state` [count, H], w [H, cols]. A few samples take a gemv
    /// each; more take one sgemm, which reads w once for all of them but first copies it into OpenBLAS's packed layout.
    private func timesState(
        _ state: UnsafePointer<Float>, _ w: UnsafePointer<Float>, cols: Int, into out: UnsafeMutablePointer<Float>, beta: Float
    ) {
        let units = weights.config.units
        if count < Sampler.gemmRows {
            for i in 0..<count {
                gemvTransposed(w, rows: units, cols: cols, lda: cols, state + i * units, into: out + i * cols, beta: beta)
            }
        } else {
            gemmSerial(state, transA: false, w, transB: false, into: out, m: count, n: cols, k: units, beta: beta,
                       lda: units, ldb: cols, ldc: cols)
        }
    }

    /// Sample i's scores for its next symbol, after the last `feed`.
    public func logits(_ sample: Int) -> UnsafeBufferPointer<Float> {
        let v = weights.config.vocab
        return UnsafeBufferPointer(start: logits.base + sample * v, count: v)
    }

    /// Feeds `prime` to every sample, then produces `length` ids per sample, handing each step's ids (one per
    /// sample) to `emit` as soon as they exist. Sample i draws from its own random stream, so sample 0 is
    /// the same text whatever `count` is, up to float rounding of the batched product.
    public func generate(prime: [Int32], length: Int, options: SamplingOptions, emit: (UnsafeBufferPointer<Int32>) -> Void) {
        precondition(!prime.isEmpty, "generation needs at least one prime symbol")
        h.zero()
        c.zero()
        var rngs = (0..<count).map { RandomSource(seed: options.seed, stream: 0x5A3E &+ UInt64($0)) }
        var ids = [Int32](repeating: 0, count: count)
        BLASRuntime.withLibraryThreads {
            ids.withUnsafeMutableBufferPointer { ids in
                for id in prime {
                    ids.update(repeating: id)
                    feed(UnsafeBufferPointer(ids))
                }
                for _ in 0..<length {
                    for i in 0..<count { ids[i] = Sampler.sample(logits(i), options: options, rng: &rngs[i]) }
                    emit(UnsafeBufferPointer(ids))
                    feed(UnsafeBufferPointer(ids))
                }
            }
        }
    }

    /// Draws one id from softmax(logits / temperature), restricted to the k largest when top-k is set.
    public static func sample(_ logits: UnsafeBufferPointer<Float>, options: SamplingOptions, rng: inout RandomSource) -> Int32 {
        let v = logits.count
        var keep = Array(0..<v)
        if options.topK != nil || options.topP != nil {
            keep.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            if let k = options.topK, k < v { keep.removeSubrange(k...) }
        }
        var m = -Float.infinity
        for i in keep { m = max(m, logits[i]) }
        var weights = keep.map { Double(expf((logits[$0] - m) / options.temperature)) }
        var total = weights.reduce(0, +)
        if let p = options.topP {
            // The smallest prefix of the most likely symbols that holds at least p of the probability.
            var held = 0.0
            let cut = weights.firstIndex { held += $0; return held >= Double(p) * total }.map { $0 + 1 } ?? weights.count
            keep.removeSubrange(cut...)
            weights.removeSubrange(cut...)
            total = weights.reduce(0, +)
        }
        var u = Double(rng.next() >> 11) * 0x1p-53 * total
        for (n, w) in weights.enumerated() {
            u -= w
            if u < 0 { return Int32(keep[n]) }
        }
        return Int32(keep[keep.count - 1])
    }
}
