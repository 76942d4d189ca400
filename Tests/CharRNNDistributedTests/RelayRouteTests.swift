import XCTest
@testable import CharRNNDistributed

final class RelayRouteTests: XCTestCase {
    /// Every worker's parent, walking the tree from the coordinator (nil) down.
    private func parents(_ n: Int, fanout: Int) -> [String: String?] {
        var out: [String: String?] = [:]
        func walk(_ route: RelayRoute, from parent: String?) {
            for (child, below) in route.children() {
                XCTAssertNil(out[child.endpoint], "\(child) reached twice")
                out[child.endpoint] = parent
                walk(below, from: child.endpoint)
            }
        }
        walk(RelayRoute(fanout: fanout, endpoints: (0..<n).map { "w\($0)" }), from: nil)
        return out
    }

    private func depth(_ worker: String, _ parents: [String: String?]) -> Int {
        var d = 1
        var at = worker
        while let p = parents[at]!, d < 10_000 {
            at = p
            d += 1
        }
        return d
    }

    func testTheDocumentedTree() {
        let tree = parents(7, fanout: 2)
        let expected: [String: String?] = ["w0": nil, "w4": nil, "w1": "w0", "w3": "w0", "w2": "w1", "w5": "w4", "w6": "w4"]
        XCTAssertEqual(tree, expected)
    }

    /// Each worker is reached exactly once, no node has more than `fanout` children, and the depth is within one
    /// level of the smallest possible.
    func testEveryWorkerOnceWithinTheFanoutAndShallow() {
        for fanout in [1, 2, 3, 8] {
            for n in 0...70 {
                let tree = parents(n, fanout: fanout)
                XCTAssertEqual(tree.count, n)
                var children: [String?: Int] = [:]
                for p in tree.values { children[p, default: 0] += 1 }
                XCTAssert(children.values.allSatisfy { $0 <= fanout }, "fan-out \(fanout), \(n) workers: \(children)")
                let deepest = tree.keys.map { depth($0, tree) }.max() ?? 0
                // The fewest levels a tree of this fan-out under a root of this fan-out needs.
                var (levels, capacity, width) = (0, 0, 1)
                while capacity < n {
                    width *= fanout
                    capacity += fanout == 1 ? 1 : width
                    levels += 1
                }
                XCTAssertLessThanOrEqual(deepest, levels + 1, "fan-out \(fanout), \(n) workers")
            }
        }
    }

    func testChainAndFlat() {
        let chain = parents(4, fanout: 1)
        XCTAssertEqual(chain, ["w0": nil, "w1": "w0", "w2": "w1", "w3": "w2"])
        let flat = parents(4, fanout: 8)
        XCTAssert(flat.values.allSatisfy { $0 == nil })
        XCTAssert(RelayRoute.leaf.children().isEmpty)
    }
}
