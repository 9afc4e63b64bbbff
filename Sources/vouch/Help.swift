// What `vouch`, `vouch --help` and `vouch COMMAND --help` print.

extension CLI {
    /// Printed (on stderr, exit 2) when `vouch` is run without a command.
    static let shortUsage = """
    usage: vouch COMMAND [options]
    commands: enroll status revoke host history token ca crl cert check policy quote eventlog log model store
    vouch --help lists them all; vouch COMMAND --help explains one; vouch --version.
    """

    static let brokerOptionsHelp = """
    broker: --broker URL or $VOUCH_BROKER; its CA: --ca FILE or $VOUCH_CA (DATA-DIR/broker-ca/ca.pem);
    token: --token-file FILE or $VOUCH_TOKEN_FILE
    """

    /// One short text per command: what it does, its options, and examples.
    static let commandHelp: [String: String] = [
        "log": """
        usage: vouch log checkpoint --log URL|DIR --log-key VKEY [--check-tiles]
               vouch log witness --log URL|DIR --log-key VKEY --key SKEY_FILE --state DIR [--submit] [--interval DUR]
               vouch log mirror --log URL --log-key VKEY --out DIR
               vouch log keygen --name NAME --out PREFIX [--type cosignature|ed25519]
               vouch log proof --certificate CERT --output FILE [--wait DUR] [--broker URL --ca FILE]
        A client of a C2SP tlog-tiles log: the broker's (https; its certificate checked against --ca
        FILE or $VOUCH_CA) or a directory (a mirror). VKEY: the log's vkey (/v1/trust), inline or a file.
          checkpoint  print the log's checkpoint once its signature and origin verify
          witness     cosign the checkpoint if it extends the one cosigned last (state in DIR); refuse
                      a smaller one (witness_rollback); on a fork (witness_fork) keep both notes in
                      DIR/ORIGIN/fork/ and cosign nothing more; --submit: POST it to the log
          mirror      copy checkpoint, tiles and entry bundles into DIR, each verified first
          keygen      a witness key pair PREFIX.skey (0600), PREFIX.vkey (for vouchd --log-witness)
          proof       an agent certificate's issuance entry and proof, for --issuance-proof (--wait: until logged)
        exit: 0 done, 1 refused (signature, rollback, fork, bad tiles), 2 usage or unreadable key
        examples:
          vouch log proof --certificate agent.pem --output issuance.json --wait 30s
          vouch log witness --log https://broker:8443 --ca ca.pem --log-key log.vkey \\
              --key /etc/vouch-witness/key.skey --state /var/lib/vouch-witness --submit --interval 5m
          vouch log mirror --log https://broker:8443 --ca ca.pem --log-key log.vkey --out /srv/vouch-log
        """,
        "enroll": """
        usage: vouch enroll --name NAME [--socket PATH] [--out DIR] [--key-type p256|p384] [--renew | --tpm-key]
        Have the local attester prove this host's state and get an agent certificate: writes
        DIR/NAME.key (0600), DIR/NAME.pem and DIR/ca.pem. Socket: --socket or $VOUCH_ATTESTER_SOCKET.
          --renew    replace DIR/NAME.pem with a new key, signed over by the current one
          --tpm-key  create the key inside the TPM (writes NAME.tpm.pub and NAME.tpm.priv)
        examples:
          vouch enroll --name payments --socket /run/vouch/attester.sock --out /run/agent
          vouch enroll --name payments --out /run/agent --renew
        """,
        "status": """
        usage: vouch status [--json]
               vouch status --evidence HOST_ID [--out FILE]
        Policies, hosts (trust state, AK, last attestation and why) and certificates; or one host's
        last verified evidence bundle (JSON). Needs a read token.
        \(brokerOptionsHelp)
        examples:
          vouch status
          vouch status --evidence 3f9c… --out evidence.json
        """,
        "revoke": """
        usage: vouch revoke --serial HEX [--reason R]
               vouch revoke --host ID [--agent NAME] [--block] [--reason R]
        Revoke one certificate, every certificate of an agent or of a host; --block also refuses the
        host's enrollment, renewal and registration until `vouch host unblock`. Needs an admin token.
        \(brokerOptionsHelp)
        examples:
          vouch revoke --serial 4a1f… --reason keyCompromise
          vouch revoke --host 3f9c… --block
        """,
        "host": """
        usage: vouch host unblock HOST_ID
               vouch host delete HOST_ID
        unblock: lift a block (the host must still pass attestation); delete: deregister the host and
        revoke its certificates (it must register again). Needs an admin token.
        \(brokerOptionsHelp)
        example:
          vouch host unblock 3f9c…
        """,
        "history": """
        usage: vouch history [--host ID] [--result trusted|rejected] [--kind K] [--from T] [--until T] [--limit N] [--before CURSOR] [--json]
        The attestation history (audit trail), newest first. Times are RFC 3339. Needs a read token.
        \(brokerOptionsHelp)
        examples:
          vouch history --host 3f9c… --limit 20
          vouch history --result rejected --from 2026-01-01T00:00:00Z
        """,
        "token": """
        usage: vouch token create --name NAME --scope read|admin [--out FILE]
               vouch token list [--json]
               vouch token revoke ID
        Scoped API tokens; the new token is shown once (or written to FILE, mode 0600). Needs an admin token.
        \(brokerOptionsHelp)
        example:
          vouch token create --name ci-gate --scope read --out gate.token
        """,
        "ca": """
        usage: vouch ca create-root --out DIR [--name CN] [--years N]
               vouch ca create-intermediate --root DIR --out DIR [--name CN] [--days N]
               vouch ca rotate
        Offline: make a root CA and issuing intermediates under it. rotate (needs an admin token):
        start issuing with the staged CA-DIR/next CA.
        examples:
          vouch ca create-root --out /secure/root
          vouch ca create-intermediate --root /secure/root --out /var/lib/vouchd/ca/next && vouch ca rotate
        """,
        "crl": """
        usage: vouch crl [--out FILE] [--json]
        Fetch the broker's CRL, check its signature with the issuing CA, list the revoked serials.
        broker: --broker URL or $VOUCH_BROKER; its CA: --ca FILE or $VOUCH_CA; no token needed
        example:
          vouch crl --out vouch.crl
        """,
        "trust": """
        usage: vouch trust get [--output FILE]
        Fetch the broker's trust document (GET /v1/trust): the issuing-CA roots, the broker CA that
        certifies EAR signers, and the transparency log's origin and verifier key (vkey) — what
        offline verification of certificates, EARs, log proofs and receipts needs. Checked, then
        written to FILE (or printed).
        broker: --broker URL or $VOUCH_BROKER; its CA: --ca FILE or $VOUCH_CA; no token needed
        example:
          vouch trust get --output trust.json
        """,
        "evidence": """
        usage: vouch evidence verify --kind sev-snp|tdx|azure-snp-vtpm|nitro|nvidia-gpu|composite --at RFC3339 [--nonce HEX]
                                     [--policy FILE] [--roots DIR [--test-roots]] [--rims DIR [--rim-roots PEM]] [--json] FILE...
        Verify a confidential VM's evidence offline, at the given instant. FILEs are told apart by
        their content: an SEV-SNP report (binary or hex) and its VCEK or VLEK (DER or PEM), AMD's
        CRL; an Azure HCL report and its VCEK; a TDX quote, its collateral (dcap-qvl JSON, or the
        Intel PCS files by their names: tcbinfo_response.json, qeidentity_response.json,
        *_issuer_chain.pem, pck_crl*.der, root_ca_crl.der) and the CCEL event log; an AWS Nitro
        Enclaves attestation document (CBOR or base64; --nonce is its nonce, 1-512 bytes exactly,
        --policy its nitro: section); an NVIDIA GPU's
        SPDM transcript (hex or binary) and its certificate chain (PEM, leaf first), or a bundle of
        several GPUs' evidence (JSON array). nvidia-gpu: every device must verify (chain, signature,
        FWID, versions); --nonce is the 32-byte SPDM request nonce (without it a warning: freshness
        unproven); --rims DIR: the driver and VBIOS RIMs (verified at --at to NVIDIA's CoRIM root, or
        --rim-roots PEM) each device's versions select; measurements are reported as matched,
        mismatched, missing (no RIM) or inactive; --policy applies its devices: section (GPU count,
        models, driver/VBIOS minimums, referenceValues: required refuses missing or mismatched).
        Without --policy: signatures, chains, CRLs, collateral windows and a TCB level, with the
        verifier's defaults (no debug guest). --policy FILE: a Vouch policy (its snp: or tdx:
        section) or a file of just those sections. --nonce HEX: the report data must be these bytes
        (zero-padded to 64; on Azure, the runtime claims' user-data). --roots DIR: other copies of
        AMD's or Intel's roots (*.pem; still pinned by fingerprint); with --test-roots whatever DIR
        holds is trusted (a software TEE's chain; never for real evidence).
        Exit 0 verified (and the policy holds), 1 refused (--json: verified, claims, warnings,
        violations[{code, path, expected, actual}]), 2 unreadable input or usage.
        example:
          vouch evidence verify --kind sev-snp --at 2025-06-01T00:00:00Z report.bin vcek.der
          vouch evidence verify --kind tdx --at 2025-07-01T00:00:00Z --json quote.bin collateral.json
          vouch evidence verify --kind nitro --at 2022-10-13T08:58:02Z attestation_doc.cbor
          vouch evidence verify --kind nvidia-gpu --at 2025-01-01T00:00:00Z --rims rims/ attestation_report.hex device_cert_chain.pem
        Composite: --kind composite [--nonce HEX] [--gpu-roots DIR] BODY.json [CRL or collateral FILE...]
        checks an enrollment or re-attestation body holding a CPU TEE's evidence (tee) and GPUs'
        (devices) under one nonce: every GPU's nonce, and the report bound to the composite of the
        binding and every GPU's digest (docs/evidence.md, Composite evidence).
        NVIDIA RIM: --kind nvidia-rim [--component driver|vbios] --at RFC3339 [--json] FILE checks one
        RIM (chain to NVIDIA's CoRIM signing root, XML-DSig) and prints its reference values.
        """,
        "model": """
        usage: vouch model verify DIR --publisher KEY.pem [--model NAME] [--signature FILE] [--json]
               vouch model verify DIR --roots CA.pem [--identity SAN] [--model NAME] [--signature FILE]
               vouch model verify DIR --trusted-root trusted_root.json --identity ID --issuer URL [--model NAME]
        Offline check of an OpenSSF model signature (model-signing's DIR/model.sig, or --signature): a trusted
        signer first — the publisher's EC key; a certificate chaining to CA.pem (with the subjectAltName SAN if
        given); or Sigstore keyless: a Fulcio certificate for ID from the OIDC issuer URL, logged in Rekor, all
        under the trusted root — then the signed manifest (in-toto, model-signing v1.0; --model: its signed name
        must be NAME), then every file of DIR hashed and compared: the same paths with the same SHA-256, none
        missing, none extra (the signer's ignored paths aside). Prints the model, signer and files; FAILED lines
        name each refusal's code. Exit 0 verified, 1 refused, 2 usage. docs/policy.md (Signed models).
        examples:
          vouch model verify models/acme-llm --publisher acme.pub --model acme-llm
          vouch model verify granite --trusted-root trusted_root.json --identity jane@example.com \
            --issuer https://accounts.google.com
        """,
        "receipt": """
        usage: vouch receipt sign --cert CHAIN --key KEY|--tpm-key DIR/NAME --socket S --output FILE [--request FILE
                                  [--salt-out FILE]] [--issuance-proof FILE] [--started T --finished T] --out BUNDLE
               vouch receipt verify BUNDLE --trust TRUST [--output FILE] [--request FILE --salt HEX] [--crl FILE]
                                  [--witness VKEY ... [--witnesses K]] [--log DIR|URL [--ca FILE]] [--allow-warning]
               vouch receipt log BUNDLE --output BUNDLE2 [--broker URL --ca FILE]
        sign: an agent's receipt for one output: a DSSE envelope of an in-toto Statement (subject: the output's
        SHA-256; predicate: model, environment and policy as the certificate's EAR attests them, times, a salted
        commitment to --request), signed with the agent's key (CHAIN: its cert, then the issuing chain; a TPM key
        from vouch enroll --tpm-key signs through the attester's socket S), with the chain, the EAR and the issuance
        proof (vouch log proof). The salt is printed (or --salt-out, 0600) for the requester only. verify: every
        check of docs/receipts.md against TRUST (vouch trust get): chain, agent signer, DSSE signature, the EAR and
        its claims, log entries and proofs under the log key, times; --crl (the issuing CA's) or --log (a mirror dir
        or the broker URL, read whole): revocation before the receipt; --witness VKEY (repeatable), --witnesses K
        (default all): cosignatures; an EAR not affirming (simulated, GPU unmatched) only with --allow-warning.
        Prints which model, environment, output, then OK. Exit 0/1 refused/2 usage.
        log: POST /v1/receipts (no token); BUNDLE2 is BUNDLE with the receipt's own entry and proof.
        examples:
          vouch receipt sign --cert agent.pem --key agent.key --output answer.txt --request prompt.txt \
            --issuance-proof issuance.json --out answer.receipt.json
          vouch receipt verify answer.receipt.json --trust trust.json --output answer.txt --crl ca.crl
          vouch receipt verify answer.receipt.json --trust trust.json --output answer.txt --log log/   # vouch log mirror
        """,
        "cert": """
        usage: vouch cert inspect FILE [--ca FILE] [--issuer FILE] [--json]
        A certificate's (PEM or DER) identity and the attestation it carries (the broker's EAR in its
        CMW extension). With --ca (the broker CA) the EAR's signature must verify and the EAR must
        name this certificate's key and SPIFFE ID; with --issuer (the issuing CA bundle, GET /v1/bundle)
        the certificate must chain to it. Exit 1 if a check asked for fails. Offline.
        example:
          vouch cert inspect /run/agent/payments.pem --ca broker-ca.pem --issuer ca.pem
        """,
        "check": """
        usage: vouch check (--cert FILE | --spiffe-id ID) [--policy NAME] [--model SHA256] [--max-age DUR] [--crl FILE] [--jwks]
                           [--allow-simulated] [--json]
        Exit 0 only if every requirement holds: the certificate chains to the issuing CA and is within
        its validity period, is not revoked, and its host is trusted now (a fresh EAR signed by the
        broker, affirming for its TPM or CPU TEE), appraised within --max-age (default 15m), under
        --policy, running --model. Otherwise exit 1 and list every failed requirement (--json: {"ok",
        "failures": [{"code", "message"}]}, and the facts read: a CPU TEE host's claims in "tee").
          --jwks  verify the EAR with the key its kid names in the broker's key set (GET /v1/ear/jwks)
                  instead of its x5c chain
          --allow-simulated  accept a trusted simulated host (software AK or software TEE; its EAR
                  says warning): tests and demos only
        \(brokerOptionsHelp)
        examples:
          vouch check --cert agent.pem --policy production --max-age 10m
          vouch check --spiffe-id spiffe://vouch.local/host/3f9c…/agent/payments --json
        """,
        "policy": """
        usage: vouch policy lint FILE|DIR...
               vouch policy test FILE --evidence FILE [--json]
               vouch policy capture (--evidence FILE | --host ID) [--name NAME] [--at RFC3339] [--roots DIR [--test-roots]]
               vouch policy capture --kind sev-snp|tdx|azure-snp-vtpm --at RFC3339 [--roots DIR [--test-roots]]
                                    [--name NAME] FILE...
        lint: validate files and the set (exit 0 valid, 1 invalid). test: evaluate a policy on a TPM
        host's saved evidence bundle (exit 0 satisfied, 1 violated, 2 unreadable or a confidential VM's
        bundle: verify its report with vouch evidence verify --policy). capture: print a draft policy
        accepting that evidence (--host asks the broker, with a read token).
        A confidential VM's draft (snp: or tdx:, no pcrs) is made only from evidence that verifies
        here first: --kind FILE... are vouch evidence verify's files, verified at --at (signatures,
        chain to the pinned roots or --roots, CRL, collateral); a host's or bundle's report or quote
        (the broker's latest) is verified again with the endorsement, CRL and collateral the broker
        used, at the time it recorded it (or --at) — trusting the broker only that it is that host's.
        Exit 0 drafted, 1 the evidence does not verify (no draft), 2 unreadable or usage.
        examples:
          vouch policy lint policies/
          vouch policy test policies/production.yaml --evidence evidence.json
          vouch policy capture --kind sev-snp --at 2025-06-01T00:00:00Z report.bin vcek.der > cvm.yaml
        """,
        "quote": """
        usage: vouch quote verify --ak-public FILE [--scheme S --hash ALG] [--allow-sha1] --message FILE
                                  --signature FILE [--pcrs FILE] (--nonce HEX | --nonce-file FILE) [--json]
        Verify a TPM quote written by tpm2-tools (tpm2_quote -m/-s/-o) with the broker's verifier.
        Exit 0 valid, 1 invalid, 2 unreadable. Offline.
        example:
          vouch quote verify --ak-public ak.pub --message q.msg --signature q.sig --pcrs q.pcrs --nonce 0badc0de
        """,
        "store": """
        usage: vouch store copy --from DATA-DIR/vouch.db --to postgres://USER@HOST/DB [--dry-run]
        Move a broker's SQLite database into an empty PostgreSQL database (for vouchd --database URL),
        with vouchd stopped. One transaction: every table copied in primary-key order, each serial
        moved past the copied ids, every table read back, which must have the source's row count and
        digest (SHA-256 over its rows) or nothing is kept. Prints each table's rows, then
        "copied N rows; verified". The source is opened read-only and must be at this release's
        schema (start this release's vouchd on it once first). DATA-DIR's keys, results/ and
        log-checkpoint stay files: every replica needs a copy (docs/operations.md).
          --dry-run  read and count the source only; nothing is written (--to may be left out)
        exit: 0 copied and verified, 1 refused (destination not empty, another schema, a mismatch) or failed, 2 usage
        example:
          vouch store copy --from /var/lib/vouchd/vouch.db --to postgres://vouch@db1.internal/vouch
        """,
        "eventlog": """
        usage: vouch eventlog replay FILE [--json]
               vouch eventlog show FILE [--json]
        replay: the PCR values per bank a TCG firmware event log yields; show: its events and the boot
        claims decoded from them. Offline.
        example:
          vouch eventlog show /sys/kernel/security/tpm0/binary_bios_measurements
        """,
    ]
}
