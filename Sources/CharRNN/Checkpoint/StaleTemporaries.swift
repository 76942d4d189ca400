import Foundation

extension Checkpoint {
    /// Removes the `.tmp-step-<step>-<pid>` directories that a process killed while saving left in `root`
    /// (their pid no longer runs); a save in progress by a live process sharing the root is left alone.
    /// Returns the names removed. Best effort: what cannot be removed stays, as it did before.
    @discardableResult
    public static func removeStaleTemporaries(in root: URL) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root.path) else { return [] }
        return names.filter { name in
            guard name.hasPrefix(".tmp-step-"), let pid = name.split(separator: "-").last.flatMap({ Int32($0) }), pid > 0 else {
                return false
            }
            // kill(pid, 0) fails with ESRCH only when no such process exists (EPERM: it exists, not ours).
            guard kill(pid, 0) != 0 && errno == ESRCH else { return false }
            return (try? FileManager.default.removeItem(at: root.appendingPathComponent(name))) != nil
        }
    }
}
