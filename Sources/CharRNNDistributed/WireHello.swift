/// What a worker announces when it connects.
public struct WorkerHello: Equatable, Sendable {
    public var name: String
    public var blasThreads: Int

    public init(name: String, blasThreads: Int) {
        self.name = name
        self.blasThreads = blasThreads
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
    }

    func decodeHello(_ reader: inout WireReader) throws(WireError) -> WireMessage {
        let threads = Int(try reader.u32("BLAS threads"))
        try Self.checkThreads(threads)
        let length = Int(try reader.u32("name length"))
        guard length <= Self.maxNameBytes else { throw .malformed("worker name of \(length) bytes exceeds \(Self.maxNameBytes)") }
        let name = Array(try reader.take(length, "worker name"))
        try Self.checkName(name)
        return .hello(WorkerHello(name: String(decoding: name, as: UTF8.self), blasThreads: threads))
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
