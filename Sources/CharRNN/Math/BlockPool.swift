import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `threads − 1` persistent threads that, with the caller, take numbered blocks of one job at a time.
///
/// A job is published as a generation number; its blocks are shared out as home blocks, one set per thread that
/// takes part (`HomeBlocks`), each set claimed from an atomic word holding (generation, next of the set), so a
/// thread that wakes late for a finished job can never claim a block of the next one. A thread takes its own set
/// first, then what the others left. The caller returns when every block has finished. Waiting threads (the
/// pool's for the next job, the caller for the last blocks) spin for `spin` seconds, since the recurrence
/// publishes a job every time step, then sleep on a condition variable: spinning longer, or yielding the core in
/// a loop, costs CPU time that other threads and processes could use, and on a busy machine a yielded core comes
/// back late. With more threads than cores they do not spin at all (as libgomp does): a spinning thread would
/// hold a core that a thread with a block to run is waiting for.
///
/// Pool thread `i` (1 …) joins only jobs of more than `i` blocks: a job of n blocks needs n threads at most,
/// and the others would only spin and be woken for nothing at every time step of a small model (H 256 has
/// 4 blocks per time step; 8 threads spent ≈ 10 % more CPU per step than 2 before this).
final class BlockPool: @unchecked Sendable {
    let threads: Int

    private typealias Body = (Int) -> Void
    private struct Job {
        var generation: UInt64 = 0
        var count = 0
        var inIndexOrder = false
        var body: UnsafePointer<Body>?
    }

    /// Per home set r of the current job: generation << 24 | how many of its blocks are claimed.
    private let claims: UnsafeMutablePointer<Atomic<UInt64>>
    /// generation << 24 | block count of the latest job, for the pool's threads to see whether it is for them.
    private let published = Atomic<UInt64>(0)
    private let finished = Atomic<Int>(0)
    /// Whether a caller is running a job: a second caller (nested or concurrent) runs its blocks itself.
    private let busy = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let exited = DispatchSemaphore(value: 0)

    /// Guards `job`, `asleep` and `callerWaits`; `wake[i]` is signalled when a job for thread i is published,
    /// `done` when a job's last block finishes.
    private var lock = pthread_mutex_t()
    private let wake: UnsafeMutablePointer<pthread_cond_t>
    private var done = pthread_cond_t()
    private var job = Job()
    private var asleep: [Bool]
    private var callerWaits = false

    private static let indexBits: UInt64 = 24
    private static let indexMask: UInt64 = (1 << indexBits) - 1
    private static let maxBlocks = 1 << 24
    private let spin: Double

    /// `cores`: the cores this process may use.
    init(threads: Int, cores: Int) {
        precondition(threads > 1, "a pool needs at least two threads")
        self.threads = threads
        spin = Self.spinTime(threads: threads, cores: cores)
        wake = .allocate(capacity: threads)
        claims = .allocate(capacity: threads)
        for i in 0..<threads { (claims + i).initialize(to: Atomic(0)) }
        asleep = Array(repeating: false, count: threads)
        pthread_mutex_init(&lock, nil)
        for i in 0..<threads { pthread_cond_init(wake + i, nil) }
        pthread_cond_init(&done, nil)
        for i in 1..<threads {
            let thread = Thread { [self] in work(index: i) }
            thread.name = "charrnn-compute"
            thread.start()
        }
    }

    deinit {
        for i in 0..<threads { pthread_cond_destroy(wake + i) }
        wake.deallocate()
        claims.deinitialize(count: threads)
        claims.deallocate()
        pthread_cond_destroy(&done)
        pthread_mutex_destroy(&lock)
    }

    /// Stops the threads and waits for them to exit.
    func shutdown() {
        pthread_mutex_lock(&lock)
        stopping.store(true, ordering: .sequentiallyConsistent)
        for i in 1..<threads { pthread_cond_signal(wake + i) }
        pthread_mutex_unlock(&lock)
        for _ in 1..<threads { exited.wait() }
    }

