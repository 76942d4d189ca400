import ArgumentParser
import CharRNN
import Foundation

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a run's loss curve (training, and validation when present) as SVG, and PNG when rsvg-convert is installed.",
        discussion: "PNG conversion uses rsvg-convert from librsvg (Debian: apt-get install librsvg2-bin); without it only the SVG is written.")

    @Argument(help: "A run's checkpoint directory (it holds metrics.jsonl).") var directory: String
    @Option(help: "Output path without extension (default: RUN/loss).") var output: String?

    func run() throws {
        let dir = URL(fileURLWithPath: directory, isDirectory: true)
        let records = try MetricsLog.read(dir.appendingPathComponent(MetricsLog.jsonName))
        let training = records.compactMap { r in r.loss.map { (Double(r.step), $0) } }
        let validation = records.compactMap { r in r.validationLoss.map { (Double(r.step), $0) } }
        guard !training.isEmpty else { throw CharRNNError.data("\(directory)/\(MetricsLog.jsonName) has no training steps") }
        let base = output ?? dir.appendingPathComponent("loss").path
        let svg = LossChart(training: training, validation: validation).svg()
        do {
            try Data(svg.utf8).write(to: URL(fileURLWithPath: base + ".svg"))
        } catch {
            throw CharRNNError.io("cannot write \(base).svg")
        }
        print("wrote \(base).svg (\(training.count) training points, \(validation.count) validation points)")
        if let converter = which("rsvg-convert") {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: converter)
            p.arguments = ["-o", base + ".png", base + ".svg"]
            try p.run()
            p.waitUntilExit()
            if p.terminationStatus == 0 { print("wrote \(base).png") } else { print("rsvg-convert failed; only the SVG was written") }
        } else {
            print("no PNG: rsvg-convert not found (apt-get install librsvg2-bin)")
        }
    }

    private func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(tool)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// A line chart of loss against step, as a self-contained SVG: axes with round ticks, a polyline with one
/// vertex per logged step, validation points joined by a dashed line.
struct LossChart {
    let training: [(Double, Double)]
    let validation: [(Double, Double)]
    let width = 800.0, height = 480.0
    let left = 70.0, right = 20.0, top = 40.0, bottom = 50.0

    func svg() -> String {
        let all = training + validation
        let xs = (min: all.map(\.0).min()!, max: all.map(\.0).max()!)
        let ys = (min: all.map(\.1).min()!, max: all.map(\.1).max()!)
        let xTicks = ticks(xs.min, xs.max), yTicks = ticks(ys.min, ys.max)
        let x0 = min(xs.min, xTicks.first!), x1 = max(xs.max, xTicks.last!, x0 + 1)
        let y0 = min(ys.min, yTicks.first!), y1 = max(ys.max, yTicks.last!, y0 + 1e-9)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (width - left - right) }
        func py(_ y: Double) -> Double { height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom) }
        func points(_ p: [(Double, Double)]) -> String { p.map { String(format: "%.2f,%.2f", px($0.0), py($0.1)) }.joined(separator: " ") }

        var out = """
        <?xml version="1.0" encoding="UTF-8"?>
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="22" text-anchor="middle" font-size="15">loss per step</text>

        """
        for t in xTicks {
            out += "<line x1=\"\(px(t))\" y1=\"\(top)\" x2=\"\(px(t))\" y2=\"\(height - bottom)\" stroke=\"#eee\"/>"
            out += "<text x=\"\(px(t))\" y=\"\(height - bottom + 18)\" text-anchor=\"middle\">\(label(t))</text>\n"
        }
        for t in yTicks {
            out += "<line x1=\"\(left)\" y1=\"\(py(t))\" x2=\"\(width - right)\" y2=\"\(py(t))\" stroke=\"#eee\"/>"
            out += "<text x=\"\(left - 8)\" y=\"\(py(t) + 4)\" text-anchor=\"end\">\(label(t))</text>\n"
        }
        out += """
        <line x1="\(left)" y1="\(height - bottom)" x2="\(width - right)" y2="\(height - bottom)" stroke="black"/>
        <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(height - bottom)" stroke="black"/>
        <text x="\(width / 2)" y="\(height - 12)" text-anchor="middle">step</text>
        <text x="18" y="\(height / 2)" text-anchor="middle" transform="rotate(-90 18 \(height / 2))">loss (nats/char)</text>
        <polyline id="training" fill="none" stroke="#1f77b4" stroke-width="1.5" points="\(points(training))"/>

        """
        if !validation.isEmpty {
            out += "<polyline id=\"validation\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\" points=\"\(points(validation))\"/>\n"
            for p in validation { out += "<circle cx=\"\(px(p.0))\" cy=\"\(py(p.1))\" r=\"3\" fill=\"#d62728\"/>\n" }
        }
        out += "<text x=\"\(width - right - 150)\" y=\"\(top + 14)\" fill=\"#1f77b4\">— training</text>\n"
        if !validation.isEmpty { out += "<text x=\"\(width - right - 150)\" y=\"\(top + 30)\" fill=\"#d62728\">- - validation</text>\n" }
        return out + "</svg>\n"
    }

    /// About five round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi].
    func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        let span = max(hi - lo, 1e-9)
        let raw = span / 5, power = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw }!
        var t = floor(lo / step) * step, out: [Double] = []
        while t <= hi + step * 0.5 {
            out.append(t)
            t += step
        }
        return out
    }

    private func label(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e6 ? String(Int(v)) : String(format: "%.2f", v)
    }
}
