import ArgumentParser

struct CharRNNCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "charrnn",
        abstract: "Train character-level GRU (or LSTM) language models on CPUs, in one process or across many.",
        subcommands: [Train.self, Generate.self, Evaluate.self, Info.self, CoordinatorCommand.self, WorkerCommand.self, Launch.self, Keygen.self, Plot.self, Bench.self])
}
