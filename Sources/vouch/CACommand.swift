import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchRuntime

/// `vouch ca create-root|create-intermediate|rotate`: an offline root, online intermediates, rotation.
func caCommand(_ argv: [String]) throws -> Int32 {
    switch argv.first {
    case "create-root":
        let args = try Arguments(Array(argv.dropFirst()), options: ["out", "name", "years"])
        let out = try args.required("out")
        guard !Files.exists(out + "/ca.key") else { throw VouchError(.conflict, "\(out)/ca.key exists; refusing to overwrite a CA key") }
        let years = Double(args["years"] ?? "20") ?? 20
        let now = Date()
        let root = try CertificateAuthority.create(commonName: args["name"] ?? "Vouch Root CA", key: try PrivateKey.generate(.p384),
                                                   notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(years * 365 * 86400), pathLength: 1)
        try Files.makeDirectory(out)
        try Files.writeAtomically(Array(try root.key.pem.utf8), to: out + "/ca.key", mode: 0o600)
        try Files.writeAtomically(Array(try root.certificate.pem.utf8), to: out + "/ca.pem")
        print("root CA \(root.certificate.subject) in \(out) (keep \(out)/ca.key offline)")
        return 0
    case "create-intermediate":
        let args = try Arguments(Array(argv.dropFirst()), options: ["root", "out", "name", "days"])
        let rootDir = try args.required("root"), out = try args.required("out")
        guard !Files.exists(out + "/ca.key") else { throw VouchError(.conflict, "\(out)/ca.key exists; refusing to overwrite a CA key") }
        let root = try CertificateAuthority(key: PrivateKey(pem: Files.readString(rootDir + "/ca.key")), certificate: Certificate(pem: Files.readString(rootDir + "/ca.pem")))
        let now = Date()
        let days = Double(args["days"] ?? "365") ?? 365
        let intermediate = try root.issueIntermediate(commonName: args["name"] ?? "Vouch Issuing CA", key: try PrivateKey.generate(.p256),
                                                      notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(days * 86400))
        try Files.makeDirectory(out)
        try Files.writeAtomically(Array(try intermediate.key.pem.utf8), to: out + "/ca.key", mode: 0o600)
        try Files.writeAtomically(Array(try intermediate.certificate.pem.utf8), to: out + "/ca.pem")
        try Files.writeAtomically(Array(try root.certificate.pem.utf8), to: out + "/chain.pem")
        print("intermediate CA \(intermediate.certificate.subject) in \(out), signed by \(root.certificate.subject)")
        print("use it as vouchd's --ca-dir, or stage it as CA-DIR/next and run `vouch ca rotate` later")
        return 0
    case "rotate":
        let args = try Arguments(Array(argv.dropFirst()), options: CLI.brokerOptions)
        let (client, _) = try CLI.broker(args, admin: true)
        let pem = try client.raw("POST", "/v1/ca/rotate")
        let chain = try Certificate.chain(pem: String(decoding: pem.body, as: UTF8.self))
        print("now issuing with \(chain[0].subject); the previous CA keeps signing CRLs and OCSP answers for what it issued")
        return 0
    default:
        throw VouchError(.usage, "give a subcommand: create-root, create-intermediate or rotate")
    }
}
