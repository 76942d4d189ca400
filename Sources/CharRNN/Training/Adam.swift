#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Adam as Keras 3 writes it, over the flat parameter vector:
///   m ← m + (g − m)(1 − β1)      v ← v + (g² − v)(1 − β2)
///   α = lr · √(1 − β2ᵗ) / (1 − β1ᵗ)      w ← w − α · m / (√v + ε)
public struct AdamConfig: Codable, Equatable, Sendable {
    public var learningRate: Float = 1e-3
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-7

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-7) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
    }
}

/// The optimizer's state: both moments in the parameter layout and the step count.
public struct AdamState: @unchecked Sendable {
    public var m: Parameters
    public var v: Parameters
    public var t: Int

    public init(_ config: ModelConfig) {
        m = Parameters(config)
        v = Parameters(config)
        t = 0
    }

    public init(m: Parameters, v: Parameters, t: Int) {
        self.m = m
        self.v = v
        self.t = t
    }
}

public enum Adam {
    public static func apply(_ c: AdamConfig, weights w: Parameters, grads g: Parameters, state s: inout AdamState) {
        s.t += 1
        let k = Coefficients(c, t: s.t)
        let (wp, gp, mp, vp) = (w.storage.base, g.storage.base, s.m.storage.base, s.v.storage.base)
        // Each weight's update is independent of the others, so blocks of the vector can run on separate cores.
        Parallel.forEachRange(of: w.count) { range in
            for i in range {
                (mp[i], vp[i], wp[i]) = k.update(g: gp[i], m: mp[i], v: vp[i], w: wp[i])
            }
        }
    }

    /// Whether `apply` would leave every weight and moment finite: the same arithmetic, nothing written. A step
    /// whose finite gradient would still overflow the state (g² beyond Float's range, a weight pushed past it)
    /// is then refused before it touches anything.
    public static func staysFinite(_ c: AdamConfig, weights w: Parameters, grads g: Parameters, state s: AdamState) -> Bool {
        let k = Coefficients(c, t: s.t + 1)
        let (wp, gp, mp, vp) = (w.storage.base, g.storage.base, s.m.storage.base, s.v.storage.base)
        // Counted per block, the blocks' counts added: any thread count gives the same answer.
        return Parallel.sum(of: w.count) { range in
            var bad = 0.0
            for i in range {
                let u = k.update(g: gp[i], m: mp[i], v: vp[i], w: wp[i])
                if !(u.m.isFinite && u.v.isFinite && u.w.isFinite) { bad += 1 }
            }
            return bad
        } == 0
    }

    /// Step t's constants, and one weight's update with them.
    struct Coefficients {
        let alpha: Float
        let b1: Float
        let b2: Float
        let eps: Float

        init(_ c: AdamConfig, t step: Int) {
            let t = Double(step)
            alpha = Float(Double(c.learningRate) * (1 - pow(Double(c.beta2), t)).squareRoot() / (1 - pow(Double(c.beta1), t)))
            (b1, b2, eps) = (1 - c.beta1, 1 - c.beta2, c.epsilon)
        }

        @inline(__always)
        func update(g: Float, m: Float, v: Float, w: Float) -> (m: Float, v: Float, w: Float) {
            let m = m + (g - m) * b1
            let v = v + (g * g - v) * b2
            return (m, v, w - alpha * m / (v.squareRoot() + eps))
        }
    }

    /// Scales `g` so its global L2 norm is at most `maxNorm`; returns the norm before clipping. The squares are
    /// summed per block of `Parallel.elementsPerBlock` and the blocks' sums added in order.
    @discardableResult
    public static func clip(_ g: Parameters, maxNorm: Float?) -> Float {
        let p = g.storage.base
        let sum = Parallel.sum(of: g.count) { range in
            var s = 0.0
            for i in range { s += Double(p[i]) * Double(p[i]) }
            return s
        }
        let norm = Float(sum.squareRoot())
        if let maxNorm, norm > maxNorm {
            let scale = maxNorm / norm
            Parallel.forEachRange(of: g.count) { range in
                for i in range { p[i] *= scale }
            }
        }
        return norm
    }
}
