/// The text cut into training sequences: consecutive, non-overlapping chunks of `seq + 1` ids
/// (remainder dropped); sequence k's input is chunk[0..<seq] and its target chunk[1...seq].
public struct SequenceSet: Sendable {
    public let ids: [Int32]
    public let seq: Int
    public let count: Int

    public init(ids: [Int32], seq: Int) {
        self.ids = ids
        self.seq = seq
        count = ids.count / (seq + 1)
    }

    /// Copies sequence k's input and target into row `row` of row-major [*, seq] arrays.
    public func copy(_ k: Int, inputs: inout [Int32], targets: inout [Int32], row: Int) {
        let start = k * (seq + 1)
        for s in 0..<seq {
            inputs[row * seq + s] = ids[start + s]
            targets[row * seq + s] = ids[start + s + 1]
        }
    }
}

/// A buffered shuffle with `tf.data.Dataset.shuffle(buffer)` semantics: keep a buffer of the next
/// `buffer` elements, emit a uniformly chosen one, refill its slot from the stream. A buffer at least as
/// large as the data is a full uniform shuffle; a smaller one only mixes within a sliding window.
public enum Shuffler {
    public static func order(count: Int, buffer: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = RandomSource(seed: seed, stream: 0x5EED_0000 &+ UInt64(epoch))
        var window: [Int] = Array(0..<min(buffer, count))
        var next = window.count
        var out: [Int] = []
        out.reserveCapacity(count)
        while !window.isEmpty {
            let j = rng.nextIndex(below: window.count)
            out.append(window[j])
            if next < count {
                window[j] = next
                next += 1
            } else {
                window[j] = window[window.count - 1]
                window.removeLast()
            }
        }
        return out
    }
}
