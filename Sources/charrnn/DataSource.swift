import CharRNN
import Foundation

/// Where the training text comes from: `--data`, else `$CHARRNN_DATA`, else Tiny Shakespeare from the cache
/// (`~/.cache/charrnn/`), downloaded there once from the tutorial's URL and verified by its SHA-256.
enum DataSource {
    static func resolve(explicit: String?, log: (String) -> Void) throws -> String {
        if let path = explicit { return path }
        if let path = ProcessInfo.processInfo.environment["CHARRNN_DATA"], !path.isEmpty { return path }
        let cache = cacheDirectory().appendingPathComponent("shakespeare.txt")
        if verified(cache) { return cache.path }
        log("downloading Tiny Shakespeare from \(Corpus.tinyShakespeareURL)")
        do {
            try download(to: cache)
        } catch {
            throw CharRNNError.data("no training text: pass --data PATH or set CHARRNN_DATA (download failed: \(error))")
        }
        return cache.path
    }

    static func cacheDirectory() -> URL {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: env["HOME"] ?? NSTemporaryDirectory()).appendingPathComponent(".cache")
        return base.appendingPathComponent("charrnn", isDirectory: true)
    }

    static func verified(_ file: URL) -> Bool {
        guard let data = FileManager.default.contents(atPath: file.path) else { return false }
        return SHA256.hex(of: data) == Corpus.tinyShakespeareSHA256
    }

    /// Fetches with curl (present on the machines we target) into a temporary name, verifies, then renames,
    /// so the cache never holds a partial or wrong file.
    static func download(to file: URL) throws {
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        let partial = file.appendingPathExtension("part-\(getpid())")
        defer { try? FileManager.default.removeItem(at: partial) }
        let curl = Process()
        curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        curl.arguments = ["curl", "-fsSL", "--max-time", "120", "-o", partial.path, Corpus.tinyShakespeareURL]
        curl.standardError = FileHandle.nullDevice
        try curl.run()
        curl.waitUntilExit()
        guard curl.terminationStatus == 0 else { throw CharRNNError.io("curl exited with status \(curl.terminationStatus)") }
        guard verified(partial) else { throw CharRNNError.data("the downloaded file's SHA-256 is not the expected one") }
        _ = try FileManager.default.replaceItemAt(file, withItemAt: partial)
    }
}
