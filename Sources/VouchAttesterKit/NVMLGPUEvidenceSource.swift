#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import VouchAttestation
import VouchCore

/// GPU evidence from NVIDIA's driver through NVML, loaded at run time with dlopen (no build-time
/// dependency: a host without the driver builds and runs, and answers `gpu_unavailable`).
/// Per call: `nvmlInit_v2`, `nvmlDeviceGetCount_v2`, then for every GPU
/// `nvmlDeviceGetHandleByIndex_v2`, `nvmlDeviceGetConfComputeGpuAttestationReport` (the nonce
/// in, the SPDM GET_MEASUREMENTS request ‖ response out) and
/// `nvmlDeviceGetConfComputeGpuCertificate` (the attestation certificate chain, PEM), then
/// `nvmlShutdown`. The structures are fixed-layout C structs (nvml.h), read here as byte buffers:
///
/// `nvmlConfComputeGpuAttestationReport_t` (12,332 bytes): `isCecAttestationReportPresent` u32
/// @0, `attestationReportSize` u32 @4, `cecAttestationReportSize` u32 @8, `nonce[32]` @12,
/// `attestationReport[0x2000]` @44, `cecAttestationReport[0x1000]` @8,236.
///
/// `nvmlConfComputeGpuCertificate_t` (9,224 bytes): `certChainSize` u32 @0,
/// `attestationCertChainSize` u32 @4, `certChain[0x1000]` @8, `attestationCertChain[0x1400]` @4,104.
///
/// Every size NVML writes is checked against its buffer before use (`gpu_evidence_failed`).
/// Not run on GPU hardware in this project's tests (none was available): only the missing-library
/// path is tested; see docs/evidence.md.
public struct NVMLGPUEvidenceSource: GPUEvidenceSource {
    public static let defaultLibrary = "libnvidia-ml.so.1"

    enum Layout {
        static let reportStructSize = 12_332
        static let reportSizeOffset = 4
        static let nonceOffset = 12
        static let reportOffset = 44
        static let reportCapacity = 0x2000
        static let certificateStructSize = 9_224
        static let attestationChainSizeOffset = 4
        static let attestationChainOffset = 4_104
        static let attestationChainCapacity = 0x1400
    }

    /// NVML return codes Vouch names (nvml.h `nvmlReturn_t`).
    enum Return {
        static let success: Int32 = 0
        static let notSupported: Int32 = 3
    }

    public let libraryPath: String

    public init(libraryPath: String = NVMLGPUEvidenceSource.defaultLibrary) {
        self.libraryPath = libraryPath
    }

    public func gpuEvidence(nonce: [UInt8]) throws -> [NvidiaGPUEvidence] {
        guard nonce.count == 32 else { throw VouchError(.invalidValue, "an NVML GPU nonce is 32 bytes", context: ["field": "nonce", "got": "\(nonce.count)"]) }
        let nvml = try NVMLLibrary(path: libraryPath)
        try nvml.check(nvml.initialize(), "nvmlInit_v2", unavailableOnFailure: true)
        defer { _ = nvml.shutdown() }
        var count: UInt32 = 0
        try nvml.check(nvml.deviceCount(&count), "nvmlDeviceGetCount_v2", unavailableOnFailure: true)
        guard count > 0 else { throw VouchError(.gpuUnavailable, "NVML finds no GPU") }
        guard count <= UInt32(NvidiaGPUEvidence.maxBundleDevices) else {
            throw VouchError(.gpuEvidenceFailed, "NVML reports \(count) GPUs (at most \(NvidiaGPUEvidence.maxBundleDevices))")
        }
        return try (0..<count).map { index in
            var device: OpaquePointer?
            try nvml.check(nvml.handle(index, &device), "nvmlDeviceGetHandleByIndex_v2")
            guard let device else { throw VouchError(.gpuEvidenceFailed, "NVML gave no handle for GPU \(index)") }
            return NvidiaGPUEvidence(transcript: try report(nvml, device, nonce: nonce), certificateChainPEM: try chain(nvml, device))
        }
    }

