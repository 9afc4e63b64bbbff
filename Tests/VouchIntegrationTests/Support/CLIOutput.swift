import Foundation

/// The failure codes of `vouch check --json`, in the order reported.
func checkFailureCodes(_ result: TestEnv.RunResult) throws -> [String] {
    let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    return ((object?["failures"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String }
}

/// The broker's error code in `vouch`'s one-line refusal: "(HTTP 403, CODE)".
func brokerCode(_ stderr: String) -> String? {
    guard let r = stderr.range(of: #"\(HTTP \d{3}, [a-z0-9_]+\)"#, options: .regularExpression) else { return nil }
    return stderr[r].dropLast().split(separator: " ").last.map(String.init)
}
