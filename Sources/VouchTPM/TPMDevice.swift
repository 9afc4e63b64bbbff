internal import CTSS2
internal import CVouchShims
import Foundation
import VouchCore
import VouchTPMWire

/// The one place tss2 return codes become typed errors (decoded with Tss2_RC_Decode).
func tss(_ rc: TSS2_RC, _ operation: String) throws {
    guard rc == 0 else {
        let text = Tss2_RC_Decode(rc).map { String(cString: $0) } ?? "unknown"
        let layerless = rc & 0xffff
        let transient = layerless == vouch_TPM2_RC_RETRY || layerless == vouch_TPM2_RC_YIELDED || layerless == vouch_TPM2_RC_TESTING
        throw VouchError(.tpm, "\(operation) failed: \(text)",
                         context: ["rc": String(format: "0x%08x", rc), "operation": operation, "transient": transient ? "true" : "false"])
    }
}

/// A loaded TPM object (transient handle) owned by a `TPMDevice`.
public struct TPMObject: Sendable, Hashable {
    let handle: UInt32
}

/// A connection to a TPM through ESYS and a TCTI (`swtpm:host=…,port=…`, `device:/dev/tpmrm0`, …).
/// Not thread-safe: confine one device to one thread or serialize access. Transient objects it
/// creates are flushed when it is closed.
public final class TPMDevice {
    private var ctx: OpaquePointer?
    private var tcti: OpaquePointer?
    private var transients: Set<UInt32> = []
    public let tctiConfig: String

    public init(tcti config: String) throws {
        tctiConfig = config
        var t: OpaquePointer? = nil
        try tss(Tss2_TctiLdr_Initialize(config, &t), "Tss2_TctiLdr_Initialize(\(config))")
        tcti = t
        var c: OpaquePointer? = nil
        do {
            try tss(Esys_Initialize(&c, t, nil), "Esys_Initialize")
        } catch {
            Tss2_TctiLdr_Finalize(&tcti)
            throw error
        }
        ctx = c
        // Without a resource manager (simulators), objects leaked by a crashed process stay loaded
        // and exhaust the TPM's few object slots: clear them on open.
        if config.hasPrefix("swtpm") || config.hasPrefix("mssim") {
            try flushAllTransient()
        }
    }

    deinit { close() }

    public func close() {
        guard ctx != nil else { return }
        for h in transients { _ = Esys_FlushContext(ctx, h) }
        transients.removeAll()
        Esys_Finalize(&ctx)
        Tss2_TctiLdr_Finalize(&tcti)
    }

    private func flushAllTransient() throws {
        var more: TPMI_YES_NO = 0
        var data: UnsafeMutablePointer<TPMS_CAPABILITY_DATA>? = nil
        try tss(Esys_GetCapability(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, 0x8000_0000, 64, &more, &data), "Esys_GetCapability(handles)")
        defer { Esys_Free(data) }
        guard let data else { return }
        let handles = withUnsafeBytes(of: data.pointee.data.handles.handle) { raw in
            Array(raw.bindMemory(to: UInt32.self).prefix(Int(data.pointee.data.handles.count)))
        }
        for tpmHandle in handles {
            var tr: ESYS_TR = ESYS_TR_NONE
            if Esys_TR_FromTPMPublic(ctx, tpmHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr) == 0 {
                _ = Esys_FlushContext(ctx, tr)
            }
        }
    }

    // MARK: Endorsement key

    /// Reads the EK certificate (DER) from its NV index (default: the RSA 2048 certificate's).
    public func readEKCertificate(nvIndex: UInt32 = TPMConstants.rsaEKCertNVIndex) throws -> [UInt8] {
        trimDER(try readNV(nvIndex, ownerAuthorized: false, what: "EK cert index"))
    }

    // MARK: NV indices

