internal import CXMLSec
import Foundation
import VouchCore

/// Enveloped XML-DSig signing with libxmlsec1 (OpenSSL back end), the counterpart of
/// `XMLSignature.verifyEnveloped`, for documents Vouch makes itself (the software GPU's RIMs).
/// The signature is the shape the verifier accepts and NVIDIA's RIMs have: one `ds:Signature`
/// appended to the root element, C14N 1.1, ECDSA-SHA384 (or RSA-SHA384 for an RSA key), one
/// `Reference` with `URI=""`, the enveloped-signature transform then C14N 1.1, SHA-384; then
/// `ds:KeyInfo/ds:X509Data` with the given certificates in order (leaf first). libxmlsec1 builds
/// the template, canonicalises, digests and signs; nothing is canonicalised here.
public enum XMLSigner {
    /// Signs `document` (well-formed XML with no signature, no DOCTYPE) with `privateKeyPEM`
    /// (PKCS#8 or traditional PEM; ECDSA or RSA) and returns the serialised signed document.
    /// `certificatesDER` go into KeyInfo after signing: KeyInfo lies inside the signature, which
    /// the enveloped transform removes from what is signed, so they are not covered (a verifier
    /// chains them to its own anchor).
    public static func signEnveloped(_ document: [UInt8], privateKeyPEM: String, certificatesDER: [[UInt8]], rsa: Bool = false) throws -> [UInt8] {
        try xmlCheck(libraryReady, .crypto, "libxmlsec1 initialisation")
        let doc = try XMLSigningDocument(bytes: document)
        return try doc.sign(privateKeyPEM: privateKeyPEM, certificatesDER: certificatesDER, rsa: rsa)
    }
}

/// A document being signed: the libxml2 document, freed in deinit.
private final class XMLSigningDocument {
    private let doc: xmlDocPtr

    init(bytes: [UInt8]) throws {
        guard !bytes.isEmpty, bytes.count <= XMLSignature.defaultMaxBytes else {
            throw VouchError(.xmlDocumentMalformed, "XML document to sign is empty or over \(XMLSignature.defaultMaxBytes) bytes")
        }
        silenceLibxml2()
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
        let parsed = bytes.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { xmlReadMemory($0, Int32(buf.count), "document.xml", nil, options) }
        }
        guard let parsed else { throw VouchError(.xmlDocumentMalformed, "XML document to sign is not well formed") }
        doc = parsed
        guard doc.pointee.intSubset == nil else { throw VouchError(.xmlDocumentRefused, "XML document to sign carries a DOCTYPE") }
    }

    deinit { xmlFreeDoc(doc) }

    func sign(privateKeyPEM: String, certificatesDER: [[UInt8]], rsa: Bool) throws -> [UInt8] {
        guard let root = xmlDocGetRootElement(doc) else { throw VouchError(.xmlDocumentMalformed, "XML document to sign has no root element") }
        let c14n = xmlSecTransformInclC14N11GetKlass()
        let method = rsa ? xmlSecOpenSSLTransformRsaSha384GetKlass() : xmlSecOpenSSLTransformEcdsaSha384GetKlass()
        guard let signature = withXMLChars("ds", { xmlSecTmplSignatureCreateNsPref(doc, c14n, method, nil, $0) }) else {
            throw VouchError(.crypto, "xmlSecTmplSignatureCreateNsPref failed")
        }
        guard xmlAddChild(root, signature) != nil else {
            xmlFreeNode(signature)
            throw VouchError(.crypto, "xmlAddChild failed")
        }
        let reference = withXMLChars("") { xmlSecTmplSignatureAddReference(signature, xmlSecOpenSSLTransformSha384GetKlass(), nil, $0, nil) }
        guard let reference, xmlSecTmplReferenceAddTransform(reference, xmlSecTransformEnvelopedGetKlass()) != nil,
              xmlSecTmplReferenceAddTransform(reference, c14n) != nil else { throw VouchError(.crypto, "the XML-DSig template cannot be built") }

        guard let ctx = xmlSecDSigCtxCreate(nil) else { throw VouchError(.crypto, "xmlSecDSigCtxCreate failed") }
        defer { xmlSecDSigCtxDestroy(ctx) }
        ctx.pointee.enabledReferenceUris = xmlSecTransformUriType(xmlSecTransformUriTypeEmpty)
        let pem = Array(privateKeyPEM.utf8)
        let key = pem.withUnsafeBufferPointer { xmlSecOpenSSLAppKeyLoadMemory($0.baseAddress, UInt32($0.count), xmlSecKeyDataFormatPem, nil, nil, nil) }
        guard let key else { throw VouchError(.crypto, "the signing key cannot be loaded by libxmlsec1") }
        ctx.pointee.signKey = key
        silenceLibxml2()
        try xmlCheck(xmlSecDSigCtxSign(ctx, signature) == 0, .crypto, "XML-DSig signing")

        guard let keyInfo = xmlSecTmplSignatureEnsureKeyInfo(signature, nil), let x509 = xmlSecTmplKeyInfoAddX509Data(keyInfo) else {
            throw VouchError(.crypto, "the XML-DSig KeyInfo cannot be added")
        }
        for der in certificatesDER {
            let node = withXMLChars("X509Certificate") { name in withXMLChars(XMLSignature.dsig) { xmlSecAddChild(x509, name, $0) } }
            guard let node else { throw VouchError(.crypto, "an X509Certificate element cannot be added") }
            withXMLChars(Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])) { xmlNodeSetContent(node, $0) }
        }

        var memory: UnsafeMutablePointer<xmlChar>?
        var size: Int32 = 0
        xmlDocDumpMemory(doc, &memory, &size)
        guard let memory, size > 0 else { throw VouchError(.crypto, "the signed XML document cannot be serialised") }
        defer { vouch_xml_free(memory) }
        return Array(UnsafeBufferPointer(start: memory, count: Int(size)))
    }
}

/// `text` as a NUL-terminated xmlChar string for the duration of `body`.
private func withXMLChars<T>(_ text: String, _ body: (UnsafePointer<xmlChar>) -> T) -> T {
    text.withCString { $0.withMemoryRebound(to: xmlChar.self, capacity: text.utf8.count + 1, body) }
}
