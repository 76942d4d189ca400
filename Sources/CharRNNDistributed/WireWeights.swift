import CharRNN

/// One chunk of a step's weights on its way down the relay tree, with the route below its recipient.
public struct WeightsChunk: Sendable {
    /// Which chunk: the weights are cut as `WireCodec.chunkRanges` cuts P floats.
    public let index: Int
    /// The whole weights (as the coordinator sends them), or just this chunk's floats (as a worker received and
    /// forwards them); never written while the chunk is in flight.
    public let floats: FloatBuffer
    public let route: RelayRoute

    public init(index: Int, floats: FloatBuffer, route: RelayRoute) {
        self.index = index
        self.floats = floats
        self.route = route
    }

    /// The chunk's bytes, out of `floats`.
    func bytes(parameters: Int) -> UnsafeRawBufferPointer {
        let range = WireCodec.chunkRanges(floats: parameters)[index]
        let start = floats.count == parameters ? range.lowerBound : 0
        return UnsafeRawBufferPointer(rebasing: floats.rawBytes[start..<(start + range.count)])
    }
}

extension WireCodec {
    /// The body's fixed part and its largest size (the route's workers, each an endpoint with its length and a key).
    static let largestWeightsBody = 16 + RelayRoute.maxEndpoints * (4 + RelayRoute.maxEndpointBytes + 32)

    /// Writes the body; returns the chunk's bytes, sent as the one frame after the first.
    func encodeWeights(_ chunk: WeightsChunk, into body: inout WireWriter) throws(WireError) -> UnsafeRawBufferPointer {
        let shape = try requireShape("weights")
        let count = Self.chunkCount(floats: shape.parameterCount)
        guard (0..<count).contains(chunk.index) else { throw .malformed("weight chunk \(chunk.index) of \(count)") }
        let expected = Self.chunkRanges(floats: shape.parameterCount)[chunk.index].count
        guard chunk.floats.count == shape.parameterCount || 4 * chunk.floats.count == expected else {
            throw .malformed("weight chunk \(chunk.index) from \(chunk.floats.count) floats, expected \(expected / 4) or \(shape.parameterCount)")
        }
        try Self.checkRoute(chunk.route.peers.count, fanout: chunk.route.fanout)
        let keyed = chunk.route.peers.first?.key != nil
        guard chunk.route.peers.allSatisfy({ ($0.key != nil) == keyed }) else { throw .malformed("a route with keys for some workers only") }
        body.u32(chunk.index)
        body.u32(chunk.route.fanout)
        body.u32(chunk.route.peers.count)
        body.u32(keyed ? 1 : 0)
        for peer in chunk.route.peers {
            try Self.writeEndpoint(peer.endpoint, into: &body, allowEmpty: false)
            if let key = peer.key { body.bytes(key.bytes) }
        }
        let bytes = chunk.bytes(parameters: shape.parameterCount)
        try Self.checkFinite(bytes, "weights")
        return bytes
    }

    /// `frame`: the chunk's one frame, copied and checked for finiteness in the checksum's pass as `received`.
    func decodeWeights(
        _ reader: inout WireReader, frame: UnsafeRawBufferPointer, received: (floats: FloatBuffer, finite: Bool)?
    ) throws(WireError) -> WireMessage {
        let shape = try requireShape("weights")
        let index = Int(try reader.u32("chunk index"))
        let count = Self.chunkCount(floats: shape.parameterCount)
        guard index < count else { throw .malformed("weight chunk \(index) of \(count)") }
        let fanout = Int(try reader.u32("fan-out"))
        let peerCount = Int(try reader.u32("route length"))
        try Self.checkRoute(peerCount, fanout: fanout)
        let keyed = try reader.u32("route keys flag")
        guard keyed <= 1 else { throw .malformed("route keys flag \(keyed)") }
        var peers: [RelayPeer] = []
        for _ in 0..<peerCount {
            guard let endpoint = try Self.readEndpoint(&reader) else { throw .malformed("an empty relay endpoint in a route") }
            peers.append(RelayPeer(endpoint: endpoint, key: keyed == 1 ? CurveKey(bytes: Array(try reader.take(32, "relay key"))) : nil))
        }
        let expected = Self.chunkRanges(floats: shape.parameterCount)[index].count
        guard let received, 4 * received.floats.count == expected else {
            throw .malformed("weight chunk \(index) has \(frame.count) bytes, expected \(expected)")
        }
        guard received.finite else { throw .nonFinite("weights") }
        return .weights(WeightsChunk(index: index, floats: received.floats, route: RelayRoute(fanout: fanout, peers: peers)))
    }

