import Foundation
import XCTest

/// Python 3 with the packages Deploy/test.sh installs, for tests that check our files with other tools'
/// own readers (TensorBoard, Keras).
enum Python {
    /// Runs `python3 -c script args…` with `environment` added; nil when python3 cannot be run at all.
    static func run(_ script: String, _ args: [String] = [], environment: [String: String] = [:]) throws -> CLI.Result? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", script] + args
        // Samples hold non-ASCII text; Python must not fall back to ASCII for a pipe.
        p.environment = ProcessInfo.processInfo.environment.merging(["PYTHONIOENCODING": "utf-8"].merging(environment) { $1 }) { $1 }
        let r = try CLI.capture(p)
        return r.status == 127 ? nil : r
    }

    /// Skips the test, saying what is missing, unless python3 can import every module in `modules`.
    static func require(_ modules: [String], environment: [String: String] = [:]) throws {
        guard let r = try run("import " + modules.joined(separator: ", "), environment: environment) else {
            throw XCTSkip("python3 not available (Deploy/test.sh installs it with \(modules.joined(separator: ", ")))")
        }
        if r.status != 0 {
            throw XCTSkip("python3 cannot import \(modules.joined(separator: ", ")) (Deploy/test.sh installs them): \(r.stderr.split(separator: "\n").last ?? "")")
        }
    }
}
