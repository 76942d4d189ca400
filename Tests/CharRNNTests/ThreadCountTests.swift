import XCTest
@testable import CharRNN

/// The default `--threads`: the affinity mask, capped by a cgroup CPU quota (parsed here from fixture files).
final class ThreadCountTests: XCTestCase {
    func testCgroupV2CpuMax() {
        XCTAssertNil(ThreadCount.cpuMaxLimit("max 100000\n"))
        XCTAssertEqual(ThreadCount.cpuMaxLimit("200000 100000\n"), 2)
        XCTAssertEqual(ThreadCount.cpuMaxLimit("150000 100000\n"), 2, "1.5 CPUs round up")
        XCTAssertEqual(ThreadCount.cpuMaxLimit("50000 100000"), 1, "half a CPU still runs one thread")
        XCTAssertEqual(ThreadCount.cpuMaxLimit("6400000 100000"), 64)
        XCTAssertNil(ThreadCount.cpuMaxLimit(""))
        XCTAssertNil(ThreadCount.cpuMaxLimit("garbage"))
    }

    func testCgroupV1Quota() {
        XCTAssertNil(ThreadCount.cfsLimit(quota: "-1\n", period: "100000\n"))
        XCTAssertEqual(ThreadCount.cfsLimit(quota: "200000\n", period: "100000\n"), 2)
        XCTAssertEqual(ThreadCount.cfsLimit(quota: "150000\n", period: "100000\n"), 2)
        XCTAssertEqual(ThreadCount.cfsLimit(quota: "25000", period: "50000"), 1)
        XCTAssertNil(ThreadCount.cfsLimit(quota: "x", period: "100000"))
    }

    /// A fake filesystem: path → contents.
    func limit(_ cgroupFile: String, _ files: [String: String]) -> Int? {
        ThreadCount.cgroupLimit(cgroupFile: cgroupFile, read: { files[$0] })
    }

    func testCgroupV2FindsTheSmallestQuotaOnThePathToTheRoot() {
        let v2 = "0::/kubepods/pod1/container\n"
        XCTAssertEqual(limit(v2, ["/sys/fs/cgroup/kubepods/pod1/container/cpu.max": "200000 100000\n"]), 2)
        XCTAssertEqual(limit(v2, [
            "/sys/fs/cgroup/kubepods/pod1/container/cpu.max": "max 100000\n",
            "/sys/fs/cgroup/kubepods/pod1/cpu.max": "300000 100000\n",
            "/sys/fs/cgroup/kubepods/cpu.max": "max 100000\n",
        ]), 3, "a parent's quota limits its children")
        // Inside a container the cgroup namespace makes its own cgroup the root; the host path does not exist.
        XCTAssertEqual(limit(v2, ["/sys/fs/cgroup/cpu.max": "150000 100000\n"]), 2)
        XCTAssertEqual(limit("0::/user.slice\n", ["/sys/fs/cgroup/unified/user.slice/cpu.max": "100000 100000"]), 1)
        XCTAssertNil(limit(v2, ["/sys/fs/cgroup/cpu.max": "max 100000\n"]))
        XCTAssertNil(limit(v2, [:]))
    }

    func testCgroupV1ReadsTheCpuController() {
        let v1 = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
        XCTAssertEqual(limit(v1, [
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "400000\n",
            "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        ]), 4)
        XCTAssertEqual(limit("3:cpu:/\n", [
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "150000\n",
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        ]), 2)
        XCTAssertNil(limit(v1, [
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        ]))
        // The memory controller's files are not a CPU limit.
        XCTAssertNil(limit("5:memory:/a\n", [
            "/sys/fs/cgroup/cpu/a/cpu.cfs_quota_us": "100000", "/sys/fs/cgroup/cpu/a/cpu.cfs_period_us": "100000",
        ]))
    }

    func testAffinityListFromProcStatus() {
        XCTAssertEqual(ThreadCount.allowedCPUs(status: "Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"), 2)
        XCTAssertEqual(ThreadCount.allowedCPUs(status: "Cpus_allowed_list:\t0\n"), 1)
        XCTAssertEqual(ThreadCount.allowedCPUs(status: "Cpus_allowed_list:\t0-3,8,10-11\n"), 7)
        XCTAssertNil(ThreadCount.allowedCPUs(status: "Name:\tx\n"))
        XCTAssertNil(ThreadCount.allowedCPUs(status: "Cpus_allowed_list:\t3-1\n"))
    }

    func testRequestedCountsAreCheckedAndKept() throws {
        XCTAssertEqual(try ThreadCount.resolve(3), 3)
        XCTAssertEqual(try ThreadCount.resolve(64), 64)
        XCTAssertThrowsError(try ThreadCount.resolve(0))
        XCTAssertThrowsError(try ThreadCount.resolve(ThreadCount.maximum + 1))
        XCTAssertGreaterThanOrEqual(try ThreadCount.resolve(nil), 1)
    }
}
