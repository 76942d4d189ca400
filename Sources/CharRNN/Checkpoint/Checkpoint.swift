#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A `TrainingState` on disk: one directory per saved step, `step-000000123`, under a checkpoint root.
///
///     model.safetensors      the weights by Keras name and shape, loadable from Python as they are
///     optimizer.safetensors  Adam's moments as m/<name> and v/<name>, t in the metadata
///     state.safetensors      hidden [batch, L·H] (an LSTM: [batch, 2·L·H]; see `ModelConfig.stateWidth`)
///     checkpoint.json        everything else, and the SHA-256 of the three files above; written last
///
/// A step directory only ever appears complete (it is built under a temporary name, synced, then renamed),
/// and loading verifies every checksum and shape, so a resume either continues exactly or refuses.
public enum Checkpoint {
    public static let formatVersion = 1

    /// A step directory found under a root.
    public struct Entry: Equatable, Sendable {
        public let step: Int
        public let url: URL
    }

    public static func directoryName(step: Int) -> String {
        precondition(step >= 0, "negative step")
        let digits = String(step)
        return "step-" + String(repeating: "0", count: max(0, 9 - digits.count)) + digits
    }

    private enum File {
        static let model = "model.safetensors"
        static let optimizer = "optimizer.safetensors"
        static let state = "state.safetensors"
        static let manifest = "checkpoint.json"
    }

    private static let formatName = "charrnn"

    /// The contents of `checkpoint.json`.
    private struct Manifest: Codable {
        var format: String
        var version: Int
        var config: ModelConfig
        var vocabulary: [UInt32]
        var options: TrainingOptions
        var position: TrainingPosition
        var adamT: Int
        var sha256: [String: String]
        /// Absent in checkpoints written before the text was recorded.
        var text: TextSource?
    }

    // MARK: Saving

    /// Writes `state` as `root/step-<globalStep>`, replacing a directory of that name, then (with `keep`)
    /// removes the oldest step directories beyond the newest `keep`, never the one just written nor the steps
    /// in `spared` (the best checkpoint by validation loss).
    /// Returns the new directory. On failure nothing under `root` has changed.
    @discardableResult
    public static func save(_ state: TrainingState, in root: URL, keep: Int? = nil, sparing spared: Set<Int> = []) throws -> URL {
        precondition(keep.map { $0 >= 1 } ?? true, "keep must be at least 1")
        precondition(state.vocabulary.count == state.config.vocab, "vocabulary does not match the model")
        let name = directoryName(step: state.position.globalStep)
        try makeDirectories(root)
        let final = root.appendingPathComponent(name, isDirectory: true)
        // The pid keeps two processes sharing a root from writing into each other's temporary directory.
        let temp = root.appendingPathComponent(".tmp-\(name)-\(getpid())", isDirectory: true)
        try removeIfPresent(temp)
        do {
            try makeDirectory(temp)
            var sums: [String: String] = [:]
            // One file is encoded at a time so a large model is never held three times over.
            for (file, contents) in [(File.model, modelFile), (File.optimizer, optimizerFile), (File.state, stateFile)] {
                let bytes = contents(state).encoded()
                try writeDurably(bytes, to: temp.appendingPathComponent(file))
                sums[file] = SHA256.hex(of: bytes)
            }
            let manifest = Manifest(
                format: formatName, version: formatVersion, config: state.config,
                vocabulary: state.vocabulary.codePoints, options: state.options, position: state.position,
                adamT: state.adam.t, sha256: sums, text: state.text)
            try writeDurably(try encodeManifest(manifest), to: temp.appendingPathComponent(File.manifest))
            try syncDirectory(temp)
            try install(temp, as: final, in: root)
        } catch {
            try? FileManager.default.removeItem(at: temp)
            throw error
        }
        if let keep { try prune(root, keep: keep, sparing: final, and: spared) }
        return final
    }

    private static func modelFile(_ s: TrainingState) -> SafeTensors {
        let c = s.config
        return SafeTensors(
            tensors: tensors(s.weights, prefix: ""),
            metadata: ["format": formatName, "vocab": String(c.vocab), "embed": String(c.embed), "units": String(c.units),
                       VocabularyMetadata.key: VocabularyMetadata.encode(s.vocabulary)])
    }

