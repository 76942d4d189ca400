import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `threads − 1` persistent threads that, with the caller, take numbered blocks of one job at a time.
///
/// A job is published as a generation number; its blocks are claimed from one atomic word holding
/// (generation, next block), so a thread that wakes late for a finished job can never claim a block of the
/// next one. The caller returns when every block has finished. Waiting threads (the pool's for the next job,
/// the caller for the last blocks) spin for `spin` seconds, since the recurrence publishes a job every time
/// step, then sleep on a condition variable: spinning longer, or yielding the core in a loop, costs CPU time
/// that other threads and processes could use, and on a busy machine a yielded core comes back late.
final class BlockPool: @unchecked Sendable {
    let threads: Int

    private typealias Body = (Int) -> Void
    private struct Job {
        var generation: UInt64 = 0
        var count = 0
        var body: UnsafePointer<Body>?
    }

    /// generation << 24 | next unclaimed block.
    private let claims = Atomic<UInt64>(0)
    private let finished = Atomic<Int>(0)
    /// Whether a caller is running a job: a second caller (nested or concurrent) runs its blocks itself.
    private let busy = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let exited = DispatchSemaphore(value: 0)

    /// Guards `job`, `sleepers` and `callerWaits`; `wake` is signalled when a job is published, `done` when its
    /// last block finishes.
    private var lock = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var done = pthread_cond_t()
    private var job = Job()
    private var sleepers = 0
    private var callerWaits = false

    private static let indexBits: UInt64 = 24
    private static let maxBlocks = 1 << 24
    private static let spin = 20e-6

    init(threads: Int) {
        precondition(threads > 1, "a pool needs at least two threads")
        self.threads = threads
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&wake, nil)
        pthread_cond_init(&done, nil)
        for _ in 1..<threads {
            let thread = Thread { [self] in work() }
            thread.name = "charrnn-compute"
            thread.start()
        }
    }

    deinit {
        pthread_cond_destroy(&wake)
        pthread_cond_destroy(&done)
        pthread_mutex_destroy(&lock)
    }

    /// Stops the threads and waits for them to exit.
    func shutdown() {
        pthread_mutex_lock(&lock)
        stopping.store(true, ordering: .sequentiallyConsistent)
        pthread_cond_broadcast(&wake)
        pthread_mutex_unlock(&lock)
        for _ in 1..<threads { exited.wait() }
    }

    /// Runs the job's blocks on the pool and the calling thread. Returns false, having run nothing, when the
    /// pool is already running a job.
    func run(count: Int, _ body: (Int) -> Void) -> Bool {
        precondition(count < Self.maxBlocks, "too many blocks")
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { pointer in
                pthread_mutex_lock(&lock)
                job = Job(generation: job.generation + 1, count: count, body: pointer)
                finished.store(0, ordering: .relaxed)
                claims.store(job.generation << Self.indexBits, ordering: .releasing)
                if sleepers > 0 { pthread_cond_broadcast(&wake) }
                let mine = job
                pthread_mutex_unlock(&lock)
                take(mine)
                if !Self.spin(until: { finished.load(ordering: .acquiring) == count }) {
                    pthread_mutex_lock(&lock)
                    while finished.load(ordering: .acquiring) < count {
                        callerWaits = true
                        pthread_cond_wait(&done, &lock)
                    }
                    callerWaits = false
                    pthread_mutex_unlock(&lock)
                }
            }
        }
        return true
    }

    /// Claims and runs blocks of `job` until none is left or the job is over.
    private func take(_ job: Job) {
        var seen = claims.load(ordering: .acquiring)
        while seen >> Self.indexBits == job.generation {
            let index = Int(seen & ((1 << Self.indexBits) - 1))
            guard index < job.count else { return }
            let (exchanged, current) = claims.compareExchange(
                expected: seen, desired: seen + 1, successOrdering: .acquiringAndReleasing, failureOrdering: .acquiring)
            if exchanged {
                // The claim succeeded, so the job is not finished and its caller (and `body`) is still there.
                job.body!.pointee(index)
                if finished.add(1, ordering: .acquiringAndReleasing).newValue == job.count {
                    pthread_mutex_lock(&lock)
                    if callerWaits { pthread_cond_signal(&done) }
                    pthread_mutex_unlock(&lock)
                }
                seen = claims.load(ordering: .acquiring)
            } else {
                seen = current
            }
        }
    }

    /// Polls `condition` for up to `spin` seconds; whether it became true.
    @inline(__always)
    private static func spin(until condition: () -> Bool) -> Bool {
        let deadline = PhaseClock.now() + spin
        while true {
            for _ in 0..<32 where condition() { return true }
            if PhaseClock.now() > deadline { return condition() }
        }
    }

    private func work() {
        var last: UInt64 = 0
        while true {
            _ = Self.spin(until: { claims.load(ordering: .acquiring) >> Self.indexBits != last || stopping.load(ordering: .relaxed) })
            pthread_mutex_lock(&lock)
            while job.generation == last, !stopping.load(ordering: .relaxed) {
                sleepers += 1
                pthread_cond_wait(&wake, &lock)
                sleepers -= 1
            }
            let next = job
            pthread_mutex_unlock(&lock)
            if stopping.load(ordering: .relaxed) { break }
            take(next)
            last = next.generation
        }
        exited.signal()
    }
}
