#!/usr/bin/env bash
# Manufactures a software TPM 2.0 in DIR (PCR banks: $SWTPM_PCR_BANKS, default sha256) with a local CA of its own (DIR/ca), so that nothing
# depends on the machine-wide /var/lib/swtpm-localca. Leaves:
#   DIR/state                     swtpm state: RSA 2048 EK (TCG template L-1) persisted at 0x81010001, its cert in NV 0x01c00002;
#                                 ECC P-384 EK (template H-3) persisted at 0x81010016, its cert in NV 0x01c00016
#   DIR/ca/swtpm-localca-rootca-cert.pem, DIR/ca/issuercert.pem   the EK certificate chain
set -euo pipefail
dir=$(realpath -m "${1:?usage: swtpm-manufacture.sh DIR}")
mkdir -p "$dir/state" "$dir/ca"
cat > "$dir/localca.conf" <<CONF
statedir = $dir/ca
signingkey = $dir/ca/signkey.pem
issuercert = $dir/ca/issuercert.pem
certserial = $dir/ca/certserial
CONF
cat > "$dir/localca.options" <<CONF
--platform-manufacturer Vouch
--platform-version 2.1
--platform-model swtpm
CONF
cat > "$dir/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $dir/localca.conf
create_certs_tool_options = $dir/localca.options
active_pcr_banks = ${SWTPM_PCR_BANKS:-sha256}
CONF
swtpm_setup --tpm2 --tpmstate "$dir/state" --config "$dir/swtpm_setup.conf" \
  --create-ek-cert --create-platform-cert --lock-nvram --overwrite --pcr-banks "${SWTPM_PCR_BANKS:-sha256}" >"$dir/setup.log" 2>&1 \
  || { cat "$dir/setup.log" >&2; exit 1; }
