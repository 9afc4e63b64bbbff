"""NVIDIA's own local GPU verifier (nv-local-gpu-verifier, which pip installs with
nv-attestation-sdk) on the corpus's 8-GPU PPCIe evidence, for bench/gpu.sh. Prints one JSON row
per line: {name, unit, rate, detail}; a step that cannot run says why in its detail, rate null.

1. Its whole local attestation (`verifier.cc_admin.attest`, as nv-attestation-sdk's local GPU
   path calls it) with the OCSP and RIM service URLs pointed at a closed local port, so nothing
   leaves the machine: the row reports how far it gets and the error it stops with.
2. Its offline steps alone, timed per GPU per CPU-second: the evidence parse, the FWID comparison,
   the device chain to NVIDIA's device root (its own copy, as it replaces the chain's last
   certificate), the nonce, driver and VBIOS versions and the SPDM signature
   (`CcAdminUtils.verify_gpu_certificate_chain` + `verify_attestation_report`). OCSP and the RIM
   comparison are not in this figure.

Usage: python peer_nv_verifier.py EVIDENCE.json NONCE_HEX SECONDS
"""
import base64
import json
import logging
import sys
import time
import traceback

evidence_path, nonce_hex, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
logging.disable(logging.CRITICAL)  # it logs every step at INFO

from OpenSSL import crypto  # noqa: E402
from verifier import cc_admin  # noqa: E402
from verifier.attestation import AttestationReport  # noqa: E402
from verifier.cc_admin_utils import CcAdminUtils  # noqa: E402
from verifier.config import BaseSettings, HopperSettings  # noqa: E402
from verifier.nvml.gpu_cert_chains import GpuCertificateChains  # noqa: E402

try:
    from importlib.metadata import version
    label = f"nv-local-gpu-verifier {version('nv-local-gpu-verifier')}"
except Exception:  # pragma: no cover - metadata missing
    label = "nv-local-gpu-verifier"

entries = json.load(open(evidence_path))
devices = [(base64.b64decode(e["evidence"]), base64.b64decode(e["certificate"]), e["driver_version"], e["vbios_version"].lower())
           for e in entries]
nonce = bytes.fromhex(nonce_hex)
root = crypto.load_certificate(crypto.FILETYPE_PEM, open(BaseSettings.DEVICE_ROOT_CERT, "rb").read())


def chain_of(pem):
    # As GpuCertificateChains does with a GPU's chain: its own root in place of the chain's last certificate.
    return GpuCertificateChains.extract_cert_chain(pem)[:-1] + [root]


class Device:
    """What cc_admin.attest reads of a GPU (NVML's GPU info), filled from the evidence file."""
    def __init__(self, i, report, pem, driver, vbios):
        self.i, self.report, self.chain, self.driver, self.vbios = i, report, chain_of(pem), driver, vbios
    def get_gpu_architecture(self): return HopperSettings.GPU_ARCH
    def get_uuid(self): return f"GPU-corpus-{self.i}"
    def get_driver_version(self): return self.driver
    def get_vbios_version(self): return self.vbios
    def get_attestation_report(self): return self.report
    def get_attestation_cert_chain(self): return self.chain


def row(name, unit, rate, detail):
    print(json.dumps({"name": name, "unit": unit, "rate": rate, "detail": detail}), flush=True)


# 1. The whole local attestation, offline. It logs the error that stops a GPU and returns False;
#    the log records are kept here to say which step that was.
class Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []
    def emit(self, record):
        self.records.append(record)

keep = Keep()
logging.disable(logging.NOTSET)
for logger in (cc_admin.info_log, cc_admin.event_log, logging.getLogger()):
    logger.addHandler(keep)
    logger.propagate = False
    logger.setLevel(logging.ERROR)
    for h in list(logger.handlers):
        if h is not keep:
            logger.removeHandler(h)
BaseSettings.MAX_NVML_TIME_DELAY = 5  # its failure path asks NVML about the GPU's CC mode; no driver here
closed = "http://127.0.0.1:9/"
params = {"verbose": False, "test_no_gpu": False, "driver_rim": None, "vbios_rim": None, "user_mode": True, "rim_root_cert": None,
          "rim_service_url": closed, "allow_hold_cert": False, "ocsp_url": closed, "nonce": nonce_hex, "ppcie_mode": True,
          "ocsp_nonce_disabled": False, "service_key": None, "claims_version": "2.0"}
try:
    result, _ = cc_admin.attest(params, nonce_hex, [Device(i, *d) for i, d in enumerate(devices)])
    outcome = f"returned {result}"
except Exception as e:
    outcome = f"raised {type(e).__name__}: {str(e).strip()[:200]}"
logging.disable(logging.CRITICAL)
errors = []
for r in keep.records:
    try:
        text = r.getMessage().strip()
    except Exception:  # its own call with arguments the message does not format
        text = " ".join(str(x) for x in (r.msg, *(r.args or ()))).strip()
    if r.exc_info and r.exc_info[1] is not None:
        text += f" [{type(r.exc_info[1]).__name__}]"
    if text and text not in errors:
        errors.append(text)
row(f"NVIDIA local verifier, full attest() offline ({label})", "GPUs per CPU-second", None,
    f"cannot run offline: cc_admin.attest on the {len(devices)} PPCIe GPUs, its OCSP and RIM service URLs at a closed local port, "
    f"{outcome}; errors it logged, in order: {' | '.join(e[:160] for e in errors[:4]) or 'none'}. It asks NVIDIA's OCSP responder "
    "about every certificate of each device chain (no option turns that off), then fetches the driver and VBIOS RIMs for the "
    "reported versions from the RIM service (the corpus holds none for 590.12 / 96.00.A5.00.01); on failure it asks NVML (the "
    "NVIDIA driver) for the GPU's CC mode, which this machine lacks")

# 2. Its offline steps, timed.
def verify_all():
    for i, (report, pem, driver, vbios) in enumerate(devices):
        settings = HopperSettings()
        chain = chain_of(pem)
        parsed = AttestationReport(report, settings)
        fwid = parsed.get_response_message().get_opaque_data().get_data("OPAQUE_FIELD_ID_FWID").hex()
        ok, _, _ = CcAdminUtils.verify_gpu_certificate_chain(chain, settings, fwid)
        if not ok:
            raise RuntimeError(f"GPU {i}: its chain check failed")
        if not CcAdminUtils.verify_attestation_report(parsed, chain[0], nonce, driver, vbios, settings):
            raise RuntimeError(f"GPU {i}: its report check failed")

try:
    verify_all()
    n, start, cpu = 0, time.time(), time.process_time()
    while time.time() - start < seconds:
        verify_all()
        n += len(devices)
    cpu, wall = time.process_time() - cpu, time.time() - start
    row(f"NVIDIA local verifier, offline steps per GPU ({label})", "GPUs per CPU-second", n / cpu,
        f"the corpus's {len(devices)} PPCIe GPUs in turn, its own Python code: evidence parse, FWID against the leaf, device chain "
        "(pyOpenSSL, its pinned root), nonce, driver and VBIOS versions, SPDM P-384 signature (verify_gpu_certificate_chain + "
        f"verify_attestation_report); no OCSP, no RIMs, nothing kept between calls; wall clock {n / wall:.0f}/s")
except Exception as e:
    row(f"NVIDIA local verifier, offline steps per GPU ({label})", "GPUs per CPU-second", None,
        f"FAILED: {type(e).__name__}: {e}; {traceback.format_exc().strip().splitlines()[-2].strip()[:200]}")
