// vouch-attester: runs on an inference host; keeps the AK in the TPM (or, in a confidential VM, takes
// the CPU TEE's reports), registers the host with the broker and serves local agents on a Unix socket.
import Foundation
import VouchAttesterKit
import VouchCore
import VouchHTTPClient
import VouchHTTPServer
import VouchRuntime
import VouchTPMWire

let usage = """
usage: vouch-attester --broker URL --ca FILE --tcti TCTI --socket PATH [options]
       vouch-attester --broker URL --ca FILE --tee sev-snp|tdx --socket PATH [--vcek FILE] [options]
       vouch-attester --broker URL --ca FILE --tee azure-snp-vtpm --tcti TCTI --vcek FILE --socket PATH [options]
       vouch-attester --broker URL --ca FILE --simulate-tee sev-snp|tdx|azure-snp-vtpm --socket PATH
                      [--simulate-tee-options FILE] [--simulate-tee-platform DIR] [options]
       vouch-attester simulated-tee-platform DIR [--gpus N]
       vouch-attester gpu-evidence --nonce HEX [--out FILE]
                      [--simulate-gpus N [--simulate-tee-platform DIR] [--simulate-tee-options FILE]]
       vouch-attester measure-model --tcti TCTI --model-log FILE PATH... [--signature FILE | --no-signature]
       vouch-attester proxy --upstream URL --listen ADDR --cert FILE --key FILE|--tpm-key DIR/NAME --socket PATH
                      [--issuance-proof FILE]
                      [--max-body BYTES] [--max-response BYTES] [--timeout DUR] [--sign-routes LIST]
       vouch-attester --simulate N --broker URL --ca FILE (--listen ADDR:PORT | --push) [--labels K=V,...]
                      [--hostname PREFIX] [--enroll-agents] [--drift-after DUR [--drift-record FILE]]
       vouch-attester -h | --help | --version
  --broker URL      broker base URL, e.g. https://127.0.0.1:8443
  --ca FILE         the broker's CA certificate (PEM): the only CA trusted for the broker's TLS
  --tcti TCTI       TPM access: swtpm:host=127.0.0.1,port=2321 or device:/dev/tpmrm0
  --socket PATH     Unix socket for local agents (created mode 0660)
  --ak TYPE         attestation key type: ecc-p256 (default) or rsa-2048
  --ek TYPE         endorsement key that registers the host: rsa (default; EK certificate in NV
                    0x01c00002 or 0x01c00012) or ecc (P-256 in 0x01c0000a or 0x01c00014, else
                    P-384 in 0x01c00016, as swtpm makes). The host id follows the EK: switching
                    registers a new host
  --hostname NAME   name reported to the broker (default: this machine's host name)
  --register-timeout DUR  keep retrying registration this long (default 60s)
  --event-log FILE  firmware event log sent with quotes
                    (default \(AttesterConfig.systemEventLog) when readable)
  --model-log FILE  model measurement log sent with quotes (written by measure-model)
  --labels K=V,...  labels sent at registration; policies select hosts by them
  --state-dir DIR   host certificate and key (mode 0600) from activation (default /var/lib/vouch-attester)
  --listen ADDR:PORT  pull mode: serve the broker's quote (with --tee, evidence) requests here over
                    mutual TLS (host certificate; only the broker's client certificate is answered)
  --advertise URL   the URL the broker reaches --listen at (default https://ADDR:PORT)
  --push-interval DUR  push mode (no --listen): report this often (default: 80 % of the policy's
                    re-attestation interval, which the broker sends with each nonce)
  --watch-interval DUR  drift watcher (TPM hosts): read the PCRs the broker's last quote covered
                    (and PCR 23 and the model log, with --model-log) this often (default 250ms;
                    0 turns the watcher off). A change since that quote is reported at once: push
                    mode pushes a fresh quote, pull mode asks the broker to pull now
                    (POST /v1/hosts/ID/hint); at most one such report a second
  --workload-socket PATH  serve the SPIFFE Workload API here (created mode 0666: workloads are
                    told apart by their peer credentials), with --workload-entries FILE: the
                    registration entries (YAML: entries: [{agent, selectors: [unix:uid:N, ...]}]);
                    see docs/agents.md
  --workload-connections-per-user N  connections one uid may hold there (default 512 of 1,024)

--tee sev-snp|tdx: this host is a confidential VM. Reports come from the kernel's configfs-tsm
interface (/sys/kernel/config/tsm/report) in place of TPM quotes: no --tcti, --ak, --ek,
--model-log. The host key (ECDSA P-256, STATE-DIR/tee-host.key, mode 0600) is made once: it is
the host certificate's key and, for a VLEK-signed SEV-SNP guest or a TDX guest, the host's
identity (a VCEK-signed guest is its chip). Push mode, or pull mode with --listen: the broker
asks POST /v1/evidence over mutual TLS, the host certificate (the host key) on this side. Agents
enroll with software keys (no --tpm-key).
  --vcek FILE       SEV-SNP: the VCEK (or VLEK) certificate, DER or PEM, when the host hands out
                    no certificate table with the report
  --event-log FILE  TDX: the CC event log (CCEL) sent with each quote (default: none)

--tee azure-snp-vtpm: an Azure confidential VM (SEV-SNP under Azure's paravisor). Each piece of
evidence is the HCL report read from the vTPM's NV index 0x01400001 after writing the request's
64-byte binding into NV index 0x01400002 (its user data), with the VCEK, and a quote by the vTPM's
AK (persistent handle 0x81000003) over the PCRs the broker names, with --event-log and
--model-log as on a TPM host. Push or pull mode as above; no --ak, --ek. The host key is kept as
for --tee above; the broker pins the vTPM's endorsement key from the HCL report.
  --tcti TCTI       the vTPM (device:/dev/tpmrm0)
  --vcek FILE       the VCEK certificate, DER or PEM (Azure's IMDS serves it:
                    http://169.254.169.254/metadata/THIM/amd/certification, field vcekCert)

--simulate-tee sev-snp|tdx|azure-snp-vtpm: the same, on the software TEE, INSECURE (keys in files: tests and
demos only; a broker accepts it only with --allow-simulated-hosts and the platform's roots).
  --simulate-tee-platform DIR  the simulated machine: its keys and certificates, made once and
                    kept (default STATE-DIR/simulated-tee); publishes DIR/roots (for vouchd
                    --simulated-tee-roots) and DIR/tdx-collateral (for vouchd --tdx-collateral).
                    Guests sharing DIR share the machine (VCEK-signed guests share its chip)
  --simulate-tee-options FILE  key=value lines read at every report: measurement=HEX (48 bytes),
                    debug=true|false, signer=vcek|vlek (SEV-SNP), pcrN=HEX (azure-snp-vtpm: a
                    SHA-256 PCR of the simulated vTPM, default zeros); no file: the defaults (the
                    measurement `simulated-tee-platform` prints, no debug, vcek). A simulated
                    Azure CVM keeps its vTPM (RSA AK and EK) in STATE-DIR/simulated-vtpm.json

--simulate N: N software hosts in this process for scale tests, INSECURE (software AKs, no TPM;
the broker refuses them unless started with --allow-simulated-hosts). Pull mode on --listen, or
push mode with --push (each host pushes once registered, then at 80 % of the policy's
interval). --enroll-agents enrolls one agent per host once registered; --drift-after DUR then
makes every host's PCR 7 drift (benchmarks of revocation at scale), and each host reports it at
once as a real attester's drift watcher does: a push host pushes a fresh quote, a pull host
hints (POST /v1/hosts/ID/hint). --drift-record FILE: JSON written once the agents are enrolled,
{"hosts": [{"hostId", "serial"}]}, and again after the drift with each host's "driftAt" (Unix
time, seconds, the instant its PCR 7 changed). With --watch-interval 0 no host reports its drift
(as without a watcher): the next scheduled round finds it.

GPUs beside a confidential VM (composite evidence, docs/evidence.md): with every report the GPUs'
SPDM evidence for the broker's nonce goes too, and the report binds their digests.
  --gpus nvml       with --tee: the GPUs through NVML (libnvidia-ml.so.1, confidential computing on)
  --simulate-gpus N  with --simulate-tee: N (1-16) GPUs of the software GPU board in
                    --simulate-tee-platform DIR, INSECURE (tests and demos only; a broker accepts
                    them only from a simulated host and with DIR/roots/nvidia-gpu.pem trusted);
                    --simulate-tee-options lines gpuK.blockB=HEX change what GPU K reports

simulated-tee-platform DIR: make (or load) a simulated TEE machine in DIR and publish its roots
and TDX collateral, before a broker that must trust them starts; prints where they are. --gpus N
also makes (or loads) its simulated NVIDIA GPU board and publishes DIR/roots/nvidia-gpu.pem,
DIR/roots/nvidia-rim.pem and the driver and VBIOS RIMs in DIR/rims.

gpu-evidence: every GPU's SPDM evidence for --nonce (64 hex digits: the verifier's 32-byte
nonce) as NVIDIA's PPCIe JSON bundle ([{"evidence": base64 transcript, "certificate": base64 PEM
chain}], what `vouch evidence verify --kind nvidia-gpu` reads), on stdout or to --out FILE. From
the driver through NVML (libnvidia-ml.so.1, confidential computing on), or with --simulate-gpus N
(1-16) from the software GPU board in --simulate-tee-platform DIR (default
STATE-DIR/simulated-tee), INSECURE; --simulate-tee-options FILE lines gpuK.blockB=HEX (GPU K,
0-based, reports 48 bytes HEX as SPDM block B, 1-10) are read at every collection.

measure-model: hash model artefacts (files, or directories walked recursively) with SHA-256,
reset PCR 23, extend it with one event per artefact in name order, and write the log (TCG
Canonical Event Log JSON) to --model-log. Prints the manifest digest. A directory that holds
model.sig at its top (an OpenSSF model signature, as `model_signing sign` writes it) is measured
with it: the signature file is recorded, and extended after the artefacts, as that directory's
signature, not as an artefact. The broker verifies it against its policy's model.publishers;
here it is only read (a file that is not a Sigstore bundle is refused) and what it claims is
printed as unverified.
  --signature FILE  the signature of the one directory given, kept elsewhere or under another name
  --no-signature    measure model.sig as an ordinary file and record no signature (for a broker
                    older than signature records, which refuses them as model_log_malformed)

proxy: the receipt proxy, in front of an OpenAI-compatible inference server on this host (vLLM,
llama.cpp, Ollama). Every request is forwarded unchanged; every 2xx answer of an inference
endpoint (--sign-routes) comes back unchanged with a receipt signed with the agent's key: a JSON answer with the headers Vouch-Receipt (base64
of the receipt bundle) and Vouch-Receipt-Salt (hex, opens the request commitment); a streamed
answer (text/event-stream) is passed on as it arrives, then one last event, vouch-receipt, with
{"bundle", "salt", "length"}. Other statuses and routes pass through without a receipt; an upstream that fails answers
502 or 504 JSON {code, message} (docs/receipts.md, "The receipt proxy").
  --upstream URL    the inference server: http://127.0.0.1:PORT (plain http only to a loopback
                    address), https://HOST[:PORT] (system trust store) or unix:PATH
  --listen ADDR     ADDR:PORT (IPv4, plain HTTP) or unix:PATH (created mode 0660)
  --cert FILE       the agent's certificate chain (PEM), as `vouch enroll` writes it
  --key FILE        the agent's private key
  --tpm-key DIR/NAME  instead of --key: the TPM-bound agent key `vouch enroll --tpm-key` wrote
                    (NAME.tpm.pub, NAME.tpm.priv), signing through the attester at --socket PATH
  --issuance-proof FILE  the certificate's issuance log proof, put in every bundle: the JSON the
                    broker answers to GET /v1/log/proof?certificate=<SHA-256 of the certificate>
  --max-body BYTES  largest request body (default 4194304; larger: 413 body_too_large)
  --max-response BYTES  largest answer (default 67108864; larger: 502 upstream_response_too_large)
  --timeout DUR     longest an upstream answer may take, streams included (default 10m)
  --sign-routes LIST  the endpoints whose answers are signed, "METHOD /path" separated by commas
                    (default: POST /v1/chat/completions, /v1/completions, /v1/embeddings,
                    /v1/responses, /api/chat, /api/generate, /api/embed); others pass unsigned
"""

