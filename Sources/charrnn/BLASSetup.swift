import CharRNN
import Foundation

/// Debian's OpenBLAS 0.3.21 does not recognise recent CPUs (AMD Zen 4, recent Intel) and silently picks its
/// slowest x86-64 kernel ("Prescott", ~5× slower sgemm). The kernel is chosen when the library loads, before
/// `main` runs, so the only fix from inside is to re-execute this program once with `OPENBLAS_CORETYPE` set.
/// An explicit `OPENBLAS_CORETYPE` from the user always wins.
enum BLASSetup {
    static let genericCores: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Barcelona", "Unknown"]

    /// Re-executes the process with a matching core type when OpenBLAS picked a generic one. Returns only
    /// when no re-execution is needed (or it failed, in which case training runs, slower).
    static func ensureFastKernel() {
        let env = ProcessInfo.processInfo.environment
        guard env["OPENBLAS_CORETYPE"] == nil, genericCores.contains(BLASRuntime.coreName),
              let core = matchingCore() else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        let args = CommandLine.arguments
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // execv returns only on failure; carry on with the slow kernel rather than not at all.
        FileHandle.standardError.write(Data("warning: could not re-execute with OPENBLAS_CORETYPE=\(core); using \(BLASRuntime.coreName)\n".utf8))
    }

    /// The best OpenBLAS kernel this CPU can run, from the flags the kernel reports.
    static func matchingCore() -> String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(line.split(separator: " ").map(String.init))
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) { return "SkylakeX" }
        if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }
}
