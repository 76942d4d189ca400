import XCTest
@testable import CharRNN

/// Keras's initialisers and layout, as `Parameters.initialized` and `ParameterLayout` follow them.
final class ParametersTests: XCTestCase {
    /// Keras starts an LSTM's forget-gate bias at 1 and every other bias at 0.
    func testLSTMForgetBiasStartsAtOne() {
        let lstm = ModelConfig(vocab: 5, embed: 3, units: 4, cell: .lstm, layers: 2)
        let p = Parameters.initialized(lstm, seed: 1)
        for l in 0..<2 {
            XCTAssertEqual(Array(p.tensor(.bias(l))), [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        }
    }

    /// Glorot-uniform bounds: every kernel within ±√(6 / (fan in + fan out)), and not all near zero.
    func testKernelsAreGlorotUniform() {
        let lstm = ModelConfig(vocab: 7, embed: 8, units: 16, cell: .lstm, layers: 2)
        let p = Parameters.initialized(lstm, seed: 4)
        for name in p.names where name.role == .kernel || name.role == .recurrentKernel || name.role == .denseKernel {
            let shape = name.shape(lstm)
            let limit = (6 / Float(shape[0] + shape[1])).squareRoot()
            let values = Array(p.tensor(name))
            XCTAssertTrue(values.allSatisfy { abs($0) <= limit }, name.keras(lstm))
            XCTAssertGreaterThan(values.map(abs).max()!, 0.8 * limit, name.keras(lstm))
        }
    }
}
