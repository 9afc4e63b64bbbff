internal import CXMLSec
import Foundation
import VouchCore

/// Enveloped XML-DSig verification with libxmlsec1 (OpenSSL back end) over libxml2; no
/// canonicaliser of our own. Checks, in order:
/// 1. the document is at most `maxBytes` long (`xml_document_malformed`);
/// 2. libxml2 parses it without network access, entity substitution or DTD loading
///    (`XML_PARSE_NONET`; `xml_document_malformed` when not well formed);
/// 3. it has no DOCTYPE at all and no entity reference (`xml_document_refused`), and is at most
///    64 elements deep and 20,000 elements in all (`xml_document_malformed`);
/// 4. exactly one `ds:Signature` in the whole document, a direct child of the root, with
///    `SignedInfo`, `SignatureValue` and optionally `KeyInfo`, nothing else (no `ds:Object`);
///    `SignedInfo` has one allowed `CanonicalizationMethod` (C14N 1.0, C14N 1.1, exclusive C14N,
///    all without comments), one allowed `SignatureMethod` (ECDSA or RSA with SHA-256/384/512)
///    and exactly one `Reference` with `URI=""` whose `Transforms` are exactly the
///    enveloped-signature transform then one allowed canonicalisation, and an allowed
///    `DigestMethod` (SHA-256/384/512); no attribute inside `SignedInfo` is in a namespace (`xml:`
///    or any other: they change what is canonicalised) (`xml_signature_shape`) — so the signature
///    covers the whole document and a wrapped or duplicated element cannot be signed separately;
/// 5. libxmlsec1 verifies the reference digest and the signature value with the public key of the
///    given certificate only (KeyInfo is never used to find a key; only same-document empty URIs
///    are enabled) (`xml_signature_invalid`).
public enum XMLSignature {
    public static let defaultMaxBytes = 1 << 20
    static let maxDepth = 64
    static let maxElements = 20_000
    /// Namespace declarations in the whole document (NVIDIA's RIMs declare six).
    static let maxNamespaceDeclarations = 32
    /// Attributes on one element.
    static let maxAttributes = 64

    static let dsig = "http://www.w3.org/2000/09/xmldsig#"
    static let enveloped = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
    static let canonicalisations: Set<String> = [
        "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
        "http://www.w3.org/2006/12/xml-c14n11",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    ]
    static let signatureMethods: Set<String> = [
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    ]
    static let digestMethods: Set<String> = [
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    ]

    /// Verifies `document`'s enveloped signature with the key of `signerCertificateDER`
    /// (checks 4 and 5; 1 to 3 happened when `document` was parsed).
    public static func verifyEnveloped(_ document: UnverifiedXMLDocument, signerCertificateDER: [UInt8]) throws -> VerifiedXMLDocument {
        let signature = try checkShape(document.root)
        try document.handle.verifySignature(signerCertificateDER: signerCertificateDER)
        var root = document.root
        root.children.removeAll { $0 == signature }
        return VerifiedXMLDocument(root: root, signerCertificateDER: signerCertificateDER)
    }

    /// Check 4: the one signature element, covering the whole document.
    static func checkShape(_ root: XMLElementNode) throws -> XMLElementNode {
        func refuse(_ why: String) -> VouchError { VouchError(.xmlSignatureShape, "XML signature refused: \(why)") }
        guard root.descendants(named: "Signature", namespace: dsig).count == 1,
              let signature = root.children(named: "Signature", namespace: dsig).first else {
            throw refuse("not exactly one ds:Signature, a child of the root element")
        }
        let parts = signature.children.map { $0.namespace == dsig ? $0.name : "?" }
        guard parts == ["SignedInfo", "SignatureValue"] || parts == ["SignedInfo", "SignatureValue", "KeyInfo"] else {
            throw refuse("ds:Signature holds \(parts), not SignedInfo, SignatureValue[, KeyInfo]")
        }
        let info = signature.children[0]
        guard info.children.map({ $0.namespace == dsig ? $0.name : "?" }) == ["CanonicalizationMethod", "SignatureMethod", "Reference"],
              info.children[0].children.isEmpty, info.children[1].children.isEmpty,
              let c14n = info.children[0].attribute("Algorithm"), canonicalisations.contains(c14n),
              let method = info.children[1].attribute("Algorithm"), signatureMethods.contains(method) else {
            throw refuse("SignedInfo is not one allowed canonicalisation, signature method and exactly one Reference")
        }
        guard info.descendants(named: nil).allSatisfy({ $0.attributes.allSatisfy { $0.namespace == nil } }) else {
            throw refuse("an attribute inside SignedInfo is in a namespace")
        }
        let reference = info.children[2]
        guard reference.attribute("URI") == "" else { throw refuse("the Reference is not the whole document (URI=\"\")") }
        guard reference.children.map({ $0.namespace == dsig ? $0.name : "?" }) == ["Transforms", "DigestMethod", "DigestValue"],
              let digest = reference.children[1].attribute("Algorithm"), digestMethods.contains(digest) else {
            throw refuse("the Reference is not Transforms, an allowed DigestMethod and DigestValue")
        }
        let transforms = reference.children[0].children
        guard transforms.count == 2,
              transforms.allSatisfy({ $0.namespace == dsig && $0.name == "Transform" && $0.children.isEmpty }),
              transforms[0].attribute("Algorithm") == enveloped,
              let second = transforms[1].attribute("Algorithm"), canonicalisations.contains(second) else {
            throw refuse("the Reference's transforms are not exactly enveloped-signature then one canonicalisation")
        }
        return signature
    }
}

/// A parsed document whose signature has not been checked: only its shape and the certificates
/// its KeyInfo carries may be read (to find the key to verify with).
public final class UnverifiedXMLDocument {
    let handle: XMLDocumentHandle
    let root: XMLElementNode

    /// Checks 1 to 3 of `XMLSignature`.
    public init(bytes: [UInt8], maxBytes: Int = XMLSignature.defaultMaxBytes) throws {
        guard !bytes.isEmpty, bytes.count <= maxBytes else {
            throw VouchError(.xmlDocumentMalformed, "XML document is empty or over \(maxBytes) bytes", context: ["size": "\(bytes.count)"])
        }
        handle = try XMLDocumentHandle(bytes: bytes)
        root = try handle.tree()
    }

    /// Check 4 of `XMLSignature` (`xml_signature_shape`), then the DER certificates of the one
    /// signature's `ds:KeyInfo/ds:X509Data/ds:X509Certificate`, in document order (unverified: the
    /// caller chains them to its own anchor before verifying with the first).
    public func keyInfoCertificates() throws -> [[UInt8]] {
        let dsig = XMLSignature.dsig
        return try XMLSignature.checkShape(root)
            .children(named: "KeyInfo", namespace: dsig)
            .flatMap { $0.children(named: "X509Data", namespace: dsig) }
            .flatMap { $0.children(named: "X509Certificate", namespace: dsig) }
            .compactMap { Data(base64Encoded: $0.text, options: .ignoreUnknownCharacters).map { [UInt8]($0) } }
    }
}