    /// Runs the job's blocks on the pool and the calling thread. Returns false, having run nothing, when the
    /// pool is already running a job.
    func run(count: Int, inIndexOrder: Bool = false, _ body: (Int) -> Void) -> Bool {
        precondition(count < Self.maxBlocks, "too many blocks")
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        defer { busy.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { pointer in
                pthread_mutex_lock(&lock)
                job = Job(generation: job.generation + 1, count: count, inIndexOrder: inIndexOrder, body: pointer)
                finished.store(0, ordering: .relaxed)
                for r in 0..<homes(of: job).sets {
                    claims[r].store(job.generation << Self.indexBits, ordering: .releasing)
                }
                published.store(job.generation << Self.indexBits | UInt64(count), ordering: .releasing)
                let sleepers = (1..<min(count, threads)).filter { asleep[$0] }
                let mine = job
                pthread_mutex_unlock(&lock)
                // Signalled after unlocking: a thread woken while the lock is still held blocks on it at once, one
                // more sleep and wake-up (with 8 threads on 2 cores at H 256: ≈ 1.5 % of the step's CPU time).
                // A sleeper that wakes on its own meanwhile finds the job itself; the signal then wakes no one.
                for i in sleepers { pthread_cond_signal(wake + i) }
                take(mine, index: 0)
                if !spin(until: { finished.load(ordering: .acquiring) == count }) {
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

    /// Claims and runs blocks of `job` until none is left or the job is over: thread `index`'s home blocks first,
    /// then what is left of the others' sets, in turn.
    private func take(_ job: Job, index: Int) {
        let homes = homes(of: job)
        for k in 0..<homes.sets {
            let r = (index + k) % homes.sets
            let size = UInt64(homes.size(of: r))
            var seen = claims[r].load(ordering: .acquiring)
            while seen >> Self.indexBits == job.generation, seen & Self.indexMask < size {
                let (exchanged, current) = claims[r].compareExchange(
                    expected: seen, desired: seen + 1, successOrdering: .acquiringAndReleasing,
                    failureOrdering: .acquiring)
                if exchanged {
                    // The claim succeeded, so the job is not finished and its caller (and `body`) is still there.
                    job.body!.pointee(homes.block(Int(seen & Self.indexMask), of: r))
                    if finished.add(1, ordering: .acquiringAndReleasing).newValue == job.count {
                        pthread_mutex_lock(&lock)
                        if callerWaits { pthread_cond_signal(&done) }
                        pthread_mutex_unlock(&lock)
                    }
                    seen = claims[r].load(ordering: .acquiring)
                } else {
                    seen = current
                }
            }
            // A newer job: every block of this one is claimed.
            if seen >> Self.indexBits != job.generation { return }
        }
    }

    private func homes(of job: Job) -> HomeBlocks {
        HomeBlocks(blocks: job.count, threads: threads, inIndexOrder: job.inIndexOrder)
    }

    /// Seconds a waiting thread polls before it sleeps: none when the threads outnumber the cores.
    static func spinTime(threads: Int, cores: Int) -> Double { threads > cores ? 0 : 20e-6 }

    /// Polls `condition` for up to `spin` seconds; whether it became true.
    @inline(__always)
    private func spin(until condition: () -> Bool) -> Bool {
        let deadline = PhaseClock.now() + spin
        while true {
            for _ in 0..<32 where condition() { return true }
            if PhaseClock.now() > deadline { return condition() }
        }
    }

    /// Pool thread `index`: runs every job of more than `index` blocks; `last` is the latest job it has seen.
    private func work(index: Int) {
        var last: UInt64 = 0
        while true {
            _ = spin(until: {
                let word = published.load(ordering: .acquiring)
                return word >> Self.indexBits != last && Int(word & Self.indexMask) > index || stopping.load(ordering: .relaxed)
            })
            pthread_mutex_lock(&lock)
            while job.generation == last || job.count <= index, !stopping.load(ordering: .relaxed) {
                last = job.generation
                asleep[index] = true
                pthread_cond_wait(wake + index, &lock)
                asleep[index] = false
            }
            let next = job
            pthread_mutex_unlock(&lock)
            if stopping.load(ordering: .relaxed) { break }
            take(next, index: index)
            last = next.generation
        }
        exited.signal()
    }
}

/// A job's blocks shared out among the P threads that take part (min(blocks, threads) of them; thread 0 is the
/// caller): thread r's home blocks are one run of consecutive blocks, the r-th of P even runs, or, for a job whose
/// caller uses results as runs of them complete (`gemm`'s bands of tiles), dealt round: r, r + P, r + 2P, …, so
/// that the blocks are still taken roughly in index order. Each thread takes its own in order, then what is left
/// of the others'. So while every thread keeps up, a block goes to the same thread at every time step of the
/// recurrence, and what it writes and reads again there (its units' states and carried gradient, the pieces of the
/// bias and input-table gradients it adds to) stays in one core's cache; in one run, adjacent units stay on one core
/// too, as with a static OpenMP schedule. A late thread's blocks are taken by the others. Which thread computes a
/// block never changes what it computes.
struct HomeBlocks {
    let blocks: Int
    /// P: the number of sets.
    let sets: Int
    let inIndexOrder: Bool

    init(blocks: Int, threads: Int, inIndexOrder: Bool = false) {
        self.blocks = blocks
        self.inIndexOrder = inIndexOrder
        sets = max(1, min(blocks, threads))
    }

    /// How many blocks set r holds.
    func size(of r: Int) -> Int { inIndexOrder ? (blocks - r + sets - 1) / sets : start(r + 1) - start(r) }

    /// The block at `position` in set r.
    func block(_ position: Int, of r: Int) -> Int { inIndexOrder ? r + position * sets : start(r) + position }

    private func start(_ r: Int) -> Int { r * blocks / sets }
}
