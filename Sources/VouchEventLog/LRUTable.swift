/// A table that forgets its least recently used key first: a dictionary whose nodes are linked
/// from the most to the least recently used, so a lookup, a store and an eviction each cost a few
/// dictionary operations whatever the table's size. Each value carries a cost the caller bounds
/// (`VerifiedLogCache`: hosts and retained bytes). Not thread safe: its owner holds it in a lock.
struct LRUTable<Value: Sendable>: Sendable {
    private struct Node: Sendable {
        var value: Value
        var cost: Int
        /// The next more recently used key (nil: this is the newest).
        var newer: String?
        /// The next less recently used key (nil: this is the oldest).
        var older: String?
    }

    private var nodes: [String: Node] = [:]
    private var newest: String?
    private var oldest: String?
    /// The sum of the values' costs.
    private(set) var cost = 0

    var count: Int { nodes.count }

    /// The value for `key`, which becomes the most recently used.
    mutating func get(_ key: String) -> Value? {
        guard let node = nodes[key] else { return nil }
        moveToNewest(key, node)
        return node.value
    }

    /// Stores `value` for `key` as the most recently used (replacing any value it had).
    mutating func set(_ key: String, _ value: Value, cost: Int) {
        _ = remove(key)
        nodes[key] = Node(value: value, cost: cost, newer: nil, older: newest)
        if let n = newest { nodes[n]?.newer = key }
        newest = key
        if oldest == nil { oldest = key }
        self.cost += cost
    }

    /// Removes `key`'s value and returns it.
    @discardableResult
    mutating func remove(_ key: String) -> Value? {
        guard let node = nodes.removeValue(forKey: key) else { return nil }
        unlink(key, node)
        cost -= node.cost
        return node.value
    }

    /// Removes the least recently used value, if any.
    mutating func removeOldest() {
        if let key = oldest { remove(key) }
    }

    mutating func removeAll() {
        nodes.removeAll()
        newest = nil
        oldest = nil
        cost = 0
    }

    private mutating func unlink(_ key: String, _ node: Node) {
        if let n = node.newer { nodes[n]?.older = node.older } else { newest = node.older }
        if let o = node.older { nodes[o]?.newer = node.newer } else { oldest = node.newer }
    }

    private mutating func moveToNewest(_ key: String, _ node: Node) {
        guard newest != key else { return }
        unlink(key, node)
        nodes[key]?.newer = nil
        nodes[key]?.older = newest
        if let n = newest { nodes[n]?.newer = key }
        newest = key
        if oldest == nil { oldest = key }
    }
}
