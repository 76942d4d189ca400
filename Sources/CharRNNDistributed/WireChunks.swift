import CharRNN

// Bulk float vectors (weights, gradients) travel as runs of frames of at most `chunkBytes` each.
//
// Why: libzmq restarts a connection's heartbeat timeout only when a whole frame has arrived. A 16 MB frame,
// sharing the coordinator's link with N others, took N·135 ms at 1 Gbit/s, so from 12 workers on the
// heartbeats timed out mid-transfer and connections dropped. With 512 KiB frames some frame of every peer
// arrives every few hundred milliseconds even at N = 64, and pings and pongs slip in between frames.
// The cut is a function of the vector's length only, so both ends know how many frames each vector takes.

extension WireCodec {
    /// The largest frame a bulk vector is cut into.
    public static let chunkBytes = 512 * 1024

    /// How many frames a vector of `floats` floats takes.
    static func chunkCount(floats: Int) -> Int { max(1, (4 * floats + chunkBytes - 1) / chunkBytes) }

    /// The byte ranges of a vector of `floats` floats, one per frame.
    static func chunkRanges(floats: Int) -> [Range<Int>] {
        let bytes = 4 * floats
        return (0..<chunkCount(floats: floats)).map { k in (k * chunkBytes)..<min(bytes, (k + 1) * chunkBytes) }
    }

    /// Zero-copy frames of `buffer`, each retaining it.
    static func chunkFrames(_ buffer: FloatBuffer) -> [ZMQFrame] {
        chunkRanges(floats: buffer.count).map { .zeroCopy(UnsafeRawBufferPointer(rebasing: buffer.rawBytes[$0]), owner: buffer) }
    }

    /// The segments the checksum covers for `buffer`: its frames, in order.
    static func chunkSegments(_ buffer: FloatBuffer) -> [UnsafeRawBufferPointer] {
        chunkRanges(floats: buffer.count).map { UnsafeRawBufferPointer(rebasing: buffer.rawBytes[$0]) }
    }

    /// Checks that `frames` are exactly the frames of one vector of `floats` finite floats, cut as
    /// `chunkRanges` cuts it.
    static func checkChunks(_ frames: ArraySlice<UnsafeRawBufferPointer>, floats: Int, _ what: String) throws(WireError) {
        let ranges = chunkRanges(floats: floats)
        guard frames.count == ranges.count else {
            throw .malformed("\(what) in \(frames.count) frames, expected \(ranges.count)")
        }
        for (k, (frame, range)) in zip(frames, ranges).enumerated() where frame.count != range.count {
            throw .malformed("frame \(k + 1) of \(what) has \(frame.count) bytes, expected \(range.count)")
        }
        for frame in frames { try checkFinite(frame, what) }
    }
}

extension FloatBuffer {
    /// A buffer holding a copy of a vector that arrived in frames (already checked by `checkChunks`).
    convenience init(wireChunks frames: ArraySlice<UnsafeRawBufferPointer>) {
        self.init(count: frames.reduce(0) { $0 + $1.count } / 4)
        var offset = 0
        let out = UnsafeMutableRawBufferPointer(buffer)
        for frame in frames {
            UnsafeMutableRawBufferPointer(rebasing: out[offset..<(offset + frame.count)]).copyMemory(from: frame)
            offset += frame.count
        }
    }
}
