import VouchCore
import VouchPolicy
import VouchTEEWire

extension SNPVerifier {
    /// Checks 6–8: the endorsement key's AMD extensions describe the chip and TCB the report
    /// names. `product` is the line whose pinned chain issued the endorsement. The report is read
    /// here only to compare; nothing is returned from it before its signature verifies (check 9).
    static func checkBinding(report: SNPReport, extensions e: SNPEndorsementExtensions, product: SNPProduct, signer: SNPSigningKey) -> PolicyViolation? {
        // 6. Product line: the endorsement's productName, the chain, and the report's CPUID.
        guard let name = e.productName, let named = SNPProduct(productName: name), named == product else {
            return PolicyViolation(code: .snpProductMismatch, path: "snp.endorsement.productName", expected: "a \(product.rawValue) product name",
                                   actual: e.productName ?? "none")
        }
        if let cpuid = report.cpuid {
            guard SNPProduct(cpuidFamily: cpuid.family, model: cpuid.model) == product else {
                return PolicyViolation(code: .snpProductMismatch, path: "snp.report.cpuid", expected: "a \(product.rawValue) CPU",
                                       actual: "family \(snpHex2(cpuid.family)) model \(snpHex2(cpuid.model))")
            }
        }

        // 7. Chip identity.
        switch signer {
        case .vlek:
            if let hwID = e.hwID {
                return PolicyViolation(code: .snpHWIDMismatch, path: "snp.endorsement.hwID", expected: "no hwID on a VLEK", actual: Hex.encode(hwID))
            }
        case .vcek, .none:
            let length = product == .turin ? 8 : 64
            let chip = Array(report.chipID.prefix(length))
            guard let hwID = e.hwID, hwID.count == length, constantTimeEqual(hwID, chip) else {
                return PolicyViolation(code: .snpHWIDMismatch, path: "snp.report.chipId", expected: e.hwID.map(Hex.encode) ?? "a VCEK with a hwID",
                                       actual: Hex.encode(chip))
            }
        }

        // 8. TCB: each SPL is the REPORTED_TCB component; no SPL the product does not have.
        let reported = report.reportedTCB.components(for: product)
        var pairs: [(String, UInt8?, UInt8)] = [("blSPL", e.bootloaderSPL, reported.bootloader), ("teeSPL", e.teeSPL, reported.tee),
                                               ("snpSPL", e.snpSPL, reported.snp), ("ucodeSPL", e.microcodeSPL, reported.microcode)]
        if product.hasFMC {
            pairs.insert(("fmcSPL", e.fmcSPL, reported.fmc ?? 0), at: 0)
        } else if let fmc = e.fmcSPL {
            return PolicyViolation(code: .snpTCBMismatch, path: "snp.endorsement.fmcSPL", expected: "no fmcSPL on \(product.rawValue)", actual: "\(fmc)")
        }
        for (extensionName, spl, value) in pairs where spl != value {
            return PolicyViolation(code: .snpTCBMismatch, path: "snp.endorsement.\(extensionName)", expected: "\(value) (REPORTED_TCB)",
                                   actual: spl.map { "\($0)" } ?? "absent")
        }
        let rebuilt = SNPTCBVersion(reported, product: product)
        guard rebuilt.raw == report.reportedTCB.raw else {
            return PolicyViolation(code: .snpTCBMismatch, path: "snp.report.reportedTCB", expected: "reserved bytes zero (\(snpHex16(rebuilt.raw)))",
                                   actual: snpHex16(report.reportedTCB.raw))
        }
        return nil
    }
}

private func snpHex2(_ b: UInt8) -> String { b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16) }
