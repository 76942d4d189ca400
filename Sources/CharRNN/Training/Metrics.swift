import Foundation

/// One row of a run's metrics: a training step, or (with `validationLoss`) an epoch's validation.
public struct MetricsRecord: Codable, Equatable, Sendable {
    public var step: Int
    public var epoch: Int
    public var loss: Double?
    public var bitsPerChar: Double?
    public var learningRate: Double?
    public var gradientNorm: Double?
    public var charsPerSecond: Double?
    public var workers: Int?
    public var wallTime: Double
    public var validationLoss: Double?
    public var validationBitsPerChar: Double?

    enum CodingKeys: String, CodingKey {
        case step, epoch, loss, learningRate = "learning_rate", gradientNorm = "gradient_norm"
        case bitsPerChar = "bits_per_char", charsPerSecond = "chars_per_second", workers, wallTime = "wall_time"
        case validationLoss = "val_loss", validationBitsPerChar = "val_bits_per_char"
    }

    static let csvColumns = ["step", "epoch", "loss", "bits_per_char", "learning_rate", "gradient_norm",
                             "chars_per_second", "workers", "wall_time", "val_loss", "val_bits_per_char"]

    var csvRow: String {
        func f(_ x: Double?) -> String { x.map { String($0) } ?? "" }
        return [String(step), String(epoch), f(loss), f(bitsPerChar), f(learningRate), f(gradientNorm),
                f(charsPerSecond), workers.map(String.init) ?? "", f(wallTime), f(validationLoss), f(validationBitsPerChar)]
            .joined(separator: ",")
    }
}

/// `metrics.jsonl` and `metrics.csv` in a run's checkpoint directory, appended step by step and across
/// `--resume`. Rows past the step a run resumes from (written after its last checkpoint, then lost with the
/// process) are dropped first, so each step appears once.
public final class MetricsLog {
    public static let jsonName = "metrics.jsonl"
    public static let csvName = "metrics.csv"

    private let json: DurableFile.Appender
    private let csv: DurableFile.Appender
    private let encoder = JSONEncoder()

    public init(directory: URL, resumingAfter step: Int) throws {
        let jsonURL = directory.appendingPathComponent(MetricsLog.jsonName)
        let csvURL = directory.appendingPathComponent(MetricsLog.csvName)
        let kept = (try? MetricsLog.read(jsonURL))?.filter { $0.step <= step } ?? []
        encoder.outputFormatting = [.sortedKeys]
        var jsonText = ""
        for r in kept { jsonText += String(decoding: try encoder.encode(r), as: UTF8.self) + "\n" }
        let csvText = ([MetricsRecord.csvColumns.joined(separator: ",")] + kept.map(\.csvRow)).joined(separator: "\n") + "\n"
        do {
            try DurableFile.makeDirectories(directory)
            try DurableFile.write(Data(jsonText.utf8), to: jsonURL)
            try DurableFile.write(Data(csvText.utf8), to: csvURL)
            json = try DurableFile.Appender(jsonURL)
            csv = try DurableFile.Appender(csvURL)
        } catch {
            throw CharRNNError.io("cannot write metrics in \(directory.path): \(error)")
        }
    }

    /// Appends one record; a failed write is not worth stopping training for, so it is only reported.
    public func append(_ r: MetricsRecord) throws {
        do {
            try json.append(try encoder.encode(r) + Data("\n".utf8))
            try csv.append(Data((r.csvRow + "\n").utf8))
        } catch {
            throw CharRNNError.io("cannot append metrics: \(error)")
        }
    }

    /// Makes every row appended so far survive a power cut.
    public func sync() throws {
        try json.sync()
        try csv.sync()
    }

    /// Every record of a `metrics.jsonl`, in file order.
    public static func read(_ url: URL) throws -> [MetricsRecord] {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw CharRNNError.io("\(url.path): no such file")
        }
        let decoder = JSONDecoder()
        return try data.split(separator: UInt8(ascii: "\n")).enumerated().map { n, line in
            do { return try decoder.decode(MetricsRecord.self, from: Data(line)) } catch {
                throw CharRNNError.data("\(url.path): line \(n + 1) is not a metrics record")
            }
        }
    }
}
