/// The GRU layer, Keras `reset_after=True`, gate order z, r, h, over `b` rows and `T` steps.
///
/// Forward, per step t (xw from the input table, U [H, 3H], b1 = bias row 1):
///   hu = h·U + b1                                                       [b, 3H]
///   z = σ(xw_z + hu_z)   r = σ(xw_r + hu_r)   ĥ = tanh(xw_h + r ⊙ hu_h)
///   h' = z ⊙ h + (1 − z) ⊙ ĥ                                            [b, H]
/// Backward, given dh' (from the loss at t plus from step t+1):
///   dz = dh' ⊙ (h − ĥ)        da_z = dz ⊙ z(1 − z)
///   dĥ = dh' ⊙ (1 − z)        da_h = dĥ ⊙ (1 − ĥ²)
///   dr = da_h ⊙ hu_h          da_r = dr ⊙ r(1 − r)
///   dxw = [da_z, da_r, da_h]  dhu = [da_z, da_r, da_h ⊙ r]
///   dh = dh' ⊙ z + dhu·Uᵀ     dU = Σ_t hᵀ·dhu   db1 = Σ dhu   dT[x] += dxw
///
/// Memory layout is time-major so each step's rows are one contiguous matrix for BLAS:
///   hs    [(T+1)·b, H]   hs[0] = h0, hs[t+1] = state after step t
///   cache [T·b, 4H]      forward stores (z, r, ĥ, hu_h); backward overwrites it in place with
///                        (da_z, da_r, da_h ⊙ r, da_h), so dhu is its first 3H columns and dU is one
///                        [H, T·b]×[T·b, 3H] product over all steps.
public enum GRU {
    public struct Shape {
        public var rows: Int
        public var steps: Int
        public var units: Int
    }

    /// One step's gates for one row. `hu` excludes b1 (added here); `cache` may be nil (inference).
    @inline(__always)
    static func cellForward(
        units h: Int, xw: UnsafePointer<Float>, hu: UnsafePointer<Float>, b1: UnsafePointer<Float>,
        hPrev: UnsafePointer<Float>, hNext: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>?
    ) {
        var j = 0
        while j < h {
            let n = min(Vec.scalarCount, h - j)
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

    /// Runs T steps. `tokens` is time-major [T, b]; `hs[0]` must hold h0; `hu` is scratch [b, 3H].
    public static func forward(
        _ s: Shape, table: UnsafePointer<Float>, tokens: UnsafePointer<Int32>,
        recurrentKernel u: UnsafePointer<Float>, recurrentBias b1: UnsafePointer<Float>,
        hs: UnsafeMutablePointer<Float>, cache: UnsafeMutablePointer<Float>, hu: UnsafeMutablePointer<Float>
    ) {
        let (b, h) = (s.rows, s.units)
        for t in 0..<s.steps {
            let hPrev = hs + t * b * h
            gemm(hPrev, u, into: hu, m: b, n: 3 * h, k: h)
            for i in 0..<b {
                let x = Int(tokens[t * b + i])
                cellForward(
                    units: h, xw: table + x * 3 * h, hu: hu + i * 3 * h, b1: b1,
                    hPrev: hPrev + i * h, hNext: hPrev + (b + i) * h, cache: cache + (t * b + i) * 4 * h)
            }
        }
    }

    /// Backpropagates through T steps. `dhs` [T·b, H] is the loss gradient on each output state;
    /// `carry` is scratch [b, H]. Leaves dhu in `cache` and accumulates dxw into `dTable`.
    public static func backward(
        _ s: Shape, tokens: UnsafePointer<Int32>, recurrentKernel u: UnsafePointer<Float>,
        hs: UnsafePointer<Float>, cache: UnsafeMutablePointer<Float>, dhs: UnsafePointer<Float>,
        carry: UnsafeMutablePointer<Float>, dTable: UnsafeMutablePointer<Float>
    ) {
        let (b, h, steps) = (s.rows, s.units, s.steps)
        carry.update(repeating: 0, count: b * h)
        for t in stride(from: steps - 1, through: 0, by: -1) {
            for i in 0..<b {
                let c = cache + (t * b + i) * 4 * h
                let hp = hs + (t * b + i) * h
                let dOut = dhs + (t * b + i) * h
                let dh = carry + i * h
                var j = 0
                while j < h {
                    let n = min(Vec.scalarCount, h - j)
                    let z = load(c + j, n), r = load(c + h + j, n)
                    let hc = load(c + 2 * h + j, n), huh = load(c + 3 * h + j, n)
                    let d = load(dOut + j, n) + load(dh + j, n)
                    let daz = d * (load(hp + j, n) - hc) * z * (1 - z)
                    let dah = d * (1 - z) * (1 - hc * hc)
                    let dar = dah * huh * r * (1 - r)
                    store(daz, c + j, n)
                    store(dar, c + h + j, n)
                    store(dah * r, c + 2 * h + j, n)
                    store(dah, c + 3 * h + j, n)
                    store(d * z, dh + j, n)
                    j += n
                }
                let row = dTable + Int(tokens[t * b + i]) * 3 * h
                for k in 0..<(2 * h) { row[k] += c[k] }
                for k in 0..<h { row[2 * h + k] += c[3 * h + k] }
            }
            gemm(cache + t * b * 4 * h, u, transB: true, into: carry, m: b, n: h, k: 3 * h, beta: 1, lda: 4 * h)
        }
    }

    /// After `backward`: dU = Σ_t h_tᵀ·dhu_t as one [H, T·b]×[T·b, 3H] product, and db1 = Σ dhu.
    public static func weightGradients(
        _ s: Shape, hs: UnsafePointer<Float>, cache: UnsafePointer<Float>,
        dU: UnsafeMutablePointer<Float>, db1: UnsafeMutablePointer<Float>
    ) {
        let (n, h) = (s.rows * s.steps, s.units)
        gemm(hs, transA: true, cache, into: dU, m: h, n: 3 * h, k: n, lda: h, ldb: 4 * h)
        columnSums(cache, rows: n, cols: 3 * h, stride: 4 * h, into: db1)
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