/// One line on stderr, then exit: 2 for a usage error (pointing at --help), 1 for a failure.
func fail(_ message: String, code: Int32 = 2) -> Never {
    let line = message.split(whereSeparator: \.isNewline).joined(separator: "; ")
    FileHandle.standardError.write(Data("vouch-attester: \(line)\(code == 2 ? " (vouch-attester --help)" : "")\n".utf8))
    exit(code)
}

/// Exits 2 for a usage error, 1 for anything else; one line, without the code of a usage error.
func fail(_ error: Error, prefix: String = "") -> Never {
    if let e = error as? VouchError, e.code == .usage { fail(prefix + e.message) }
    fail(prefix + ((error as? VouchError)?.message ?? "\(error)"), code: 1)
}

/// A duration option; a malformed one is a usage error.
func duration(_ text: String, _ option: String) throws -> TimeInterval {
    do { return try parseDuration(text, field: option) } catch let e as VouchError { throw VouchError(.usage, e.message, context: e.context) }
}

/// `--watch-interval`: 0 (off), milliseconds (`250ms`) or a duration as elsewhere (`1s`).
func watchDuration(_ text: String) throws -> TimeInterval {
    if text == "0" { return 0 }
    if text.hasSuffix("ms") {
        guard let n = Double(text.dropLast(2)), n > 0, n.isFinite else { throw VouchError(.usage, "--watch-interval takes 0, milliseconds (250ms) or a duration (1s)") }
        return n / 1000
    }
    return try duration(text, "--watch-interval")
}

