import ArgumentParser
import CharRNN

struct CharRNNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "charrnn",
        abstract: "Train character-level GRU (or LSTM) language models on CPUs, in one process or across many.",
        version: "charrnn \(CharRNNCommand.version) (checkpoint format \(Checkpoint.formatVersion))",
        subcommands: [Train.self, Generate.self, Evaluate.self, Info.self, CoordinatorCommand.self, WorkerCommand.self, Launch.self, Keygen.self, Plot.self, Bench.self])

    /// This program's version; raise it with each release.
    static let version = "0.2.0"
}
