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
/// next one. The caller returns when every block has finished. Threads spin briefly (yielding the core)
/// between jobs, since the recurrence publishes one job per time step, then sleep on a condition variable.
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

    /// Guards `job` and `sleepers`; `wake` is signalled when a job is published.
    private var lock = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var job = Job()
    private var sleepers = 0

    private static let indexBits: UInt64 = 24
    private static let maxBlocks = 1 << 24
    /// sched_yield() calls a thread makes looking for the next job before it sleeps (≈ 0.1–0.3 ms).
    private static let spins = 300

    init(threads: Int) {
        precondition(threads > 1, "a pool needs at least two threads")
        self.threads = threads
        pthread_mutex_init(&lock, nil)
        pthread_cond_init(&wake, nil)
        for _ in 1..<threads {
            let thread = Thread { [self] in work() }
            thread.name = "charrnn-compute"
            thread.start()
        }
    }

    deinit {
        pthread_cond_destroy(&wake)
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
                while finished.load(ordering: .acquiring) < count { sched_yield() }
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
                finished.add(1, ordering: .releasing)
                seen = claims.load(ordering: .acquiring)
            } else {
                seen = current
            }
        }
    }

    private func work() {
        var done: UInt64 = 0
        while true {
            var spins = 0
            while claims.load(ordering: .acquiring) >> Self.indexBits == done, spins < Self.spins,
                  !stopping.load(ordering: .relaxed) {
                sched_yield()
                spins += 1
            }
            pthread_mutex_lock(&lock)
            while job.generation == done, !stopping.load(ordering: .relaxed) {
                sleepers += 1
                pthread_cond_wait(&wake, &lock)
                sleepers -= 1
            }
            let next = job
            pthread_mutex_unlock(&lock)
            if stopping.load(ordering: .relaxed) { break }
            take(next)
            done = next.generation
        }
        exited.signal()
    }
}
