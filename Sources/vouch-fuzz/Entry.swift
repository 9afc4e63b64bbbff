// vouch-fuzz: libFuzzer targets for every parser that sees outside bytes. `make fuzz` builds it
// with -sanitize=fuzzer,address and -DVOUCH_FUZZ (libFuzzer then provides main) and runs it as
// FUZZ_TARGET=NAME vouch-fuzz [libFuzzer options] CORPUS... In an ordinary build it only says so.
import Foundation

#if !VOUCH_FUZZ
@main
struct VouchFuzzStub {
    static func main() {
        FileHandle.standardError.write(Data("vouch-fuzz: built without libFuzzer; run `make fuzz`. Targets: \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
        exit(2)
    }
}
#endif
