import Foundation

#if _endian(big)
#error("safetensors data is little-endian and tensors are copied as raw memory")
#endif

/// A file in the safetensors format, the one Python's `safetensors` package reads and writes:
/// an 8-byte little-endian header length N, N bytes of JSON header (space-padded so the data starts at a
/// multiple of 8), then every tensor's little-endian bytes, contiguous, at the offsets the header gives.
///
/// The format is the exchange point with Keras and NumPy, so files are checked as strictly as the Python
/// loader checks them: a file Python would refuse is refused here too, with a message saying why.
public struct SafeTensors: Sendable {
    public enum DType: String, Sendable {
        case f32 = "F32"
        case i32 = "I32"

        var size: Int { 4 }
    }

    public struct Tensor: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Little-endian element bytes; a decoded tensor shares the file's storage.
        public let bytes: Data

        public init(name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
            self.init(name: name, dtype: .f32, shape: shape, bytes: Data(buffer: floats))
        }

        public init(name: String, shape: [Int], int32s: UnsafeBufferPointer<Int32>) {
            self.init(name: name, dtype: .i32, shape: shape, bytes: Data(buffer: int32s))
        }

        private init(name: String, dtype: DType, shape: [Int], bytes: Data) {
            precondition(shape.allSatisfy { $0 >= 0 } && shape.reduce(1, *) * dtype.size == bytes.count,
                         "tensor \(name): shape \(shape) does not match \(bytes.count) bytes")
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        fileprivate init(decodedName name: String, dtype: DType, shape: [Int], bytes: Data) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }

        public var elementCount: Int { bytes.count / dtype.size }

        public func copyFloats(to destination: UnsafeMutablePointer<Float>) {
            precondition(dtype == .f32, "tensor \(name) is \(dtype.rawValue), not F32")
            copyBytes(to: UnsafeMutableRawPointer(destination))
        }

        public var floats: [Float] {
            precondition(dtype == .f32, "tensor \(name) is \(dtype.rawValue), not F32")
            return [Float](unsafeUninitializedCapacity: elementCount) { out, n in
                if let base = out.baseAddress { copyBytes(to: UnsafeMutableRawPointer(base)) }
                n = elementCount
            }
        }

        public var int32s: [Int32] {
            precondition(dtype == .i32, "tensor \(name) is \(dtype.rawValue), not I32")
            return [Int32](unsafeUninitializedCapacity: elementCount) { out, n in
                if let base = out.baseAddress { copyBytes(to: UnsafeMutableRawPointer(base)) }
                n = elementCount
            }
        }

