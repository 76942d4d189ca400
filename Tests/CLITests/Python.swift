import Foundation
import XCTest

/// Python 3 with the packages Deploy/test.sh installs, for tests that check our files with other tools'
/// own readers (TensorBoard, Keras).
enum Python {
    /// Runs `python3 -c script args…` with `environment` added; nil when python3 cannot be run at all.
    static func run(_ script: String, _ args: [String] = [], environment: [String: String] = [:]) throws -> CLI.Result? {
        try python(["-c", script] + args, environment: environment)
    }

    /// Runs the Python program at `path` with `args`.
    static func run(file path: String, _ args: [String] = [], environment: [String: String] = [:]) throws -> CLI.Result? {
        try python([path] + args, environment: environment)
    }

    private static func python(_ arguments: [String], environment: [String: String]) throws -> CLI.Result? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + arguments
        // Samples hold non-ASCII text; Python must not fall back to ASCII for a pipe.
        p.environment = ProcessInfo.processInfo.environment.merging(["PYTHONIOENCODING": "utf-8"].merging(environment) { $1 }) { $1 }
        let r = try CLI.capture(p)
        return r.status == 127 ? nil : r
    }

    /// Why python3 cannot import every module in `modules`; nil when it can.
    static func missing(_ modules: [String], environment: [String: String] = [:]) -> String? {
        let names = modules.joined(separator: ", ")
        guard let r = try? run("import " + names, environment: environment) else {
            return "python3 not available (Deploy/test.sh installs it with \(names))"
        }
        guard r.status == 0 else {
            return "python3 cannot import \(names) (Deploy/test.sh installs them): \(r.stderr.split(separator: "\n").last ?? "")"
        }
        return nil
    }

    /// Skips the test, saying what is missing, unless python3 can import every module in `modules`.
    static func require(_ modules: [String], environment: [String: String] = [:]) throws {
        if let reason = missing(modules, environment: environment) { throw XCTSkip(reason) }
    }
}
