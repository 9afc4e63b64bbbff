import VouchCore
import VouchCrypto
import VouchXMLSig

/// The software GPU's reference integrity manifests: SWID tags with TCG RIM-IM Meta in the shape
/// of NVIDIA's driver and VBIOS RIMs (Tests/Fixtures/nvidia-rim), signed with an enveloped
/// XML-DSig (C14N 1.1, SHA-384, ECDSA P-384) by the software CoRIM signing leaf, KeyInfo carrying
/// the leaf and the software CoRIM root. Each RIM lists Resource indices 0…9 (SPDM blocks 1–10):
/// its own blocks active with their good measurements, the other RIM's inactive with zeros.
public enum SoftwareRIM {
    static let swid = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
    static let sha384 = "http://www.w3.org/2001/04/xmlenc#sha384"
    static let rimim = "https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/"

    public enum Component: String, Sendable { case driver, vbios }

    /// The unsigned SWID tag for `component`.
    public static func document(_ component: Component) -> String {
        let f = SoftwareGPUFirmware.self
        let version = component == .driver ? f.driverVersion : f.vbiosVersion
        let active = component == .driver ? f.driverBlocks : f.vbiosBlocks
        let tagId = Hex.encode(Crypto.digest(.sha384, Array("vouch simulated \(component.rawValue) RIM \(version)".utf8)))
        let resources = (1...f.blockCount).map { block -> String in
            let on = active.contains(block)
            let hash = on ? Hex.encode(f.measurement(block: block)) : String(repeating: "0", count: 96)
            return "    <Resource type=\"Measurement\" index=\"\(block - 1)\" active=\"\(on ? "True" : "False")\" alternatives=\"1\" SHA384:Hash0=\"\(hash)\" name=\"Measurement_\(block - 1)\" size=\"48\"/>\n"
        }.joined()
        return """
<SoftwareIdentity xmlns="\(swid)" xmlns:SHA384="\(sha384)" xmlns:rim="\(rimim)" corpus="false" name="\(f.product)" patch="false" supplemental="false" tagId="\(tagId)" version="1.0" tagVersion="0">
  <Entity name="\(TEESimulation.organization)" role="softwareCreator tagCreator"/>
  <Meta colloquialVersion="\(version)" edition="GPU" product="\(f.product)" revision="r1" PayloadType="direct" rim:BindingSpec="RIMIM" rim:BindingSpecVersion="1.01" rim:PlatformModel="\(f.product)"/>
  <Payload>
\(resources)  </Payload>
</SoftwareIdentity>

"""
    }

    /// `document(component)` signed by `signer` (leaf), KeyInfo carrying `chain` (leaf first).
    public static func signed(_ component: Component, signer: PrivateKey, chain: [Certificate]) throws -> [UInt8] {
        try XMLSigner.signEnveloped(Array(document(component).utf8), privateKeyPEM: try signer.pem, certificatesDER: try chain.map { try $0.der })
    }
}
