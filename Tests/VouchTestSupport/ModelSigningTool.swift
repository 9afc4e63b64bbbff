import Foundation

/// The unmodified `model-signing` CLI from PyPI (OpenSSF Model Signing), in a throwaway virtualenv:
/// tests sign model directories with it and check that Vouch verifies what it wrote.
/// pyOpenSSL is installed beside it: its certificate module imports it without declaring it.
public enum ModelSigningTool {
    public static let packages = ["model-signing==1.1.1", "pyopenssl==26.4.0"]

    /// The venv's python (made once per temporary directory).
    public static func python() throws -> String {
        try PythonVenv.python("vouch-model-signing-venv", packages: packages, probe: "import model_signing, OpenSSL")
    }

    /// `model_signing sign key DIR --private_key KEY --signature SIG`.
    public static func signWithKey(_ dir: String, privateKey: String, signature: String) throws {
        try run(["sign", "key", dir, "--private_key", privateKey, "--signature", signature])
    }

    /// `model_signing sign certificate DIR --private_key KEY --signing_certificate CERT --certificate_chain CHAIN...`.
    public static func signWithCertificate(_ dir: String, privateKey: String, certificate: String, chain: [String], signature: String) throws {
        try run(["sign", "certificate", dir, "--private_key", privateKey, "--signing_certificate", certificate, "--signature", signature]
                + chain.flatMap { ["--certificate_chain", $0] })
    }

    /// Runs `python -m model_signing ARGS`; throws with its output when it fails.
    public static func run(_ args: [String]) throws {
        let r = try PythonVenv.run(try python(), ["-m", "model_signing"] + args)
        guard r.status == 0 else { throw TestFailure("model_signing \(args.prefix(2).joined(separator: " ")) failed: \(r.stdout.suffix(300)) \(r.stderr.suffix(500))") }
    }
}
