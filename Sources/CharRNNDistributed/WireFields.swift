import CharRNN

/// Checks shared by the messages that carry shards, weights and gradients.
extension WireCodec {
    static func checkParameters<I: BinaryInteger>(_ count: I, _ shape: RunShape, _ what: String) throws(WireError) {
        guard count == shape.parameterCount else { throw .malformed("\(what) have \(count) floats, expected \(shape.parameterCount)") }
    }

    static func shardCount(_ reader: inout WireReader, _ shape: RunShape) throws(WireError) -> Int {
        let count = Int(try reader.u32("shard count"))
        guard (1...shape.shardCount).contains(count) else { throw .malformed("\(count) shards in one message, expected 1…\(shape.shardCount)") }
        return count
    }

    static func checkShardSize(_ reader: inout WireReader, _ index: Int, _ shape: RunShape) throws(WireError) {
        let rows = Int(try reader.u32("shard rows"))
        let seq = Int(try reader.u32("shard seq"))
        guard rows == shape.rowsPerShard, seq == shape.seq else {
            throw .malformed("shard \(index) is \(rows)×\(seq), expected \(shape.rowsPerShard)×\(shape.seq)")
        }
    }

    static func checkShardRows(_ rows: Int, _ index: Int, _ shape: RunShape) throws(WireError) {
        guard rows == shape.rowsPerShard else { throw .malformed("shard \(index) has \(rows) rows, expected \(shape.rowsPerShard)") }
    }

    static func checkShardIndices(_ indices: [Int], _ shape: RunShape) throws(WireError) {
        guard (1...shape.shardCount).contains(indices.count) else {
            throw .malformed("\(indices.count) shards in one message, expected 1…\(shape.shardCount)")
        }
        var seen = Set<Int>()
        for index in indices {
            guard (0..<shape.shardCount).contains(index) else { throw .malformed("shard index \(index) outside 0..<\(shape.shardCount)") }
            guard seen.insert(index).inserted else { throw .malformed("shard \(index) appears twice") }
        }
    }

    static func checkTokens(_ bytes: UnsafeRawBufferPointer, _ shape: RunShape, _ what: String) throws(WireError) {
        if let id = outOfVocabulary(bytes, shape) { throw tokenError(id, shape, what) }
    }

    /// The first token id (int32 values in `bytes`) outside the vocabulary, if any.
    static func outOfVocabulary(_ bytes: UnsafeRawBufferPointer, _ shape: RunShape) -> Int32? {
        let vocab = UInt32(shape.config.vocab)
        for i in 0..<bytes.count / 4 {
            // Unsigned comparison rejects negative ids too.
            let id = bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
            if id >= vocab { return Int32(bitPattern: id) }
        }
        return nil
    }

    static func tokenError(_ id: Int32, _ shape: RunShape, _ what: String) -> WireError {
        .malformed("token id \(id) in \(what) outside 0..<\(shape.config.vocab)")
    }

    static func checkFinite(_ bytes: UnsafeRawBufferPointer, _ what: String) throws(WireError) {
        // An all-ones exponent is NaN or infinity. OR-reducing a flag keeps the loop branch-free and vectorisable.
        var bad: UInt32 = 0
        for i in 0..<bytes.count / 4 {
            let bits = bytes.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
            bad |= (bits & 0x7F80_0000) == 0x7F80_0000 ? 1 : 0
        }
        guard bad == 0 else { throw .nonFinite(what) }
    }

    static func int32s(_ bytes: UnsafeRawBufferPointer) -> [Int32] {
        [Int32](unsafeUninitializedCapacity: bytes.count / 4) { buffer, count in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes)
            count = bytes.count / 4
        }
    }
}

/// Appends little-endian fields to a growing frame.
struct WireWriter {
    var output: [UInt8] = []

    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { output.append(contentsOf: $0) } }
    mutating func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { output.append(contentsOf: $0) } }
    mutating func u64(_ v: Int) { u64(UInt64(v)) }
    mutating func f32(_ v: Float) { u32(Int(v.bitPattern)) }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { output.append(contentsOf: $0) } }
    mutating func bytes(_ b: [UInt8]) { output.append(contentsOf: b) }
    /// One memcpy: floats and token ids are already in wire order on a little-endian host.
    mutating func bytes(_ b: UnsafeRawBufferPointer) { output.append(contentsOf: b) }
}

/// Reads fields from a frame, refusing to read past its end.
struct WireReader {
    private let input: UnsafeRawBufferPointer
    private var offset = 0

    init(_ input: UnsafeRawBufferPointer) { self.input = input }

    mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws(WireError) -> UnsafeRawBufferPointer {
        guard count <= input.count - offset else { throw .malformed("body ends inside \(what())") }
        defer { offset += count }
        return UnsafeRawBufferPointer(rebasing: input[offset..<(offset + count)])
    }

    mutating func u16(_ what: @autoclosure () -> String) throws(WireError) -> UInt16 {
        UInt16(littleEndian: try take(2, what()).loadUnaligned(as: UInt16.self))
    }

    mutating func u32(_ what: @autoclosure () -> String) throws(WireError) -> UInt32 {
        UInt32(littleEndian: try take(4, what()).loadUnaligned(as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String) throws(WireError) -> UInt64 {
        UInt64(littleEndian: try take(8, what()).loadUnaligned(as: UInt64.self))
    }

    mutating func f32(_ what: @autoclosure () -> String) throws(WireError) -> Float {
        Float(bitPattern: try u32(what()))
    }

    func finish() throws(WireError) {
        guard offset == input.count else { throw .malformed("\(input.count - offset) unexpected bytes after the body") }
    }
}

extension FloatBuffer {
    /// A buffer holding a copy of wire floats (already checked to be a whole number of finite floats).
    convenience init(wireBytes bytes: UnsafeRawBufferPointer) {
        self.init(count: bytes.count / 4)
        UnsafeMutableRawBufferPointer(buffer).copyMemory(from: bytes)
    }

    var rawBytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(buffer) }
}
