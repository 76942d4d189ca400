/// What a worker announces when it connects.
public struct WorkerHello: Equatable, Sendable {
    public var name: String
    public var blasThreads: Int
    /// How it computes: the coordinator admits only workers that compute as it does.
    public var identity: NumericsIdentity
    /// Where (and, with keys, as whom) other workers reach this one to pass it the weights (a relay of the tree);
    /// nil when it takes them from the coordinator only.
    public var relay: RelayPeer?

    public init(name: String, blasThreads: Int, identity: NumericsIdentity = .current, relay: RelayPeer? = nil) {
        self.name = name
        self.blasThreads = blasThreads
        self.identity = identity
        self.relay = relay
    }

    /// Why `name` cannot travel in a hello (more than `WireCodec.maxNameBytes` of UTF-8, control characters),
    /// or nil when it can.
    public static func problem(name: String) -> String? {
        do {
            try WireCodec.checkName(Array(name.utf8))
            return nil
        } catch {
            guard case .malformed(let why) = error else { return error.description }
            return why
        }
    }
}

extension WireCodec {
    static func encodeHello(_ hello: WorkerHello, into body: inout WireWriter) throws(WireError) {
        try Self.checkThreads(hello.blasThreads)
        let name = Array(hello.name.utf8)
        try Self.checkName(name)
        body.u32(hello.blasThreads)
        body.u32(name.count)
        body.bytes(name)
        for (field, text) in [("BLAS kernel", hello.identity.kernel), ("version", hello.identity.version)] {
            let bytes = Array(text.utf8)
            try checkIdentityField(bytes, field)
            body.u32(bytes.count)
            body.bytes(bytes)
        }
        body.u64(hello.identity.probe)
        try writeRelay(hello.relay, into: &body)
    }

    func decodeHello(_ reader: inout WireReader) throws(WireError) -> WireMessage {
        let threads = Int(try reader.u32("BLAS threads"))
        try Self.checkThreads(threads)
        let length = Int(try reader.u32("name length"))
        guard length <= Self.maxNameBytes else { throw .malformed("worker name of \(length) bytes exceeds \(Self.maxNameBytes)") }
        let name = Array(try reader.take(length, "worker name"))
        try Self.checkName(name)
        var fields: [String] = []
        for field in ["BLAS kernel", "version"] {
            let length = Int(try reader.u32("\(field) length"))
            guard length <= NumericsIdentity.maxFieldBytes else { throw .malformed("\(field) of \(length) bytes exceeds \(NumericsIdentity.maxFieldBytes)") }
            let bytes = Array(try reader.take(length, field))
            try Self.checkIdentityField(bytes, field)
            fields.append(String(decoding: bytes, as: UTF8.self))
        }
        let identity = NumericsIdentity(kernel: fields[0], version: fields[1], probe: try reader.u64("probe"))
        return .hello(WorkerHello(
            name: String(decoding: name, as: UTF8.self), blasThreads: threads, identity: identity, relay: try Self.readRelay(&reader)))
    }

    /// The kernel and version end up in logs and errors: bounded, printable ASCII.
    static func checkIdentityField(_ bytes: [UInt8], _ field: String) throws(WireError) {
        guard bytes.count <= NumericsIdentity.maxFieldBytes else {
            throw .malformed("\(field) of \(bytes.count) bytes exceeds \(NumericsIdentity.maxFieldBytes)")
        }
        guard bytes.allSatisfy({ (0x20..<0x7F).contains($0) }) else { throw .malformed("\(field) is not printable ASCII") }
    }

    static func checkThreads(_ threads: Int) throws(WireError) {
        guard (1...1024).contains(threads) else { throw .malformed("BLAS threads \(threads) outside 1…1024") }
    }

    /// Names end up in logs and status lines: bounded, UTF-8, and unable to forge lines or terminal escapes.
    static func checkName(_ name: [UInt8]) throws(WireError) {
        guard name.count <= maxNameBytes else { throw .malformed("worker name of \(name.count) bytes exceeds \(maxNameBytes)") }
        guard let string = String(validating: name, as: UTF8.self) else { throw .malformed("worker name is not UTF-8") }
        guard !string.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw .malformed("worker name contains control characters")
        }
    }
}