    /// Reads the whole of NV index `index` (its size from TPM2_NV_ReadPublic), 512 bytes at a
    /// time, authorized by the owner hierarchy (`ownerAuthorized`, empty owner password) or by the
    /// index itself (empty index password).
    public func readNV(_ index: UInt32, ownerAuthorized: Bool = true, what: String? = nil) throws -> [UInt8] {
        var nv: ESYS_TR = ESYS_TR_NONE
        try tss(Esys_TR_FromTPMPublic(ctx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv),
                "Esys_TR_FromTPMPublic(\(what ?? "NV 0x" + String(index, radix: 16)))")
        defer { _ = Esys_TR_Close(ctx, &nv) }
        var pub: UnsafeMutablePointer<TPM2B_NV_PUBLIC>? = nil
        var name: UnsafeMutablePointer<TPM2B_NAME>? = nil
        try tss(Esys_NV_ReadPublic(ctx, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name), "Esys_NV_ReadPublic")
        let size = Int(pub!.pointee.nvPublic.dataSize)
        Esys_Free(pub); Esys_Free(name)
        let auth = ownerAuthorized ? ESYS_TR_RH_OWNER : nv
        return try Self.readInChunks(size: size, chunk: 512) { offset, count in
            var data: UnsafeMutablePointer<TPM2B_MAX_NV_BUFFER>? = nil
            try tss(Esys_NV_Read(ctx, auth, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, UInt16(count), UInt16(offset), &data), "Esys_NV_Read")
            defer { Esys_Free(data) }
            return withUnsafeBytes(of: data!.pointee.buffer) { Array($0.prefix(Int(data!.pointee.size))) }
        }
    }

