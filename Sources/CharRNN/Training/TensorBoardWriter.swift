#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A run's TensorBoard event file, in `tensorboard/` beside `metrics.jsonl`, so `tensorboard --logdir runs/`
/// shows every run: the scalars of each metrics row under the same names as metrics.jsonl's columns
/// (`loss`, `bits_per_char`, `learning_rate`, `gradient_norm`, `chars_per_second`, `workers`, and at
/// validations `val_loss`, `val_bits_per_char`), and training-time samples as text (`samples`).
///
/// Each process writes a new file, `events.out.tfevents.<seconds>.<host>.<pid>.charrnn`, TensorBoard's own
/// naming. TensorBoard reads a directory's files in name order, so the seconds are made later than every
/// existing file's: a resumed run's file always comes after the files it continues. Each file opens with
/// `SessionLog.START` at the run's first step, which makes TensorBoard drop the steps a crashed run had
/// logged past its last checkpoint; each step is then shown once.
public final class TensorBoardWriter {
    public static let directoryName = "tensorboard"
    public static let samplesTag = "samples"

    public let url: URL
    private let file: DurableFile.Appender

    /// Starts the event file of a run whose first step will be `step + 1`.
    public init(directory: URL, resumingAfter step: Int, now: Double = Date().timeIntervalSince1970) throws {
        try DurableFile.makeDirectories(directory)
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        let latest = existing.compactMap(TensorBoardWriter.seconds(inName:)).max() ?? 0
        let seconds = max(Int(now), latest + 1)
        let name = "events.out.tfevents.\(String(format: "%010d", seconds)).\(TensorBoardWriter.hostName()).\(getpid()).charrnn"
        url = directory.appendingPathComponent(name)
        file = try DurableFile.Appender(url)
        try write(TensorBoardEvent.fileVersion(wallTime: now))
        try write(TensorBoardEvent.sessionStart(wallTime: now, step: step + 1))
    }

    /// One metrics row as scalars at its step.
    public func append(_ r: MetricsRecord) throws {
        typealias Key = MetricsRecord.CodingKeys
        let values: [(Key, Double?)] = [
            (.loss, r.loss), (.bitsPerChar, r.bitsPerChar), (.learningRate, r.learningRate), (.gradientNorm, r.gradientNorm),
            (.charsPerSecond, r.charsPerSecond), (.workers, r.workers.map(Double.init)),
            (.validationLoss, r.validationLoss), (.validationBitsPerChar, r.validationBitsPerChar),
        ]
        let scalars = values.compactMap { key, value in value.map { (tag: key.rawValue, value: Float($0)) } }
        try write(TensorBoardEvent.scalars(scalars, wallTime: r.wallTime, step: r.step))
    }

    public func text(_ tag: String, _ text: String, step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        try write(TensorBoardEvent.text(tag, text, wallTime: wallTime, step: step))
    }

    public func sync() throws { try file.sync() }

    private func write(_ event: Data) throws { try file.append(TensorBoardWriter.record(event)) }

    /// TFRecord framing of one record (tensorflow/core/lib/io/record_writer.h):
    ///     u64 length, u32 masked CRC-32C of those 8 bytes, the data, u32 masked CRC-32C of the data
    /// all little-endian.
    static func record(_ data: Data) -> Data {
        var out = Data(capacity: data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Data($0) }
        out.append(length)
        withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { out.append(contentsOf: $0) }
        out.append(data)
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// The seconds field of an event file's name, if `name` is one.
    static func seconds(inName name: String) -> Int? {
        let prefix = "events.out.tfevents."
        guard name.hasPrefix(prefix) else { return nil }
        return Int(name.dropFirst(prefix.count).prefix { $0 != "." })
    }

    private static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
