import Foundation

/// The few TensorBoard `Event` messages charrnn writes, encoded by hand in protocol-buffer wire format.
///
/// Why by hand: four messages and a dozen fields do not justify swift-protobuf, whose generated code needs
/// `protoc` at build time and whose first build takes minutes on CI. The field numbers are TensorBoard's
/// (tensorboard/compat/proto/event.proto, summary.proto, tensor.proto, types.proto):
///
///     Event           wall_time 1 (double), step 2 (int64), file_version 3 (string), summary 5,
///                     session_log 7
///     SessionLog      status 1 (enum: START = 1)
///     Summary         value 1 (repeated Value)
///     Summary.Value   tag 1 (string), simple_value 2 (float), tensor 8 (TensorProto), metadata 9
///     SummaryMetadata plugin_data 1 (PluginData: plugin_name 1)
///     TensorProto     dtype 1 (enum: DT_STRING = 7), string_val 8 (repeated bytes); no tensor_shape: a scalar
///
/// Fields are written in field-number order and proto3 defaults (a zero time or step) are left out, as
/// protobuf's own serializers do, so the bytes equal theirs (the tests compare them).
enum TensorBoardEvent {
    /// The first record of every event file; version 2 makes TensorBoard honour `SessionLog.START` (below).
    static func fileVersion(wallTime: Double) -> Data {
        var event = event(wallTime: wallTime, step: 0)
        event.string(3, "brain.Event:2")
        return event.bytes
    }

    /// "The run (re)starts at `step`": TensorBoard drops every event it has read with a step ≥ `step`, so
    /// steps that a crashed run wrote after its last checkpoint are not shown twice after `--resume`.
    static func sessionStart(wallTime: Double, step: Int) -> Data {
        var log = ProtobufFields()
        log.varint(1, 1)
        var event = event(wallTime: wallTime, step: step)
        event.message(7, log)
        return event.bytes
    }

    static func scalars(_ values: [(tag: String, value: Float)], wallTime: Double, step: Int) -> Data {
        summary(values.map { tag, value in
            var v = ProtobufFields()
            v.string(1, tag)
            v.float(2, value)
            return v
        }, wallTime: wallTime, step: step)
    }

    /// A string for TensorBoard's Text dashboard (the "text" plugin reads scalar DT_STRING tensors).
    static func text(_ tag: String, _ text: String, wallTime: Double, step: Int) -> Data {
        var tensor = ProtobufFields()
        tensor.varint(1, 7)
        tensor.bytes(8, Data(text.utf8))
        var plugin = ProtobufFields()
        plugin.string(1, "text")
        var metadata = ProtobufFields()
        metadata.message(1, plugin)
        var v = ProtobufFields()
        v.string(1, tag)
        v.message(8, tensor)
        v.message(9, metadata)
        return summary([v], wallTime: wallTime, step: step)
    }

    private static func summary(_ values: [ProtobufFields], wallTime: Double, step: Int) -> Data {
        var summary = ProtobufFields()
        for v in values { summary.message(1, v) }
        var event = event(wallTime: wallTime, step: step)
        event.message(5, summary)
        return event.bytes
    }

    private static func event(wallTime: Double, step: Int) -> ProtobufFields {
        var event = ProtobufFields()
        if wallTime != 0 { event.double(1, wallTime) }
        if step != 0 { event.varint(2, UInt64(bitPattern: Int64(step))) }
        return event
    }
}

/// A protocol-buffer message being encoded: each call appends one field (key = field number << 3 | wire type).
struct ProtobufFields {
    private(set) var bytes = Data()

    private enum WireType: UInt64 { case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5 }

    private mutating func key(_ field: Int, _ type: WireType) { appendVarint(UInt64(field) << 3 | type.rawValue) }

    /// Base-128, low group first, the high bit set on every byte but the last.
    private mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func varint(_ field: Int, _ value: UInt64) {
        key(field, .varint)
        appendVarint(value)
    }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, .fixed64)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, .fixed32)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func bytes(_ field: Int, _ value: Data) {
        key(field, .lengthDelimited)
        appendVarint(UInt64(value.count))
        bytes.append(value)
    }

    mutating func string(_ field: Int, _ value: String) { bytes(field, Data(value.utf8)) }

    mutating func message(_ field: Int, _ value: ProtobufFields) { bytes(field, value.bytes) }
}
