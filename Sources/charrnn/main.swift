@preconcurrency import Glibc
import ArgumentParser

BLASSetup.ensureFastKernel()
setvbuf(stdout, nil, _IOLBF, 0)

// Like `CharRNNCommand.main()`, but a usage error is one line, as every other bad input is: the parser's
// usage block would bury it. `--help` and `--version` still print in full.
do {
    var command = try CharRNNCommand.parseAsRoot()
    try command.run()
} catch {
    let code = CharRNNCommand.exitCode(for: error)
    if code == .success { CharRNNCommand.exit(withError: error) }
    let message = CharRNNCommand.message(for: error).split(separator: "\n").first.map(String.init) ?? ""
    if !message.isEmpty { printError("Error: \(message)") }
    exit(code.rawValue)
}
