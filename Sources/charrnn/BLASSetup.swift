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

    /// Re-executes the process with a better core type when there is one. Returns only when no
    /// re-execution is needed (or it failed, in which case training runs, slower).
    static func ensureFastKernel() {
        guard ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil,
              let core = preferredCore(detected: BLASRuntime.coreName), core != BLASRuntime.coreName else { return }
        setenv("OPENBLAS_CORETYPE", core, 1)
        var argv: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", &argv)
        // execv returns only on failure; carry on with the slower kernel rather than not at all.
        FileHandle.standardError.write(Data("warning: could not re-execute with OPENBLAS_CORETYPE=\(core); using \(BLASRuntime.coreName)\n".utf8))
    }

    /// The kernel to use instead of `detected`, from the CPU's vendor and flags; nil to keep it.
    static func preferredCore(detected: String) -> String? {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        let lines = info.split(separator: "\n")
        let amd = lines.contains { $0.hasPrefix("vendor_id") && $0.contains("AuthenticAMD") }
        guard let flagLine = lines.first(where: { $0.hasPrefix("flags") }) else { return nil }
        let flags = Set(flagLine.split(separator: " ").map(String.init))
        let avx2 = flags.isSuperset(of: ["avx2", "fma"])
        if amd && avx2 { return "Haswell" }
        guard genericCores.contains(detected) else { return nil }
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) { return "SkylakeX" }
        return avx2 ? "Haswell" : nil
    }
}
