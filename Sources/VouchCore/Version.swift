/// The version every Vouch program reports (`vouch --version`, `vouchd --version`, `vouch-attester --version`).
public enum VouchVersion {
    public static let current = "0.9.1"
}