    private func report(_ nvml: NVMLLibrary, _ device: OpaquePointer, nonce: [UInt8]) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: Layout.reportStructSize)
        buffer.replaceSubrange(Layout.nonceOffset..<Layout.nonceOffset + 32, with: nonce)
        let rc = buffer.withUnsafeMutableBytes { nvml.attestationReport(device, $0.baseAddress!) }
        try nvml.check(rc, "nvmlDeviceGetConfComputeGpuAttestationReport")
        let size = Int(Self.u32(buffer, Layout.reportSizeOffset))
        guard size > 0, size <= Layout.reportCapacity else {
            throw VouchError(.gpuEvidenceFailed, "NVML's attestation report size is outside its buffer", context: ["got": "\(size)"])
        }
        return Array(buffer[Layout.reportOffset..<Layout.reportOffset + size])
    }

    private func chain(_ nvml: NVMLLibrary, _ device: OpaquePointer) throws -> String {
        var buffer = [UInt8](repeating: 0, count: Layout.certificateStructSize)
        let rc = buffer.withUnsafeMutableBytes { nvml.certificate(device, $0.baseAddress!) }
        try nvml.check(rc, "nvmlDeviceGetConfComputeGpuCertificate")
        let size = Int(Self.u32(buffer, Layout.attestationChainSizeOffset))
        guard size > 0, size <= Layout.attestationChainCapacity else {
            throw VouchError(.gpuEvidenceFailed, "NVML's attestation certificate chain size is outside its buffer", context: ["got": "\(size)"])
        }
        let bytes = buffer[Layout.attestationChainOffset..<Layout.attestationChainOffset + size].prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A little-endian u32 at `offset` (NVML's hosts are little-endian: x86-64, aarch64).
    static func u32(_ b: [UInt8], _ offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(b[offset + $1]) << (8 * $1) }
    }
}

/// libnvidia-ml loaded with dlopen and its six functions resolved with dlsym; dlclose in deinit.
final class NVMLLibrary {
    typealias NoArgs = @convention(c) () -> Int32
    typealias Count = @convention(c) (UnsafeMutablePointer<UInt32>) -> Int32
    typealias Handle = @convention(c) (UInt32, UnsafeMutablePointer<OpaquePointer?>) -> Int32
    typealias Fill = @convention(c) (OpaquePointer, UnsafeMutableRawPointer) -> Int32

    private let library: UnsafeMutableRawPointer
    let initialize: NoArgs
    let shutdown: NoArgs
    let deviceCount: Count
    let handle: Handle
    let attestationReport: Fill
    let certificate: Fill

    init(path: String) throws {
        guard let library = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw VouchError(.gpuUnavailable, "NVML (\(path)) cannot be loaded: no NVIDIA driver here", context: ["library": path])
        }
        self.library = library
        func symbol<T>(_ name: String, _ type: T.Type) throws -> T {
            guard let address = dlsym(library, name) else {
                throw VouchError(.gpuUnavailable, "NVML (\(path)) lacks \(name): the driver is too old for confidential computing", context: ["symbol": name])
            }
            return unsafeBitCast(address, to: type)
        }
        do {
            initialize = try symbol("nvmlInit_v2", NoArgs.self)
            shutdown = try symbol("nvmlShutdown", NoArgs.self)
            deviceCount = try symbol("nvmlDeviceGetCount_v2", Count.self)
            handle = try symbol("nvmlDeviceGetHandleByIndex_v2", Handle.self)
            attestationReport = try symbol("nvmlDeviceGetConfComputeGpuAttestationReport", Fill.self)
            certificate = try symbol("nvmlDeviceGetConfComputeGpuCertificate", Fill.self)
        } catch {
            dlclose(library)
            throw error
        }
    }

    deinit { dlclose(library) }

    /// An NVML return code as a typed error: `gpu_unavailable` for "not supported" (confidential
    /// computing off) or when `unavailableOnFailure` (initialisation, counting), else
    /// `gpu_evidence_failed`; the code is in the context.
    func check(_ rc: Int32, _ function: String, unavailableOnFailure: Bool = false) throws {
        guard rc != NVMLGPUEvidenceSource.Return.success else { return }
        let code: ErrorCode = unavailableOnFailure || rc == NVMLGPUEvidenceSource.Return.notSupported ? .gpuUnavailable : .gpuEvidenceFailed
        throw VouchError(code, "\(function) failed (NVML return code \(rc))", context: ["function": function, "nvml_return": "\(rc)"])
    }
}
