import Foundation
import XCTest
import CharRNN
@testable import CharRNNDistributed

/// A `Coordinator` on an ipc socket in a fresh directory, and test DEALERs that said hello to it as relaying
/// workers (relay endpoints `ipc:///relay/NAME`, never bound: the coordinator only names them) and took its
/// welcome: for tests of what the coordinator sends and takes.
final class RelayingWorkers {
    let coordinator: Coordinator
    let workers: [(socket: ZMQSocket, id: WorkerID)]
    /// The run's codec, as the workers learned it from the welcome.
    let codec: WireCodec
    private let dir: URL
    private let context: ZMQContext

    init(shape: RunShape, fanout: Int, names: [String]) throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("rw-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let endpoint = "ipc://\(dir.path)/c.sock"
        var options = CoordinatorOptions(endpoint: endpoint)
        options.relayFanout = fanout
        coordinator = try Coordinator(shape: shape, options: options, log: { _ in })
        context = try ZMQContext()
        var joined: [(ZMQSocket, WorkerID)] = []
        for name in names {
            let dealer = try ZMQSocket(context, .dealer)
            try dealer.setOption(.linger, 0)
            try dealer.connect(endpoint)
            try dealer.send(WireCodec().encode(.hello(WorkerHello(name: name, blasThreads: 1, relay: RelayPeer(endpoint: "ipc:///relay/\(name)"))), step: 0))
            var id: WorkerID?
            for _ in 0..<200 where id == nil {
                for case .joined(let worker, _) in try coordinator.poll(until: PhaseClock.now() + 0.05) { id = worker }
            }
            joined.append((dealer, try XCTUnwrap(id, "the coordinator never saw \(name)'s hello")))
            guard let frames = try dealer.receiveMultipart(timeoutMs: 5_000), case .welcome = try WireCodec().decode(frames).message else {
                throw WireError.malformed("no welcome for \(name)")
            }
        }
        workers = joined
        codec = WireCodec(runID: coordinator.runID, shape: shape)
    }

    deinit { try? FileManager.default.removeItem(at: dir) }
}