        private func copyBytes(to destination: UnsafeMutableRawPointer) {
            bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: destination, count: $0.count).copyMemory(from: $0) }
        }
    }

    /// The Python loader's limit; a larger header is a corrupt or hostile file, not a real one.
    public static let maxHeaderBytes = 100_000_000
    private static let metadataKey = "__metadata__"

    /// In data order.
    public var tensors: [Tensor]
    public var metadata: [String: String]

    public init(tensors: [Tensor], metadata: [String: String] = [:]) {
        let names = tensors.map(\.name)
        precondition(Set(names).count == names.count, "duplicate tensor names")
        precondition(!names.contains(Self.metadataKey), "\(Self.metadataKey) is reserved")
        self.tensors = tensors
        self.metadata = metadata
    }

    public subscript(name: String) -> Tensor? { tensors.first { $0.name == name } }

    // MARK: Encoding

    /// The file's bytes. Tensors are laid out in the order given; metadata keys are sorted so the same
    /// content always gives the same bytes (and the same checksum).
    public func encoded() -> Data {
        var json = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(Self.quoted($0)):\(Self.quoted(metadata[$0]!))" }
            fields.append("\(Self.quoted(Self.metadataKey)):{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let shape = t.shape.map(String.init).joined(separator: ",")
            fields.append("\(Self.quoted(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}")
            offset += t.bytes.count
        }
        json += fields.joined(separator: ",") + "}"
        var header = Array(json.utf8)
        header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)

        var out = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for t in tensors { out.append(t.bytes) }
        return out
    }

    private static func quoted(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    // MARK: Decoding

    /// Parses and checks a whole file; every problem is a `CharRNNError.checkpoint` naming it.
    public init(decoding data: Data) throws {
        let total = data.count
        guard total >= 8 else { throw Self.error("file is \(total) bytes, too short for the 8-byte header length") }
        let start = data.startIndex
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(data[start + i]) << UInt64(8 * i) }
        guard n <= UInt64(Self.maxHeaderBytes) else { throw Self.error("header length \(n) exceeds the \(Self.maxHeaderBytes)-byte limit") }
        guard Int(n) <= total - 8 else { throw Self.error("header length \(n) exceeds the \(total - 8) bytes after it (truncated file?)") }
        let headerLength = Int(n)
        let dataStart = start + 8 + headerLength
        let dataCount = total - 8 - headerLength

        let root = try HeaderParser.parse(Array(data[(start + 8)..<dataStart]))
        guard case .object(let entries) = root else { throw Self.error("header is not a JSON object") }

        var metadata: [String: String] = [:]
        var tensors: [(tensor: Tensor, begin: Int)] = []
        for (name, value) in entries {
            if name == Self.metadataKey {
                metadata = try Self.metadata(value)
                continue
            }
            let (dtype, shape, begin, end) = try Self.entry(name, value)
            guard begin <= end, end <= dataCount else {
                throw Self.error("tensor \(name): data_offsets [\(begin), \(end)] are outside the \(dataCount)-byte data section")
            }
            var elements = 1
            for d in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw Self.error("tensor \(name): shape \(shape) is too large") }
                elements = product
            }
            let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, expected == end - begin else {
                throw Self.error("tensor \(name): shape \(shape) of \(dtype.rawValue) needs \(overflow ? "too many" : String(expected)) bytes, but data_offsets span \(end - begin)")
            }
            let bytes = data[(dataStart + begin)..<(dataStart + end)]
            tensors.append((Tensor(decodedName: name, dtype: dtype, shape: shape, bytes: bytes), begin))
        }

        // Tensors must tile the data section exactly, as the Python loader insists: any gap or overlap means
        // the header and the data disagree.
        tensors.sort { ($0.begin, $0.tensor.bytes.count) < ($1.begin, $1.tensor.bytes.count) }
        var cursor = 0
        for (t, begin) in tensors {
            if begin < cursor { throw Self.error("tensor \(t.name) overlaps the tensor before it") }
            if begin > cursor { throw Self.error("gap of \(begin - cursor) bytes before tensor \(t.name)") }
            cursor = begin + t.bytes.count
        }
        guard cursor == dataCount else {
            throw Self.error("data section is \(dataCount) bytes but the tensors cover \(cursor) (truncated or padded file?)")
        }
        self.tensors = tensors.map(\.tensor)
        self.metadata = metadata
    }

    private static func metadata(_ value: HeaderParser.Value) throws -> [String: String] {
        guard case .object(let pairs) = value else { throw error("\(metadataKey) is not a JSON object") }
        var out: [String: String] = [:]
        for (key, v) in pairs {
            guard case .string(let s) = v else { throw error("metadata value for \(key) is not a string") }
            out[key] = s
        }
        return out
    }

    private static func entry(_ name: String, _ value: HeaderParser.Value) throws -> (DType, [Int], Int, Int) {
        guard case .object(let fields) = value else { throw error("tensor \(name): entry is not a JSON object") }
        var dtype: DType?
        var shape: [Int]?
        var offsets: [Int]?
        for (key, v) in fields {
            switch key {
            case "dtype":
                guard case .string(let s) = v else { throw error("tensor \(name): dtype is not a string") }
                guard let d = DType(rawValue: s) else { throw error("tensor \(name): unsupported dtype \(s)") }
                dtype = d
            case "shape":
                shape = try integers(v, "tensor \(name): shape")
            case "data_offsets":
                offsets = try integers(v, "tensor \(name): data_offsets")
            default:
                throw error("tensor \(name): unknown field \(key)")
            }
        }
        guard let dtype else { throw error("tensor \(name): missing dtype") }
        guard let shape else { throw error("tensor \(name): missing shape") }
        guard let offsets else { throw error("tensor \(name): missing data_offsets") }
        guard offsets.count == 2 else { throw error("tensor \(name): data_offsets must have 2 entries, has \(offsets.count)") }
        return (dtype, shape, offsets[0], offsets[1])
    }

    /// A list of non-negative integers, as shapes and offsets must be.
    private static func integers(_ value: HeaderParser.Value, _ what: String) throws -> [Int] {
        guard case .array(let items) = value else { throw error("\(what) is not a JSON array") }
        return try items.map {
            guard case .integer(let i) = $0, i >= 0 else { throw error("\(what) must hold non-negative integers") }
            return i
        }
    }

    fileprivate static func error(_ message: String) -> CharRNNError { .checkpoint("safetensors: \(message)") }
}

/// Just enough JSON for a safetensors header: objects, arrays, strings and integers. Anything else, a
/// duplicate key, or nesting deeper than a header ever needs is refused rather than guessed at, and the depth
/// bound means a hostile header cannot exhaust the stack.
private struct HeaderParser {
    indirect enum Value {
        case object([(key: String, value: Value)])
        case array([Value])
        case string(String)
        case integer(Int)
    }