let words = Array(CommandLine.arguments.dropFirst())
if Arguments.asksForHelp(words) { print(usage); exit(0) }
if Arguments.asksForVersion(words) { print("vouch-attester \(VouchVersion.current)"); exit(0) }

/// `--labels K=V,...` as a dictionary (a usage error if malformed).
func parseLabels(_ text: String?) -> [String: String] {
    var labels: [String: String] = [:]
    for pair in (text ?? "").split(separator: ",") {
        let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2, !kv[0].isEmpty else { fail("--labels takes K=V pairs separated by commas") }
        labels[kv[0]] = kv[1]
    }
    return labels
}

if CommandLine.arguments.dropFirst().first == "measure-model" {
    do {
        let margs = try Arguments(Array(CommandLine.arguments.dropFirst(2)), options: ["tcti", "model-log", "signature"], flags: ["no-signature"], positional: 10_000)
        guard !(margs.has("no-signature") && margs["signature"] != nil) else { throw VouchError(.usage, "--signature and --no-signature exclude each other") }
        let measured = try ModelMeasurement.measure(paths: margs.positional, signature: margs["signature"], recordSignatures: !margs.has("no-signature"),
                                                    tcti: try margs.required("tcti"),
                                                    logPath: try margs.required("model-log"))
        let claims = measured.claims
        for f in claims.files { print("\(f.sha256)  \(f.name)  (\(f.size) bytes)") }
        for s in measured.signatures {
            print("signature \(s.sha256)  \(s.name)  for \(s.directory)/: \(s.signerKind) signature, model "
                  + (s.unverifiedModelName.map { "\"\($0)\"" } ?? "unreadable") + " (unverified: the broker verifies it)")
        }
        print("manifest \(claims.manifestDigest)  (\(claims.files.count) artefacts"
              + (measured.signatures.isEmpty ? "" : ", \(measured.signatures.count) signature\(measured.signatures.count == 1 ? "" : "s")") + ", extended into PCR 23)")
        exit(0)
    } catch {
        fail(error, prefix: "measure-model: ")
    }
}