    /// The one frame of a weights message, copied and checked in the checksum's pass; nil unless it is a whole
    /// number of floats no longer than a chunk (the checks after the checksum say what is wrong).
    static func checksumChunk(_ frame: UnsafeRawBufferPointer, into sum: inout WireChecksum) -> (floats: FloatBuffer, finite: Bool)? {
        guard frame.count % 4 == 0, frame.count <= chunkBytes else {
            sum.add(frame)
            return nil
        }
        let floats = FloatBuffer(uninitializedCount: frame.count / 4)
        let finite = sum.add(floats: frame, copyingTo: UnsafeMutableRawPointer(floats.base))
        return (floats, finite)
    }

    static func checkRoute(_ endpoints: Int, fanout: Int) throws(WireError) {
        guard (1...RelayRoute.maxFanout).contains(fanout) else { throw .malformed("fan-out \(fanout) outside 1…\(RelayRoute.maxFanout)") }
        guard endpoints <= RelayRoute.maxEndpoints else { throw .malformed("a route of \(endpoints) workers exceeds \(RelayRoute.maxEndpoints)") }
    }

    /// u32 length, then the endpoint; an empty one (length 0) only where it means "none" (a hello's).
    static func writeEndpoint(_ endpoint: String, into body: inout WireWriter, allowEmpty: Bool) throws(WireError) {
        let bytes = Array(endpoint.utf8)
        guard allowEmpty || !bytes.isEmpty else { throw .malformed("an empty relay endpoint in a route") }
        try checkEndpoint(bytes)
        body.u32(bytes.count)
        body.bytes(bytes)
    }

    /// What `writeEndpoint` wrote; nil for an empty one.
    static func readEndpoint(_ reader: inout WireReader) throws(WireError) -> String? {
        let length = Int(try reader.u32("relay endpoint length"))
        guard length <= RelayRoute.maxEndpointBytes else { throw .malformed("relay endpoint of \(length) bytes exceeds \(RelayRoute.maxEndpointBytes)") }
        let bytes = Array(try reader.take(length, "relay endpoint"))
        try checkEndpoint(bytes)
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }

    /// A hello's relay: the endpoint (empty: none), then u32 key length (0, or 32 in a run with keys) and the key.
    static func writeRelay(_ relay: RelayPeer?, into body: inout WireWriter) throws(WireError) {
        try writeEndpoint(relay?.endpoint ?? "", into: &body, allowEmpty: true)
        body.u32(relay?.key == nil ? 0 : 32)
        if let key = relay?.key { body.bytes(key.bytes) }
    }

    static func readRelay(_ reader: inout WireReader) throws(WireError) -> RelayPeer? {
        let endpoint = try readEndpoint(&reader)
        let keyLength = try reader.u32("relay key length")
        guard keyLength == 0 || (keyLength == 32 && endpoint != nil) else { throw .malformed("relay key of \(keyLength) bytes") }
        let key = keyLength == 32 ? CurveKey(bytes: Array(try reader.take(32, "relay key"))) : nil
        return endpoint.map { RelayPeer(endpoint: $0, key: key) }
    }

    /// The run's authorized worker keys, which a relay's socket admits (with keys only).
    static func encodeRelayKeys(_ keys: [CurveKey], into body: inout WireWriter) throws(WireError) {
        guard keys.count <= RelayRoute.maxEndpoints else { throw .malformed("\(keys.count) relay keys exceed \(RelayRoute.maxEndpoints)") }
        body.u32(keys.count)
        for key in keys { body.bytes(key.bytes) }
    }

    func decodeRelayKeys(_ reader: inout WireReader) throws(WireError) -> WireMessage {
        let count = Int(try reader.u32("relay key count"))
        guard count <= RelayRoute.maxEndpoints else { throw .malformed("\(count) relay keys exceed \(RelayRoute.maxEndpoints)") }
        var keys: [CurveKey] = []
        for _ in 0..<count { keys.append(CurveKey(bytes: Array(try reader.take(32, "relay key")))) }
        return .relayKeys(keys)
    }

    /// Endpoints are connected to and logged: bounded, printable ASCII without spaces.
    static func checkEndpoint(_ bytes: [UInt8]) throws(WireError) {
        guard bytes.count <= RelayRoute.maxEndpointBytes else {
            throw .malformed("relay endpoint of \(bytes.count) bytes exceeds \(RelayRoute.maxEndpointBytes)")
        }
        guard bytes.allSatisfy({ (0x21..<0x7F).contains($0) }) else { throw .malformed("relay endpoint is not printable ASCII") }
    }
}
