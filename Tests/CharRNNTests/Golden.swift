import Foundation
import XCTest
@testable import CharRNN

/// Paths the tests share: the package root and `../shared` beside it (golden cases, the corpus).
enum TestPaths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    static let golden = shared.appendingPathComponent("golden")
}

/// One reference case computed with TensorFlow/Keras (see ../shared/golden/README.md).
struct GoldenCase {
    struct Tensor: Decodable {
        let shape: [Int]
        let data: [Double]
        var floats: [Float] { data.map { Float($0) } }
    }

    let config: ModelConfig
    let batch: Int
    let seq: Int
    let weights: [String: Tensor]
    let inputs: [Int32]
    let targets: [Int32]
    let h0: [Float]
    let logits: Tensor
    let loss: Double
    let hT: [Float]
    let grads: [String: Tensor]
    let adam: AdamConfig
    let after1: [String: Tensor]
    let after3: [String: Tensor]

    static func load(_ name: String) throws -> GoldenCase {
        let url = TestPaths.golden.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("golden file \(url.path) not found")
        }
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        func tensor(_ any: Any?) throws -> Tensor {
            try JSONDecoder().decode(Tensor.self, from: JSONSerialization.data(withJSONObject: any!))
        }
        func tensors(_ any: Any?) throws -> [String: Tensor] {
            try JSONDecoder().decode([String: Tensor].self, from: JSONSerialization.data(withJSONObject: any!))
        }
        let c = root["config"] as! [String: Any]
        let adam = root["adam"] as! [String: Any]
        let config = ModelConfig(
            vocab: c["vocab"] as! Int, embed: c["embed"] as! Int, units: c["units"] as! Int,
            cell: Cell(rawValue: c["cell"] as? String ?? "gru")!, layers: c["layers"] as? Int ?? 1)
        let batch = c["batch"] as! Int
        /// The variant files leave Adam's settings out: they use Keras's defaults.
        func hyper(_ key: String, _ keras: Float) -> Float { (adam[key] as? Double).map { Float($0) } ?? keras }
        /// The state in the model's layout, [B, L·V·H]: row i holds every layer's vectors side by side (h, then an
        /// LSTM's c). One-layer files have a single [B,H] tensor per vector, the others a list of one per layer.
        func state(_ h: String, _ c: String) throws -> [Float] {
            func perLayer(_ key: String) throws -> [[Float]] {
                try (root[key] as? [Any] ?? [root[key]!]).map { try tensor($0).floats }
            }
            let vectors = try config.cell == .lstm ? zip(perLayer(h), perLayer(c)).flatMap { [$0, $1] } : perLayer(h)
            let units = config.units
            return (0..<batch).flatMap { i in vectors.flatMap { $0[i * units..<(i + 1) * units] } }
        }
        return GoldenCase(
            config: config, batch: batch, seq: c["seq"] as! Int,
            weights: try tensors(root["weights"]),
            inputs: try tensor(root["inputs"]).data.map { Int32($0) },
            targets: try tensor(root["targets"]).data.map { Int32($0) },
            h0: try state("h0", "c0"),
            logits: try tensor(root["logits"]),
            loss: root["loss"] as! Double,
            hT: try state("hT", "cT"),
            grads: try tensors(root["grads"]),
            adam: AdamConfig(
                learningRate: hyper("lr", 1e-3), beta1: hyper("beta1", 0.9), beta2: hyper("beta2", 0.999),
                epsilon: hyper("epsilon", 1e-7)),
            after1: try tensors(adam["after_1_step"]),
            after3: try tensors(adam["after_3_steps"]))
    }

    func parameters(_ named: [String: Tensor]) -> Parameters {
        let p = Parameters(config)
        for name in p.names {
            let t = named[name.keras(config)]!
            XCTAssertEqual(t.shape, name.shape(config), name.keras(config))
            for (i, x) in t.floats.enumerated() { p[name][i] = x }
        }
        return p
    }

    var shard: ShardRows { ShardRows(rows: batch, seq: seq, inputs: inputs, targets: targets) }
}

/// |a − b| ≤ abs + rel·|b| elementwise, reporting the worst element.
func assertClose(
    _ a: UnsafeBufferPointer<Float>, _ b: [Float], abs: Float, rel: Float, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(a.count, b.count, "\(what): size", file: file, line: line)
    var worst = (index: -1, excess: Float(0))
    for i in 0..<min(a.count, b.count) {
        let excess = Swift.abs(a[i] - b[i]) - (abs + rel * Swift.abs(b[i]))
        if excess > worst.excess || a[i].isNaN { worst = (i, a[i].isNaN ? .infinity : excess) }
    }
    if worst.index >= 0 {
        XCTFail("\(what)[\(worst.index)] = \(a[worst.index]), expected \(b[worst.index])", file: file, line: line)
    }
}
