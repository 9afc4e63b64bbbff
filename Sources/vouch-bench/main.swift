// vouch-bench: in-process measurements for `make bench` (bench/run.sh). Reports, never asserts.
import Foundation
import VouchBenchKit

do {
    exit(try Bench.run(Array(CommandLine.arguments.dropFirst())))
} catch {
    FileHandle.standardError.write(Data("vouch-bench: \(error)\n".utf8))
    exit(1)
}
