import Foundation

/// An `ipc://` endpoint's socket file. libzmq binds one by removing whatever file has the path, so a second
/// coordinator given the same path would silently take it over from a running one (whose workers then
/// reach the newcomer). Before binding, the coordinator checks whether something answers there, as a TCP
/// port in use refuses a bind.
enum IPCEndpoint {
    /// Throws `EADDRINUSE` when a process is listening on `endpoint`'s socket file; a stale file (nobody
    /// listening: its coordinator was killed) is left for libzmq to replace. Other endpoints pass.
    static func requireFree(_ endpoint: String) throws(ZMQError) {
        guard endpoint.hasPrefix("ipc://") else { return }
        let path = String(endpoint.dropFirst(6))
        guard FileManager.default.fileExists(atPath: path) else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        if connected { throw ZMQError("bind \(endpoint)", code: EADDRINUSE) }
    }
}