if CommandLine.arguments.dropFirst().first == "gpu-evidence" { gpuEvidenceCommand(Array(CommandLine.arguments.dropFirst(2))) }
if CommandLine.arguments.dropFirst().first == "proxy" { proxyCommand(Array(CommandLine.arguments.dropFirst(2))) }

if CommandLine.arguments.dropFirst().first == "simulated-tee-platform" {
    do {
        let pargs = try Arguments(Array(CommandLine.arguments.dropFirst(2)), options: ["gpus"], positional: 1)
        guard let dir = pargs.positional.first else { fail("simulated-tee-platform takes the platform's directory") }
        let platform = try SimulatedTEEPlatform.loadOrCreate(directory: dir)
        print("SIMULATED TEE platform in \(platform.directory) (keys in files: tests and demos only)")
        print("roots           \(platform.rootsDirectory)  (vouchd --allow-simulated-hosts --simulated-tee-roots)")
        print("tdx collateral  \(platform.collateralDirectory)  (vouchd --tdx-collateral)")
        print("measurement     \(Hex.encode(SimulatedTEEOptions.defaultMeasurement))  (a simulated guest's default launch measurement)")
        print("paravisor       \(Hex.encode(SimulatedTEEOptions.defaultParavisorMeasurement))  (a simulated Azure CVM's: snp.paravisorMeasurements)")
        if let gpus = pargs["gpus"] {
            guard let count = Int(gpus), (1...16).contains(count) else { fail("simulated-tee-platform: --gpus takes 1-16") }
            let board = try SimulatedGPUEvidenceSource(platformDirectory: dir, count: count, optionsFile: nil).platform
            print("gpu roots       \(board.deviceRootPath), \(board.rimRootPath)  (\(count) simulated GPUs)")
            print("gpu rims        \(board.rimPath(.driver)), \(board.rimPath(.vbios))")
        }
        exit(0)
    } catch {
        fail(error, prefix: "simulated-tee-platform: ")
    }
}

