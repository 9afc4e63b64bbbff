import Foundation

/// The failure codes of `vouch check --json`, in the order reported.
func checkFailureCodes(_ result: TestEnv.RunResult) throws -> [String] {
    let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
    return ((object?["failures"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String }
}
