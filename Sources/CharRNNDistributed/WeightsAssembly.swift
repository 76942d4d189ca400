import CharRNN

/// A step's weights put together from the chunks that arrive by relay (or from the coordinator), in any order.
struct WeightsAssembly {
    let step: Int
    let weights: FloatBuffer
    private var have: [Bool]
    private var missing: Int

    init(step: Int, parameters: Int) {
        self.step = step
        // Every float is written, once per chunk, before the weights are used.
        weights = FloatBuffer(uninitializedCount: parameters)
        have = Array(repeating: false, count: WireCodec.chunkCount(floats: parameters))
        missing = have.count
    }

    var isComplete: Bool { missing == 0 }
    func has(_ index: Int) -> Bool { have[index] }

    /// Copies chunk `chunk.index` (its own floats only, as decoded) into place; a chunk already in is ignored.
    mutating func add(_ chunk: WeightsChunk) {
        guard !have[chunk.index] else { return }
        let range = WireCodec.chunkRanges(floats: weights.count)[chunk.index]
        precondition(4 * chunk.floats.count == range.count, "a decoded chunk holds its own floats")
        (UnsafeMutableRawPointer(weights.base) + range.lowerBound).copyMemory(from: chunk.floats.base, byteCount: range.count)
        have[chunk.index] = true
        missing -= 1
    }
}