let args: Arguments
do {
    args = try Arguments(Array(CommandLine.arguments.dropFirst()),
                         options: ["broker", "ca", "tcti", "socket", "ak", "ek", "hostname", "register-timeout", "event-log", "model-log", "labels",
                                   "state-dir", "listen", "advertise", "push-interval", "watch-interval", "simulate", "drift-after", "drift-record",
                                   "tee", "vcek", "simulate-tee", "simulate-tee-options", "simulate-tee-platform", "gpus", "simulate-gpus",
                                   "workload-socket", "workload-entries", "workload-connections-per-user"],
                         flags: ["enroll-agents", "push"])
} catch { fail(error) }

/// `--tee` or `--simulate-tee`: where a confidential VM's reports come from (nil: a TPM host).
func teeSource(_ args: Arguments, stateDirectory: String) throws -> (any TEEEvidenceSource)? {
    let simulated = args["simulate-tee"] != nil
    for o in ["simulate-tee-options", "simulate-tee-platform"] where args[o] != nil && !simulated { fail("--\(o) goes with --simulate-tee") }
    guard let name = args["tee"] ?? args["simulate-tee"] else {
        if args["vcek"] != nil { fail("--vcek goes with --tee sev-snp") }
        return nil
    }
    guard args["tee"] == nil || !simulated else { fail("give one of --tee and --simulate-tee") }
    guard let kind = TEEKind(rawValue: name) else { fail("--\(simulated ? "simulate-tee" : "tee") takes sev-snp, tdx or azure-snp-vtpm") }
    let azure = kind == .azureSNPVTPM
    for o in ["ak", "ek"] + (azure && !simulated ? [] : ["tcti", "model-log"]) where args[o] != nil {
        fail("--\(o) is for TPM hosts: a confidential VM \(azure ? "reports through its vTPM's AK" : "has no TPM")")
    }
    if args["vcek"] != nil && (simulated || kind == .tdx) { fail("--vcek goes with --tee sev-snp or azure-snp-vtpm") }
    if args["event-log"] != nil && (simulated || kind == .sevSNP) {
        fail("--event-log with a confidential VM is the CC event log of --tee tdx or the firmware event log of --tee azure-snp-vtpm")
    }
    if simulated {
        let platform = try SimulatedTEEPlatform.loadOrCreate(directory: args["simulate-tee-platform"] ?? stateDirectory + "/simulated-tee")
        Runtime.log("SIMULATED \(kind.rawValue) guest on the software TEE (keys in \(platform.directory): tests and demos only; "
                    + "a broker accepts it only with --allow-simulated-hosts and --simulated-tee-roots \(platform.rootsDirectory))")
        if azure {
            return try SimulatedAzureCVM.loadOrCreate(platform: platform, stateDirectory: stateDirectory, optionsPath: args["simulate-tee-options"])
        }
        return SimulatedTEE(kind: kind, platform: platform, optionsPath: args["simulate-tee-options"])
    }
    if azure {
        return AzureVTPMEvidenceSource(tcti: try args.required("tcti"), endorsement: try Files.read(try args.required("vcek")),
                                       eventLogPath: args["event-log"] ?? (FileManager.default.isReadableFile(atPath: AttesterConfig.systemEventLog) ? AttesterConfig.systemEventLog : nil),
                                       modelLogPath: args["model-log"])
    }
    return TSMEvidenceSource(kind: kind, endorsement: try args["vcek"].map { try Files.read($0) }, eventLogPath: args["event-log"])
}

/// `--gpus nvml` (with --tee) or `--simulate-gpus N` (with --simulate-tee): the host's GPUs,
/// whose evidence goes with every report (nil: none).
func gpuSource(_ args: Arguments, stateDirectory: String) throws -> (any GPUEvidenceSource)? {
    switch (args["gpus"], args["simulate-gpus"]) {
    case (nil, nil): return nil
    case let ("nvml"?, nil):
        guard args["tee"] != nil else { fail("--gpus nvml goes with --tee (GPUs are presented beside a confidential VM's report)") }
        return NVMLGPUEvidenceSource()
    case (_?, nil): fail("--gpus takes nvml")
    case let (nil, n?):
        guard args["simulate-tee"] != nil else { fail("--simulate-gpus goes with --simulate-tee") }
        guard let count = Int(n), (1...16).contains(count) else { fail("--simulate-gpus takes 1-16") }
        let source = try SimulatedGPUEvidenceSource(platformDirectory: args["simulate-tee-platform"] ?? stateDirectory + "/simulated-tee", count: count,
                                                    optionsFile: args["simulate-tee-options"])
        Runtime.log("SIMULATED \(count) GPUs on the software GPU board (keys in \(source.platform.directory): tests and demos only)")
        return source
    default: fail("give one of --gpus and --simulate-gpus")
    }
}

/// The broker-facing TLS server's limits (one attester's or a simulated fleet's): the broker keeps
/// one connection per attester open between pull rounds (`PinnedConnectionPool`), so an idle
/// connection stays open longer than the broker keeps one (its default maximum connection age,
/// which exceeds the default 15-minute interval and its jitter); `connections` open at once (a
/// simulated fleet: one per host, and some); and an 8 KiB memory pool per connection (a quote
/// request's headers and a small answer's headers fit; 10,000 idle connections take 80 MiB of pools,
/// not libmicrohttpd's default 320 MiB).
/// `perAddress`: connections one address may hold (0: no cap; a simulated fleet's are all the
/// broker's). Idle connections are kept past the broker's maximum connection age, so a client
/// that is not the broker holds at most `perAddress` of them.
func brokerFacingLimits(connections: Int, perAddress: Int = 0) -> HTTPServer.Limits {
    HTTPServer.Limits(idleTimeout: PinnedConnectionPool.defaultMaxConnectionAge + 300, perAddress: perAddress, total: connections, connectionMemory: 8 << 10)
}

if let n = args["simulate"] {
    do {
        guard let count = Int(n), (1...100_000).contains(count) else { fail("--simulate takes a host count of 1-100000") }
        let push = args.has("push")
        guard push != (args["listen"] != nil) else { fail("--simulate takes one of --listen ADDR:PORT (pull mode) and --push") }
        let l = push ? ["", "1"] : try args.required("listen").split(separator: ":").map(String.init)
        guard l.count == 2, let port = UInt16(l[1]), port > 0 else { fail("--listen takes ADDR:PORT (IPv4)") }
        if args["drift-record"] != nil && (args["drift-after"] == nil || !args.has("enroll-agents")) { fail("--drift-record goes with --enroll-agents and --drift-after") }
        let labels = parseLabels(args["labels"])
        let client = HTTPClient(.https(baseURL: try args.required("broker"), caFile: try args.required("ca")))
        let fleet = try SimulatedFleet(count: count, broker: client, hostnamePrefix: args["hostname"] ?? "sim", labels: labels)
        // Each simulated host keeps its own connection for its reports (one descriptor each):
        // the soft open-file limit goes up to the hard one, as vouchd's does.
        Runtime.raiseOpenFileLimit()
        Runtime.log("SIMULATED fleet of \(count) hosts (software AKs, no TPM: for scale tests only)")
        let started = Date()
        let baseURL = push ? nil : args["advertise"] ?? "https://\(l[0]):\(port)"
        var server: HTTPServer?
        if let baseURL {
            // Host 0's certificate is the server's, so it registers first; the server is up before the rest.
            try fleet.register(0..<1, baseURL: baseURL)
            let tls = try fleet.serverIdentity()
            server = try HTTPServer(listen: .tls(host: l[0], port: port, certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM),
                                    threads: 4, limits: brokerFacingLimits(connections: count + 256),
                                    clientTrustPEM: try Files.readString(try args.required("ca")), handler: fleet.httpHandler)
            try fleet.register(1..<count, baseURL: baseURL)
            Runtime.log("registered \(count) simulated hosts in \(String(format: "%.1f", Date().timeIntervalSince(started)))s; serving quotes on \(baseURL)/sim/INDEX")
        } else {
            try fleet.register(baseURL: nil)
            Runtime.log("registered \(count) simulated push hosts in \(String(format: "%.1f", Date().timeIntervalSince(started)))s")
            // Each host reports at once (its first verdict), then at 80 % of the policy's interval.
            let first = fleet.pushAll()
            Runtime.log("first push reports: \(first.failures) failures")
            let every = max(1, Double(first.interval ?? 300) * 0.8)
            Thread.detachNewThread {
                while true {
                    Thread.sleep(forTimeInterval: every)
                    let r = fleet.pushAll()
                    if r.failures > 0 { Runtime.log("push reports: \(r.failures) failures") }
                }
            }
        }
        if args.has("enroll-agents") {
            Runtime.log("enrolled an agent on each simulated host (\(try fleet.enrollAgentOnEveryHost()) failures)")
        }
        let record = args["drift-record"]
        if let record { try fleet.writeDriftRecord(to: record) }
        if let d = args["drift-after"] {
            let delay = try duration(d, "--drift-after")
            // --watch-interval 0: hosts without a drift watcher (the baseline the watcher is measured against).
            let unwatched = try args["watch-interval"].map { try watchDuration($0) == 0 } ?? false
            DispatchQueue.global().asyncAfter(deadline: .now() + delay) {
                let (_, failures) = fleet.drift(0..<count, report: !unwatched)
                Runtime.log(unwatched ? "every simulated host's PCR 7 drifted; none reports it (--watch-interval 0): the next scheduled round finds it"
                    : "every simulated host's PCR 7 drifted; each reported it (\(push ? "a push" : "a hint")): \(failures.count) failures\(failures.first.map { "; first: \($0)" } ?? "")")
                if let record {
                    do { try fleet.writeDriftRecord(to: record) } catch { Runtime.log("cannot write \(record): \(error)") }
                }
            }
        }
        Runtime.waitForTermination()
        server?.stop()
        Runtime.log("served \(fleet.quotesServed) quotes")
        exit(0)
    } catch {
        fail(error)
    }
}

do {
    guard let akKind = KeyTemplates.AKKind(rawValue: args["ak"] ?? "ecc-p256") else { fail("--ak must be ecc-p256 or rsa-2048") }
    let brokerClient = HTTPClient(.https(baseURL: try args.required("broker"), caFile: try args.required("ca")))
    let hostname = args["hostname"] ?? ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
    let stateDirectory = args["state-dir"] ?? "/var/lib/vouch-attester"
    let tee = try teeSource(args, stateDirectory: stateDirectory)
    var config: AttesterConfig
    if let tee {
        config = AttesterConfig(tcti: "", hostname: hostname)
        config.tee = tee
        config.gpus = try gpuSource(args, stateDirectory: stateDirectory)
    } else {
        if args["gpus"] != nil || args["simulate-gpus"] != nil { fail("--gpus and --simulate-gpus go with --tee or --simulate-tee") }
        let eventLog = args["event-log"] ?? (FileManager.default.isReadableFile(atPath: AttesterConfig.systemEventLog) ? AttesterConfig.systemEventLog : nil)
        config = AttesterConfig(tcti: try args.required("tcti"), akKind: akKind, hostname: hostname, eventLogPath: eventLog, modelLogPath: args["model-log"])
    }
    guard let ekKind = EKTemplate.Kind(rawValue: args["ek"] ?? "rsa") else { fail("--ek must be rsa or ecc") }
    config.ekKind = ekKind
    config.labels = parseLabels(args["labels"])
    config.stateDirectory = stateDirectory
    var listen: (host: String, port: UInt16)?
    if let l = args["listen"] {
        let parts = l.split(separator: ":").map(String.init)
        guard parts.count == 2, let port = UInt16(parts[1]), port > 0 else { fail("--listen takes ADDR:PORT (IPv4)") }
        listen = (parts[0], port)
        config.attesterURL = args["advertise"] ?? "https://\(l)"
    } else if args["advertise"] != nil {
        fail("--advertise goes with --listen")
    }
    let pushInterval = try args["push-interval"].map { try duration($0, "--push-interval") }
    let watchInterval = try watchDuration(args["watch-interval"] ?? "250ms")
    if watchInterval > 0 && watchInterval < 0.01 { fail("--watch-interval takes 0 (off) or at least 10ms") }
    if tee != nil && args["watch-interval"] != nil && watchInterval > 0 { fail("--watch-interval is for TPM hosts (a confidential VM's reports have no PCRs to read)") }
    let attester = Attester(config: config, broker: brokerClient)
    let timeout = try duration(args["register-timeout"] ?? "60s", "--register-timeout")
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        do {
            let id = try attester.register()
            if let tee {
                Runtime.log("registered as host \(id): a \(tee.kind.rawValue) confidential VM, host key in \(stateDirectory)/tee-host.key")
            } else {
                Runtime.log("registered as host \(id); AK (\(akKind.rawValue)) activated")
            }
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
    var brokerServer: HTTPServer?
    var pusher: PushLoop?
    var watcher: DriftWatcher?
    if let listen, let identity = attester.identity {
        // Only the host certificate: the broker holds its own CA, and every certificate sent is
        // one more for the broker to parse on each pull. Client certificates must chain to the
        // broker CA (--ca), which certifies nothing but the broker: no agent or host certificate
        // can ask for quotes, whatever it names.
        brokerServer = try HTTPServer(listen: .tls(host: listen.host, port: listen.port, certificatePEM: identity.certificatePEM, keyPEM: identity.keyPEM),
                                      threads: 2, limits: brokerFacingLimits(connections: 1024, perAddress: 64),
                                      clientTrustPEM: try Files.readString(try args.required("ca")), handler: attester.brokerHandler)
        Runtime.log("pull mode: serving \(tee.map { "\($0.kind.rawValue) reports" } ?? "quotes") to \(identity.brokerSpiffeID) at \(config.attesterURL ?? "")")
        if tee == nil && watchInterval > 0 {
            watcher = DriftWatcher(attester: attester, interval: watchInterval, log: Runtime.log) { _ = try attester.sendHint() }
        }
    } else {
        let loop = PushLoop.start(attester, interval: pushInterval, log: Runtime.log)
        pusher = loop
        Runtime.log("push mode: reporting to the broker" + (pushInterval.map { " every \(Int($0))s" } ?? " at 80 % of the policy's interval"))
        if tee == nil && watchInterval > 0 { watcher = DriftWatcher(attester: attester, interval: watchInterval, log: Runtime.log) { loop.wake() } }
    }
    if let watcher {
        watcher.start()
        Runtime.log("drift watcher: reading the quoted PCRs every \(Int(watchInterval * 1000))ms; a change is reported at once")
    }
    let workload = try args["workload-socket"].map { socket in
        guard let file = args["workload-entries"] else { fail("--workload-socket needs --workload-entries FILE") }
        guard let perUser = Int(args["workload-connections-per-user"] ?? "512"), (1...1024).contains(perUser) else {
            fail("--workload-connections-per-user takes 1 to 1024")
        }
        return try WorkloadAPIServer.start(attester: attester, socket: socket, entriesFile: file, perUser: perUser)
    }
    if args["workload-entries"] != nil && workload == nil { fail("--workload-entries goes with --workload-socket PATH") }
    Runtime.waitForTermination()
    workload?.stop()
    watcher?.stop()
    pusher?.cancel()
    brokerServer?.stop()
    server.stop()
} catch {
    fail(error)
}
