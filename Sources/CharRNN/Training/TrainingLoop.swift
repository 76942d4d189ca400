import Foundation

/// What the loop reports, for a terminal, a log, or a test to show.
public enum TrainingEvent {
    public struct Step {
        public let summary: StepSummary
        public let stepsPerEpoch: Int
        public let finalStep: Int
        public let msPerStep: Double
        public let charsPerSecond: Double
        public let workers: Int
        public let shards: Int
    }

    public struct Epoch {
        /// 1-based.
        public let epoch: Int
        public let loss: Double
        public let seconds: Double
        public let charsPerSecond: Double
        public let validationLoss: Double?
        public let isBest: Bool
    }

    case step(Step)
    case epoch(Epoch)
    case sample(step: Int, text: String)
    case note(String)
    /// Something went wrong that training goes on despite.
    case warning(String)
}

/// The loop around the step driver shared by `train` and `coordinator`: metrics (metrics.jsonl, metrics.csv and a
/// TensorBoard event file), epoch summaries, validation, samples and checkpoints. A checkpoint that cannot be
/// written is reported and training goes on; the previous checkpoint stays intact (the write is atomic).
public final class TrainingLoop {
    /// Training-time samples, appended in the checkpoint directory.
    public static let samplesName = "samples.txt"

    public let driver: StepDriver
    public let checkpoints: CheckpointPolicy?
    private let monitoring: Monitoring
    private let report: (TrainingEvent) -> Void
    private let shouldStop: () -> Bool
    private var best: BestCheckpoint?

    public init(
        driver: StepDriver, checkpoints: CheckpointPolicy?, monitoring: Monitoring = Monitoring(),
        report: @escaping (TrainingEvent) -> Void, shouldStop: @escaping () -> Bool = { false }
    ) {
        self.driver = driver
        self.checkpoints = checkpoints
        self.monitoring = monitoring
        self.report = report
        self.shouldStop = shouldStop
        best = checkpoints.flatMap { BestCheckpoint.read(in: $0.directory) }
    }

    /// Trains until the plan's final step (or `shouldStop`), writing a final checkpoint. Returns the
    /// directory of the last checkpoint written, if any.
    @discardableResult
    public func run() throws -> URL? {
        let plan = driver.plan
        let charsPerStep = Double(plan.options.batch * plan.options.seq)
        let metrics = try checkpoints.map { try MetricsLog(directory: $0.directory, resumingAfter: plan.state.position.globalStep) }
        let board = try checkpoints.map {
            try TensorBoardWriter(directory: $0.directory.appendingPathComponent(TensorBoardWriter.directoryName),
                                  resumingAfter: plan.state.position.globalStep)
        }
        var lastCheckpoint: URL?
        var savedAt = -1
        var epoch = (start: PhaseClock.now(), loss: 0.0, steps: 0)
        var last = PhaseClock.now()
        var recent: [Double] = []
        /// The last completed step's checkpoint, unless it was just written: at the end, at a stop, and when a
        /// step fails (so `--resume` starts from the last good step).
        func saveUnsaved() {
            if let policy = checkpoints, savedAt != plan.state.position.globalStep, plan.state.position.globalStep > 0 {
                lastCheckpoint = save(policy) ?? lastCheckpoint
            }
        }
        var sinceBest = try checkpoints.map { try validationsSinceBest(in: $0.directory, upTo: plan.state.position.globalStep) } ?? 0
        while !plan.isFinished && !shouldStop() && !patienceRunOut(sinceBest) {
            let advanced: StepSummary?
            do {
                advanced = try driver.advance()
            } catch {
                saveUnsaved()
                throw error
            }
            guard let s = advanced else { break }
            let now = PhaseClock.now()
            recent = (recent + [now - last]).suffix(20)
            last = now
            let seconds = recent.reduce(0, +) / Double(recent.count)
            let done = s.globalStep + 1
            if s.skipped {
                report(.note("step \(done): loss \(s.loss), gradient norm \(s.gradientNorm): update skipped (--on-nonfinite skip)"))
            } else {
                epoch.loss += s.loss
                epoch.steps += 1
            }
            report(.step(TrainingEvent.Step(
                summary: s, stepsPerEpoch: plan.stepsPerEpoch, finalStep: plan.finalStep, msPerStep: seconds * 1e3,
                charsPerSecond: charsPerStep / seconds, workers: driver.liveWorkers, shards: plan.shardCount)))
            var record = MetricsRecord(
                step: done, epoch: s.epoch + 1, loss: s.loss, bitsPerChar: s.loss / M_LN2,
                learningRate: Double(plan.options.learningRate(at: s.globalStep)), gradientNorm: Double(s.gradientNorm),
                charsPerSecond: charsPerStep / seconds, workers: driver.liveWorkers, wallTime: Date().timeIntervalSince1970)
            if let every = monitoring.sampleEvery, done % every == 0, !monitoring.samplePrime.isEmpty { sample(at: done, board: board) }

            var isBest = false
            var validation: Double?
            // Not also at a run's last step: where an invocation stops must not change which validations
            // early stopping counts, or a resumed run would stop elsewhere than an uninterrupted one.
            if let ids = monitoring.validation, s.epochEnded || monitoring.validateEvery.map({ done % $0 == 0 }) ?? false {
                let loss = try Evaluator.meanLoss(weights: plan.state.weights, ids: ids, seq: plan.options.seq, batch: plan.options.batch).loss
                validation = loss
                record.validationLoss = loss
                record.validationBitsPerChar = loss / M_LN2
                isBest = loss < (best?.validationLoss ?? .infinity)
                sinceBest = isBest ? 0 : sinceBest + 1
            }
            if s.epochEnded {
                let elapsed = PhaseClock.now() - epoch.start
                report(.epoch(TrainingEvent.Epoch(
                    epoch: s.epoch + 1, loss: epoch.loss / Double(epoch.steps), seconds: elapsed,
                    charsPerSecond: charsPerStep * Double(epoch.steps) / elapsed, validationLoss: validation, isBest: isBest)))
                epoch = (PhaseClock.now(), 0, 0)
            } else if let validation {
                report(.note(String(format: "step %d: validation loss %.4f  %.3f bits/char%@", done, validation, validation / M_LN2, isBest ? " (best)" : "")))
            }
            if !s.skipped {
                do { try metrics?.append(record) } catch { report(.warning("\(error)")) }
                do { try board?.append(record) } catch { report(.warning("\(error)")) }
            }

            if let policy = checkpoints {
                let periodic = policy.every.map { done % $0 == 0 } ?? false
                // A new best is always saved, so best.json names a checkpoint that exists.
                if periodic || s.epochEnded || plan.isFinished || isBest {
                    if let url = save(policy) {
                        lastCheckpoint = url
                        if isBest { markBest(step: done, loss: record.validationLoss!, in: policy) }
                    }
                    // The rows a checkpoint covers go to disk with it; a resume drops only rows after it.
                    do {
                        try metrics?.sync()
                        try board?.sync()
                    } catch {
                        report(.note("\(error)"))
                    }
                    savedAt = done
                }
            }
        }
        if patienceRunOut(sinceBest), let k = monitoring.earlyStopPatience {
            report(.note("early stop: \(k) validation(s) without improvement; best \(best.map { Checkpoint.directoryName(step: $0.step) } ?? "none")"))
        }
        saveUnsaved()
        return lastCheckpoint
    }

