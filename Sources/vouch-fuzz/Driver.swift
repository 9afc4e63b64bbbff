#if VOUCH_FUZZ
import Foundation

nonisolated(unsafe) var selectedTarget: (@Sendable ([UInt8]) -> Void)?

/// libFuzzer calls this once before fuzzing: the target comes from $FUZZ_TARGET.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> Int32 {
    guard let name = ProcessInfo.processInfo.environment["FUZZ_TARGET"], let target = FuzzTargets.all[name] else {
        FileHandle.standardError.write(Data("set FUZZ_TARGET to one of: \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
        exit(2)
    }
    selectedTarget = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    selectedTarget?(bytes)
    return 0
}
#endif