    private static func optimizerFile(_ s: TrainingState) -> SafeTensors {
        SafeTensors(tensors: tensors(s.adam.m, prefix: "m/") + tensors(s.adam.v, prefix: "v/"), metadata: ["t": String(s.adam.t)])
    }

    private static func stateFile(_ s: TrainingState) -> SafeTensors {
        SafeTensors(tensors: [
            SafeTensors.Tensor(name: "hidden", shape: [s.options.batch, s.config.stateWidth], floats: UnsafeBufferPointer(s.hidden.buffer)),
        ])
    }

    private static func tensors(_ p: Parameters, prefix: String) -> [SafeTensors.Tensor] {
        p.names.map {
            SafeTensors.Tensor(name: prefix + p.layout.keras($0), shape: $0.shape(p.config), floats: UnsafeBufferPointer(p.tensor($0)))
        }
    }

    private static func encodeManifest(_ manifest: Manifest) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            return try encoder.encode(manifest)
        } catch {
            throw CharRNNError.checkpoint("cannot encode checkpoint.json: \(error)")
        }
    }

    /// Moves the finished temporary directory to its final name. An existing directory of that name is
    /// renamed aside first and put back if the move fails, so some complete checkpoint is always there.
    private static func install(_ temp: URL, as final: URL, in root: URL) throws {
        guard FileManager.default.fileExists(atPath: final.path) else {
            try move(temp, to: final)
            try syncDirectory(root)
            return
        }
        let aside = root.appendingPathComponent(".old-\(final.lastPathComponent)-\(getpid())", isDirectory: true)
        try removeIfPresent(aside)
        try move(final, to: aside)
        do {
            try move(temp, to: final)
        } catch {
            try? move(aside, to: final)
            throw error
        }
        try syncDirectory(root)
        try removeIfPresent(aside)
    }

    private static func prune(_ root: URL, keep: Int, sparing saved: URL, and spared: Set<Int>) throws {
        let entries = try list(in: root)
        for entry in entries.dropLast(keep) where entry.url.lastPathComponent != saved.lastPathComponent && !spared.contains(entry.step) {
            do {
                try FileManager.default.removeItem(at: entry.url)
            } catch {
                throw CharRNNError.io("saved \(saved.lastPathComponent) but cannot remove old checkpoint \(entry.url.path)")
            }
        }
    }

    // MARK: Finding

    /// Every `step-NNNNNNNNN` directory under `root`, oldest first; none if `root` does not exist.
    public static func list(in root: URL) throws -> [Entry] {
        guard FileManager.default.fileExists(atPath: root.path) else { return [] }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: root.path)
        } catch {
            throw CharRNNError.io("cannot list checkpoint directory \(root.path)")
        }
        return names.compactMap { name in
            guard name.hasPrefix("step-"), let step = Int(name.dropFirst(5)), step >= 0,
                  name == directoryName(step: step) else { return nil }
            return Entry(step: step, url: root.appendingPathComponent(name, isDirectory: true))
        }.sorted { $0.step < $1.step }
    }

    /// The newest checkpoint under `root` that loads and verifies. Each newer one that does not is passed to
    /// `warn` with the reason and skipped. Nil when there are no checkpoints; an error when none is usable.
    public static func latest(in root: URL, warn: (String) -> Void = { _ in }) throws -> (url: URL, state: TrainingState)? {
        let entries = try list(in: root)
        guard !entries.isEmpty else { return nil }
        var newestProblem = ""
        for entry in entries.reversed() {
            do {
                return (entry.url, try load(entry.url))
            } catch {
                if newestProblem.isEmpty { newestProblem = "\(error)" }
                warn("skipping unusable checkpoint \(entry.url.lastPathComponent): \(error)")
            }
        }
        throw CharRNNError.checkpoint("no usable checkpoint in \(root.path); the newest failed with: \(newestProblem)")
    }

    // MARK: Loading

    /// Loads and verifies a step directory: checksums, format, shapes and vocabulary.
    public static func load(_ dir: URL) throws -> TrainingState {
        let place = dir.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: place, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CharRNNError.checkpoint("\(place) is not a checkpoint directory")
        }
        let manifest = try decodeManifest(try readComponent(File.manifest, of: dir), place: place)
        let c = manifest.config
        func fail(_ message: String) -> CharRNNError { .checkpoint("\(place): \(message)") }

        guard manifest.format == formatName else { throw fail("format is \"\(manifest.format)\", expected \"\(formatName)\"") }
        guard manifest.version == formatVersion else { throw fail("unsupported format version \(manifest.version)") }
        guard c.vocab > 0, c.embed > 0, c.units > 0, c.layers > 0 else { throw fail("invalid model size \(c)") }
        let vocabulary: Vocabulary
        do {
            vocabulary = try Vocabulary(codePoints: manifest.vocabulary)
        } catch {
            throw fail("invalid vocabulary: \(error)")
        }
        guard vocabulary.count == c.vocab else { throw fail("vocabulary has \(vocabulary.count) symbols, model expects \(c.vocab)") }
        do {
            try manifest.options.validate()
        } catch {
            throw fail("invalid training options: \(error)")
        }
        let p = manifest.position
        guard p.epoch >= 0, p.stepInEpoch >= 0, p.globalStep >= 0, manifest.adamT >= 0 else { throw fail("negative step counter") }

        func verified(_ file: String) throws -> SafeTensors {
            guard let expected = manifest.sha256[file] else { throw fail("checkpoint.json lists no checksum for \(file)") }
            let bytes = try readComponent(file, of: dir)
            guard SHA256.hex(of: bytes) == expected.lowercased() else { throw fail("checksum mismatch in \(file)") }
            return try decode(bytes, source: "\(place)/\(file)")
        }

        let model = try verified(File.model)
        let expectedMetadata = ["format": formatName, "vocab": String(c.vocab), "embed": String(c.embed), "units": String(c.units)]
        for (key, value) in expectedMetadata.sorted(by: { $0.key < $1.key }) where model.metadata[key] != value {
            throw fail("model.safetensors metadata \(key) is \(model.metadata[key].map { "\"\($0)\"" } ?? "missing"), expected \"\(value)\"")
        }
        if let rows = try VocabularyMetadata.decode(model.metadata, source: "\(place)/\(File.model)"),
           rows != vocabulary.scalars.map({ String($0) }) {
            throw fail("model.safetensors metadata \(VocabularyMetadata.key) does not match checkpoint.json's vocabulary")
        }
        let weights = try parameters(from: model, config: c, prefix: "", source: "\(place)/\(File.model)")
        try requireOnly(weightNames(c, prefix: ""), in: model, source: "\(place)/\(File.model)")

        let optimizer = try verified(File.optimizer)
        guard optimizer.metadata["t"] == String(manifest.adamT) else {
            throw fail("optimizer.safetensors step t does not match checkpoint.json")
        }
        let m = try parameters(from: optimizer, config: c, prefix: "m/", source: "\(place)/\(File.optimizer)")
        let v = try parameters(from: optimizer, config: c, prefix: "v/", source: "\(place)/\(File.optimizer)")
        try requireOnly(weightNames(c, prefix: "m/").union(weightNames(c, prefix: "v/")), in: optimizer, source: "\(place)/\(File.optimizer)")

        let stateFile = try verified(File.state)
        try requireOnly(["hidden"], in: stateFile, source: "\(place)/\(File.state)")
        let hidden = FloatBuffer(count: c.stateCount(rows: manifest.options.batch))
        try copy(stateFile, "hidden", shape: [manifest.options.batch, c.stateWidth], into: hidden.base, source: "\(place)/\(File.state)")

        var state = TrainingState(
            vocabulary: vocabulary, options: manifest.options, position: p,
            weights: weights, adam: AdamState(m: m, v: v, t: manifest.adamT), hidden: hidden)
        state.text = manifest.text
        return state
    }

    /// The weights alone from any safetensors file using the Keras names (a checkpoint's `model.safetensors`
    /// or a Keras export), checked tensor by tensor against `config`.
    public static func loadWeights(from file: URL, config: ModelConfig) throws -> Parameters {
        let source = file.path
        let tensors = try decode(try readFile(source), source: source)
        let weights = try parameters(from: tensors, config: config, prefix: "", source: source)
        try requireOnly(weightNames(config, prefix: ""), in: tensors, source: source)
        return weights
    }

    private static func decodeManifest(_ data: Data, place: String) throws -> Manifest {
        do {
            return try JSONDecoder().decode(Manifest.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw CharRNNError.checkpoint("\(place): checkpoint.json lacks \(path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw CharRNNError.checkpoint("\(place): checkpoint.json has a wrong value at \(path(context.codingPath))")
        } catch {
            throw CharRNNError.checkpoint("\(place): checkpoint.json is not valid JSON")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }

    private static func weightNames(_ c: ModelConfig, prefix: String) -> Set<String> {
        Set(TensorName.all(c).map { prefix + $0.keras(c) })
    }

    private static func parameters(from file: SafeTensors, config: ModelConfig, prefix: String, source: String) throws -> Parameters {
        let p = Parameters(config)
        for name in p.names {
            try copy(file, prefix + p.layout.keras(name), shape: name.shape(config), into: p[name], source: source)
        }
        return p
    }

    private static func copy(_ file: SafeTensors, _ name: String, shape: [Int], into destination: UnsafeMutablePointer<Float>, source: String) throws {
        guard let t = file[name] else { throw CharRNNError.checkpoint("\(source): missing tensor \(name)") }
        guard t.dtype == .f32 else { throw CharRNNError.checkpoint("\(source): \(name) has dtype \(t.dtype.rawValue), expected F32") }
        guard t.shape == shape else { throw CharRNNError.checkpoint("\(source): \(name) has shape \(t.shape), expected \(shape)") }
        t.copyFloats(to: destination)
    }

    private static func requireOnly(_ names: Set<String>, in file: SafeTensors, source: String) throws {
        if let extra = file.tensors.map(\.name).filter({ !names.contains($0) }).sorted().first {
            throw CharRNNError.checkpoint("\(source): unexpected tensor \(extra)")
        }
    }

    /// Safetensors errors name the problem but not the file; this adds the file.
    private static func decode(_ bytes: Data, source: String) throws -> SafeTensors {
        do {
            return try SafeTensors(decoding: bytes)
        } catch CharRNNError.checkpoint(let message) {
            throw CharRNNError.checkpoint("\(source): \(message)")
        }
    }

    /// A file of a step directory; a missing one means the checkpoint is damaged, not that the disk failed.
    private static func readComponent(_ file: String, of dir: URL) throws -> Data {
        let url = dir.appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CharRNNError.checkpoint("\(dir.path): missing \(file)")
        }
        return try readFile(url.path)
    }

    // MARK: Files
    //
    // POSIX calls rather than FileManager where durability matters (fsync of files and directories) and
    // where a user should see the system's reason (errno) for a failure.

    private static func posixError(_ action: String, _ path: String) -> CharRNNError {
        .io("cannot \(action) \(path): \(String(cString: strerror(errno)))")
    }

    private static func readFile(_ path: String) throws -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open", path) }
        defer { close(fd) }
        var data = Data()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw posixError("read", path)
            }
            if n == 0 { return data }
            data.append(contentsOf: chunk[0..<n])
        }
    }

    private static func writeDurably(_ data: Data, to url: URL) throws {
        let path = url.path
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw posixError("create", path) }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw posixError("write", path)
                }
                offset += n
            }
        }
        guard fsync(fd) == 0 else { throw posixError("sync", path) }
    }

    /// Makes a rename or a new entry in `url` survive a power cut.
    private static func syncDirectory(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw posixError("open directory", url.path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw posixError("sync directory", url.path) }
    }

    private static func makeDirectory(_ url: URL) throws {
        guard mkdir(url.path, 0o755) == 0 else { throw posixError("create directory", url.path) }
    }

    /// `mkdir -p`, refusing a path where a file stands in the way.
    private static func makeDirectories(_ url: URL) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw CharRNNError.io("cannot use \(url.path) as a directory: it is a file") }
            return
        }
        try makeDirectories(url.deletingLastPathComponent())
        guard mkdir(url.path, 0o755) == 0 || errno == EEXIST else { throw posixError("create directory", url.path) }
    }

    private static func move(_ from: URL, to: URL) throws {
        guard rename(from.path, to.path) == 0 else { throw posixError("rename \(from.path) to", to.path) }
    }

    private static func removeIfPresent(_ url: URL) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { return }
        do {
            try FileManager.default.removeItem(at: url)
        } catch {
            throw CharRNNError.io("cannot remove \(url.path)")
        }
    }
}
