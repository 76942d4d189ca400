import CharRNN
import Foundation
import XCTest

/// Runs' TensorBoard event files, read back with TensorBoard's own `EventAccumulator`.
final class TensorBoardRunTests: XCTestCase {
    let tiny = ["--embed", "8", "--units", "16", "--batch", "4", "--seq", "10", "--threads", "1", "--progress", "never"]

    /// What TensorBoard shows for a run directory, as JSON: scalars by tag as [step, value, wall time] read with
    /// the `EventAccumulator` scripts use (`legacy`) and with the one `tensorboard --logdir` serves from
    /// (`served`, where every value is a tensor), and the samples as [step, text] from the latter. Text comes
    /// from the served reader only: the older one never drops orphaned tensors (text) after a restart.
    static let reader = """
    import json, sys
    from tensorboard.backend.event_processing import event_accumulator, plugin_event_accumulator
    from tensorboard.util import tensor_util
    legacy = event_accumulator.EventAccumulator(sys.argv[1], size_guidance={'scalars': 0, 'tensors': 0})
    legacy.Reload()
    served = plugin_event_accumulator.EventAccumulator(sys.argv[1], size_guidance={'tensors': 0})
    served.Reload()
    values = {t: [(e, tensor_util.make_ndarray(e.tensor_proto)) for e in served.Tensors(t)] for t in served.Tags()['tensors']}
    out = {'legacy': {t: [[e.step, e.value, e.wall_time] for e in legacy.Scalars(t)] for t in legacy.Tags()['scalars']},
           'served': {t: [[e.step, float(a), e.wall_time] for e, a in v] for t, v in values.items() if v[0][1].dtype.kind == 'f'},
           'text': {t: [[e.step, a.item().decode('utf-8')] for e, a in v] for t, v in values.items() if v[0][1].dtype.kind == 'O'}}
    print(json.dumps(out))
    """

    struct Shown: Decodable {
        let legacy: [String: [[Double]]]
        let served: [String: [[Double]]]
        let text: [String: [Step]]

        /// One `[step, text]` pair.
        struct Step: Decodable {
            let step: Int
            let text: String

            init(from decoder: any Decoder) throws {
                var c = try decoder.unkeyedContainer()
                step = try c.decode(Int.self)
                text = try c.decode(String.self)
            }
        }
    }

    func shown(_ run: URL) throws -> Shown {
        let r = try XCTUnwrap(try Python.run(Self.reader, [run.appendingPathComponent("tensorboard").path]))
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONDecoder().decode(Shown.self, from: Data(r.stdout.utf8))
    }

    /// Every metrics.jsonl value is shown at its step, once, as the float32 TensorBoard stores, by both readers.
    func assertShowsMetrics(_ shown: Shown, _ records: [MetricsRecord], file: StaticString = #filePath, line: UInt = #line) {
        let columns: [(String, (MetricsRecord) -> Double?)] = [
            ("loss", \.loss), ("bits_per_char", \.bitsPerChar), ("learning_rate", \.learningRate), ("gradient_norm", \.gradientNorm),
            ("chars_per_second", \.charsPerSecond), ("workers", { $0.workers.map(Double.init) }),
            ("val_loss", \.validationLoss), ("val_bits_per_char", \.validationBitsPerChar),
        ]
        for (reader, scalars) in [("legacy", shown.legacy), ("served", shown.served)] {
            for (tag, value) in columns {
                let expected = records.compactMap { r in value(r).map { [Double(r.step), Double(Float($0)), r.wallTime] } }
                XCTAssertEqual(scalars[tag] ?? [], expected, "\(reader) \(tag)", file: file, line: line)
            }
            let tags = Set(columns.filter { _, value in records.contains { value($0) != nil } }.map(\.0))
            XCTAssertEqual(Set(scalars.keys), tags, reader, file: file, line: line)
        }
    }

