import Foundation

/// Something that takes training steps: the in-process trainer, or a coordinator driving workers.
public protocol StepRunner: AnyObject {
    var plan: StepPlan { get }
    /// One step; nil when it was abandoned because a stop was requested (the position is unchanged).
    func advance() throws -> StepSummary?
}

extension Trainer: StepRunner {
    public func advance() throws -> StepSummary? { step() }
}

/// When to write checkpoints: every N steps (optional), at each epoch's end, and when the run stops.
public struct CheckpointPolicy: Sendable {
    public var directory: URL
    public var every: Int?
    public var keep: Int

    public init(directory: URL, every: Int? = nil, keep: Int = 3) {
        self.directory = directory
        self.every = every
        self.keep = keep
    }
}

/// The loop around a step runner shared by `train` and `coordinator`: logging, epoch summaries and
/// checkpoints. A checkpoint that cannot be written is reported and training goes on; the previous
/// checkpoint stays intact (the write is atomic).
public final class TrainingLoop {
    public let runner: StepRunner
    public let checkpoints: CheckpointPolicy?
    public let logEvery: Int
    private let log: (String) -> Void
    private let shouldStop: () -> Bool

    public init(
        runner: StepRunner, checkpoints: CheckpointPolicy?, logEvery: Int = 100,
        log: @escaping (String) -> Void, shouldStop: @escaping () -> Bool = { false }
    ) {
        self.runner = runner
        self.checkpoints = checkpoints
        self.logEvery = max(1, logEvery)
        self.log = log
        self.shouldStop = shouldStop
    }

    /// Trains until the plan's final step (or `shouldStop`), writing a final checkpoint. Returns the
    /// directory of the last checkpoint written, if any.
    @discardableResult
    public func run() throws -> URL? {
        let plan = runner.plan
        let charsPerStep = Double(plan.options.batch * plan.options.seq)
        var lastCheckpoint: URL?
        var savedAt = -1
        var epoch = (start: PhaseClock.now(), loss: 0.0, steps: 0)
        var window = (start: PhaseClock.now(), steps: 0)
        while !plan.isFinished && !shouldStop() {
            guard let s = try runner.advance() else { break }
            epoch.loss += s.loss
            epoch.steps += 1
            window.steps += 1
            let done = s.globalStep + 1
            if (s.stepInEpoch + 1) % logEvery == 0 || done == plan.finalStep {
                let ms = (PhaseClock.now() - window.start) / Double(window.steps) * 1e3
                log(String(format: "epoch %d step %d/%d  loss %.4f  %.3f bits/char  %.0f ms/step",
                           s.epoch + 1, s.stepInEpoch + 1, plan.stepsPerEpoch, s.loss, s.loss / M_LN2, ms))
                window = (PhaseClock.now(), 0)
            }
            if s.epochEnded {
                let seconds = PhaseClock.now() - epoch.start
                let mean = epoch.loss / Double(epoch.steps)
                log(String(format: "epoch %d done: loss %.4f  %.3f bits/char  %.1f s  %.0f chars/s",
                           s.epoch + 1, mean, mean / M_LN2, seconds, charsPerStep * Double(epoch.steps) / seconds))
                epoch = (PhaseClock.now(), 0, 0)
            }
            if let policy = checkpoints {
                let periodic = policy.every.map { done % $0 == 0 } ?? false
                if periodic || s.epochEnded || plan.isFinished {
                    lastCheckpoint = save(policy) ?? lastCheckpoint
                    savedAt = done
                }
            }
        }
        if let policy = checkpoints, savedAt != plan.state.position.globalStep, plan.state.position.globalStep > 0 {
            lastCheckpoint = save(policy) ?? lastCheckpoint
        }
        return lastCheckpoint
    }

    private func save(_ policy: CheckpointPolicy) -> URL? {
        do {
            let url = try Checkpoint.save(runner.plan.state, in: policy.directory, keep: policy.keep)
            log("checkpoint \(url.path)")
            return url
        } catch {
            log("checkpoint not written (training goes on; the previous checkpoint is intact): \(error)")
            return nil
        }
    }
}
