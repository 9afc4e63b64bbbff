import Foundation
import VouchCore
import VouchCrypto
import VouchXMLSig

/// Verifies a NVIDIA driver or VBIOS RIM (an ISO/IEC 19770-2 SWID tag with TCG RIM-IM Meta,
/// signed with an enveloped XML-DSig) and returns its reference values. Checks, in order; the first
/// failure throws:
/// 1. the document is at most 1 MiB, well-formed XML parsed without network, DTD or entity
///    substitution (`xml_document_malformed`), with no DOCTYPE or entity reference
///    (`xml_document_refused`);
/// 2. the signature is exactly one enveloped `ds:Signature`, a child of the root, covering the
///    whole document (one `Reference`, `URI=""`, enveloped-signature then C14N), allowed
///    algorithms only, no `ds:Object` (`xml_signature_shape`);
/// 3. its `ds:KeyInfo/ds:X509Data` carries certificates, leaf first, that parse, and the leaf
///    chains through the others to the pinned NVIDIA CoRIM signing Root CA, every certificate
///    valid at the check time, the leaf not a CA (basicConstraints cA TRUE) and allowed to sign
///    (`rim_chain_invalid`);
/// 4. libxmlsec1 verifies the signature with the leaf's key only (`xml_signature_invalid`);
///    everything below reads only the verified document;
/// 5. the root is `SoftwareIdentity` (SWID 2015 namespace) with a `tagId`, one `Meta` with
///    `colloquialVersion` and `product`, one `Payload` (`rim_malformed`);
/// 6. `colloquialVersion` is a driver version (2-4 decimal numbers) or a VBIOS version (five hex
///    pairs) (`rim_malformed`), the kind of the component the caller names, when it names one
///    (`rim_component_mismatch`: a VBIOS RIM is never accepted as the driver RIM); when the caller
///    names a version, `colloquialVersion` equals it (`rim_version_mismatch`);
/// 7. every `Payload/Resource` is `type="Measurement"` with a unique `index` in 0...255,
///    `active` `True` or `False`, `alternatives` n in 1...16 and exactly the attributes
///    `Hash0`…`Hash(n-1)` in the SHA-384 namespace, each 48 bytes of hex, `size` 48
///    (`rim_malformed`).
public struct NvidiaRIMVerifier: Sendable {
    static let swid = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
    static let sha384 = "http://www.w3.org/2001/04/xmlenc#sha384"
    static let maxIndex = 255
    static let maxAlternatives = 16

    public let roots: [Certificate]

    /// A verifier anchored at `roots` (default: the compiled-in NVIDIA CoRIM signing Root CA).
    public init(roots: [Certificate]? = nil) throws {
        self.roots = try roots ?? [Certificate(pem: NvidiaRoots.coRIMSigningRootPEM)]
    }

    /// Verifies `bytes` as the RIM of `component` (nil: whichever its signed version says).
    public func verify(_ bytes: [UInt8], component: NvidiaRIMComponent? = nil, expectedVersion: String? = nil, at now: Date) throws -> VerifiedNvidiaRIM {
        let document = try UnverifiedXMLDocument(bytes: bytes)
        let (leaf, validity) = try verifyChain(document.keyInfoCertificates(), at: now)
        let verified = try XMLSignature.verifyEnveloped(document, signerCertificateDER: leaf.der)
        let identity = try Self.identity(verified.root, component: component, signer: leaf.subject)
        if let expectedVersion, identity.version != expectedVersion {
            throw VouchError(.rimVersionMismatch, "the \(identity.component.rawValue) RIM is for version \(identity.version), not \(expectedVersion)",
                             context: ["rim_version": identity.version, "expected": expectedVersion])
        }
        let payload = verified.root.children(named: "Payload", namespace: Self.swid)[0]
        return VerifiedNvidiaRIM(identity: identity, referenceValues: try Self.referenceValues(payload), validity: validity)
    }

