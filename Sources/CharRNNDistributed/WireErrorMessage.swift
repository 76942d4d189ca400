extension WireCodec {
    static func encodeError(_ text: String, into body: inout WireWriter) throws(WireError) {
        let utf8 = Array(text.utf8)
        guard utf8.count <= Self.maxErrorBytes else { throw .malformed("error message of \(utf8.count) bytes exceeds \(Self.maxErrorBytes)") }
        body.u32(utf8.count)
        body.bytes(utf8)
    }

    func decodeError(_ reader: inout WireReader) throws(WireError) -> WireMessage {
        let length = Int(try reader.u32("error length"))
        guard length <= Self.maxErrorBytes else { throw .malformed("error message of \(length) bytes exceeds \(Self.maxErrorBytes)") }
        let text = try reader.take(length, "error message")
        guard let string = String(validating: text, as: UTF8.self) else { throw .malformed("error message is not UTF-8") }
        return .error(string)
    }
}
