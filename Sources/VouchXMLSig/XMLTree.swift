import VouchCore

/// An element of a parsed XML document as plain Swift values (no libxml2 type): its local name,
/// namespace URI, attributes, child elements and the concatenation of its direct text children.
public struct XMLElementNode: Sendable, Equatable {
    public var name: String
    public var namespace: String?
    public var attributes: [XMLAttributeNode]
    public var children: [XMLElementNode]
    public var text: String

    /// The value of the attribute `name` in `namespace` (nil: no namespace), if present.
    public func attribute(_ name: String, namespace: String? = nil) -> String? {
        attributes.first { $0.name == name && $0.namespace == namespace }?.value
    }

    /// The child elements called `name` in `namespace`.
    public func children(named name: String, namespace: String?) -> [XMLElementNode] {
        children.filter { $0.name == name && $0.namespace == namespace }
    }

    /// Every element of this subtree (this one included) called `name` in `namespace`; every
    /// element when `name` is nil.
    func descendants(named name: String?, namespace: String? = nil) -> [XMLElementNode] {
        var found: [XMLElementNode] = []
        var stack = [self]
        while let node = stack.popLast() {
            if name == nil || (node.name == name && node.namespace == namespace) { found.append(node) }
            stack.append(contentsOf: node.children)
        }
        return found
    }
}

/// One attribute: local name, namespace URI (nil: none) and value.
public struct XMLAttributeNode: Sendable, Equatable {
    public var name: String
    public var namespace: String?
    public var value: String
}

/// A document whose enveloped XML-DSig signature verified with the key it was checked with.
/// Only `XMLSignature.verifyEnveloped` makes one; `root` is the signed document without its
/// `ds:Signature` element.
public struct VerifiedXMLDocument: Sendable {
    public let root: XMLElementNode
    /// The DER certificate whose key verified the signature.
    public let signerCertificateDER: [UInt8]

    init(root: XMLElementNode, signerCertificateDER: [UInt8]) {
        self.root = root
        self.signerCertificateDER = signerCertificateDER
    }
}

extension ErrorCode {
    /// Not well-formed XML, over the size or depth bound, or not one enveloped signature.
    public static let xmlDocumentMalformed = ErrorCode("xml_document_malformed", status: 422)
    /// A DOCTYPE (internal or external subset) or entity reference: refused before any use.
    public static let xmlDocumentRefused = ErrorCode("xml_document_refused", status: 422)
    /// The signature references something other than the whole document, or uses an algorithm
    /// or transform outside the allowed set.
    public static let xmlSignatureShape = ErrorCode("xml_signature_shape", status: 403)
    /// The XML-DSig signature (digest or signature value) does not verify with the given key.
    public static let xmlSignatureInvalid = ErrorCode("xml_signature_invalid", status: 403)
}