    /// A run, then (as if it died after logging steps 31–40 but before their checkpoint) a resume from step
    /// 30 to 60: TensorBoard shows each step once, with the values metrics.jsonl holds, validation at the
    /// epoch's end, and the samples.
    func testTrainAndResumeShowEachStepOnce() throws {
        try Python.require(["tensorboard"])
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 3_000), in: dir)
        let run = dir.appendingPathComponent("run")
        // 2,400 characters for training: 218 sequences of 11, 54 steps per epoch.
        let common = ["train", "--data", data, "--checkpoint-dir", run.path, "--checkpoint-every", "10", "--sample-every", "10",
                      "--sample-length", "20", "--val-fraction", "0.2", "--epochs", "5"] + tiny
        let first = try CLI.run(common + ["--steps", "40"])
        XCTAssertEqual(first.status, 0, first.stderr)
        try FileManager.default.removeItem(at: run.appendingPathComponent("step-000000040"))
        let resumed = try CLI.run(common + ["--steps", "60", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("resuming from \(run.path)/step-000000030"), resumed.stdout)

        let files = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("tensorboard").path).sorted()
        XCTAssertEqual(files.count, 2, "one event file per process: \(files)")
        XCTAssertTrue(files.allSatisfy { $0.hasPrefix("events.out.tfevents.") && $0.hasSuffix(".charrnn") }, "\(files)")

        let shown = try shown(run)
        let records = try MetricsLog.read(run.appendingPathComponent(MetricsLog.jsonName))
        XCTAssertEqual(records.map(\.step), Array(1...60))
        XCTAssertEqual(shown.served["loss"]?.map { Int($0[0]) }, Array(1...60), "each step once")
        XCTAssertEqual(shown.served["val_loss"]?.map { Int($0[0]) }, [54], "validation at the epoch's end")
        assertShowsMetrics(shown, records)

        // samples.txt keeps both runs' step-40 samples; TensorBoard the resumed run's, which are the same text.
        var samples: [Int: String] = [:]
        let text = try String(contentsOf: run.appendingPathComponent("samples.txt"), encoding: .utf8)
        for entry in text.components(separatedBy: "--- step ").dropFirst() {
            let (head, body) = (entry.prefix { $0 != "\n" }, entry.drop { $0 != "\n" }.dropFirst())
            samples[Int(head)!] = String(body.dropLast())
        }
        XCTAssertEqual(samples.keys.sorted(), [10, 20, 30, 40, 50, 60])
        XCTAssertEqual(shown.text["samples"]?.map(\.step), [10, 20, 30, 40, 50, 60])
        for s in shown.text["samples"] ?? [] { XCTAssertEqual(s.text, samples[s.step], "sample at step \(s.step)") }
    }

    /// A coordinator's run writes the same files, with the worker count it trained with.
    func testCoordinatorRunWritesEventsToo() throws {
        try Python.require(["tensorboard"])
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 3_000), in: dir)
        let run = dir.appendingPathComponent("run")
        let r = try CLI.run(["launch", "--workers", "2", "--shards", "2", "--data", data, "--checkpoint-dir", run.path, "--steps", "8", "--min-workers", "2"] + tiny)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let shown = try shown(run)
        let records = try MetricsLog.read(run.appendingPathComponent(MetricsLog.jsonName))
        XCTAssertEqual(shown.served["loss"]?.map { Int($0[0]) }, Array(1...8))
        XCTAssertGreaterThan(records.compactMap(\.workers).max() ?? 0, 0)
        assertShowsMetrics(shown, records)
    }

    /// A file where the event directory must go stops the run before its first step, in one line.
    func testAFileInTheWayFailsClearly() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 3_000), in: dir)
        let run = dir.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: run.appendingPathComponent("tensorboard"))
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", run.path, "--steps", "3"] + tiny)
        assertCleanFailure(r, mentions: "cannot use \(run.path)/tensorboard as a directory: it is a file")
        XCTAssertEqual(try Checkpoint.list(in: run), [])
    }
}
