/// The GRU layer, Keras `reset_after=True`, gate order z, r, h, over `b` rows and `T` steps.
///
/// Forward, per step t (xw: the input side, from the input table for layer 0, from `LayerInput` above it;
/// U [H, 3H], b1 = bias row 1):
///   hu = h·U + b1                                                       [b, 3H]
///   z = σ(xw_z + hu_z)   r = σ(xw_r + hu_r)   ĥ = tanh(xw_h + r ⊙ hu_h)
///   h' = z ⊙ h + (1 − z) ⊙ ĥ                                            [b, H]
/// Backward, given dh' (from the loss at t plus from step t+1):
///   dz = dh' ⊙ (h − ĥ)        da_z = dz ⊙ z(1 − z)
///   dĥ = dh' ⊙ (1 − z)        da_h = dĥ ⊙ (1 − ĥ²)
///   dr = da_h ⊙ hu_h          da_r = dr ⊙ r(1 − r)
///   dxw = [da_z, da_r, da_h]  dhu = [da_z, da_r, da_h ⊙ r]
///   dh = dh' ⊙ z + dhu·Uᵀ     dU = Σ_t hᵀ·dhu   db1 = Σ dhu   dT[x] += dxw (or dxw into row t·b+i)
///
/// Cache per row and step (K = 4): (z, r, ĥ, hu_h); backward overwrites the first 3H with dhu, which is this
/// cell's dg. The step loops, threads and products are `Recurrence`'s.
enum GRU: RecurrentCell {
    static let gates = 3
    static let cacheBlocks = 4
    static let carryBlocks = 1

    @inline(__always)
    static func forward(units: Range<Int>, step t: Int, row i: Int, hu: UnsafePointer<Float>, huStride: Int, _ p: LayerPass) {
        let (b, h) = (p.rows, p.units)
        let hPrev = p.hs + t * b * h
        cellForward(
            units: units, of: h, xw: p.xw + p.inputRow(t * b + i) * 3 * h, hu: hu, huStride: huStride, b1: p.recurrentBias!,
            hPrev: hPrev + i * h, hNext: hPrev + (b + i) * h, cache: p.cache + (t * b + i) * 4 * h)
    }

    @inline(__always)
    static func backward(
        units: Range<Int>, step t: Int, row i: Int, _ p: LayerPass, dOut: UnsafePointer<Float>,
        carry: UnsafeMutablePointer<Float>, dInput: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?
    ) {
        let r = t * p.rows + i
        cellBackward(
            units: units, of: p.units, cache: p.cache + r * 4 * p.units, hPrev: p.hs + r * p.units, dOut: dOut,
            carry: carry, dInputRow: dInput, db1: dBias!)
    }

    /// One step's gates for one row over `units` (of `h`). `hu` excludes b1 (added here) and holds this row's
    /// h·U for `units` only: gate g of unit j at hu[g·huStride + j − units.lowerBound]. `cache` may be nil
    /// (inference).
    @inline(__always)
    static func cellForward(
        units: Range<Int>, of h: Int, xw: UnsafePointer<Float>, hu: UnsafePointer<Float>, huStride: Int, b1: UnsafePointer<Float>,
        hPrev: UnsafePointer<Float>, hNext: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>?
    ) {
        var j = units.lowerBound
        while j < units.upperBound {
            let n = min(Vec.scalarCount, units.upperBound - j)
            let u = hu + (j - units.lowerBound)
            let z = Activations.sigmoid(load(xw + j, n) + load(u, n) + load(b1 + j, n))
            let r = Activations.sigmoid(load(xw + h + j, n) + load(u + huStride, n) + load(b1 + h + j, n))
            let huh = load(u + 2 * huStride, n) + load(b1 + 2 * h + j, n)
            let hc = Activations.tanh(load(xw + 2 * h + j, n) + r * huh)
            let hp = load(hPrev + j, n)
            store(z * hp + (1 - z) * hc, hNext + j, n)
            if let c = cache {
                store(z, c + j, n)
                store(r, c + h + j, n)
                store(hc, c + 2 * h + j, n)
                store(huh, c + 3 * h + j, n)
            }
            j += n
        }
    }

    /// One step's gate gradients for one row over `units`: overwrites the cache with dhu, turns `carry`
    /// from dh' into dh' ⊙ z, and adds dxw to its input row and dhu to db1.
    @inline(__always)
    static func cellBackward(
        units: Range<Int>, of h: Int, cache c: UnsafeMutablePointer<Float>, hPrev: UnsafePointer<Float>,
        dOut: UnsafePointer<Float>, carry: UnsafeMutablePointer<Float>, dInputRow row: UnsafeMutablePointer<Float>,
        db1: UnsafeMutablePointer<Float>
    ) {
        var j = units.lowerBound
        while j < units.upperBound {
            let n = min(Vec.scalarCount, units.upperBound - j)
            let z = load(c + j, n), r = load(c + h + j, n)
            let hc = load(c + 2 * h + j, n), huh = load(c + 3 * h + j, n)
            let d = load(dOut + j, n) + load(carry + j, n)
            let daz = d * (load(hPrev + j, n) - hc) * z * (1 - z)
            let dah = d * (1 - z) * (1 - hc * hc)
            let dar = dah * huh * r * (1 - r)
            let dahr = dah * r
            store(daz, c + j, n)
            store(dar, c + h + j, n)
            store(dahr, c + 2 * h + j, n)
            store(d * z, carry + j, n)
            store(load(row + j, n) + daz, row + j, n)
            store(load(row + h + j, n) + dar, row + h + j, n)
            store(load(row + 2 * h + j, n) + dah, row + 2 * h + j, n)
            store(load(db1 + j, n) + daz, db1 + j, n)
            store(load(db1 + h + j, n) + dar, db1 + h + j, n)
            store(load(db1 + 2 * h + j, n) + dahr, db1 + 2 * h + j, n)
            j += n
        }
    }
}
