import Foundation
import XCTest

/// Runs the built `charrnn` executable as a real process, the way a user does.
enum CLI {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let corpus = packageRoot.deletingLastPathComponent().appendingPathComponent("shared/data/tinyshakespeare.txt")

    /// The executable SwiftPM built next to this test bundle.
    static var executable: URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("charrnn")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        fatalError("charrnn executable not found near \(CommandLine.arguments[0])")
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    @discardableResult
    static func run(_ args: [String], environment: [String: String] = [:], input: String? = nil, in directory: URL? = nil) throws -> Result {
        let p = Process()
        p.executableURL = executable
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let directory { p.currentDirectoryURL = directory }
        if let input {
            let pipe = Pipe()
            p.standardInput = pipe
            let handle = pipe.fileHandleForWriting
            DispatchQueue.global().async {
                handle.write(Data(input.utf8))
                try? handle.close()
            }
        }
        return try capture(p)
    }

    /// Runs a prepared process to its end, collecting its stdout and stderr.
    static func capture(_ p: Process) throws -> Result {
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Drain both pipes while the process runs so a chatty child never blocks on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data(), errData = Data()
        DispatchQueue.global().async(group: group) { outData = out.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
        p.waitUntilExit()
        group.wait()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    /// A fresh temporary directory, removed when the test ends.
    static func temporaryDirectory(_ test: XCTestCase) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// Training text: the first `characters` of Tiny Shakespeare when ../shared has it, else generated
    /// English-like text from a small grammar, so the tests run anywhere.
    static func text(characters: Int) -> String {
        if let data = FileManager.default.contents(atPath: corpus.path) {
            return String(decoding: data.prefix(characters), as: UTF8.self)
        }
        let subjects = ["the king", "my lord", "a lady", "the duke", "our friend"]
        let verbs = ["loves", "hath seen", "shall know", "doth fear", "will find"]
        let objects = ["the crown.", "his sword.", "thy face.", "the night.", "her heart."]
        var out = ""
        var i = 0
        while out.unicodeScalars.count < characters {
            out += "\(subjects[i % 5].capitalized) \(verbs[(i / 5) % 5]) \(objects[(i / 25) % 5])\n"
            i += 7
        }
        return String(String.UnicodeScalarView(out.unicodeScalars.prefix(characters)))
    }

    static func write(_ text: String, in dir: URL, name: String = "input.txt") throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }
}

/// A failure the way users must see it: non-zero exit, one line on stderr saying what is wrong, no trace.
func assertCleanFailure(_ r: CLI.Result, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertNotEqual(r.status, 0, "expected failure; stdout: \(r.stdout)", file: file, line: line)
    let lines = r.stderr.split(separator: "\n").filter { !$0.isEmpty }
    XCTAssertEqual(lines.count, 1, "expected one line on stderr, got: \(r.stderr)", file: file, line: line)
    XCTAssertTrue(r.stderr.contains(mentions), "stderr does not mention '\(mentions)': \(r.stderr)", file: file, line: line)
    for crash in ["Fatal error", "Stack dump", "backtrace", "Illegal instruction"] {
        XCTAssertFalse(r.stderr.contains(crash), "crashed: \(r.stderr)", file: file, line: line)
    }
}
