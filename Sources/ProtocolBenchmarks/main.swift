// Decode throughput per protocol family: `swift run -c release ProtocolBenchmarks [seconds] [chunk]`.
// Each family's stream is valid frames with garbage between some of them, fed in chunks the size a
// serial read returns. Figures are recorded in docs/benchmarks.md.
import Foundation
import Protocols

let arguments = CommandLine.arguments.dropFirst()
let seconds = arguments.first.flatMap(Double.init) ?? 2
let chunkSize = arguments.dropFirst().first.flatMap(Int.init) ?? 64

func column(_ text: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return right ? fill + text : text + fill
}

print(column("family", 24) + column("MB/s", 10, right: true) + column("frames/s", 14, right: true)
      + "   (chunks of \(chunkSize) bytes, \(seconds) s each)")
var failed = false
for benchmark in allBenchmarks() {
    let result = benchmark.run(seconds: seconds, chunkSize: chunkSize)
    failed = failed || !result.correct
    print(column(benchmark.family, 24) + column(String(format: "%.1f", result.megabytesPerSecond), 10, right: true)
          + column(String(format: "%.0f", result.framesPerSecond), 14, right: true)
          + (result.correct ? "" : "   WRONG FRAME COUNT"))
}
if failed { exit(1) }
