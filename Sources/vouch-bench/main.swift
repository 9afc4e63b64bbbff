// vouch-bench: in-process measurements for `make bench` (bench/run.sh). Reports, never asserts.
import Foundation
import VouchBenchKit

do {
    let argv = Array(CommandLine.arguments.dropFirst())
    switch argv.first {
    case "enroll": exit(try EnrollBench.run(Array(argv.dropFirst())))
    case "tee": exit(try TEEBench.run(Array(argv.dropFirst())))
    case "gpu": exit(try GPUBench.run(Array(argv.dropFirst())))
    case "log": exit(try LogBench.run(Array(argv.dropFirst())))
    case "receipts": exit(try ReceiptBench.run(Array(argv.dropFirst())))
    case "drift-watch": exit(try DriftBench.run(Array(argv.dropFirst())))
    default: exit(try Bench.run(argv))
    }
} catch {
    FileHandle.standardError.write(Data("vouch-bench: \(error)\n".utf8))
    exit(1)
}
