#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// The checkpoint store: a `TrainingState` on disk as one directory per saved step, `step-000000123`, under a
/// checkpoint root, holding the three tensor files (`CheckpointTensors`) and `checkpoint.json`
/// (`CheckpointManifest`, with their SHA-256), written last.
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
        try DurableFile.makeDirectories(root)
        let final = root.appendingPathComponent(name, isDirectory: true)
        // The pid keeps two processes sharing a root from writing into each other's temporary directory.
        let temp = root.appendingPathComponent(".tmp-\(name)-\(getpid())", isDirectory: true)
        try DurableFile.removeIfPresent(temp)
        do {
            try DurableFile.makeDirectory(temp)
            var sums: [String: String] = [:]
            // One file is encoded at a time so a large model is never held three times over.
            for (file, contents) in CheckpointTensors.files {
                let bytes = contents(state).encoded()
                try DurableFile.write(bytes, to: temp.appendingPathComponent(file), replacing: false)
                sums[file] = SHA256.hex(of: bytes)
            }
            let manifest = try CheckpointManifest(state, sha256: sums).encoded()
            try DurableFile.write(manifest, to: temp.appendingPathComponent(CheckpointManifest.fileName), replacing: false)
            try install(temp, as: final, in: root)
        } catch {
            try? FileManager.default.removeItem(at: temp)
            throw error
        }
        if let keep { try prune(root, keep: keep, sparing: final, and: spared) }
        return final
    }

    /// Moves the finished temporary directory to its final name. An existing directory of that name is
    /// renamed aside first and put back if the move fails, so some complete checkpoint is always there.
    private static func install(_ temp: URL, as final: URL, in root: URL) throws {
        guard FileManager.default.fileExists(atPath: final.path) else {
            try DurableFile.move(temp, to: final)
            try DurableFile.syncDirectory(root)
            return
        }
        let aside = root.appendingPathComponent(".old-\(final.lastPathComponent)-\(getpid())", isDirectory: true)
        try DurableFile.removeIfPresent(aside)
        try DurableFile.move(final, to: aside)
        do {
            try DurableFile.move(temp, to: final)
        } catch {
            try? DurableFile.move(aside, to: final)
            throw error
        }
        try DurableFile.syncDirectory(root)
        try DurableFile.removeIfPresent(aside)
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
        let manifest = try CheckpointManifest(decoding: try readComponent(CheckpointManifest.fileName, of: dir), place: place)
        let vocabulary = try manifest.checked(place: place)
        let c = manifest.config
        func fail(_ message: String) -> CharRNNError { .checkpoint("\(place): \(message)") }

        func verified(_ file: String) throws -> SafeTensors {
            guard let expected = manifest.sha256[file] else { throw fail("\(CheckpointManifest.fileName) lists no checksum for \(file)") }
            let bytes = try readComponent(file, of: dir)
            guard SHA256.hex(of: bytes) == expected.lowercased() else { throw fail("checksum mismatch in \(file)") }
            return try CheckpointTensors.decode(bytes, source: "\(place)/\(file)")
        }
        typealias Tensors = CheckpointTensors

        let model = try verified(Tensors.model)
        for (key, value) in Tensors.modelMetadata(c).sorted(by: { $0.key < $1.key }) where model.metadata[key] != value {
            throw fail("\(Tensors.model) metadata \(key) is \(model.metadata[key].map { "\"\($0)\"" } ?? "missing"), expected \"\(value)\"")
        }
        if let rows = try VocabularyMetadata.decode(model.metadata, source: "\(place)/\(Tensors.model)"),
           rows != vocabulary.scalars.map({ String($0) }) {
            throw fail("\(Tensors.model) metadata \(VocabularyMetadata.key) does not match \(CheckpointManifest.fileName)'s vocabulary")
        }
        let weights = try Tensors.parameters(from: model, config: c, prefix: "", source: "\(place)/\(Tensors.model)")
        try Tensors.requireOnly(Tensors.weightNames(c, prefix: ""), in: model, source: "\(place)/\(Tensors.model)")

        let optimizer = try verified(Tensors.optimizer)
        guard optimizer.metadata["t"] == String(manifest.adamT) else {
            throw fail("\(Tensors.optimizer) step t does not match \(CheckpointManifest.fileName)")
        }
        let m = try Tensors.parameters(from: optimizer, config: c, prefix: "m/", source: "\(place)/\(Tensors.optimizer)")
        let v = try Tensors.parameters(from: optimizer, config: c, prefix: "v/", source: "\(place)/\(Tensors.optimizer)")
        try Tensors.requireOnly(Tensors.weightNames(c, prefix: "m/").union(Tensors.weightNames(c, prefix: "v/")), in: optimizer, source: "\(place)/\(Tensors.optimizer)")

        let stateFile = try verified(Tensors.state)
        try Tensors.requireOnly(["hidden"], in: stateFile, source: "\(place)/\(Tensors.state)")
        let hidden = FloatBuffer(count: c.stateCount(rows: manifest.options.batch))
        try Tensors.copy(stateFile, "hidden", shape: [manifest.options.batch, c.stateWidth], into: hidden.base, source: "\(place)/\(Tensors.state)")

        var state = TrainingState(
            vocabulary: vocabulary, options: manifest.options, position: manifest.position,
            weights: weights, adam: AdamState(m: m, v: v, t: manifest.adamT), hidden: hidden)
        state.text = manifest.text
        return state
    }

    /// The weights alone from any safetensors file using the Keras names (a checkpoint's `model.safetensors`
    /// or a Keras export), checked tensor by tensor against `config`.
    public static func loadWeights(from file: URL, config: ModelConfig) throws -> Parameters {
        let source = file.path
        let tensors = try CheckpointTensors.decode(try DurableFile.read(source), source: source)
        let weights = try CheckpointTensors.parameters(from: tensors, config: config, prefix: "", source: source)
        try CheckpointTensors.requireOnly(CheckpointTensors.weightNames(config, prefix: ""), in: tensors, source: source)
        return weights
    }

    /// A file of a step directory; a missing one means the checkpoint is damaged, not that the disk failed.
    private static func readComponent(_ file: String, of dir: URL) throws -> Data {
        let url = dir.appendingPathComponent(file)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CharRNNError.checkpoint("\(dir.path): missing \(file)")
        }
        return try DurableFile.read(url.path)
    }
}
