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
/// Memory layout is time-major so each step's rows are one contiguous matrix for BLAS:
///   hs    [(T+1)·b, H]   hs[0] = h0, hs[t+1] = state after step t
///   cache [T·b, 4H]      forward stores (z, r, ĥ, hu_h); backward overwrites the first 3H columns in place
///                        with dhu, so dU is one [H, T·b]×[T·b, 3H] product over all steps.
///
/// Threads: unit j's gates need only column j of z, r and ĥ, so each `Parallel` chunk owns a range of units,
/// computes its own columns of h·U (or of dhu·Uᵀ) and then its gates while they are still in cache. The only
/// synchronisation is one barrier per step, where the next step needs every unit of h (or of dhu).
public enum GRU {
    public struct Shape {
        public var rows: Int
        public var steps: Int
        public var units: Int
    }

    /// One step's gates for one row over `units` (of `h`). `hu` excludes b1 (added here); `cache` may be nil
    /// (inference).
    @inline(__always)
    static func cellForward(
        units: Range<Int>, of h: Int, xw: UnsafePointer<Float>, hu: UnsafePointer<Float>, b1: UnsafePointer<Float>,
        hPrev: UnsafePointer<Float>, hNext: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>?
    ) {
        var j = units.lowerBound
        while j < units.upperBound {
            let n = min(Vec.scalarCount, units.upperBound - j)
            let z = Activations.sigmoid(load(xw + j, n) + load(hu + j, n) + load(b1 + j, n))
            let r = Activations.sigmoid(load(xw + h + j, n) + load(hu + h + j, n) + load(b1 + h + j, n))
            let huh = load(hu + 2 * h + j, n) + load(b1 + 2 * h + j, n)
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

    /// This chunk's columns of hu = h·U: the z, r and ĥ column blocks of `units`.
    @inline(__always)
    static func recurrentProduct(
        units: Range<Int>, of h: Int, rows b: Int, state: UnsafePointer<Float>, recurrentKernel u: UnsafePointer<Float>,
        into hu: UnsafeMutablePointer<Float>
    ) {
        for gate in 0..<3 {
            let col = gate * h + units.lowerBound
            gemmSerial(
                state, transA: false, u + col, transB: false, into: hu + col,
                m: b, n: units.count, k: h, lda: h, ldb: 3 * h, ldc: 3 * h)
        }
    }

    /// Which input row step t, row i (r = t·b+i) reads: table row `tokens[r]` when the inputs are symbols (layer
    /// 0), else row r of a [T·b, 3H] input matrix. One branch per row and step, against a whole row of gate work.
    @inline(__always)
    static func inputRow(_ r: Int, tokens: UnsafePointer<Int32>?) -> Int { tokens.map { Int($0[r]) } ?? r }

    /// Runs T steps. `tokens` is time-major [T, b] when `xw` is the input table, nil when it is [T·b, 3H];
    /// `hs[0]` must hold h0; `hu` is scratch [b, 3H].
    public static func forward(
        _ s: Shape, xw: UnsafePointer<Float>, tokens: UnsafePointer<Int32>?,
        recurrentKernel u: UnsafePointer<Float>, recurrentBias b1: UnsafePointer<Float>,
        hs: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>, hu: UnsafeMutablePointer<Float>
    ) {
        let (b, h) = (s.rows, s.units)
        for t in 0..<s.steps {
            let hPrev = hs + t * b * h
            Parallel.forEachChunk { chunk in
                let units = Parallel.range(chunk, of: h)
                recurrentProduct(units: units, of: h, rows: b, state: hPrev, recurrentKernel: u, into: hu)
                for i in 0..<b {
                    cellForward(
                        units: units, of: h, xw: xw + inputRow(t * b + i, tokens: tokens) * 3 * h, hu: hu + i * 3 * h, b1: b1,
                        hPrev: hPrev + i * h, hNext: hPrev + (b + i) * h, cache: cache + (t * b + i) * 4 * h)
                }
            }
        }
    }

    /// Backpropagates through T steps. `dhs` [T·b, H] is the loss gradient on each output state;
    /// `carry` is scratch [b, H]. Leaves dhu in `cache`, accumulates dxw into `dXW` (the input table's gradient
    /// when `tokens` is given, else [T·b, 3H]) and writes db1.
    public static func backward(
        _ s: Shape, tokens: UnsafePointer<Int32>?, recurrentKernel u: UnsafePointer<Float>,
        hs: UnsafePointer<Float>, cache: UnsafeMutablePointer<Float>, dhs: UnsafePointer<Float>,
        carry: UnsafeMutablePointer<Float>, dXW: UnsafeMutablePointer<Float>, db1: UnsafeMutablePointer<Float>
    ) {
        let (b, h, steps) = (s.rows, s.units, s.steps)
        carry.update(repeating: 0, count: b * h)
        db1.update(repeating: 0, count: 3 * h)
        for t in stride(from: steps - 1, through: 0, by: -1) {
            Parallel.forEachChunk { chunk in
                let units = Parallel.range(chunk, of: h)
                if t + 1 < steps {
                    // carry[:, units] += dhu_{t+1}·U[units, :]ᵀ — the part of dh that comes through step t+1.
                    gemmSerial(
                        cache + (t + 1) * b * 4 * h, transA: false, u + units.lowerBound * 3 * h, transB: true,
                        into: carry + units.lowerBound, m: b, n: units.count, k: 3 * h, beta: 1,
                        lda: 4 * h, ldb: 3 * h, ldc: h)
                }
                for i in 0..<b {
                    let r = t * b + i
                    cellBackward(
                        units: units, of: h, cache: cache + r * 4 * h, hPrev: hs + r * h, dOut: dhs + r * h,
                        carry: carry + i * h, dInputRow: dXW + inputRow(r, tokens: tokens) * 3 * h, db1: db1)
                }
            }
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

    /// After `backward`: dU = Σ_t h_tᵀ·dhu_t as one [H, T·b]×[T·b, 3H] product.
    public static func weightGradients(
        _ s: Shape, hs: UnsafePointer<Float>, cache: UnsafePointer<Float>, dU: UnsafeMutablePointer<Float>
    ) {
        let (n, h) = (s.rows * s.steps, s.units)
        gemm(hs, transA: true, cache, into: dU, m: h, n: 3 * h, k: n, lda: h, ldb: 4 * h)
    }
}

/// out[j] = Σ_r a[r·stride + j], summed in row order (deterministic, and vectorised along j).
func columnSums(_ a: UnsafePointer<Float>, rows: Int, cols: Int, stride: Int, into out: UnsafeMutablePointer<Float>) {
    out.update(repeating: 0, count: cols)
    for r in 0..<rows {
        let row = a + r * stride
        for j in 0..<cols { out[j] += row[j] }
    }
}
