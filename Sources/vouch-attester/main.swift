// vouch-attester: runs on an inference host; keeps the AK in the TPM, registers the host with the
// broker and serves local agents on a Unix socket.
import Foundation
import VouchAttesterKit
import VouchCore
import VouchHTTPClient
import VouchHTTPServer
import VouchTPMWire

let usage = """
usage: vouch-attester --broker URL --ca FILE --tcti TCTI --socket PATH [options]
  --broker URL      broker base URL, e.g. https://127.0.0.1:8443
  --ca FILE         the broker's CA certificate (PEM): the only CA trusted for the broker's TLS
  --tcti TCTI       TPM access: swtpm:host=127.0.0.1,port=2321 or device:/dev/tpmrm0
  --socket PATH     Unix socket for local agents (created mode 0660)
  --ak TYPE         attestation key type: ecc-p256 (default) or rsa-2048
  --hostname NAME   name reported to the broker (default: this machine's host name)
  --register-timeout DUR  keep retrying registration this long (default 60s)
"""

func fail(_ message: String, code: Int32 = 2) -> Never {
    FileHandle.standardError.write(Data("vouch-attester: \(message)\n".utf8))
    exit(code)
}

let args: Arguments
do {
    args = try Arguments(Array(CommandLine.arguments.dropFirst()),
                         options: ["broker", "ca", "tcti", "socket", "ak", "hostname", "register-timeout"], flags: ["help"])
} catch { fail("\(error)\n\(usage)") }
if args.has("help") { print(usage); exit(0) }

do {
    guard let akKind = KeyTemplates.AKKind(rawValue: args["ak"] ?? "ecc-p256") else { fail("--ak must be ecc-p256 or rsa-2048") }
    let brokerClient = HTTPClient(.https(baseURL: try args.required("broker"), caFile: try args.required("ca")))
    let hostname = args["hostname"] ?? ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
    let attester = Attester(config: AttesterConfig(tcti: try args.required("tcti"), akKind: akKind, hostname: hostname), broker: brokerClient)
    let timeout = try parseDuration(args["register-timeout"] ?? "60s", field: "--register-timeout")
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        do {
            let id = try attester.register()
            Runtime.log("registered as host \(id); AK (\(akKind.rawValue)) activated")
            break
        } catch {
            // Only transport faults are retried; a refusal from the broker is final.
            if let e = error as? VouchError, e.code == .http, Date() < deadline {
                usleep(500_000)
                continue
            }
            fail("registration failed: \(error)", code: 1)
        }
    }
    let server = try HTTPServer(listen: .unix(path: try args.required("socket"), mode: 0o660), threads: 2, handler: attester.httpHandler)
    Runtime.log("vouch-attester serving agents on \(try args.required("socket"))")
    Runtime.waitForTermination()
    server.stop()
} catch {
    fail("\(error)", code: 1)
}
