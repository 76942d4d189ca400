#if canImport(Glibc)
@preconcurrency import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import XCTest
@testable import CharRNN

final class CheckpointTests: XCTestCase {
    private let config = ModelConfig(vocab: 5, embed: 3, units: 4)

    private func temporaryRoot() -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("charrnn-ckpt-\(UUID().uuidString)", isDirectory: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// A state where every field differs from its default, with awkward floats (−0, a subnormal, a Float
    /// learning rate with no short decimal form) so only an exact copy survives the round trip.
    private func makeState(step: Int, salt: Float = 0, config: ModelConfig? = nil, dropout: Float? = nil) throws -> TrainingState {
        let config = config ?? self.config
        var options = TrainingOptions()
        options.batch = 2
        options.seq = 3
        options.shards = 2
        options.seed = UInt64.max - 1
        options.buffer = 17
        options.shuffle = false
        options.epochs = 4
        options.adam = AdamConfig(learningRate: 0.002, beta1: 0.8, beta2: 0.99, epsilon: 1e-6)
        options.clipNorm = 1.5
        options.dropout = dropout
        options.schedule = LearningRateSchedule(kind: .cosine, warmupSteps: 3, decayEvery: 11, minRate: 1e-5)
        let vocabulary = try Vocabulary(codePoints: [10, 65, 97, 0xE9, 0x1F600])
        let weights = Parameters.initialized(config, seed: 3)
        weights.storage[0] += salt
        let adam = AdamState(m: Parameters(config), v: Parameters(config), t: 7 + step)
        for i in 0..<adam.m.count {
            adam.m.storage[i] = Float(i) * 0.37 - 3
            adam.v.storage[i] = Float(i * i) * 1e-3
        }
        adam.m.storage[1] = -0.0
        adam.v.storage[2] = .leastNonzeroMagnitude
        let hidden = FloatBuffer((0..<config.stateCount(rows: options.batch)).map { Float($0) / 7 - 0.5 })
        var state = TrainingState(
            vocabulary: vocabulary, options: options, position: TrainingPosition(epoch: 2, stepInEpoch: 5, globalStep: step),
            weights: weights, adam: adam, hidden: hidden)
        state.text = TextSource(path: "/data/ü \"text\".txt", text: "\nAaé😀")
        return state
    }

    private func assertSame(_ a: TrainingState, _ b: TrainingState, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.vocabulary, b.vocabulary, file: file, line: line)
        XCTAssertEqual(a.options, b.options, file: file, line: line)
        XCTAssertEqual(a.text, b.text, file: file, line: line)
        XCTAssertEqual(a.position, b.position, file: file, line: line)
        XCTAssertEqual(a.config, b.config, file: file, line: line)
        XCTAssertTrue(a.weights.storage.bitwiseEqual(b.weights.storage), "weights", file: file, line: line)
        XCTAssertTrue(a.adam.m.storage.bitwiseEqual(b.adam.m.storage), "m", file: file, line: line)
        XCTAssertTrue(a.adam.v.storage.bitwiseEqual(b.adam.v.storage), "v", file: file, line: line)
        XCTAssertEqual(a.adam.t, b.adam.t, file: file, line: line)
        XCTAssertTrue(a.hidden.bitwiseEqual(b.hidden), "hidden", file: file, line: line)
    }

