internal import CXMLSec
import VouchCore

/// libxml2 and libxmlsec1 are initialised once per process (libxmlsec1 with its OpenSSL back end).
let libraryReady: Bool = {
    xmlInitParser()
    guard xmlSecInit() == 0, vouch_xmlsec_check_version() == 1,
          xmlSecOpenSSLAppInit(nil) == 0, xmlSecOpenSSLInit() == 0 else { return false }
    xmlSecErrorsDefaultCallbackEnableOutput(0)
    return true
}()

/// libxml2 writes its errors (the parser's, C14N's) to stderr unless given a handler, and the
/// handler is per thread: every call that parses or canonicalises sets this silent one first
/// (failures reach callers as typed errors instead).
func silenceLibxml2() { xmlSetStructuredErrorFunc(nil) { _, _ in } }

/// The one place libxml2/libxmlsec1 return values become typed errors.
func xmlCheck(_ ok: Bool, _ code: ErrorCode, _ operation: String) throws {
    guard ok else { throw VouchError(code, "\(operation) failed") }
}

/// A parsed libxml2 document, freed in deinit.
final class XMLDocumentHandle {
    private let doc: xmlDocPtr

    init(bytes: [UInt8]) throws {
        try xmlCheck(libraryReady, .crypto, "libxmlsec1 initialisation")
        silenceLibxml2()
        // No network, no entity substitution (no XML_PARSE_NOENT), no DTD loading
        // (no XML_PARSE_DTDLOAD / DTDATTR), libxml2's default size limits (no XML_PARSE_HUGE).
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOERROR.rawValue | XML_PARSE_NOWARNING.rawValue)
        let parsed = bytes.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                xmlReadMemory($0, Int32(buf.count), "document.xml", nil, options)
            }
        }
        guard let parsed else { throw VouchError(.xmlDocumentMalformed, "XML document is not well formed") }
        doc = parsed
        guard doc.pointee.intSubset == nil, doc.pointee.extSubset == nil else {
            throw VouchError(.xmlDocumentRefused, "XML document carries a DOCTYPE (DTDs and entities are refused)")
        }
    }

    deinit { xmlFreeDoc(doc) }

    /// The document as Swift values (check 3: no entity references, bounded depth and count).
    func tree() throws -> XMLElementNode {
        guard let root = xmlDocGetRootElement(doc) else { throw VouchError(.xmlDocumentMalformed, "XML document has no root element") }
        var budget = XMLSignature.maxElements, namespaces = XMLSignature.maxNamespaceDeclarations
        return try element(root, depth: 1, budget: &budget, namespaces: &namespaces)
    }

    /// One element, within the document's budgets: elements, depth, namespace declarations (all
    /// of them together: inclusive canonicalisation copies every namespace in scope onto each
    /// element, so many declarations over many elements cost libxml2 time far beyond the
    /// document's size) and attributes per element.
    private func element(_ node: xmlNodePtr, depth: Int, budget: inout Int, namespaces: inout Int) throws -> XMLElementNode {
        budget -= 1
        guard depth <= XMLSignature.maxDepth, budget >= 0 else {
            throw VouchError(.xmlDocumentMalformed, "XML document is deeper or larger than allowed")
        }
        var ns = node.pointee.nsDef
        while let n = ns {
            namespaces -= 1
            guard namespaces >= 0 else {
                throw VouchError(.xmlDocumentMalformed, "XML document declares more namespaces than allowed",
                                 context: ["expected": "<= \(XMLSignature.maxNamespaceDeclarations)"])
            }
            ns = n.pointee.next
        }
        var attributes: [XMLAttributeNode] = []
        var attr = node.pointee.properties
        while let a = attr {
            guard attributes.count < XMLSignature.maxAttributes else {
                throw VouchError(.xmlDocumentMalformed, "an XML element carries more attributes than allowed", context: ["expected": "<= \(XMLSignature.maxAttributes)"])
            }
            var value = ""
            if let raw = xmlNodeListGetString(doc, a.pointee.children, 1) {
                value = String(cString: raw)
                vouch_xml_free(raw)
            }
            attributes.append(XMLAttributeNode(name: String(cString: a.pointee.name), namespace: a.pointee.ns.map { String(cString: $0.pointee.href) }, value: value))
            attr = a.pointee.next
        }
        var children: [XMLElementNode] = []
        var text = ""
        var child = node.pointee.children
        while let c = child {
            switch c.pointee.type {
            case XML_ELEMENT_NODE: children.append(try element(c, depth: depth + 1, budget: &budget, namespaces: &namespaces))
            case XML_TEXT_NODE, XML_CDATA_SECTION_NODE: if let content = c.pointee.content { text += String(cString: content) }
            case XML_ENTITY_REF_NODE, XML_ENTITY_NODE, XML_DTD_NODE:
                throw VouchError(.xmlDocumentRefused, "XML document carries an entity reference")
            default: break
            }
            child = c.pointee.next
        }
        return XMLElementNode(name: String(cString: node.pointee.name), namespace: node.pointee.ns.map { String(cString: $0.pointee.href) },
                              attributes: attributes, children: children, text: text)
    }

    /// Check 5: libxmlsec1 verifies the root's `ds:Signature` child with the certificate's key.
    func verifySignature(signerCertificateDER: [UInt8]) throws {
        guard let root = xmlDocGetRootElement(doc), let signature = Self.signatureChild(of: root) else {
            throw VouchError(.xmlSignatureShape, "XML signature refused: no ds:Signature child of the root element")
        }
        silenceLibxml2()
        let context = try DSigContext()
        try context.setKey(certificateDER: signerCertificateDER)
        try context.verify(signature)
    }

    private static func signatureChild(of root: xmlNodePtr) -> xmlNodePtr? {
        var child = root.pointee.children
        while let c = child {
            if c.pointee.type == XML_ELEMENT_NODE, String(cString: c.pointee.name) == "Signature",
               let ns = c.pointee.ns, String(cString: ns.pointee.href) == XMLSignature.dsig { return c }
            child = c.pointee.next
        }
        return nil
    }
}

/// A libxmlsec1 signature context, freed in deinit (with the key it owns).
final class DSigContext {
    private let ctx: xmlSecDSigCtxPtr

    init() throws {
        guard let ctx = xmlSecDSigCtxCreate(nil) else { throw VouchError(.crypto, "xmlSecDSigCtxCreate failed") }
        self.ctx = ctx
        // Only same-document empty URIs; no key manager, so KeyInfo never supplies a key.
        ctx.pointee.enabledReferenceUris = xmlSecTransformUriType(xmlSecTransformUriTypeEmpty)
    }

    deinit { xmlSecDSigCtxDestroy(ctx) }

    func setKey(certificateDER der: [UInt8]) throws {
        let key = der.withUnsafeBufferPointer {
            xmlSecOpenSSLAppKeyLoadMemory($0.baseAddress, UInt32($0.count), xmlSecKeyDataFormatCertDer, nil, nil, nil)
        }
        guard let key else { throw VouchError(.xmlSignatureInvalid, "the signer certificate's key cannot be loaded") }
        ctx.pointee.signKey = key
    }

    func verify(_ signature: xmlNodePtr) throws {
        try xmlCheck(xmlSecDSigCtxVerify(ctx, signature) == 0, .xmlSignatureInvalid, "XML-DSig processing")
        try xmlCheck(ctx.pointee.status == xmlSecDSigStatusSucceeded, .xmlSignatureInvalid, "XML-DSig signature verification")
    }
}
