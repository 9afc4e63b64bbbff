import Foundation
import VouchCore
import VouchPolicy

/// Which firmware a NVIDIA RIM describes. The SWID tag has no field that says (NVIDIA's driver
/// and VBIOS RIMs carry the same `name="GH100"`, `edition="GPU"`, product and TCG Meta; their
/// tagIds are opaque digests): what tells them apart is the signed `colloquialVersion`, a driver
/// version (`545.00`: 2-4 decimal numbers) or a VBIOS version (`96.00.74.00.1A`: five pairs of
/// hex digits), two syntaxes that never overlap (`NvidiaVersion`).
public enum NvidiaRIMComponent: String, Sendable, Codable, CaseIterable {
    case driver, vbios

    /// The component whose version syntax `version` has; nil for neither.
    public init?(version: String) {
        if NvidiaVersion(driver: version) != nil { self = .driver } else if NvidiaVersion(vbios: version) != nil { self = .vbios } else { return nil }
    }
}

/// Who a verified RIM is: its component (told by the kind of its version), its
/// `Meta/@colloquialVersion` (the driver or VBIOS version, e.g. `545.00`, `96.00.74.00.1A`),
/// `Meta/@product`, the SWID `tagId` and the subject of the certificate that signed it.
public struct NvidiaRIMIdentity: Sendable, Equatable {
    public let component: NvidiaRIMComponent
    public let version: String
    public let product: String
    public let tagId: String
    public let signer: String
}

/// One `Payload/Resource` of type `Measurement`: index i (0-based; SPDM measurement block i+1),
/// whether it is active, and its alternative SHA-384 digests (`Hash0` … `HashN`): a measurement
/// matches when it equals any one of them.
public struct ReferenceMeasurement: Sendable, Equatable {
    public let index: Int
    public let active: Bool
    public let alternatives: [[UInt8]]
}

/// The reference values of one verified RIM, by index.
public struct ReferenceValues: Sendable, Equatable {
    public let measurements: [Int: ReferenceMeasurement]

    /// The active measurements, by ascending index.
    public var active: [ReferenceMeasurement] {
        measurements.values.filter(\.active).sorted { $0.index < $1.index }
    }
}

/// A RIM whose chain, validity and XML-DSig signature verified (only `NvidiaRIMVerifier` makes one).
public struct VerifiedNvidiaRIM: Sendable {
    public let identity: NvidiaRIMIdentity
    public let referenceValues: ReferenceValues
    /// When every certificate of its chain (the KeyInfo certificates and the root they chain to)
    /// is valid: a store that verified the RIM once re-checks a later time against this.
    public let validity: ClosedRange<Date>
}

/// NVIDIA's RIM signing root, compiled in (the same bytes as
/// Tests/Fixtures/nvidia-rim/roots/nvidia_corim_signing_root_ca.pem, a test checks; from NVIDIA
/// nvtrust's local GPU verifier, verifier_RIM_root.pem): CN=NVIDIA CoRIM signing Root CA, P-384,
/// valid 2023-03-16 to 2053-03-08. (The GPU device identity root is in NvidiaRoots.swift.)
extension NvidiaRoots {
    public static let coRIMSigningRootPEM = """
-----BEGIN CERTIFICATE-----
MIICKTCCAbCgAwIBAgIQRdrjoA5QN73fh1N17LXicDAKBggqhkjOPQQDAzBFMQsw
CQYDVQQGEwJVUzEPMA0GA1UECgwGTlZJRElBMSUwIwYDVQQDDBxOVklESUEgQ29S
SU0gc2lnbmluZyBSb290IENBMCAXDTIzMDMxNjE1MzczNFoYDzIwNTMwMzA4MTUz
NzM0WjBFMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGTlZJRElBMSUwIwYDVQQDDBxO
VklESUEgQ29SSU0gc2lnbmluZyBSb290IENBMHYwEAYHKoZIzj0CAQYFK4EEACID
YgAEuECyi9vNM+Iw2lfUzyBldHAwaC1HF7TCgp12QcEyUTm3Tagxwr48d55+K2VI
lWYIDk7NlAIQdcV/Ff7euGLI+Qauj93HsSI4WX298PpW54RTgz9tC+Q684caR/BX
WEeZo2MwYTAdBgNVHQ4EFgQUpaXrOPK4ZDAk08DBskn594zeZjAwHwYDVR0jBBgw
FoAUpaXrOPK4ZDAk08DBskn594zeZjAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8B
Af8EBAMCAQYwCgYIKoZIzj0EAwMDZwAwZAIwHGDyscDP6ihHqRvZlI3eqZ4YkvjE
1duaN84tAHRVgxVMvNrp5Tnom3idHYGW/dskAjATvjIx6VzHm/4e2GiZAyZEIUBD
OKPzp5ei/A0iUZpdvngenDwV8Qa/wGdiTmJ7Bp4=
-----END CERTIFICATE-----
"""
}

extension ErrorCode {
    /// The KeyInfo certificates do not chain to the pinned RIM root at the check time (or none).
    public static let rimChainInvalid = ErrorCode("rim_chain_invalid", status: 403)
    /// The signed SWID tag lacks what a RIM must carry, or a Resource is not a well-formed measurement.
    public static let rimMalformed = ErrorCode("rim_malformed", status: 422)
    /// The RIM's colloquialVersion is not the version the caller expected.
    public static let rimVersionMismatch = ErrorCode("rim_version_mismatch", status: 403)
    /// The RIM's colloquialVersion is the other component's kind of version (a VBIOS RIM offered
    /// as the driver RIM, or the reverse).
    public static let rimComponentMismatch = ErrorCode("rim_component_mismatch", status: 403)
}
