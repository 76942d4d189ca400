import CharRNN
import Foundation

/// OpenBLAS picks its kernel when the library loads, before `main` runs, and Debian's 0.3.21 picks badly on
/// recent CPUs: a generic x86-64 kernel ("Prescott", ~5× slower sgemm) where it does not recognise the CPU,
/// and its AVX-512 kernels on AMD Zen 4, whose 512-bit units are double-pumped: there the AVX2 ("Haswell")
/// kernels measured 88 vs 63–67 GFLOP/s on the recurrent products (BENCHMARKS.md). The only fix from inside
/// is to re-execute this program once with `OPENBLAS_CORETYPE` set. An explicit setting always wins.
///
/// The kernel is part of what makes two runs bitwise equal: workers of one run should run the same one.
enum BLASSetup {
    static let genericCores: Set<String> = ["Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Barcelona", "Unknown"]

    /// Set beside `OPENBLAS_CORETYPE` when charrnn chose the kernel itself, so that a kernel choice of its own
    /// may be revised for a run (below) while one a user made never is.
    static let chosenMarker = "CHARRNN_CORETYPE_CHOSEN"
    /// Set when a worker re-executed itself with its run's kernel: it does so once.
    static let runKernelMarker = "CHARRNN_CORETYPE_OF_RUN"

    /// Re-executes the process with a better core type when there is one. Returns only when no
    /// re-execution is needed (or it failed, in which case training runs, slower).
    static func ensureFastKernel() {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
              let core = preferredCore(detected: BLASRuntime.coreName), core != BLASRuntime.coreName else { return }
        reexecute(with: core, marking: [chosenMarker])
    }

    /// Whether a worker refused for computing with another kernel than its run's may take the run's `kernel`:
    /// this CPU can run it, and the kernel in use was charrnn's own choice (never one the user set), once.
    static func mayAdopt(_ kernel: String) -> Bool {
        let env = ProcessInfo.processInfo.environment
        let ours = env["OPENBLAS_CORETYPE"] == nil || env[chosenMarker] != nil
        return ours && env[runKernelMarker] == nil && kernel != BLASRuntime.coreName && canRun(kernel)
    }

    /// Re-executes this process with the run's `kernel` (see `mayAdopt`); returns only if that fails.
    static func adopt(_ kernel: String) {
        reexecute(with: kernel, marking: [chosenMarker, runKernelMarker])
    }

    /// The CPU flags each kernel needs (as /proc/cpuinfo names them; SSE3 is "pni"). Unknown kernels: none run.
    static let requiredFlags: [String: Set<String>] = [
        "Prescott": ["pni"], "Core2": ["pni", "ssse3"], "Penryn": ["pni", "ssse3", "sse4_1"],
        "Dunnington": ["pni", "ssse3", "sse4_1"], "Nehalem": ["pni", "ssse3", "sse4_1", "sse4_2"],
        "Sandybridge": ["avx"], "Haswell": ["avx2", "fma"], "Zen": ["avx2", "fma"],
        "SkylakeX": ["avx512f", "avx512bw", "avx512vl", "avx512dq"],
        "Cooperlake": ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"],
    ]

    static func canRun(_ kernel: String, flags: Set<String>? = cpuFlags()) -> Bool {
        guard let needed = requiredFlags[kernel], let flags else { return false }
        return flags.isSuperset(of: needed)
    }

    private static func reexecute(with core: String, marking markers: [String]) {
        setenv("OPENBLAS_CORETYPE", core, 1)
        for m in markers { setenv(m, core, 1) }
        var argv: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // execv returns only on failure; carry on with the kernel at hand rather than not at all.
        FileHandle.standardError.write(Data("warning: could not re-execute with OPENBLAS_CORETYPE=\(core); using \(BLASRuntime.coreName)\n".utf8))
    }

    private static func cpuFlags() -> Set<String>? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return nil }
        return Set(line.split(separator: " ").map(String.init))
    }

    /// The kernel to use instead of `detected`, from the CPU's vendor and flags; nil to keep it.
    static func preferredCore(detected: String) -> String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8), let flags = cpuFlags() else { return nil }
        let amd = info.split(separator: "\n").contains { $0.hasPrefix("vendor_id") && $0.contains("AuthenticAMD") }
        let avx2 = flags.isSuperset(of: ["avx2", "fma"])
        if amd && avx2 { return "Haswell" }
        guard genericCores.contains(detected) else { return nil }
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) { return "SkylakeX" }
        return avx2 ? "Haswell" : nil
    }
}
