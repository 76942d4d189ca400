import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

/// The coordinator sends a step's weights to a worker with its first order of the step only, and again after
/// the worker says hello (it may have lost them).
final class CoordinatorWeightsTests: XCTestCase {
    private let shape = try! RunShape(config: ModelConfig(vocab: 11, embed: 3, units: 4), seq: 5, rowsPerShard: 2, shardCount: 3)

    func testWeightsGoToAWorkerOncePerStep() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cw-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let endpoint = "ipc://\(dir.path)/c.sock"
        let coordinator = try Coordinator(shape: shape, options: CoordinatorOptions(endpoint: endpoint), log: { _ in })
        let context = try ZMQContext()
        let dealer = try ZMQSocket(context, .dealer)
        try dealer.setOption(.linger, 0)
        try dealer.connect(endpoint)
        var codec = WireCodec()

        func hello() throws -> WorkerID {
            try dealer.send(codec.encode(.hello(WorkerHello(name: "w", blasThreads: 1)), step: 0))
            for _ in 0..<200 {
                for case .joined(let id, _) in try coordinator.poll(until: PhaseClock.now() + 0.05) { return id }
            }
            throw XCTSkip("the coordinator never saw the hello")
        }
        /// The next work message: (step, whether it carries weights).
        func nextWork() throws -> (step: Int, weights: Bool) {
            while true {
                let frames = try XCTUnwrap(try dealer.receiveMultipart(timeoutMs: 10_000), "no message")
                let envelope = try codec.decode(frames)
                switch envelope.message {
                case .welcome(let shape): codec = WireCodec(runID: envelope.runID, shape: shape)
                case .work: return (envelope.step, true)
                case .workSameWeights: return (envelope.step, false)
                default: continue
                }
            }
        }

        let worker = try hello()
        let ids = [Int32](repeating: 1, count: shape.tokenCount)
        let weights = FloatBuffer(count: shape.parameterCount)
        func order(_ s: Int) -> WorkOrder {
            WorkOrder(epoch: 0, shards: [WorkShard(index: s, state: nil, rows: ShardRows(rows: 2, seq: 5, inputs: ids, targets: ids))], weights: weights)
        }
        for (shard, step) in [(0, 4), (1, 4), (2, 4), (0, 5), (1, 5)] { XCTAssertTrue(coordinator.send(order(shard), step: step, to: worker)) }
        var got = try (0..<5).map { _ in try nextWork() }
        XCTAssertEqual(got.map(\.step), [4, 4, 4, 5, 5])
        XCTAssertEqual(got.map(\.weights), [true, false, false, true, false])

        XCTAssertEqual(try hello(), worker)
        XCTAssertTrue(coordinator.send(order(2), step: 5, to: worker))
        got = [try nextWork()]
        XCTAssertEqual(got.map(\.weights), [true], "after a hello the weights go again")
    }
}