    /// Check 3: the leaf, and when the whole chain is valid (the KeyInfo certificates and the
    /// roots that issued any of them).
    func verifyChain(_ ders: [[UInt8]], at now: Date) throws -> (Certificate, ClosedRange<Date>) {
        let certificates: [Certificate]
        do { certificates = try ders.map { try Certificate(der: $0) } } catch {
            throw VouchError(.rimChainInvalid, "a RIM KeyInfo certificate does not parse")
        }
        guard let leaf = certificates.first else { throw VouchError(.rimChainInvalid, "the RIM carries no signing certificate") }
        if let failure = leaf.verify(anchors: roots, intermediates: Array(certificates.dropFirst()), at: now) {
            throw VouchError(.rimChainInvalid, "the RIM signing certificate does not chain to the NVIDIA RIM root at the check time",
                             context: failure.context)
        }
        guard !leaf.isCA else {
            throw VouchError(.rimChainInvalid, "the RIM signing certificate is a CA (basicConstraints cA TRUE), not a signing leaf", context: ["check": "leaf_is_ca"])
        }
        guard leaf.mayDigitallySign else { throw VouchError(.rimChainInvalid, "the RIM signing certificate may not sign") }
        let issuers = Set(certificates.map(\.issuer))
        let chain = certificates + roots.filter { issuers.contains($0.subject) }
        let from = chain.map(\.notBefore).max() ?? now, until = chain.map(\.notAfter).min() ?? now
        // Windows that do not overlap: a window no lookup time falls in (fail closed).
        return (leaf, from <= until ? from...until : Date.distantPast...Date.distantPast)
    }

    /// Check 5.
    static func identity(_ root: XMLElementNode, component: NvidiaRIMComponent?, signer: String) throws -> NvidiaRIMIdentity {
        guard root.name == "SoftwareIdentity", root.namespace == swid, let tagId = root.attribute("tagId") else {
            throw VouchError(.rimMalformed, "the RIM is not a SWID SoftwareIdentity with a tagId")
        }
        let metas = root.children(named: "Meta", namespace: swid)
        guard metas.count == 1, let version = metas[0].attribute("colloquialVersion"), !version.isEmpty,
              let product = metas[0].attribute("product"), root.children(named: "Payload", namespace: swid).count == 1 else {
            throw VouchError(.rimMalformed, "the RIM lacks one Meta with colloquialVersion and product, or one Payload")
        }
        guard let kind = NvidiaRIMComponent(version: version) else {
            throw VouchError(.rimMalformed, "the RIM's colloquialVersion is neither a driver nor a VBIOS version", context: ["rim_version": version])
        }
        if let component, component != kind {
            throw VouchError(.rimComponentMismatch, "the RIM's version \(version) is a \(kind.rawValue) version, not a \(component.rawValue) version",
                             context: ["rim_version": version, "expected": component.rawValue])
        }
        return NvidiaRIMIdentity(component: kind, version: version, product: product, tagId: tagId, signer: signer)
    }

    /// Check 7.
    static func referenceValues(_ payload: XMLElementNode) throws -> ReferenceValues {
        var measurements: [Int: ReferenceMeasurement] = [:]
        for resource in payload.children {
            func malformed(_ why: String) -> VouchError {
                VouchError(.rimMalformed, "RIM Resource refused: \(why)", context: ["index": resource.attribute("index") ?? "?"])
            }
            guard resource.name == "Resource", resource.namespace == swid, resource.attribute("type") == "Measurement" else {
                throw malformed("not a Resource of type Measurement")
            }
            guard let indexText = resource.attribute("index"), let index = Int(indexText), (0...maxIndex).contains(index),
                  measurements[index] == nil else { throw malformed("index missing, out of range or repeated") }
            let active: Bool
            switch resource.attribute("active") {
            case "True": active = true
            case "False": active = false
            default: throw malformed("active is not True or False")
            }
            guard let countText = resource.attribute("alternatives"), let count = Int(countText), (1...maxAlternatives).contains(count),
                  resource.attribute("size") == "48" else { throw malformed("alternatives not in 1...\(maxAlternatives) or size not 48") }
            let hashes = resource.attributes.filter { $0.namespace == sha384 }
            guard hashes.count == count else { throw malformed("\(hashes.count) SHA-384 digests for \(count) alternatives") }
            var alternatives: [[UInt8]] = []
            for k in 0..<count {
                guard let hex = resource.attribute("Hash\(k)", namespace: sha384),
                      let digest = try? Hex.decode(hex), digest.count == 48 else { throw malformed("Hash\(k) is not 48 bytes of hex") }
                alternatives.append(digest)
            }
            measurements[index] = ReferenceMeasurement(index: index, active: active, alternatives: alternatives)
        }
        return ReferenceValues(measurements: measurements)
    }
}
