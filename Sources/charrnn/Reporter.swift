import ArgumentParser
import CharRNN
import Foundation
import Logging

/// How training shows itself: a live progress line on a terminal, plain log lines elsewhere.
struct OutputOptions: ParsableArguments {
    enum Progress: String, ExpressibleByArgument, CaseIterable { case auto, always, never }
    enum LogFormat: String, ExpressibleByArgument, CaseIterable { case plain, timestamped }

    @Option(help: "Live progress line: auto (on a terminal), always, never.") var progress: Progress = .auto
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"
    @Option(help: "Log lines as they are (plain), or each after its UTC time (timestamped).") var logFormat: LogFormat = .plain
    @Option(help: "Print a progress line every N steps (when output is not a terminal).") var logEvery = 100
    @Option(help: "Print and save a sample every N steps.") var sampleEvery: Int?
    @Option(help: "Characters per training-time sample.") var sampleLength = 200
    @Option(help: "Prime for training-time samples (default: the text's first character).") var samplePrime: String?

    func validate() throws {
        try requirePositive("--log-every", logEvery)
        try requirePositive("--sample-every", sampleEvery)
        try requirePositive("--sample-length", sampleLength)
    }

    func makeLogger() throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw CharRNNError.invalidOption("--log-level must be one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let timestamped = logFormat == .timestamped
        var logger = Logger(label: "charrnn") { _ in PlainLogHandler(timestamped: timestamped) }
        logger.logLevel = level
        return logger
    }

    var live: Bool {
        switch progress {
        case .always: return true
        case .never: return false
        case .auto: return isatty(STDOUT_FILENO) == 1
        }
    }
}

/// Messages as they are, one per line: logs that read like the tutorial's, and that tests and scripts can
/// parse. Warnings and errors go to stderr, the rest to stdout; optionally each line after its UTC time.
struct PlainLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info
    var timestamped = false

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let line = (timestamped ? PlainLogHandler.timestamp() + " " : "")
            + (event.level >= .warning ? "\(event.level): " : "") + event.message.description
        if event.level >= .warning { printError(line) } else { print(line) }
    }

    /// ISO 8601 in UTC with milliseconds, e.g. 2026-12-02T21:40:00.123Z.
    static func timestamp(_ date: Date = Date()) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}

/// Turns the training loop's events into output. Step lines are logged every `logEvery` steps at info level
/// (every step at debug); with `live`, a progress line is redrawn in place instead.
final class Reporter {
    private let logger: Logger
    private let logEvery: Int
    private let live: Bool
    private var drawn = false

    init(logger: Logger, logEvery: Int, live: Bool) {
        self.logger = logger
        self.logEvery = max(1, logEvery)
        self.live = live
    }

    func callAsFunction(_ event: TrainingEvent) {
        switch event {
        case .step(let e):
            let s = e.summary
            let position = "epoch \(s.epoch + 1) step \(s.stepInEpoch + 1)/\(e.stepsPerEpoch)"
            let numbers = String(format: "loss %.4f  %.3f bits/char  %.0f ms/step", s.loss, s.loss / M_LN2, e.msPerStep)
            let perWorker = e.workers > 0 ? String(format: "%.1f", Double(e.shards) / Double(e.workers)) : "-"
            let team = e.workers == 1 && e.shards == 1 ? "" : "  \(e.workers) worker(s), \(e.shards) shards (\(perWorker) per worker)"
            if live {
                let left = Double(e.finalStep - s.globalStep - 1) * e.msPerStep / 1e3
                let eta = String(format: "ETA %d:%02d:%02d", Int(left) / 3600, Int(left) / 60 % 60, Int(left) % 60)
                let bar = progressBar(Double(s.stepInEpoch + 1) / Double(e.stepsPerEpoch))
                let rate = String(format: "%.0f chars/s", e.charsPerSecond)
                let line = "\(position) \(bar) \(numbers)  \(rate)  \(eta)\(team)"
                // A line wider than the terminal wraps, and "\r" then redraws only its last row: on a narrow
                // terminal drop the bar and the rate, then cut what is left to fit.
                let fitted = Terminal.columns().map { width -> String in
                    let narrow = line.count < width ? line : "\(position) \(numbers)  \(eta)\(team)"
                    return String(narrow.prefix(max(0, width - 1)))
                } ?? line
                FileHandle.standardOutput.write(Data("\r\u{1B}[2K\(fitted)".utf8))
                drawn = true
            } else if (s.stepInEpoch + 1) % logEvery == 0 || s.globalStep + 1 == e.finalStep {
                logger.info("\(position)  \(numbers)\(team)")
            } else {
                logger.debug("\(position)  \(numbers)\(team)")
            }
        case .epoch(let e):
            var line = String(format: "epoch %d done: loss %.4f  %.3f bits/char  %.1f s  %.0f chars/s",
                              e.epoch, e.loss, e.loss / M_LN2, e.seconds, e.charsPerSecond)
            if let v = e.validationLoss {
                line += String(format: "  validation loss %.4f  %.3f bits/char%@", v, v / M_LN2, e.isBest ? " (best)" : "")
            }
            note(line)
        case .sample(let step, let text):
            note("sample at step \(step):\n\(text)")
        case .note(let line):
            note(line)
        case .warning(let line):
            endLiveLine()
            logger.warning("\(line)")
        }
    }

    private func note(_ line: String) {
        endLiveLine()
        logger.info("\(line)")
    }

    private func endLiveLine() {
        if drawn {
            FileHandle.standardOutput.write(Data("\n".utf8))
            drawn = false
        }
    }

    private func progressBar(_ fraction: Double) -> String {
        let width = 20, filled = min(width, Int(fraction * Double(width)))
        return "[" + String(repeating: "=", count: filled) + String(repeating: " ", count: width - filled) + "]"
    }
}

/// The terminal's width, read at each redraw so a resized window is followed: stdout's window size, else
/// $COLUMNS (output piped), else unknown.
enum Terminal {
    static func columns() -> Int? {
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil }
    }
}
