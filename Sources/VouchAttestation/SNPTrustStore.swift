import Foundation
import VouchCore
import VouchCrypto
import VouchTEEWire

/// AMD's SEV-SNP key hierarchy, per product line: the ARK (AMD Root Key, self-signed, pinned by
/// the SHA-256 of its DER), the ASK (AMD SEV Key, which certifies VCEKs) and the ASVK (AMD SEV
/// VLEK Key, which certifies VLEKs). The store only holds and pins certificates; `SNPVerifier`
/// checks the signatures between them (once per product and key kind, then cached).
public struct SNPTrustStore: Sendable {
    /// One product line's certificates.
    public struct ProductRoots: Sendable {
        public let ark: Certificate
        /// SHA-256 of the ARK's DER that the verifier requires (the pin).
        public let arkPin: [UInt8]
        public let ask: Certificate?
        public let asvk: Certificate?

        public init(ark: Certificate, arkPin: [UInt8], ask: Certificate?, asvk: Certificate?) {
            self.ark = ark
            self.arkPin = arkPin
            self.ask = ask
            self.asvk = asvk
        }

        /// The intermediate that certifies the key kind the report names.
        public func intermediate(for key: SNPSigningKey) -> Certificate? {
            switch key {
            case .vcek: ask
            case .vlek: asvk
            case .none: nil
            }
        }
    }

    /// SHA-256 of AMD's ARK certificates (DER), as published by AMD's Key Distribution Service
    /// (`https://kdsintf.amd.com/vcek/v1/{Milan,Genoa,Turin}/cert_chain`) and listed in
    /// certs/amd/README.md.
    public static let amdARKSHA256: [SNPProduct: String] = [
        .milan: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        .genoa: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        .turin: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ]

    /// How the ARKs of a directory are pinned.
    public enum Pinning: Sendable {
        /// Each ARK must be AMD's (`amdARKSHA256`): a directory holding anything else is refused.
        case amd
        /// The ARKs the directory holds are trusted as they are (their own SHA-256 is the pin):
        /// for test chains such as the software TEE's, never for production.
        case asLoaded
    }

    public let products: [SNPProduct: ProductRoots]

    public init(products: [SNPProduct: ProductRoots]) {
        self.products = products
    }

    /// Reads every `*.pem` file in `directory` (each holding one or more certificates, such as
    /// AMD's `cert_chain`: the ASK or ASVK, then the ARK). Certificates are sorted by their subject
    /// common name as AMD names them: `ARK-<Product>` (self-signed root), `SEV-<Product>` (ASK),
    /// `SEV-VLEK-<Product>` (ASVK). Refused with `config`: an unreadable directory, a certificate
    /// with another name, two different certificates for one role, an intermediate without its
    /// product's ARK, an ARK that is not self-issued, and with `.amd` pinning an ARK that is not
    /// AMD's.
    public init(directory: URL, pinning: Pinning = .amd) throws {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory.path) else {
            throw VouchError(.config, "SEV-SNP roots directory cannot be read", context: ["path": directory.path])
        }
        var files: [(name: String, pem: String)] = []
        for name in names.sorted() where name.hasSuffix(".pem") {
            files.append((name, try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)))
        }
        try self.init(pemFiles: files, source: directory.path, pinning: pinning)
    }

    /// The same from PEM texts (`name`: for messages only; `source`: where they came from).
    public init(pemFiles: [(name: String, pem: String)], source: String, pinning: Pinning = .amd) throws {
        let directory = URL(fileURLWithPath: source)
        var arks: [SNPProduct: Certificate] = [:], asks: [SNPProduct: Certificate] = [:], asvks: [SNPProduct: Certificate] = [:]
        func put(_ cert: Certificate, _ product: SNPProduct, into table: inout [SNPProduct: Certificate], file: String) throws {
            if let existing = table[product] {
                guard try existing.der == cert.der else {
                    throw VouchError(.config, "SEV-SNP roots directory holds two different certificates for one role",
                                     context: ["path": directory.path, "file": file, "subject": cert.subject])
                }
                return
            }
            table[product] = cert
        }
        for (name, text) in pemFiles {
            let path = directory.appendingPathComponent(name)
            for cert in try Certificate.chain(pem: text) {
                guard let (role, product) = Self.role(of: cert) else {
                    throw VouchError(.config, "SEV-SNP roots directory holds a certificate that is not an AMD ARK, ASK or ASVK",
                                     context: ["path": path.path, "subject": cert.subject])
                }
                switch role {
                case .ark:
                    guard cert.isSelfSigned else {
                        throw VouchError(.config, "an ARK certificate is not self-issued", context: ["path": path.path, "subject": cert.subject])
                    }
                    try put(cert, product, into: &arks, file: name)
                case .ask: try put(cert, product, into: &asks, file: name)
                case .asvk: try put(cert, product, into: &asvks, file: name)
                }
            }
        }
        var products: [SNPProduct: ProductRoots] = [:]
        for product in Set(asks.keys).union(asvks.keys).union(arks.keys) {
            guard let ark = arks[product] else {
                throw VouchError(.config, "SEV-SNP roots directory has an ASK or ASVK without its ARK", context: ["path": directory.path, "product": product.rawValue])
            }
            let digest = Crypto.sha256(try ark.der)
            let pin: [UInt8]
            switch pinning {
            case .asLoaded: pin = digest
            case .amd:
                pin = try Hex.decode(Self.amdARKSHA256[product] ?? "")
                guard digest == pin else {
                    throw VouchError(.config, "an ARK in the SEV-SNP roots directory is not AMD's",
                                     context: ["path": directory.path, "product": product.rawValue, "expected": Hex.encode(pin), "got": Hex.encode(digest)])
                }
            }
            products[product] = ProductRoots(ark: ark, arkPin: pin, ask: asks[product], asvk: asvks[product])
        }
        guard !products.isEmpty else {
            throw VouchError(.config, "SEV-SNP roots directory holds no ARK", context: ["path": directory.path])
        }
        self.init(products: products)
    }

    enum Role { case ark, ask, asvk }

    /// The role and product line a certificate's subject CN names (AMD's naming).
    static func role(of cert: Certificate) -> (Role, SNPProduct)? {
        guard let cn = commonName(cert.subject) else { return nil }
        for product in SNPProduct.allCases {
            switch cn {
            case "ARK-\(product.rawValue)": return (.ark, product)
            case "SEV-\(product.rawValue)": return (.ask, product)
            case "SEV-VLEK-\(product.rawValue)": return (.asvk, product)
            default: continue
            }
        }
        return nil
    }

    /// The CN of an RFC 2253 name string (`CN=…,O=…`): the last CN attribute.
    static func commonName(_ name: String) -> String? {
        var result: String?
        for part in name.split(separator: ",") where part.hasPrefix("CN=") { result = String(part.dropFirst(3)) }
        return result
    }
}