    private let bytes: [UInt8]
    private var i = 0
    private static let maxDepth = 8

    static func parse(_ bytes: [UInt8]) throws -> Value {
        var p = HeaderParser(bytes: bytes)
        p.skipSpace()
        let value = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == bytes.count else { throw p.fail("unexpected content after the JSON value") }
        return value
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private func fail(_ what: String) -> CharRNNError {
        SafeTensors.error("header is not valid JSON: \(what) at byte \(i)")
    }

    private mutating func skipSpace() {
        while i < bytes.count, [0x20, 0x09, 0x0a, 0x0d].contains(bytes[i]) { i += 1 }
    }

    private mutating func expect(_ byte: UInt8) throws {
        guard i < bytes.count, bytes[i] == byte else { throw fail("expected '\(Character(Unicode.Scalar(byte)))'") }
        i += 1
    }

    private mutating func value(depth: Int) throws -> Value {
        guard depth < Self.maxDepth else { throw fail("nesting too deep") }
        guard i < bytes.count else { throw fail("unexpected end") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .integer(try integer())
        default: throw fail("unsupported value")
        }
    }

    private mutating func object(depth: Int) throws -> Value {
        try expect(UInt8(ascii: "{"))
        var pairs: [(key: String, value: Value)] = []
        var seen = Set<String>()
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
            i += 1
            return .object(pairs)
        }
        while true {
            skipSpace()
            let keyStart = i
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
            let key = try string()
            guard seen.insert(key).inserted else { throw SafeTensors.error("header has duplicate key \"\(key)\" at byte \(keyStart)") }
            skipSpace()
            try expect(UInt8(ascii: ":"))
            skipSpace()
            pairs.append((key, try value(depth: depth + 1)))
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end") }
            if bytes[i] == UInt8(ascii: "}") {
                i += 1
                return .object(pairs)
            }
            try expect(UInt8(ascii: ","))
        }
    }

    private mutating func array(depth: Int) throws -> Value {
        try expect(UInt8(ascii: "["))
        var items: [Value] = []
        skipSpace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
            i += 1
            return .array(items)
        }
        while true {
            skipSpace()
            items.append(try value(depth: depth + 1))
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end") }
            if bytes[i] == UInt8(ascii: "]") {
                i += 1
                return .array(items)
            }
            try expect(UInt8(ascii: ","))
        }
    }

    /// JSON integers only: a fraction or exponent never appears in a valid header.
    private mutating func integer() throws -> Int {
        let negative = bytes[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        let digitsStart = i
        var magnitude = 0
        while i < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
            let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(Int(bytes[i] - UInt8(ascii: "0")))
            guard !o1, !o2 else { throw fail("number too large") }
            magnitude = sum
            i += 1
        }
        guard i > digitsStart else { throw fail("expected digits") }
        guard bytes[digitsStart] != UInt8(ascii: "0") || i - digitsStart == 1 else { throw fail("leading zero") }
        if i < bytes.count, [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[i]) {
            throw fail("only integers are allowed")
        }
        return negative ? -magnitude : magnitude
    }

    private mutating func string() throws -> String {
        try expect(UInt8(ascii: "\""))
        var utf8: [UInt8] = []
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let b = bytes[i]
            i += 1
            switch b {
            case UInt8(ascii: "\""):
                guard let s = String(validating: utf8, as: UTF8.self) else { throw fail("string is not valid UTF-8") }
                return s
            case UInt8(ascii: "\\"):
                guard i < bytes.count else { throw fail("unterminated string") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(e)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0c)
                case UInt8(ascii: "n"): utf8.append(0x0a)
                case UInt8(ascii: "r"): utf8.append(0x0d)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"): utf8 += try unicodeEscape()
                default: throw fail("invalid escape")
                }
            case 0..<0x20:
                throw fail("control character in string")
            default:
                utf8.append(b)
            }
        }
    }

    /// The scalar of a `\uXXXX` escape (the `\u` already read), joining a surrogate pair, as UTF-8.
    private mutating func unicodeEscape() throws -> [UInt8] {
        var value = try hex4()
        if (0xD800..<0xDC00).contains(value) {
            guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                throw fail("unpaired surrogate")
            }
            i += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw fail("unpaired surrogate") }
            value = 0x10000 + ((value - 0xD800) << 10) + (low - 0xDC00)
        }
        guard let scalar = Unicode.Scalar(value) else { throw fail("unpaired surrogate") }
        return Array(String(Character(scalar)).utf8)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw fail("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = UInt32(String(Unicode.Scalar(bytes[i])), radix: 16) else { throw fail("bad \\u escape") }
            value = value << 4 | digit
            i += 1
        }
        return value
    }
}
