"""Keylime on the same quotes as Vouch, for `make bench` (run inside a throwaway virtualenv).

Usage: python peer_keylime.py OUT_DIR ALG SECONDS EVENT_LOG
OUT_DIR holds, from bench/run.sh: ak-ALG.pub (TPM2B_PUBLIC), ak-ALG.pem, q-ALG.{msg,sig,pcrs} (a
quote over sha256:0-9,14,16,23 with the 20-character nonce "vouchbench0123456789", PCRs 0-9 and 14
replaying EVENT_LOG, PCR 16 = the Keylime data binding of transport.pem), and transport.pem.

Prints one JSON line per measurement:
1. tpm_util.checkquote: the signature-only check (signature, nonce, PCR digest).
2. cloud_verifier_common.process_quote_response with a static PCR allowlist (PCRs 0-9, 14 and 23) and
   no boot log: algorithm allow-lists, quote, TPM clock, PCR 16 binding, allowlist.
3. the same with the UEFI event log and a measured-boot policy made from that log by Keylime's own
   `create_mb_policy` (policy "example"): Keylime's equivalent of Vouch's verify + replay + policy, as
   on an agent's first attestation (attestation_count 0).
4. the same in steady state (attestation_count 1): Keylime's agent sends the boot log with every
   quote and the verifier parses it (tpm2_eventlog, a process) and replays it against the quote
   every time, but with its default `measured_boot_evaluate = once` evaluates the policy on the
   first attestation only.
Keylime's logging is set to WARNING (its INFO logs cost about half of (2)); errors still show.
"""
import base64, json, logging, sys, time
from argparse import Namespace
from importlib.metadata import version

out, alg, seconds, log_path = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
logging.getLogger("keylime").setLevel(logging.WARNING)
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

from keylime import cloud_verifier_common, config  # noqa: E402
from keylime.agentstates import AgentAttestState  # noqa: E402
from keylime.mba import mba  # noqa: E402
from keylime.policy import create_mb_policy  # noqa: E402
from keylime.tpm import tpm_util  # noqa: E402

for name in ("keylime",) + tuple(n for n in logging.root.manager.loggerDict if n.startswith("keylime")):
    logging.getLogger(name).setLevel(logging.WARNING)

read = lambda n: open(f"{out}/{n}", "rb").read()
b64 = lambda b: base64.b64encode(b).decode()
nonce = "vouchbench0123456789"
ak_pem, msg, sig, pcrs = read(f"ak-{alg}.pem"), read(f"q-{alg}.msg"), read(f"q-{alg}.sig"), read(f"q-{alg}.pcrs")
transport = read("transport.pem").decode()
keylime_version = version("keylime")


def rate(body):
    body()  # once outside the clock; raises if the path does not accept the evidence
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        body()
        n += 1
    return n / (time.perf_counter() - start)


def emit(name, r, detail):
    print(json.dumps({"name": name, "unit": "quotes/s", "rate": r, "detail": f"keylime {keylime_version} {detail}"}), flush=True)


emit(f"Keylime checkquote {alg} (in process)", rate(lambda: tpm_util.checkquote(ak_pem, nonce, sig, msg, pcrs, "sha256")),
     "tpm_util.checkquote: signature, nonce, PCR digest")

# The verifier's per-agent record, as cloud_verifier_tornado keeps it between polls.
pcr_values = cloud_verifier_common.get_tpm_instance().get_pcrs_from_quote(f"r{b64(msg)}:{b64(sig)}:{b64(pcrs)}", False)
allowlist = {str(i): [pcr_values[i]] for i in list(range(10)) + [14, 23]}
agent_base = {
    "agent_id": "bench", "nonce": nonce, "public_key": transport, "ak_tpm": b64(read(f"ak-{alg}.pub")),
    "accept_tpm_hash_algs": ["sha256"], "accept_tpm_encryption_algs": ["rsa", "ecc"],
    "accept_tpm_signing_algs": ["rsassa", "ecdsa"], "ima_sign_verification_keys": "",
    "tpm_policy": json.dumps({**allowlist, "mask": hex(sum(1 << int(i) for i in allowlist))}), "supported_version": "2.4", "attestation_count": 0,
}
response = {"quote": f"r{b64(msg)}:{b64(sig)}:{b64(pcrs)}", "pubkey": transport, "hash_alg": "sha256",
            "enc_alg": "rsa", "sign_alg": "ecdsa" if alg == "ecc" else "rsassa"}


def process(mb_policy=None, mb_name="accept-all", extra=None, count=0):
    def body():
        agent = {**agent_base, "attestation_count": count}
        state = AgentAttestState("bench")  # TPM clock history starts empty, so the same quote stays fresh
        failure = cloud_verifier_common.process_quote_response(agent, mb_policy, None, {**response, **(extra or {})}, state, mb_name)
        if failure:
            raise SystemExit(f"Keylime rejected the quote: {[(e.event_id, e.context) for e in failure.events]}")
    return body


mba.load_imports(skip_custom_policies=True)  # the verifier does this at start; bootlog_parse needs it
emit(f"Keylime process_quote_response {alg}, static PCR allowlist", rate(process()),
     "verifier per-quote function: algorithms, quote, TPM clock, PCR 16 binding, 12-PCR allowlist (0-9, 14, 23); no boot log")

log = open(log_path, "rb").read()
refstate = create_mb_policy.create_mb_refstate(Namespace(eventlog_file=log_path, without_secureboot=False, output="/dev/null"))
if refstate is None:
    raise SystemExit("Keylime could not make a measured-boot policy from the event log")
# First attestation of an agent (measured_boot_evaluate = once) or every one (= always): the log
# is parsed (tpm2_eventlog), PCRs 0-9 and 14 replayed against the quote and the policy evaluated.
emit(f"Keylime process_quote_response {alg} + event log + measured-boot policy, first attestation",
     rate(process(json.dumps(refstate), "example", {"mb_measurement_list": b64(log)})),
     f"same + {log_path.rsplit('/', 1)[-1]} parsed by tpm2_eventlog, replayed against the quote, 'example' policy from Keylime's create_mb_policy")
emit(f"Keylime process_quote_response {alg} + event log + measured-boot policy, steady state",
     rate(process(json.dumps(refstate), "example", {"mb_measurement_list": b64(log)}, count=1)),
     f"the same after the agent's first attestation (attestation_count 1): the log still parsed by tpm2_eventlog and replayed against "
     f"every quote, the policy not evaluated again (measured_boot_evaluate = once, Keylime's default)")
