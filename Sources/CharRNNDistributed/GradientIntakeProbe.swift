import CharRNN

/// What the coordinator does with each received gradient, one pass at a time, for `charrnn bench coordinator`:
/// a result message of one shard at a run's sizes, encoded once, and the passes decoding makes over it. The
/// passes are the decoder's own routines, so the bench times what a coordinator runs.
public struct GradientIntakeProbe {
    public let shape: RunShape
    private let codec: WireCodec
    private let frames: [[UInt8]]

    /// A message carrying shard 0's gradient of uniform floats in [-1, 1) drawn from `seed`.
    public init(shape: RunShape, seed: UInt64) throws(WireError) {
        self.shape = shape
        codec = WireCodec(runID: 1, shape: shape)
        var rng = RandomSource(seed: seed)
        let gradient = FloatBuffer(count: shape.parameterCount)
        for i in 0..<gradient.count { gradient[i] = rng.nextUnitFloat() * 2 - 1 }
        let result = ShardResult(index: 0, loss: 1, state: FloatBuffer(count: shape.stateCount), gradient: gradient)
        frames = try codec.encode(.result([result]), step: 1).map { frame in
            switch frame {
            case .bytes(let b): return b
            case .zeroCopy(let b, _): return Array(b)
            }
        }
    }

    /// The message as a socket hands it over: a fresh copy of every frame.
    public func received() -> [ZMQMessage] { frames.map(ZMQMessage.init(copying:)) }

    /// The checksum pass over the whole message (header, body, every gradient frame).
    public func checksum(_ message: [ZMQMessage]) -> UInt64 {
        var sum = WireChecksum()
        sum.add(UnsafeRawBufferPointer(rebasing: message[0].bytes[..<32]))
        sum.add(UnsafeRawBufferPointer(rebasing: message[0].bytes[WireCodec.headerSize...]))
        for frame in message.dropFirst() { sum.add(frame.bytes) }
        return sum.value
    }

    /// The size and finiteness checks of the gradient's frames.
    public func checkGradient(_ message: [ZMQMessage]) throws(WireError) {
        try WireCodec.checkChunks(ArraySlice(message.dropFirst().map(\.bytes)), floats: shape.parameterCount, "gradient")
    }

    /// The copy of the gradient's frames into a buffer of its own.
    public func copyGradient(_ message: [ZMQMessage]) -> FloatBuffer {
        FloatBuffer(wireChunks: ArraySlice(message.dropFirst().map(\.bytes)))
    }

    /// The one pass decoding makes over the gradient's frames: checksum, finite check and copy fused; true when
    /// all is well.
    public func fusedPass(_ message: [ZMQMessage]) -> Bool {
        var sum = WireChecksum()
        sum.add(UnsafeRawBufferPointer(rebasing: message[0].bytes[..<32]))
        sum.add(UnsafeRawBufferPointer(rebasing: message[0].bytes[WireCodec.headerSize...]))
        let received = WireCodec.checksumChunks(ArraySlice(message.dropFirst().map(\.bytes)), floats: shape.parameterCount, into: &sum)
        return sum.value != 0 && received?.finite.allSatisfy { $0 } == true
    }

    /// The whole decode, every check included; returns the gradient as the coordinator receives it, renumbered
    /// as shard `index` (the message was encoded once, as shard 0).
    public func decode(_ message: [ZMQMessage], as index: Int) throws(WireError) -> ShardResult {
        guard case .result(let results) = try codec.decode(message).message, var result = results.first else {
            throw .malformed("not a result")
        }
        result.index = index
        return result
    }
}