    private func assertFails<T>(_ body: @autoclosure () throws -> T, io: Bool = false, containing fragment: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            switch (error as? CharRNNError, io) {
            case (.checkpoint(let m)?, false), (.io(let m)?, true):
                XCTAssertTrue(m.contains(fragment), "\"\(m)\" lacks \"\(fragment)\"", file: file, line: line)
            default:
                XCTFail("wrong kind of error: \(error)", file: file, line: line)
            }
        }
    }

    private func contents(_ root: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root.path).sorted()
    }

    private func edit(_ url: URL, _ change: (inout Data) -> Void) throws {
        var data = try Data(contentsOf: url)
        change(&data)
        try data.write(to: url)
    }

    /// Replaces a file of a checkpoint and records its new checksum, so only the content checks can catch it.
    private func replace(_ file: String, in dir: URL, with data: Data) throws {
        try data.write(to: dir.appendingPathComponent(file))
        let manifestURL = dir.appendingPathComponent("checkpoint.json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        var sums = manifest["sha256"] as! [String: String]
        sums[file] = SHA256.hex(of: data)
        manifest["sha256"] = sums
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
    }

    // MARK: Round trip and layout

    func testRoundTripIsBitwise() throws {
        let root = temporaryRoot().appendingPathComponent("nested/run", isDirectory: true)
        let state = try makeState(step: 123)
        let dir = try Checkpoint.save(state, in: root)
        XCTAssertEqual(dir.lastPathComponent, "step-000000123")
        XCTAssertEqual(try contents(root), ["step-000000123"])
        XCTAssertEqual(try contents(dir), ["checkpoint.json", "model.safetensors", "optimizer.safetensors", "state.safetensors"])
        assertSame(try Checkpoint.load(dir), state)
    }

    /// A 2-layer LSTM trained with dropout: its cell, layers, c states and dropout rate all come back.
    func testRoundTripOfATwoLayerLSTMWithDropout() throws {
        let lstm = ModelConfig(vocab: 5, embed: 3, units: 4, cell: .lstm, layers: 2)
        let state = try makeState(step: 9, config: lstm, dropout: 0.25)
        let loaded = try Checkpoint.load(try Checkpoint.save(state, in: temporaryRoot()))
        assertSame(loaded, state)
        XCTAssertEqual(loaded.config, lstm)
        XCTAssertEqual(loaded.options.dropout, 0.25)
        XCTAssertEqual(loaded.hidden.count, 2 * 2 * 2 * 4)
    }

    /// A stacked LSTM's files name and shape its tensors as Keras does, and hold h and c of every layer per row.
    func testLSTMFilesUseKerasNamesAndShapes() throws {
        let lstm = ModelConfig(vocab: 5, embed: 3, units: 4, cell: .lstm, layers: 2)
        let dir = try Checkpoint.save(try makeState(step: 1, config: lstm), in: temporaryRoot())
        let model = try SafeTensors(decoding: Data(contentsOf: dir.appendingPathComponent("model.safetensors")))
        XCTAssertEqual(model.tensors.map(\.name), [
            "embedding/embeddings", "lstm/kernel", "lstm/recurrent_kernel", "lstm/bias",
            "lstm_1/kernel", "lstm_1/recurrent_kernel", "lstm_1/bias", "dense/kernel", "dense/bias",
        ])
        XCTAssertEqual(model.tensors.map(\.shape), [[5, 3], [3, 16], [4, 16], [16], [4, 16], [4, 16], [16], [4, 5], [5]])
        let state = try SafeTensors(decoding: Data(contentsOf: dir.appendingPathComponent("state.safetensors")))
        XCTAssertEqual(state["hidden"]?.shape, [2, 16])
    }

    func testDirectoryNames() {
        XCTAssertEqual(Checkpoint.directoryName(step: 0), "step-000000000")
        XCTAssertEqual(Checkpoint.directoryName(step: 1_234_567_890), "step-1234567890")
    }

    func testFilesUseKerasNamesAndShapes() throws {
        let dir = try Checkpoint.save(try makeState(step: 1), in: temporaryRoot())
        let model = try SafeTensors(decoding: Data(contentsOf: dir.appendingPathComponent("model.safetensors")))
        XCTAssertEqual(model.tensors.map(\.name), ["embedding/embeddings", "gru/kernel", "gru/recurrent_kernel", "gru/bias", "dense/kernel", "dense/bias"])
        XCTAssertEqual(model.tensors.map(\.shape), [[5, 3], [3, 12], [4, 12], [2, 12], [4, 5], [5]])
        XCTAssertEqual(model.metadata, ["format": "charrnn", "vocab": "5", "embed": "3", "units": "4",
                                        "charrnn.vocabulary": #"["\n","A","a","é","😀"]"#])

        let optimizer = try SafeTensors(decoding: Data(contentsOf: dir.appendingPathComponent("optimizer.safetensors")))
        XCTAssertEqual(optimizer.tensors.count, 12)
        XCTAssertEqual(optimizer["m/gru/kernel"]?.shape, [3, 12])
        XCTAssertEqual(optimizer["v/dense/bias"]?.shape, [5])
        XCTAssertEqual(optimizer.metadata, ["t": "8"])

        let state = try SafeTensors(decoding: Data(contentsOf: dir.appendingPathComponent("state.safetensors")))
        XCTAssertEqual(state.tensors.map(\.name), ["hidden"])
        XCTAssertEqual(state["hidden"]?.shape, [2, 4])

        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("checkpoint.json"))) as! [String: Any]
        XCTAssertEqual(manifest["version"] as? Int, 1)
        XCTAssertEqual(manifest["vocabulary"] as? [Int], [10, 65, 97, 0xE9, 0x1F600])
        let sums = manifest["sha256"] as! [String: String]
        XCTAssertEqual(sums["model.safetensors"], SHA256.hex(of: try Data(contentsOf: dir.appendingPathComponent("model.safetensors"))))
        XCTAssertEqual(Set(sums.keys), ["model.safetensors", "optimizer.safetensors", "state.safetensors"])
    }

    func testSavingTheSameStepReplacesIt() throws {
        let root = temporaryRoot()
        try Checkpoint.save(try makeState(step: 5), in: root)
        let second = try makeState(step: 5, salt: 1)
        let dir = try Checkpoint.save(second, in: root)
        assertSame(try Checkpoint.load(dir), second)
        XCTAssertEqual(try contents(root), ["step-000000005"])
    }

    // MARK: Damage

    func testAlteredOrTruncatedFilesAreRefused() throws {
        let root = temporaryRoot()
        let dir = try Checkpoint.save(try makeState(step: 9), in: root)
        let model = dir.appendingPathComponent("model.safetensors")
        let original = try Data(contentsOf: model)

        try edit(model) { $0[$0.count - 1] ^= 1 }
        assertFails(try Checkpoint.load(dir), containing: "\(dir.path): checksum mismatch in model.safetensors")
        try original.write(to: model)
        XCTAssertNoThrow(try Checkpoint.load(dir))

        let optimizer = dir.appendingPathComponent("optimizer.safetensors")
        let optimizerBytes = try Data(contentsOf: optimizer)
        try edit(optimizer) { $0.removeLast(10) }
        assertFails(try Checkpoint.load(dir), containing: "checksum mismatch in optimizer.safetensors")
        try optimizerBytes.write(to: optimizer)

        try FileManager.default.removeItem(at: dir.appendingPathComponent("state.safetensors"))
        assertFails(try Checkpoint.load(dir), containing: "missing state.safetensors")
    }

    func testBrokenManifestIsRefused() throws {
        let dir = try Checkpoint.save(try makeState(step: 2), in: temporaryRoot())
        let url = dir.appendingPathComponent("checkpoint.json")
        let original = try Data(contentsOf: url)

        try edit(url) { $0.removeLast(5) }
        assertFails(try Checkpoint.load(dir), containing: "checkpoint.json is not valid JSON")

        var manifest = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        var position = manifest["position"] as! [String: Any]
        position["globalStep"] = nil
        manifest["position"] = position
        try JSONSerialization.data(withJSONObject: manifest).write(to: url)
        assertFails(try Checkpoint.load(dir), containing: "checkpoint.json lacks position.globalStep")

        manifest = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        manifest["version"] = 2
        try JSONSerialization.data(withJSONObject: manifest).write(to: url)
        assertFails(try Checkpoint.load(dir), containing: "unsupported format version 2")

        manifest = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        manifest["vocabulary"] = [10, 65, 65, 97, 98]
        try JSONSerialization.data(withJSONObject: manifest).write(to: url)
        assertFails(try Checkpoint.load(dir), containing: "invalid vocabulary")

        manifest = try JSONSerialization.jsonObject(with: original) as! [String: Any]
        manifest["vocabulary"] = [10, 65, 97]
        try JSONSerialization.data(withJSONObject: manifest).write(to: url)
        assertFails(try Checkpoint.load(dir), containing: "vocabulary has 3 symbols, model expects 5")

        assertFails(try Checkpoint.load(dir.appendingPathComponent("nope")), containing: "is not a checkpoint directory")
    }

    /// Files whose checksums match but whose content disagrees with checkpoint.json.
    func testShapesAreCheckedAgainstTheConfig() throws {
        let dir = try Checkpoint.save(try makeState(step: 3), in: temporaryRoot())
        let wider = Parameters(ModelConfig(vocab: 5, embed: 3, units: 5))
        let tensors = wider.names.map {
            SafeTensors.Tensor(name: $0.keras(wider.config), shape: $0.shape(wider.config), floats: UnsafeBufferPointer(wider.tensor($0)))
        }
        try replace("model.safetensors", in: dir, with: SafeTensors(tensors: tensors, metadata: ["format": "charrnn", "vocab": "5", "embed": "3", "units": "4"]).encoded())
        assertFails(try Checkpoint.load(dir), containing: "model.safetensors: gru/kernel has shape [3, 15], expected [3, 12]")
    }

    func testHiddenShapeIsChecked() throws {
        let dir = try Checkpoint.save(try makeState(step: 3), in: temporaryRoot())
        let hidden = [Float](repeating: 0, count: 12)
        try replace("state.safetensors", in: dir, with: hidden.withUnsafeBufferPointer {
            SafeTensors(tensors: [SafeTensors.Tensor(name: "hidden", shape: [3, 4], floats: $0)]).encoded()
        })
        assertFails(try Checkpoint.load(dir), containing: "state.safetensors: hidden has shape [3, 4], expected [2, 4]")
    }

    func testOptimizerStepMustAgree() throws {
        let state = try makeState(step: 3)
        let dir = try Checkpoint.save(state, in: temporaryRoot())
        let optimizer = try SafeTensors(decoding: Data(contentsOf: dir.appendingPathComponent("optimizer.safetensors")))
        try replace("optimizer.safetensors", in: dir, with: SafeTensors(tensors: optimizer.tensors, metadata: ["t": "99"]).encoded())
        assertFails(try Checkpoint.load(dir), containing: "optimizer.safetensors step t does not match")
    }

    func testCorruptSafetensorsNamesTheFile() throws {
        let dir = try Checkpoint.save(try makeState(step: 3), in: temporaryRoot())
        try replace("state.safetensors", in: dir, with: Data([1, 2, 3]))
        assertFails(try Checkpoint.load(dir), containing: "state.safetensors: safetensors: file is 3 bytes")
    }

    // MARK: Finding

    func testLatestFallsBackPastACorruptedCheckpoint() throws {
        let root = temporaryRoot()
        XCTAssertNil(try Checkpoint.latest(in: root))
        let older = try makeState(step: 10)
        try Checkpoint.save(older, in: root)
        let newest = try Checkpoint.save(try makeState(step: 20), in: root)
        XCTAssertEqual(try Checkpoint.latest(in: root)?.state.position.globalStep, 20)

        try edit(newest.appendingPathComponent("model.safetensors")) { $0[20] ^= 0x40 }
        var warnings: [String] = []
        let found = try XCTUnwrap(try Checkpoint.latest(in: root) { warnings.append($0) })
        XCTAssertEqual(found.url.lastPathComponent, "step-000000010")
        assertSame(found.state, older)
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings[0].contains("step-000000020") && warnings[0].contains("checksum mismatch in model.safetensors"), warnings[0])

        try FileManager.default.removeItem(at: root.appendingPathComponent("step-000000010/checkpoint.json"))
        assertFails(try Checkpoint.latest(in: root), containing: "no usable checkpoint in \(root.path)")
    }

    func testListIgnoresOtherEntriesAndSortsBySteps() throws {
        let root = temporaryRoot()
        for step in [100, 9, 1_000_000_000] { try Checkpoint.save(try makeState(step: step), in: root) }
        for name in ["step-12", "step-00000000x", ".tmp-step-000000001-1", "notes.txt"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(name), withIntermediateDirectories: false)
        }
        XCTAssertEqual(try Checkpoint.list(in: root).map(\.step), [9, 100, 1_000_000_000])
        XCTAssertEqual(try Checkpoint.list(in: root.appendingPathComponent("absent")), [])
    }

    func testKeepPrunesTheOldest() throws {
        let root = temporaryRoot()
        for step in 1...5 { try Checkpoint.save(try makeState(step: step), in: root, keep: 2) }
        XCTAssertEqual(try contents(root), ["step-000000004", "step-000000005"])
        // An older step saved later (a restart from an earlier checkpoint) is never pruned on its own save.
        try Checkpoint.save(try makeState(step: 3), in: root, keep: 1)
        XCTAssertEqual(try contents(root), ["step-000000003", "step-000000005"])
    }

    // MARK: Failures

    func testSaveUnderAFileFailsWithAnIOError() throws {
        let root = temporaryRoot()
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let blocker = root.appendingPathComponent("file")
        try Data("x".utf8).write(to: blocker)
        let state = try makeState(step: 1)
        assertFails(try Checkpoint.save(state, in: blocker), io: true, containing: "it is a file")
        assertFails(try Checkpoint.save(state, in: blocker.appendingPathComponent("sub")), io: true, containing: "it is a file")
        XCTAssertEqual(try contents(root), ["file"])
    }

    /// A write that fails part way (here: the file size limit, which binds root too, standing in for a full
    /// disk) must leave the earlier checkpoints as they were and no temporary directory behind.
    func testFailedWriteLeavesEarlierCheckpointsIntact() throws {
        let root = temporaryRoot()
        let earlier = try makeState(step: 1)
        try Checkpoint.save(earlier, in: root)
        try Checkpoint.save(try makeState(step: 2), in: root)

        var limit = rlimit()
        XCTAssertEqual(getrlimit(resourceFileSize, &limit), 0)
        let saved = limit
        let previousHandler = signal(SIGXFSZ, SIG_IGN)
        limit.rlim_cur = 64
        XCTAssertEqual(setrlimit(resourceFileSize, &limit), 0)
        let failures = [try makeState(step: 3), try makeState(step: 2, salt: 1)].map { state in
            Result { try Checkpoint.save(state, in: root, keep: 1) }
        }
        limit = saved
        XCTAssertEqual(setrlimit(resourceFileSize, &limit), 0)
        signal(SIGXFSZ, previousHandler)

        for result in failures {
            guard case .failure(let error) = result, case .io(let message)? = error as? CharRNNError else {
                return XCTFail("expected an i/o error, got \(result)")
            }
            XCTAssertTrue(message.contains("cannot write") && message.contains("model.safetensors"), message)
        }
        XCTAssertEqual(try contents(root), ["step-000000001", "step-000000002"])
        assertSame(try Checkpoint.load(root.appendingPathComponent("step-000000001")), earlier)
        assertSame(try Checkpoint.load(root.appendingPathComponent("step-000000002")), try makeState(step: 2))
    }

    // MARK: Weights only

    func testLoadWeightsFromAnyKerasNamedFile() throws {
        let state = try makeState(step: 4)
        let dir = try Checkpoint.save(state, in: temporaryRoot())
        let file = dir.appendingPathComponent("model.safetensors")
        XCTAssertTrue(try Checkpoint.loadWeights(from: file, config: config).storage.bitwiseEqual(state.weights.storage))

        assertFails(try Checkpoint.loadWeights(from: file, config: ModelConfig(vocab: 5, embed: 3, units: 8)),
                    containing: "\(file.path): gru/kernel has shape [3, 12], expected [3, 24]")
        assertFails(try Checkpoint.loadWeights(from: dir.appendingPathComponent("optimizer.safetensors"), config: config),
                    containing: "missing tensor embedding/embeddings")
        assertFails(try Checkpoint.loadWeights(from: dir.appendingPathComponent("absent.safetensors"), config: config),
                    io: true, containing: "No such file")
        assertFails(try Checkpoint.loadWeights(from: dir.appendingPathComponent("checkpoint.json"), config: config),
                    containing: "safetensors:")

        let extra = try SafeTensors(decoding: Data(contentsOf: file))
        let bias: [Float] = [1]
        let withExtra = bias.withUnsafeBufferPointer { SafeTensors(tensors: extra.tensors + [SafeTensors.Tensor(name: "extra/bias", shape: [1], floats: $0)]) }
        let extraURL = dir.appendingPathComponent("extra.safetensors")
        try withExtra.encoded().write(to: extraURL)
        assertFails(try Checkpoint.loadWeights(from: extraURL, config: config), containing: "unexpected tensor extra/bias")
    }
}

#if canImport(Glibc)
private let resourceFileSize = __rlimit_resource_t(RLIMIT_FSIZE.rawValue)
#else
private let resourceFileSize = RLIMIT_FSIZE
#endif