    /// `size` bytes read `chunk` at a time by `read(offset, count)`. A read that returns nothing,
    /// or more than was asked for, is refused (`tpm`): a TPM that answered so would otherwise make
    /// the loop spin forever or overrun the index.
    static func readInChunks(size: Int, chunk: Int, _ read: (_ offset: Int, _ count: Int) throws -> [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        while out.count < size {
            let count = min(chunk, size - out.count)
            let got = try read(out.count, count)
            guard !got.isEmpty, got.count <= count else {
                throw VouchError(.tpm, "TPM2_NV_Read returned \(got.count) bytes for \(count) asked at offset \(out.count)",
                                 context: ["offset": "\(out.count)", "expected": "1-\(count) bytes", "got": "\(got.count)"])
            }
            out += got
        }
        return out
    }

    /// TPMA_NV_OWNERWRITE | TPMA_NV_AUTHWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD (TPM 2.0
    /// Part 2, TPMA_NV bits 1, 2, 17, 18) of an ordinary index.
    static let ownerAndAuthReadWrite: UInt32 = 0x0000_0002 | 0x0000_0004 | 0x0002_0000 | 0x0004_0000

    /// Writes `data` (at most 1024 bytes) into NV index `index` at offset 0 under the owner
    /// hierarchy (empty owner password), first (re)defining the index as an ordinary one of exactly
    /// `data.count` bytes, SHA-256 name, owner and index read/write, empty auth: what Azure's
    /// paravisor reads its user data from (index 0x01400002).
    public func defineAndWriteNV(_ index: UInt32, _ data: [UInt8]) throws {
        guard !data.isEmpty, data.count <= 1024 else { throw VouchError(.invalidValue, "NV data must be 1-1024 bytes", context: ["got": "\(data.count)"]) }
        var existing: ESYS_TR = ESYS_TR_NONE
        if Esys_TR_FromTPMPublic(ctx, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &existing) == 0 {
            try tss(Esys_NV_UndefineSpace(ctx, ESYS_TR_RH_OWNER, existing, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE), "Esys_NV_UndefineSpace")
        }
        var auth = TPM2B_AUTH()
        var info = TPM2B_NV_PUBLIC()
        info.nvPublic.nvIndex = index
        info.nvPublic.nameAlg = TPM2_ALG_ID(TPMAlg.sha256.rawValue)
        info.nvPublic.attributes = Self.ownerAndAuthReadWrite
        info.nvPublic.dataSize = UInt16(data.count)
        var nv: ESYS_TR = ESYS_TR_NONE
        try tss(Esys_NV_DefineSpace(ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &auth, &info, &nv), "Esys_NV_DefineSpace")
        defer { _ = Esys_TR_Close(ctx, &nv) }
        var buffer = TPM2B_MAX_NV_BUFFER()
        var w = ByteWriter()
        w.sized(data)
        try unmarshal(w.bytes, &buffer) { Tss2_MU_TPM2B_MAX_NV_BUFFER_Unmarshal($0, $1, $2, $3) }
        try tss(Esys_NV_Write(ctx, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &buffer, 0), "Esys_NV_Write")
    }

    /// The key persisted at `handle` (e.g. an Azure vTPM's AK at 0x81000003) and its public area
    /// (TPM2B_PUBLIC bytes).
    public func persistentKey(handle: UInt32) throws -> (TPMObject, [UInt8]) {
        var tr: ESYS_TR = ESYS_TR_NONE
        try tss(Esys_TR_FromTPMPublic(ctx, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr), "Esys_TR_FromTPMPublic(0x\(String(handle, radix: 16)))")
        return (TPMObject(handle: tr), try readPublic(TPMObject(handle: tr)))
    }

    /// NV indices are often larger than the certificate: keep exactly the outer DER SEQUENCE.
    private func trimDER(_ b: [UInt8]) -> [UInt8] {
        guard b.count >= 4, b[0] == 0x30 else { return b }
        if b[1] < 0x80 { return Array(b.prefix(2 + Int(b[1]))) }
        let n = Int(b[1] & 0x7f)
        guard n <= 3, b.count >= 2 + n else { return b }
        var len = 0
        for i in 0..<n { len = len << 8 | Int(b[2 + i]) }
        return Array(b.prefix(min(b.count, 2 + n + len)))
    }

    /// The EK persisted at `handle` and its public area (TPM2B_PUBLIC bytes).
    public func endorsementKey(handle: UInt32 = TPMConstants.rsaEKPersistentHandle) throws -> (TPMObject, [UInt8]) {
        var tr: ESYS_TR = ESYS_TR_NONE
        do {
            try tss(Esys_TR_FromTPMPublic(ctx, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr), "Esys_TR_FromTPMPublic(EK)")
        } catch let e as VouchError {
            throw VouchError(.tpm, "no endorsement key is persisted at 0x\(String(handle, radix: 16)); provision one (tpm2_createek -c 0x\(String(handle, radix: 16)))", context: e.context)
        }
        return (TPMObject(handle: tr), try readPublic(TPMObject(handle: tr)))
    }

    /// The EK of `template`: the one persisted at the template's handle if that is made from the
    /// template, otherwise created as a primary key from it (the same key every time).
    public func endorsementKey(_ template: EKTemplate) throws -> (TPMObject, [UInt8]) {
        var tr: ESYS_TR = ESYS_TR_NONE
        if Esys_TR_FromTPMPublic(ctx, template.persistentHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr) == 0 {
            let object = TPMObject(handle: tr)
            let pub = try readPublic(object)
            if let parsed = try? TPMTPublic(tpm2bPublic: pub), template.mismatch(parsed) == nil { return (object, pub) }
            _ = Esys_TR_Close(ctx, &tr)
        }
        return try createPrimary(hierarchy: ESYS_TR_RH_ENDORSEMENT, template: template.template, what: "EK \(template.rawValue)")
    }

    /// The first template of `kind` whose EK certificate is in NV: the template, the certificate
    /// (DER) and the EK with its public area.
    public func endorsement(_ kind: EKTemplate.Kind) throws -> (template: EKTemplate, certificate: [UInt8], ek: TPMObject, ekPublic: [UInt8]) {
        for template in kind.templates {
            guard let cert = try? readEKCertificate(nvIndex: template.certificateNVIndex) else { continue }
            let (ek, pub) = try endorsementKey(template)
            return (template, cert, ek, pub)
        }
        throw VouchError(.tpm, "no \(kind.rawValue.uppercased()) EK certificate in NV",
                         context: ["expected": kind.templates.map { "0x" + String($0.certificateNVIndex, radix: 16) }.joined(separator: ",")])
    }

    public func readPublic(_ object: TPMObject) throws -> [UInt8] {
        var pub: UnsafeMutablePointer<TPM2B_PUBLIC>? = nil
        var name: UnsafeMutablePointer<TPM2B_NAME>? = nil
        var qn: UnsafeMutablePointer<TPM2B_NAME>? = nil
        try tss(Esys_ReadPublic(ctx, object.handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name, &qn), "Esys_ReadPublic")
        defer { Esys_Free(pub); Esys_Free(name); Esys_Free(qn) }
        return try marshal(pub!) { Tss2_MU_TPM2B_PUBLIC_Marshal($0, $1, $2, $3) }
    }

    // MARK: Attestation key

    /// Creates the AK as a primary key in the endorsement hierarchy. Primary keys derive from the
    /// endorsement seed and the template, so the same AK comes back every time until the seed changes.
    public func createAttestationKey(_ kind: KeyTemplates.AKKind) throws -> (TPMObject, [UInt8]) {
        try createPrimary(hierarchy: ESYS_TR_RH_ENDORSEMENT, template: KeyTemplates.attestationKey(kind), what: "AK")
    }

    private func createPrimary(hierarchy: ESYS_TR, template: [UInt8], what: String) throws -> (TPMObject, [UInt8]) {
        var w = ByteWriter()
        w.sized(template)
        var inPublic = TPM2B_PUBLIC()
        try unmarshal(w.bytes, &inPublic) { Tss2_MU_TPM2B_PUBLIC_Unmarshal($0, $1, $2, $3) }
        var sensitive = TPM2B_SENSITIVE_CREATE()
        var outside = TPM2B_DATA()
        var pcrs = TPML_PCR_SELECTION()
        var handle: ESYS_TR = ESYS_TR_NONE
        var outPublic: UnsafeMutablePointer<TPM2B_PUBLIC>? = nil
        var creationData: UnsafeMutablePointer<TPM2B_CREATION_DATA>? = nil
        var creationHash: UnsafeMutablePointer<TPM2B_DIGEST>? = nil
        var ticket: UnsafeMutablePointer<TPMT_TK_CREATION>? = nil
        try tss(Esys_CreatePrimary(ctx, hierarchy, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                   &sensitive, &inPublic, &outside, &pcrs, &handle, &outPublic, &creationData, &creationHash, &ticket),
                "Esys_CreatePrimary(\(what))")
        defer { Esys_Free(outPublic); Esys_Free(creationData); Esys_Free(creationHash); Esys_Free(ticket) }
        transients.insert(handle)
        return (TPMObject(handle: handle), try marshal(outPublic!) { Tss2_MU_TPM2B_PUBLIC_Marshal($0, $1, $2, $3) })
    }

    public func flush(_ object: TPMObject) {
        guard transients.remove(object.handle) != nil else { return }
        _ = Esys_FlushContext(ctx, object.handle)
    }

    /// TPM2_ActivateCredential: unwraps a credential made for `ak` under `ek`. The EK's policy is
    /// satisfied with a policy session in the EK's name algorithm: PolicySecret over the
    /// endorsement hierarchy (PolicyA), then for a high-range template PolicyOR(PolicyA, PolicyC).
    public func activateCredential(ak: TPMObject, ek: TPMObject, ekTemplate: EKTemplate = .rsa2048,
                                   credentialBlob: [UInt8], encryptedSecret: [UInt8]) throws -> [UInt8] {
        var blob = TPM2B_ID_OBJECT()
        try unmarshal(credentialBlob, &blob) { Tss2_MU_TPM2B_ID_OBJECT_Unmarshal($0, $1, $2, $3) }
        var secret = TPM2B_ENCRYPTED_SECRET()
        try unmarshal(encryptedSecret, &secret) { Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal($0, $1, $2, $3) }

        var session: ESYS_TR = ESYS_TR_NONE
        var sym = TPMT_SYM_DEF()
        sym.algorithm = TPM2_ALG_NULL
        let sessionHash = TPMI_ALG_HASH(ekTemplate.nameAlg.tpmAlg.rawValue)
        try tss(Esys_StartAuthSession(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                      nil, TPM2_SE(TPM2_SE_POLICY), &sym, sessionHash, &session), "Esys_StartAuthSession")
        defer { _ = Esys_FlushContext(ctx, session) }
        var timeout: UnsafeMutablePointer<TPM2B_TIMEOUT>? = nil
        var policyTicket: UnsafeMutablePointer<TPMT_TK_AUTH>? = nil
        try tss(Esys_PolicySecret(ctx, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                  nil, nil, nil, 0, &timeout, &policyTicket), "Esys_PolicySecret")
        Esys_Free(timeout); Esys_Free(policyTicket)
        let branches = ekTemplate.policyORBranches
        if !branches.isEmpty {
            var list = ByteWriter()                 // TPML_DIGEST
            list.u32(UInt32(branches.count))
            for b in branches { list.sized(b) }
            var digests = TPML_DIGEST()
            try unmarshal(list.bytes, &digests) { Tss2_MU_TPML_DIGEST_Unmarshal($0, $1, $2, $3) }
            try tss(Esys_PolicyOR(ctx, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &digests), "Esys_PolicyOR")
        }
        var certInfo: UnsafeMutablePointer<TPM2B_DIGEST>? = nil
        try tss(Esys_ActivateCredential(ctx, ak.handle, ek.handle, ESYS_TR_PASSWORD, session, ESYS_TR_NONE, &blob, &secret, &certInfo),
                "Esys_ActivateCredential")
        defer { Esys_Free(certInfo) }
        return withUnsafeBytes(of: certInfo!.pointee.buffer) { Array($0.prefix(Int(certInfo!.pointee.size))) }
    }

    // MARK: TPM-bound keys

    /// The storage root key at 0x81000001, created from the TCG template and persisted if absent.
    public func storageRootKey() throws -> TPMObject {
        var tr: ESYS_TR = ESYS_TR_NONE
        if Esys_TR_FromTPMPublic(ctx, KeyTemplates.srkHandle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr) == 0 {
            return TPMObject(handle: tr)
        }
        let (primary, _) = try createPrimary(hierarchy: ESYS_TR_RH_OWNER, template: KeyTemplates.storageRootKey, what: "SRK")
        defer { flush(primary) }
        var persistent: ESYS_TR = ESYS_TR_NONE
        try tss(Esys_EvictControl(ctx, ESYS_TR_RH_OWNER, primary.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                  KeyTemplates.srkHandle, &persistent), "Esys_EvictControl(SRK)")
        return TPMObject(handle: persistent)
    }

    /// Creates an agent signing key under `parent`; returns its TPM2B_PRIVATE (wrapped by the
    /// parent, useless outside this TPM) and TPM2B_PUBLIC.
    public func createAgentKey(parent: TPMObject) throws -> (private: [UInt8], public: [UInt8]) {
        var w = ByteWriter()
        w.sized(KeyTemplates.agentKey)
        var inPublic = TPM2B_PUBLIC()
        try unmarshal(w.bytes, &inPublic) { Tss2_MU_TPM2B_PUBLIC_Unmarshal($0, $1, $2, $3) }
        var sensitive = TPM2B_SENSITIVE_CREATE()
        var outside = TPM2B_DATA()
        var pcrs = TPML_PCR_SELECTION()
        var outPrivate: UnsafeMutablePointer<TPM2B_PRIVATE>? = nil
        var outPublic: UnsafeMutablePointer<TPM2B_PUBLIC>? = nil
        var creationData: UnsafeMutablePointer<TPM2B_CREATION_DATA>? = nil
        var creationHash: UnsafeMutablePointer<TPM2B_DIGEST>? = nil
        var ticket: UnsafeMutablePointer<TPMT_TK_CREATION>? = nil
        try tss(Esys_Create(ctx, parent.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive, &inPublic, &outside, &pcrs,
                            &outPrivate, &outPublic, &creationData, &creationHash, &ticket), "Esys_Create(agent key)")
        defer { Esys_Free(outPrivate); Esys_Free(outPublic); Esys_Free(creationData); Esys_Free(creationHash); Esys_Free(ticket) }
        return (try marshal(outPrivate!) { Tss2_MU_TPM2B_PRIVATE_Marshal($0, $1, $2, $3) },
                try marshal(outPublic!) { Tss2_MU_TPM2B_PUBLIC_Marshal($0, $1, $2, $3) })
    }

    public func load(parent: TPMObject, private priv: [UInt8], public pub: [UInt8]) throws -> TPMObject {
        var inPrivate = TPM2B_PRIVATE()
        try unmarshal(priv, &inPrivate) { Tss2_MU_TPM2B_PRIVATE_Unmarshal($0, $1, $2, $3) }
        var inPublic = TPM2B_PUBLIC()
        try unmarshal(pub, &inPublic) { Tss2_MU_TPM2B_PUBLIC_Unmarshal($0, $1, $2, $3) }
        var handle: ESYS_TR = ESYS_TR_NONE
        try tss(Esys_Load(ctx, parent.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &inPrivate, &inPublic, &handle), "Esys_Load")
        transients.insert(handle)
        return TPMObject(handle: handle)
    }

    /// TPM2_Sign of one digest by a loaded unrestricted signing key with its own scheme (an agent
    /// key: ECDSA with SHA-256). Returns the marshaled TPMT_SIGNATURE. The null validation ticket
    /// is what the TPM asks of an unrestricted key; a restricted key (an AK) refuses it, so this
    /// cannot sign anything that would pass for a quote or a certification.
    public func sign(key: TPMObject, digest: [UInt8]) throws -> [UInt8] {
        var d = TPM2B_DIGEST()
        var w = ByteWriter()
        w.sized(digest)
        try unmarshal(w.bytes, &d) { Tss2_MU_TPM2B_DIGEST_Unmarshal($0, $1, $2, $3) }
        var scheme = TPMT_SIG_SCHEME()
        scheme.scheme = TPM2_ALG_NULL
        var ticket = TPMT_TK_HASHCHECK()
        ticket.tag = vouch_TPM2_ST_HASHCHECK
        ticket.hierarchy = vouch_TPM2_RH_NULL
        var sig: UnsafeMutablePointer<TPMT_SIGNATURE>? = nil
        try tss(Esys_Sign(ctx, key.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &d, &scheme, &ticket, &sig), "Esys_Sign")
        defer { Esys_Free(sig) }
        return try marshal(sig!) { Tss2_MU_TPMT_SIGNATURE_Marshal($0, $1, $2, $3) }
    }

    /// TPM2_Certify: the AK attests that `object` (by name) is loaded in this TPM.
    public func certify(object: TPMObject, ak: TPMObject, qualifyingData: [UInt8]) throws -> (attest: [UInt8], signature: [UInt8]) {
        var qd = TPM2B_DATA()
        var w = ByteWriter()
        w.sized(qualifyingData)
        try unmarshal(w.bytes, &qd) { Tss2_MU_TPM2B_DATA_Unmarshal($0, $1, $2, $3) }
        var scheme = TPMT_SIG_SCHEME()
        scheme.scheme = TPM2_ALG_NULL
        var info: UnsafeMutablePointer<TPM2B_ATTEST>? = nil
        var sig: UnsafeMutablePointer<TPMT_SIGNATURE>? = nil
        try tss(Esys_Certify(ctx, object.handle, ak.handle, ESYS_TR_PASSWORD, ESYS_TR_PASSWORD, ESYS_TR_NONE, &qd, &scheme, &info, &sig), "Esys_Certify")
        defer { Esys_Free(info); Esys_Free(sig) }
        return (withUnsafeBytes(of: info!.pointee.attestationData) { Array($0.prefix(Int(info!.pointee.size))) },
                try marshal(sig!) { Tss2_MU_TPMT_SIGNATURE_Marshal($0, $1, $2, $3) })
    }

    // MARK: Quotes and PCRs

    /// TPM2_Quote with the AK's own scheme. Returns the raw TPMS_ATTEST and the marshaled TPMT_SIGNATURE.
    public func quote(ak: TPMObject, qualifyingData: [UInt8], selection: PCRSelection) throws -> (attest: [UInt8], signature: [UInt8]) {
        var qd = TPM2B_DATA()
        var w = ByteWriter()
        w.sized(qualifyingData)
        try unmarshal(w.bytes, &qd) { Tss2_MU_TPM2B_DATA_Unmarshal($0, $1, $2, $3) }
        var sel = TPML_PCR_SELECTION()
        try unmarshal(selection.marshaled, &sel) { Tss2_MU_TPML_PCR_SELECTION_Unmarshal($0, $1, $2, $3) }
        var scheme = TPMT_SIG_SCHEME()
        scheme.scheme = TPM2_ALG_NULL
        var quoted: UnsafeMutablePointer<TPM2B_ATTEST>? = nil
        var sig: UnsafeMutablePointer<TPMT_SIGNATURE>? = nil
        try tss(Esys_Quote(ctx, ak.handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qd, &scheme, &sel, &quoted, &sig), "Esys_Quote")
        defer { Esys_Free(quoted); Esys_Free(sig) }
        let attest = withUnsafeBytes(of: quoted!.pointee.attestationData) { Array($0.prefix(Int(quoted!.pointee.size))) }
        let sigBytes = try marshal(sig!) { Tss2_MU_TPMT_SIGNATURE_Marshal($0, $1, $2, $3) }
        return (attest, sigBytes)
    }

    /// Reads every PCR in `selection` (TPM2_PCR_Read returns at most 8 per call).
    public func readPCRs(_ selection: PCRSelection) throws -> PCRValues {
        var values = PCRValues()
        var pending = selection
        var guardCount = 0
        while pending.banks.contains(where: { !$0.pcrs.isEmpty }) {
            guardCount += 1
            guard guardCount < 64 else { throw VouchError(.tpm, "TPM2_PCR_Read made no progress") }
            var sel = TPML_PCR_SELECTION()
            try unmarshal(pending.marshaled, &sel) { Tss2_MU_TPML_PCR_SELECTION_Unmarshal($0, $1, $2, $3) }
            var counter: UInt32 = 0
            var outSel: UnsafeMutablePointer<TPML_PCR_SELECTION>? = nil
            var digests: UnsafeMutablePointer<TPML_DIGEST>? = nil
            try tss(Esys_PCR_Read(ctx, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, &counter, &outSel, &digests), "Esys_PCR_Read")
            defer { Esys_Free(outSel); Esys_Free(digests) }
            var r = ByteReader(try marshal(outSel!) { Tss2_MU_TPML_PCR_SELECTION_Marshal($0, $1, $2, $3) })
            let got = try PCRSelection(from: &r)
            var d = ByteReader(try marshal(digests!) { Tss2_MU_TPML_DIGEST_Marshal($0, $1, $2, $3) })
            let count = Int(try d.u32("TPML_DIGEST.count"))
            var list: [[UInt8]] = []
            for i in 0..<count { list.append(try d.sized("digests[\(i)]", max: 64)) }
            var k = 0
            var progressed = false
            for bank in got.banks {
                for pcr in bank.pcrs where k < list.count {
                    values.values[bank.hash, default: [:]][pcr] = list[k]
                    k += 1
                    progressed = true
                }
            }
            guard progressed else { throw VouchError(.tpm, "TPM does not have the requested PCR bank", context: ["selection": "\(pending.banks.map { $0.hash.rawValue })"]) }
            pending = PCRSelection(banks: pending.banks.map { b in
                PCRBankSelection(hash: b.hash, pcrs: b.pcrs.filter { values.values[b.hash]?[$0] == nil })
            })
        }
        return values
    }

    /// TPM2_PCR_Reset (allowed at locality 0 for PCRs 16 and 23 on PC Client TPMs).
    public func pcrReset(_ index: Int) throws {
        guard (0...23).contains(index) else { throw VouchError(.invalidValue, "PCR index out of range", context: ["got": "\(index)"]) }
        try tss(Esys_PCR_Reset(ctx, ESYS_TR(index), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE), "Esys_PCR_Reset(\(index))")
    }

    /// TPM2_PCR_Extend of `index` with one digest per bank given.
    public func pcrExtend(_ index: Int, digests: [HashAlg: [UInt8]]) throws {
        guard (0...23).contains(index) else { throw VouchError(.invalidValue, "PCR index out of range", context: ["got": "\(index)"]) }
        var w = ByteWriter()
        w.u32(UInt32(digests.count))
        for (alg, d) in digests.sorted(by: { $0.key.tpmAlg.rawValue < $1.key.tpmAlg.rawValue }) {
            guard d.count == alg.digestSize else { throw VouchError(.invalidValue, "digest size does not match \(alg.rawValue)") }
            w.u16(alg.tpmAlg.rawValue)
            w.raw(d)
        }
        var values = TPML_DIGEST_VALUES()
        try unmarshal(w.bytes, &values) { Tss2_MU_TPML_DIGEST_VALUES_Unmarshal($0, $1, $2, $3) }
        try tss(Esys_PCR_Extend(ctx, ESYS_TR(index), ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &values), "Esys_PCR_Extend(\(index))")
    }

    // MARK: marshaling helpers

    private func marshal<T>(_ value: UnsafeMutablePointer<T>, _ fn: (UnsafePointer<T>, UnsafeMutablePointer<UInt8>, Int, UnsafeMutablePointer<Int>) -> TSS2_RC) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: MemoryLayout<T>.size + 64)
        var offset = 0
        let rc = buf.withUnsafeMutableBufferPointer { fn(UnsafePointer(value), $0.baseAddress!, $0.count, &offset) }
        try tss(rc, "Tss2_MU marshal \(T.self)")
        return Array(buf.prefix(offset))
    }

    private func unmarshal<T>(_ bytes: [UInt8], _ out: inout T, _ fn: (UnsafePointer<UInt8>, Int, UnsafeMutablePointer<Int>, UnsafeMutablePointer<T>) -> TSS2_RC) throws {
        var offset = 0
        let rc = bytes.withUnsafeBufferPointer { b in withUnsafeMutablePointer(to: &out) { fn(b.baseAddress!, b.count, &offset, $0) } }
        try tss(rc, "Tss2_MU unmarshal \(T.self)")
        guard offset == bytes.count else {
            throw VouchError(.trailingBytes, "bytes left after unmarshaling \(T.self)", context: ["offset": "\(offset)", "got": "\(bytes.count)"])
        }
    }
}
