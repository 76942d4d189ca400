#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// How many compute threads a command runs (`--threads`): the number asked for, else the cores this process
/// may use: the CPUs of its affinity mask (`taskset`, a Slurm or Kubernetes CPU set), capped by its cgroup's CPU
/// quota, rounded up (a container limited to 1.5 CPUs gets 2 threads; a pod limited to 2 CPUs on a 64-core node
/// gets 2, not 64).
public enum ThreadCount {
    /// The most threads a process may run; a worker's hello carries its count in this range.
    public static let maximum = 1024

    public static func resolve(_ requested: Int?) throws -> Int {
        guard let n = requested else { return available() }
        guard n > 0 else { throw CharRNNError.invalidOption("--threads must be positive, got \(n)") }
        guard n <= maximum else { throw CharRNNError.invalidOption("--threads must be at most \(maximum), got \(n)") }
        return n
    }

    /// The cores this process may use (at least 1).
    public static func available() -> Int {
        let cpus = affinityCount() ?? ProcessInfo.processInfo.activeProcessorCount
        let cgroup = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8))
            .flatMap { cgroupLimit(cgroupFile: $0, read: { try? String(contentsOfFile: $0, encoding: .utf8) }) }
        return min(max(1, cpus), cgroup ?? .max, maximum)
    }

    /// CPUs in this process's affinity mask, from `Cpus_allowed_list` in /proc/self/status (Glibc's
    /// sched_getaffinity is not visible to Swift); nil where there is no such file.
    static func affinityCount() -> Int? {
        (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)).flatMap(allowedCPUs(status:))
    }

    /// The number of CPUs in a status file's "Cpus_allowed_list:  0-3,8,10-11" line.
    static func allowedCPUs(status: String) -> Int? {
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") }) else { return nil }
        var count = 0
        for item in line.dropFirst("Cpus_allowed_list:".count).split(separator: ",") {
            let bounds = item.trimmingCharacters(in: .whitespaces).split(separator: "-").map { Int($0) }
            switch bounds.count {
            case 1: guard bounds[0] != nil else { return nil }; count += 1
            case 2: guard let lo = bounds[0], let hi = bounds[1], hi >= lo else { return nil }; count += hi - lo + 1
            default: return nil
            }
        }
        return count > 0 ? count : nil
    }

    /// The CPU limit of the cgroup a process is in, from the text of its `/proc/self/cgroup`: the smallest quota
    /// of its cgroup and the cgroups above it (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` over
    /// `cpu.cfs_period_us`), nil when none has one. `read` returns a file's text, nil when it does not exist.
    static func cgroupLimit(cgroupFile: String, read: (String) -> String?) -> Int? {
        var limits: [Int] = []
        for line in cgroupFile.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                // cgroup v2: mounted at /sys/fs/cgroup, or at …/unified beside v1 controllers (hybrid systems).
                for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                    for dir in ancestors(of: path, under: root) {
                        if let text = read(dir + "/cpu.max"), let n = cpuMaxLimit(text) { limits.append(n) }
                    }
                }
            } else if fields[1].split(separator: ",").contains("cpu") {
                for root in ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"] {
                    for dir in ancestors(of: path, under: root) {
                        if let quota = read(dir + "/cpu.cfs_quota_us"), let period = read(dir + "/cpu.cfs_period_us"),
                           let n = cfsLimit(quota: quota, period: period) {
                            limits.append(n)
                        }
                    }
                }
            }
        }
        return limits.min()
    }

    /// cgroup v2 `cpu.max`, "QUOTA PERIOD" in µs or "max PERIOD": ⌈quota / period⌉ CPUs, nil for no limit.
    static func cpuMaxLimit(_ text: String) -> Int? {
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let quota = Int(fields[0]), let period = Int(fields[1]) else { return nil }
        return cpus(quota: quota, period: period)
    }

    /// cgroup v1 `cpu.cfs_quota_us` (−1 for no limit) and `cpu.cfs_period_us`: ⌈quota / period⌉ CPUs.
    static func cfsLimit(quota: String, period: String) -> Int? {
        guard let q = Int(quota.trimmingCharacters(in: .whitespacesAndNewlines)),
              let p = Int(period.trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return cpus(quota: q, period: p)
    }

    private static func cpus(quota: Int, period: Int) -> Int? {
        guard quota > 0, period > 0 else { return nil }
        return max(1, (quota + period - 1) / period)
    }

    /// `root + path` and each directory above it up to `root` itself: a container sees its own cgroup as the
    /// root of the hierarchy, where the path from /proc/self/cgroup (the host's) does not exist.
    private static func ancestors(of path: String, under root: String) -> [String] {
        var parts = path.split(separator: "/").map(String.init)
        var dirs: [String] = []
        while true {
            dirs.append(([root] + parts).joined(separator: "/"))
            if parts.isEmpty { return dirs }
            parts.removeLast()
        }
    }
}
