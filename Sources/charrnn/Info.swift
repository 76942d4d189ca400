import ArgumentParser
import CharRNN
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a run: its options, progress, best validation loss and the command line that reproduces it.")

    @Argument(help: "A --checkpoint-dir (its latest checkpoint is shown) or one step directory.") var directory: String

    func run() throws {
        let root = URL(fileURLWithPath: directory, isDirectory: true)
        let isStep = FileManager.default.fileExists(atPath: root.appendingPathComponent("checkpoint.json").path)
        let state = try loadCheckpoint(directory)
        let (o, c, p) = (state.options, state.config, state.position)
        let schedule = o.schedule ?? .constant
        print("checkpoint \(isStep ? root.path : root.appendingPathComponent(Checkpoint.directoryName(step: p.globalStep)).path)")
        print("model      \(c), \(state.weights.count) parameters" + (o.dropout.map { ", dropout \($0)" } ?? ""))
        print("text       " + (state.text.map { "\($0.path) (SHA-256 \($0.sha256))" } ?? "not recorded (checkpoint from an older charrnn)"))
        print("options    batch \(o.batch), seq \(o.seq), shards \(o.shards), seed \(o.seed), buffer \(o.buffer), "
            + "\(o.shuffle ? "shuffled" : "in order"), val-fraction \(o.validationFraction), epochs \(o.epochs)")
        print("optimizer  Adam lr \(o.adam.learningRate), schedule \(schedule.kind.rawValue)"
            + (schedule.warmupSteps > 0 ? ", warm-up \(schedule.warmupSteps) steps" : "")
            + (schedule.decayEvery.map { ", decay every \($0)" } ?? "") + (schedule.decayFactor.map { " × \($0)" } ?? "")
            + (schedule.minRate > 0 ? ", min-lr \(schedule.minRate)" : "") + ", clip-norm " + (o.clipNorm.map { "\($0)" } ?? "none")
            + String(format: "; next step's rate %g", o.learningRate(at: p.globalStep)))
        print("progress   \(p.globalStep) steps done; next: epoch \(p.epoch + 1), its step \(p.stepInEpoch + 1)")
        let best = BestCheckpoint.read(in: isStep ? root.deletingLastPathComponent() : root)
        print("best       " + (best.map { String(format: "validation loss %.4f (%.3f bits/char) at %@", $0.validationLoss, $0.validationLoss / M_LN2, Checkpoint.directoryName(step: $0.step)) } ?? "no validation recorded"))
        let command = ["charrnn", "train"] + Info.reproducingArguments(state) + ["--checkpoint-dir", "NEW_DIR"]
        print("reproduce  " + command.map(Info.shellQuoted).joined(separator: " "))
    }

    /// `train` options that give this checkpoint again, bit for bit, in a new directory (the text must be the
    /// one recorded; `--shards` also fits a coordinator).
    static func reproducingArguments(_ s: TrainingState) -> [String] {
        let (o, c) = (s.options, s.config)
        var args = s.text.map { ["--data", $0.path] } ?? []
        args += ["--embed", "\(c.embed)", "--units", "\(c.units)", "--cell", c.cell.rawValue, "--layers", "\(c.layers)"]
        args += ["--batch", "\(o.batch)", "--seq", "\(o.seq)", "--shards", "\(o.shards)", "--seed", "\(o.seed)", "--buffer", "\(o.buffer)"]
        if !o.shuffle { args.append("--no-shuffle") }
        args += ["--lr", "\(o.adam.learningRate)", "--epochs", "\(o.epochs)", "--steps", "\(s.position.globalStep)"]
        if o.validationFraction > 0 { args += ["--val-fraction", "\(o.validationFraction)"] }
        if let d = o.dropout { args += ["--dropout", "\(d)"] }
        if let n = o.clipNorm { args += ["--clip-norm", "\(n)"] }
        if let schedule = o.schedule {
            args += ["--lr-schedule", schedule.kind.rawValue]
            if schedule.warmupSteps > 0 { args += ["--warmup-steps", "\(schedule.warmupSteps)"] }
            if let n = schedule.decayEvery { args += ["--lr-decay-every", "\(n)"] }
            if let f = schedule.decayFactor { args += ["--lr-decay-factor", "\(f)"] }
            if schedule.minRate > 0 { args += ["--min-lr", "\(schedule.minRate)"] }
        }
        return args
    }

    static func shellQuoted(_ word: String) -> String {
        let plain = word.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "-_./=:,+@%".unicodeScalars.contains($0) }
        return plain && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
