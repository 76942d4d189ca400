/// The LSTM layer in Keras's form: gate order i, f, c, o, one bias [4H] (folded into xw with the input side,
/// so the recurrence adds none), over `b` rows and `T` steps.
///
/// Forward, per step t (xw = x·W + b from the input table or `LayerInput`; U [H, 4H]):
///   g = xw + h·U                                                         [b, 4H]
///   i = σ(g_i)   f = σ(g_f)   c̃ = tanh(g_c)   o = σ(g_o)
///   c' = f ⊙ c + i ⊙ c̃      h' = o ⊙ tanh(c')                          [b, H]
/// Backward, given dh' (from the loss at t plus dg_{t+1}·Uᵀ) and dc' carried from step t+1 (its dc ⊙ f):
///   dc = dc' + dh' ⊙ o ⊙ (1 − tanh²(c'))
///   da_i = dc ⊙ c̃ ⊙ i(1 − i)   da_f = dc ⊙ c ⊙ f(1 − f)
///   da_c = dc ⊙ i ⊙ (1 − c̃²)   da_o = dh' ⊙ tanh(c') ⊙ o(1 − o)
///   dg = dxw = [da_i, da_f, da_c, da_o]
///   dh = dg·Uᵀ   dc (to step t−1) = dc ⊙ f   dU = Σ_t hᵀ·dg   (db comes from dxw, in the input side)
///
/// Cache per row and step (K = 5): (i, f, c̃, o, tanh(c')); backward overwrites the first 4H with dg. The carry
/// holds dh then dc per row. The step loops, threads and products are `Recurrence`'s.
enum LSTM: RecurrentCell {
    static let gates = 4
    static let cacheBlocks = 5
    static let carryBlocks = 2

    @inline(__always)
    static func forward(units: Range<Int>, step t: Int, row i: Int, hu: UnsafePointer<Float>, huStride: Int, _ p: LayerPass) {
        let (b, h) = (p.rows, p.units)
        let (prev, next) = (t * b + i, (t + 1) * b + i)
        cellForward(
            units: units, of: h, xw: p.xw + p.inputRow(t * b + i) * 4 * h, hu: hu, huStride: huStride,
            cPrev: p.cs! + prev * h, hNext: p.hs + next * h, cNext: p.cs! + next * h, cache: p.cache + (t * b + i) * 5 * h)
    }

    @inline(__always)
    static func backward(
        units: Range<Int>, step t: Int, row i: Int, _ p: LayerPass, dOut: UnsafePointer<Float>,
        carry: UnsafeMutablePointer<Float>, dInput: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?
    ) {
        let r = t * p.rows + i
        cellBackward(
            units: units, of: p.units, cache: p.cache + r * 5 * p.units, cPrev: p.cs! + r * p.units, dOut: dOut,
            carry: carry, dInputRow: dInput)
    }

    /// One step's gates for one row over `units` (of `h`); `hu` holds this row's h·U for `units` only, gate g of
    /// unit j at hu[g·huStride + j − units.lowerBound]; `cache` may be nil (inference).
    @inline(__always)
    static func cellForward(
        units: Range<Int>, of h: Int, xw: UnsafePointer<Float>, hu: UnsafePointer<Float>, huStride: Int, cPrev: UnsafePointer<Float>,
        hNext: UnsafeMutablePointer<Float>, cNext: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>?
    ) {
        var j = units.lowerBound
        while j < units.upperBound {
            let n = min(Vec.scalarCount, units.upperBound - j)
            let u = hu + (j - units.lowerBound)
            let i = Activations.sigmoid(load(xw + j, n) + load(u, n))
            let f = Activations.sigmoid(load(xw + h + j, n) + load(u + huStride, n))
            let cc = Activations.tanh(load(xw + 2 * h + j, n) + load(u + 2 * huStride, n))
            let o = Activations.sigmoid(load(xw + 3 * h + j, n) + load(u + 3 * huStride, n))
            let c = f * load(cPrev + j, n) + i * cc
            let tc = Activations.tanh(c)
            store(c, cNext + j, n)
            store(o * tc, hNext + j, n)
            if let k = cache {
                store(i, k + j, n)
                store(f, k + h + j, n)
                store(cc, k + 2 * h + j, n)
                store(o, k + 3 * h + j, n)
                store(tc, k + 4 * h + j, n)
            }
            j += n
        }
    }

    /// One step's gate gradients for one row over `units`: overwrites the cache with dg, turns the carry's dh
    /// into 0 (step t−1 gets only dg·Uᵀ) and its dc into dc ⊙ f, and adds dxw to its input row.
    @inline(__always)
    static func cellBackward(
        units: Range<Int>, of h: Int, cache k: UnsafeMutablePointer<Float>, cPrev: UnsafePointer<Float>,
        dOut: UnsafePointer<Float>, carry: UnsafeMutablePointer<Float>, dInputRow row: UnsafeMutablePointer<Float>
    ) {
        var j = units.lowerBound
        while j < units.upperBound {
            let n = min(Vec.scalarCount, units.upperBound - j)
            let i = load(k + j, n), f = load(k + h + j, n), cc = load(k + 2 * h + j, n)
            let o = load(k + 3 * h + j, n), tc = load(k + 4 * h + j, n)
            let dh = load(dOut + j, n) + load(carry + j, n)
            let dc = load(carry + h + j, n) + dh * o * (1 - tc * tc)
            // dg is both the cache's new content and this step's dxw.
            @inline(__always) func put(_ d: Vec, gate: Int) {
                store(d, k + gate * h + j, n)
                store(load(row + gate * h + j, n) + d, row + gate * h + j, n)
            }
            put(dc * cc * i * (1 - i), gate: 0)
            put(dc * load(cPrev + j, n) * f * (1 - f), gate: 1)
            put(dc * i * (1 - cc * cc), gate: 2)
            put(dh * tc * o * (1 - o), gate: 3)
            store(Vec(), carry + j, n)
            store(dc * f, carry + h + j, n)
            j += n
        }
    }
}
