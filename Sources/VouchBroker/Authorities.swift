import Foundation
import Synchronization
import VouchCore
import VouchCrypto

/// One issuing CA with the certificates above it (empty when it is its own root).
public struct IssuingCA: Sendable {
    public let signer: CertificateSigner
    public let chain: [Certificate]

    /// Subject key identifier (hex): names the CA in CRL URLs and certificate records.
    public let keyID: String

    public init(signer: CertificateSigner, chain: [Certificate] = []) {
        self.signer = signer
        self.chain = chain
        self.keyID = signer.caCertificate.subjectKeyID
    }
    /// The self-signed certificates relying parties trust for this CA.
    public var roots: [Certificate] { ([signer.caCertificate] + chain).filter(\.isSelfSigned) }
    /// The issuing CA and the certificates above it, as PEM (what clients need to build a path).
    public var chainPEM: String {
        get throws { try ([signer.caCertificate] + chain).map { try $0.pem }.joined() }
    }
}

/// The CAs a broker uses: `current` issues; `previous` (after a rotation) still signs CRLs and OCSP
/// answers for what it issued; `next` is published in the trust bundle before it signs anything.
public final class CASet: Sendable {
    private let state: ReadMostly<(current: IssuingCA, previous: IssuingCA?, next: IssuingCA?)>
    private let persist: (@Sendable () throws -> Void)?

    /// `persist` makes a rotation durable (it renames the CA directories); it runs before the
    /// in-memory swap, so a failure leaves the running CAs as they were.
    public init(current: IssuingCA, previous: IssuingCA? = nil, next: IssuingCA? = nil, persist: (@Sendable () throws -> Void)? = nil) {
        state = ReadMostly((current, previous, next))
        self.persist = persist
    }

    public var current: IssuingCA { state.read { $0.current } }
    public var next: IssuingCA? { state.read { $0.next } }
    public var previous: IssuingCA? { state.read { $0.previous } }

    /// CAs that may sign revocation information: current and previous.
    public var signing: [IssuingCA] { state.read { [$0.current] + ($0.previous.map { [$0] } ?? []) } }

    public func byKeyID(_ id: String) -> IssuingCA? {
        state.read { s in s.current.keyID == id ? s.current : (s.previous?.keyID == id ? s.previous : nil) }
    }

    /// Every root relying parties should trust now: current, previous and next, without duplicates.
    public var bundle: [Certificate] {
        let all = state.read { [$0.current] + ($0.previous.map { [$0] } ?? []) + ($0.next.map { [$0] } ?? []) }
        var seen = Set<String>()
        return all.flatMap(\.roots).filter { (try? seen.insert(Hex.encode($0.der)).inserted) ?? false }
    }

    /// Makes `next` the issuing CA and the current one `previous` (the former previous is dropped).
    public func rotate() throws -> IssuingCA {
        guard next != nil else { throw VouchError(.conflict, "no next CA is staged; put it in CA-DIR/next first") }
        try persist?()
        return state.write { s in
            s = (s.next!, s.current, nil)
            return s.current
        }
    }
}
