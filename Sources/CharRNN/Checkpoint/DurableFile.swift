#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// The system calls by their module's name: inside `DurableFile`, plain `write`/`read` would be its own methods.
#if canImport(Glibc)
private let systemWrite = Glibc.write
private let systemRead = Glibc.read
#elseif canImport(Darwin)
private let systemWrite = Darwin.write
private let systemRead = Darwin.read
#endif

/// Files a run writes and must be able to trust after a crash or a power cut: checkpoints, `best.json`,
/// metrics, samples and key files. Every write goes through here so each has the same guarantees and reports
/// failures the same way (`CharRNNError.io` with the system's reason).
///
/// POSIX calls rather than FileManager where durability matters (fsync of files and directories), where the
/// file mode must be right from the moment the file exists, and where a user should see errno's reason.
public enum DurableFile {
    /// Writes `data` as `url`, synced to disk with its directory entry, the file created with `mode` (never
    /// wider, not even for a moment).
    ///
    /// Replacing (the default), the file only ever appears whole: the bytes go to a temporary file beside it,
    /// which then takes the final name. With `replacing: false` an existing file is never overwritten: the file
    /// is created in place with O_EXCL, for keys and for files in a directory that only appears once complete
    /// (a checkpoint's); a write that fails removes what it created.
    public static func write(_ data: Data, to url: URL, mode: mode_t = 0o644, replacing: Bool = true) throws {
        let path = url.path
        if replacing {
            // The pid keeps two processes writing the same name from sharing a temporary file.
            let temp = url.deletingLastPathComponent().appendingPathComponent(".tmp-\(url.lastPathComponent)-\(getpid())").path
            unlink(temp)
            try create(temp, mode: mode, data)
            guard rename(temp, path) == 0 else {
                let error = posixError("rename \(temp) to", path)
                unlink(temp)
                throw error
            }
        } else {
            try create(path, mode: mode, data)
        }
        try syncDirectory(url.deletingLastPathComponent())
    }

    /// A new file holding `data`, synced; nothing is left behind when it fails.
    private static func create(_ path: String, mode: mode_t, _ data: Data) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw errno == EEXIST ? CharRNNError.io("\(path) exists; not overwriting it") : posixError("create", path)
        }
        do {
            defer { close(fd) }
            try writeAll(data, to: fd, path: path)
            guard fsync(fd) == 0 else { throw posixError("sync", path) }
        } catch {
            unlink(path)
            throw error
        }
    }

    /// A file that grows by whole records (metrics rows, samples). Each `append` writes all of its bytes or
    /// throws; `sync` makes everything appended so far survive a power cut (the loop calls it at checkpoints,
    /// so the rows a checkpoint covers are on disk when it is).
    public final class Appender {
        public let url: URL
        private let fd: Int32

        /// Opens `url` for appending, creating it when absent.
        public init(_ url: URL) throws {
            self.url = url
            fd = open(url.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw DurableFile.posixError("open", url.path) }
        }

        deinit { close(fd) }

        public func append(_ data: Data) throws {
            try DurableFile.writeAll(data, to: fd, path: url.path)
        }

        public func sync() throws {
            guard fsync(fd) == 0 else { throw DurableFile.posixError("sync", url.path) }
        }
    }

    /// Appends `data` to `url` (created when absent) and closes it: for occasional records such as samples.
    public static func append(_ data: Data, to url: URL) throws {
        try Appender(url).append(data)
    }

    // MARK: Helpers for the checkpoint store

    static func posixError(_ action: String, _ path: String) -> CharRNNError {
        .io("cannot \(action) \(path): \(String(cString: strerror(errno)))")
    }

    private static func writeAll(_ data: Data, to fd: Int32, path: String) throws {
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = systemWrite(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw posixError("write", path)
                }
                offset += n
            }
        }
    }

    static func read(_ path: String) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open", path) }
        defer { close(fd) }
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw posixError("read", path)
            }
            if n == 0 { return data }
            data.append(contentsOf: chunk[0..<n])
        }
    }

    /// Makes a rename or a new entry in `url` survive a power cut.
    static func syncDirectory(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open directory", url.path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixError("sync directory", url.path) }
    }

    static func makeDirectory(_ url: URL) throws {
        guard mkdir(url.path, 0o755) == 0 else { throw posixError("create directory", url.path) }
    }

    /// `mkdir -p`, refusing a path where a file stands in the way.
    public static func makeDirectories(_ url: URL) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw CharRNNError.io("cannot use \(url.path) as a directory: it is a file") }
            return
        }
        try makeDirectories(url.deletingLastPathComponent())
        guard mkdir(url.path, 0o755) == 0 || errno == EEXIST else { throw posixError("create directory", url.path) }
    }

    static func move(_ from: URL, to: URL) throws {
        guard rename(from.path, to.path) == 0 else { throw posixError("rename \(from.path) to", to.path) }
    }

    static func removeIfPresent(_ url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        do {
            try FileManager.default.removeItem(at: url)
        } catch {
            throw CharRNNError.io("cannot remove \(url.path)")
        }
    }
}
