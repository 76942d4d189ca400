/// charrnn's version. Part of a process's numerics identity (`NumericsIdentity`): workers of another
/// version are not admitted to a run, so bump it with any change to how results are computed.
public enum CharRNNVersion {
    public static let current = "0.16.0"
}
