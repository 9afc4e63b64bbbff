import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A value read by many threads at once and written rarely (the CA set, cached CRLs and OCSP
/// answers): a POSIX reader-writer lock, so readers do not queue behind each other the way they
/// do on a mutex (measured: a mutex here cost the CRL endpoint half its throughput at 32
/// connections).
public final class ReadMostly<Value>: @unchecked Sendable {
    private var value: Value
    private let lock: UnsafeMutablePointer<pthread_rwlock_t>

    public init(_ value: Value) {
        self.value = value
        lock = .allocate(capacity: 1)
        lock.initialize(to: pthread_rwlock_t())
        pthread_rwlock_init(lock, nil)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    public func read<R>(_ body: (Value) throws -> R) rethrows -> R {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body(value)
    }

    public func write<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body(&value)
    }
}
