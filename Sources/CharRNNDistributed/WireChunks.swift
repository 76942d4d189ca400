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

/// Bulk vectors copied out of their frames during the checksum pass, with whether each is all finite: what the
/// decoder would otherwise get from three passes over every byte (checksum, finite check, copy).
struct ReceivedVectors {
    let buffers: [FloatBuffer]
    let finite: [Bool]
}

extension WireCodec {
    /// Adds `frames` to `sum`, in order. When they are whole vectors of `floats` floats, each cut as
    /// `chunkRanges` cuts it, the same pass copies each vector into a buffer of its own and checks it for NaN and
    /// infinity. Otherwise nil: the message is malformed, which the size checks after the checksum will say.
    /// Buffers are sized from frames whose total length was already checked against the type's limit.
    static func checksumChunks(
        _ frames: ArraySlice<UnsafeRawBufferPointer>, floats: Int, into sum: inout WireChecksum
    ) -> ReceivedVectors? {
        let ranges = chunkRanges(floats: floats)
        let fits = frames.count % ranges.count == 0
            && zip(frames, (0..<frames.count).map { ranges[$0 % ranges.count] }).allSatisfy { $0.count == $1.count }
        guard fits else {
            for frame in frames { sum.add(frame) }
            return nil
        }
        var buffers: [FloatBuffer] = []
        var finite: [Bool] = []
        for (k, frame) in frames.enumerated() {
            let part = k % ranges.count
            if part == 0 {
                // Every byte is written below, as the frames cover the vector exactly.
                buffers.append(FloatBuffer(uninitializedCount: floats))
                finite.append(true)
            }
            let destination = UnsafeMutableRawPointer(buffers[buffers.count - 1].base) + ranges[part].lowerBound
            if !sum.add(floats: frame, copyingTo: destination) { finite[finite.count - 1] = false }
        }
        return ReceivedVectors(buffers: buffers, finite: finite)
    }
}

extension FloatBuffer {
    /// A buffer holding a copy of a vector that arrived in frames, as a separate pass (the decoder copies in its
    /// checksum pass; `bench coordinator` times the passes apart).
    convenience init(wireChunks frames: ArraySlice<UnsafeRawBufferPointer>) {
        self.init(uninitializedCount: frames.reduce(0) { $0 + $1.count } / 4)
        var offset = 0
        let out = UnsafeMutableRawBufferPointer(buffer)
        for frame in frames {
            UnsafeMutableRawBufferPointer(rebasing: out[offset..<(offset + frame.count)]).copyMemory(from: frame)
            offset += frame.count
        }
    }
}
