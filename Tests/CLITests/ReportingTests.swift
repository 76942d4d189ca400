import CharRNN
import Foundation
import XCTest

/// Progress output, metrics files, validation, samples and plots, from the user's side.
final class ReportingTests: XCTestCase {
    let tiny = ["--embed", "8", "--units", "16", "--batch", "8", "--seq", "20", "--threads", "1"]

    func testProgressLineOnATerminalPlainLinesOtherwise() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 8_000), in: dir)
        let live = try CLI.run(["train", "--data", data, "--checkpoint-dir", dir.appendingPathComponent("a").path, "--steps", "12", "--progress", "always"] + tiny)
        XCTAssertEqual(live.status, 0, live.stderr)
        XCTAssertTrue(live.stdout.contains("\r\u{1B}[2Kepoch 1 step 12/"), live.stdout)
        XCTAssertTrue(live.stdout.contains("ETA 0:00:00"), live.stdout)
        XCTAssertTrue(live.stdout.contains("[===="), live.stdout)

        let plain = try CLI.run(["train", "--data", data, "--checkpoint-dir", dir.appendingPathComponent("b").path, "--steps", "12",
                                 "--progress", "never", "--log-every", "5"] + tiny)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stdout.contains("\r"))
        let stepLines = plain.stdout.split(separator: "\n").filter { $0.hasPrefix("epoch 1 step") }
        let perEpoch = 8_000 / 21 / 8
        XCTAssertEqual(stepLines.map { String($0.split(separator: " ")[3]) }, ["5/\(perEpoch)", "10/\(perEpoch)", "12/\(perEpoch)"])

        let quiet = try CLI.run(["train", "--data", data, "--checkpoint-dir", dir.appendingPathComponent("c").path, "--steps", "3",
                                 "--progress", "never", "--log-level", "warning"] + tiny)
        XCTAssertEqual(quiet.status, 0, quiet.stderr)
        XCTAssertEqual(quiet.stdout, "")
        assertCleanFailure(try CLI.run(["train", "--data", data, "--log-level", "loud"] + tiny), mentions: "--log-level")
    }

    func testMetricsAreWrittenAndAppendedAcrossResume() throws {
        let dir = try CLI.temporaryDirectory(self)
        let data = try CLI.write(CLI.text(characters: 8_000), in: dir)
        let ckpt = dir.appendingPathComponent("m")
        let base = ["train", "--data", data, "--checkpoint-dir", ckpt.path, "--checkpoint-every", "4"] + tiny
        XCTAssertEqual(try CLI.run(base + ["--steps", "6"]).status, 0)
        var records = try MetricsLog.read(ckpt.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(records.map(\.step), Array(1...6))
        // As if the process died after logging step 7 but before its checkpoint: resume drops that row.
        var extra = records[5]
        extra.step = 7
        let handle = try FileHandle(forWritingTo: ckpt.appendingPathComponent("metrics.jsonl"))
        handle.seekToEndOfFile()
        handle.write(try JSONEncoder().encode(extra) + Data("\n".utf8))
        try handle.close()

        XCTAssertEqual(try CLI.run(base + ["--steps", "10", "--resume"]).status, 0)
        records = try MetricsLog.read(ckpt.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(records.map(\.step), Array(1...10))
        for r in records {
            XCTAssertEqual(r.bitsPerChar!, r.loss! / M_LN2, accuracy: 1e-9)
            XCTAssertEqual(r.learningRate!, 1e-3, accuracy: 1e-9)
            XCTAssertGreaterThan(r.gradientNorm!, 0)
            XCTAssertGreaterThan(r.charsPerSecond!, 0)
            XCTAssertEqual(r.workers, 1)
            XCTAssertEqual(r.epoch, 1)
        }
        let csv = try String(contentsOf: ckpt.appendingPathComponent("metrics.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.first, "step,epoch,loss,bits_per_char,learning_rate,gradient_norm,chars_per_second,workers,wall_time,val_loss,val_bits_per_char")
        XCTAssertEqual(csv.count, 11)
        XCTAssertEqual(csv.dropFirst().map { Int($0.split(separator: ",")[0])! }, Array(1...10))
    }

    func testValidationSamplesBestCheckpointAndPlot() throws {
        let dir = try CLI.temporaryDirectory(self)
        let text = CLI.text(characters: 10_000)
        let data = try CLI.write(text, in: dir)
        let ckpt = dir.appendingPathComponent("v")
        let r = try CLI.run(["train", "--data", data, "--checkpoint-dir", ckpt.path, "--epochs", "2", "--val-fraction", "0.2",
                             "--sample-every", "10", "--sample-length", "30", "--lr", "0.01", "--keep", "1", "--progress", "never"] + tiny)
        XCTAssertEqual(r.status, 0, r.stderr)
        // 10,000 characters: the last 2,000 are held out; 8,000 / 21 = 380 sequences, 47 batches of 8.
        let ids = text.unicodeScalars.count
        let held = ids - Int(Double(ids) * 0.8)
        XCTAssertTrue(r.stdout.contains("\(held) held out for validation"), r.stdout)
        XCTAssertTrue(r.stdout.contains("\(Int(Double(ids) * 0.8) / 21) sequences, \(Int(Double(ids) * 0.8) / 21 / 8) steps per epoch"), r.stdout)
        XCTAssertEqual(r.stdout.split(separator: "\n").filter { $0.hasPrefix("epoch") && $0.contains("done") && $0.contains("validation loss") }.count, 2, r.stdout)
        XCTAssertTrue(r.stdout.contains("sample at step 10:"), r.stdout)
        let samples = try String(contentsOf: ckpt.appendingPathComponent("samples.txt"), encoding: .utf8)
        XCTAssertEqual(samples.components(separatedBy: "--- step ").count - 1, 2 * 47 / 10)
        let best = try JSONDecoder().decode(BestCheckpoint.self, from: Data(contentsOf: ckpt.appendingPathComponent("best.json")))
        XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt.appendingPathComponent(String(format: "step-%09d", best.step)).path),
                      "the best checkpoint survives pruning")
        let records = try MetricsLog.read(ckpt.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(records.compactMap(\.validationLoss).count, 2)
        XCTAssertEqual(best.validationLoss, records.compactMap(\.validationLoss).min())

        let p = try CLI.run(["plot", ckpt.path])
        XCTAssertEqual(p.status, 0, p.stderr)
        let svg = try Data(contentsOf: ckpt.appendingPathComponent("loss.svg"))
        let parser = SVGPolylines(data: svg)
        XCTAssertTrue(parser.wellFormed, "loss.svg is not well-formed XML")
        XCTAssertEqual(parser.points["training"], records.count, "one point per logged step")
        XCTAssertEqual(parser.points["validation"], 2)
        if p.stdout.contains("wrote \(ckpt.path)/loss.png") {
            let png = try Data(contentsOf: ckpt.appendingPathComponent("loss.png"))
            XCTAssertEqual(Array(png.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        }
        assertCleanFailure(try CLI.run(["plot", dir.path]), mentions: "metrics.jsonl")
        assertCleanFailure(try CLI.run(["train", "--data", data, "--val-fraction", "1.5"] + tiny), mentions: "--val-fraction")
    }
}

/// Parses an SVG with Foundation's XML parser, counting the vertices of each polyline by id.
final class SVGPolylines: NSObject, XMLParserDelegate {
    private(set) var points: [String: Int] = [:]
    private(set) var wellFormed = false

    init(data: Data) {
        super.init()
        let parser = XMLParser(data: data)
        parser.delegate = self
        wellFormed = parser.parse()
    }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        guard name == "polyline", let id = attributes["id"], let pts = attributes["points"] else { return }
        points[id] = pts.split(separator: " ").count
    }
}

#if canImport(FoundationXML)
import FoundationXML
#endif
