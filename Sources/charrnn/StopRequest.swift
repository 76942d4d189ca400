import Dispatch
import Foundation

/// SIGINT/SIGTERM as a flag the training loops poll, so a stop lands between steps: the run writes a
/// checkpoint and tells its workers to exit. A second signal exits at once.
final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false
    private var sources: [DispatchSourceSignal] = []

    static func installed() -> StopRequest {
        let stop = StopRequest()
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.request(sig) }
            source.resume()
            stop.sources.append(source)
        }
        return stop
    }

    var isRequested: Bool { lock.withLock { requested } }

    private func request(_ sig: Int32) {
        let first = lock.withLock { () -> Bool in
            defer { requested = true }
            return !requested
        }
        if !first { exit(128 + sig) }
        printError("signal \(sig): stopping after the current step (again to exit now)")
    }
}
