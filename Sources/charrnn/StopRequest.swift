import ArgumentParser
import Dispatch
import Foundation

/// SIGINT/SIGTERM as a flag the training loops poll, so a stop lands between steps: the run writes a
/// checkpoint and tells its workers to exit, then exits with 128 + the signal (130, 143) so supervisors can
/// tell a stopped run from a finished one. A second signal exits at once.
final class StopRequest: @unchecked Sendable {
    private let lock = NSLock()
    private var requested: Int32?
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

    var isRequested: Bool { lock.withLock { requested != nil } }

    /// After a run: exit as a stopped process when a signal stopped it.
    func exitIfStopped() throws {
        if let sig = lock.withLock({ requested }) { throw ExitCode(128 + sig) }
    }

    private func request(_ sig: Int32) {
        let first = lock.withLock { () -> Bool in
            defer { requested = requested ?? sig }
            return requested == nil
        }
        // At once means without library teardown: compute threads may be inside OpenBLAS, and exit()'s
        // handlers would free its buffers under them (seen as segmentation faults and "Bad memory unallocation").
        if !first { _exit(128 + sig) }
        printError("signal \(sig): stopping after the current step (again to exit now)")
    }
}