    private func patienceRunOut(_ sinceBest: Int) -> Bool {
        monitoring.earlyStopPatience.map { sinceBest >= $0 } ?? false
    }

    /// Validations logged after the best one, up to `step`: where early stopping's count stands on resume.
    private func validationsSinceBest(in dir: URL, upTo step: Int) throws -> Int {
        let url = dir.appendingPathComponent(MetricsLog.jsonName)
        guard FileManager.default.fileExists(atPath: url.path) else { return 0 }
        var (lowest, since) = (Double.infinity, 0)
        for loss in try MetricsLog.read(url).filter({ $0.step <= step }).compactMap(\.validationLoss) {
            if loss < lowest { (lowest, since) = (loss, 0) } else { since += 1 }
        }
        return since
    }

    private func save(_ policy: CheckpointPolicy) -> URL? {
        do {
            let url = try Checkpoint.save(driver.plan.state, in: policy.directory, keep: policy.keep,
                                          sparing: Set(best.map { [$0.step] } ?? []))
            report(.note("checkpoint \(url.path)"))
            return url
        } catch {
            report(.warning("checkpoint not written (training goes on; the previous checkpoint is intact): \(error)"))
            return nil
        }
    }

    private func markBest(step: Int, loss: Double, in policy: CheckpointPolicy) {
        let marked = BestCheckpoint(step: step, validationLoss: loss)
        do {
            try marked.write(in: policy.directory)
            best = marked
            report(.note("best so far by validation loss: \(Checkpoint.directoryName(step: step))"))
        } catch {
            report(.warning("cannot mark the best checkpoint: \(error)"))
        }
    }

    private func sample(at step: Int, board: TensorBoardWriter?) {
        let plan = driver.plan
        var ids: [Int32] = []
        Sampler(weights: plan.state.weights).generate(
            prime: monitoring.samplePrime, length: monitoring.sampleLength, options: SamplingOptions(seed: UInt64(step))) { ids.append($0[0]) }
        let text = plan.state.vocabulary.decode(monitoring.samplePrime + ids)
        report(.sample(step: step, text: text))
        if let dir = checkpoints?.directory {
            do {
                try DurableFile.append(Data("--- step \(step)\n\(text)\n".utf8), to: dir.appendingPathComponent(TrainingLoop.samplesName))
            } catch {
                report(.note("sample not saved (training goes on): \(error)"))
            }
            do { try board?.text(TensorBoardWriter.samplesTag, text, step: step) } catch { report(.note("\(error)")) }
        }
    }
}
