/// The model's tensors, by their Keras names, in one flat float32 buffer.
///
/// One buffer means gradients, Adam moments and wire payloads are all "a vector of `count` floats" with the
/// same layout, so reduction, the optimizer and the transport never need to know which tensor is which.
public enum TensorName: Int, CaseIterable, Sendable {
    case embedding, kernel, recurrentKernel, bias, denseKernel, denseBias

    /// The name Keras gives the tensor, which is also its name in `model.safetensors`.
    public var keras: String {
        switch self {
        case .embedding: return "embedding/embeddings"
        case .kernel: return "gru/kernel"
        case .recurrentKernel: return "gru/recurrent_kernel"
        case .bias: return "gru/bias"
        case .denseKernel: return "dense/kernel"
        case .denseBias: return "dense/bias"
        }
    }

    public func shape(_ c: ModelConfig) -> [Int] {
        let (v, e, h) = (c.vocab, c.embed, c.units)
        switch self {
        case .embedding: return [v, e]
        case .kernel: return [e, 3 * h]
        case .recurrentKernel: return [h, 3 * h]
        case .bias: return [2, 3 * h]
        case .denseKernel: return [h, v]
        case .denseBias: return [v]
        }
    }
}

public struct ParameterLayout: Equatable, Sendable {
    public let config: ModelConfig
    public let offsets: [Int]
    public let count: Int

    public init(_ config: ModelConfig) {
        self.config = config
        var offsets: [Int] = []
        var total = 0
        for name in TensorName.allCases {
            offsets.append(total)
            total += name.shape(config).reduce(1, *)
        }
        self.offsets = offsets
        self.count = total
    }

    public func offset(_ name: TensorName) -> Int { offsets[name.rawValue] }
    public func size(_ name: TensorName) -> Int { name.shape(config).reduce(1, *) }
}

/// A flat vector in the parameter layout: the weights themselves, a gradient, or an Adam moment.
public struct Parameters: @unchecked Sendable {
    public let layout: ParameterLayout
    public let storage: FloatBuffer

    public init(_ config: ModelConfig) {
        layout = ParameterLayout(config)
        storage = FloatBuffer(count: layout.count)
    }

    public init(layout: ParameterLayout, storage: FloatBuffer) {
        precondition(storage.count == layout.count, "storage does not match the layout")
        self.layout = layout
        self.storage = storage
    }

    public var config: ModelConfig { layout.config }
    public var count: Int { layout.count }

    public subscript(_ name: TensorName) -> UnsafeMutablePointer<Float> { storage.base + layout.offset(name) }

    public func tensor(_ name: TensorName) -> UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: self[name], count: layout.size(name))
    }

    public func copy() -> Parameters { Parameters(layout: layout, storage: storage.copy()) }

    /// Keras's initialisers as the tutorial uses them: embeddings uniform ±0.05, every kernel (the recurrent
    /// one too) glorot-uniform over the whole matrix, biases zero.
    public static func initialized(_ config: ModelConfig, seed: UInt64) -> Parameters {
        let p = Parameters(config)
        var rng = RandomSource(seed: seed, stream: 0x1417)
        func uniform(_ name: TensorName, limit: Float) {
            for i in p.tensor(name).indices { p[name][i] = (2 * rng.nextUnitFloat() - 1) * limit }
        }
        func glorot(_ name: TensorName) {
            let shape = name.shape(config)
            uniform(name, limit: (6 / Float(shape[0] + shape[1])).squareRoot())
        }
        uniform(.embedding, limit: 0.05)
        glorot(.kernel)
        glorot(.recurrentKernel)
        glorot(.denseKernel)
        return p
    }
}
