import Foundation

/// The re-attestation scheduler's timetable: a binary min-heap of (due time, host id), so a
/// scheduling pass (every 50 ms) looks only at the hosts that are due instead of walking the
/// whole fleet — on 10,000 hosts that walk, three hash lookups per host twenty times a second
/// under the plan's lock, was a twentieth of the broker's time.
///
/// Entries are never updated in place: a new due time pushes a new entry, and the reader checks
/// each entry it pops against the host's current due time (`Reattestor.Plan.due`), dropping the
/// stale ones. `compact(keeping:)` rebuilds the heap from the current times when stale entries
/// pile up.
struct DueQueue {
    private var heap: [(at: Date, id: String)] = []

    var count: Int { heap.count }

    mutating func push(_ at: Date, _ id: String) {
        heap.append((at, id))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].at < heap[parent].at else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    /// The earliest entry, removed, when it is due at `now` or before.
    mutating func popDue(now: Date) -> (at: Date, id: String)? {
        guard let top = heap.first, top.at <= now else { return nil }
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count, heap[l].at < heap[m].at { m = l }
                if r < heap.count, heap[r].at < heap[m].at { m = r }
                guard m != i else { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    /// Rebuilds the heap with one entry per host of `due` (their current times).
    mutating func compact(keeping due: [String: Date]) {
        heap.removeAll(keepingCapacity: true)
        for (id, at) in due { push(at, id) }
    }
}
