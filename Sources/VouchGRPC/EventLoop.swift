import Foundation
import Synchronization
import VouchCore
#if canImport(Glibc)
import Glibc
#endif

/// The server's one I/O thread: `poll` over the listening socket, a wake-up pipe and every
/// connection. All nghttp2 work happens here; handler threads only queue bytes in their
/// `CallState` and post the call's id to `news`, which the loop drains after each wake-up.
final class EventLoop: @unchecked Sendable {
    let limits: GRPCServer.Limits
    let nghttp2: NGHTTP2Setup
    private let handler: GRPCServer.Handler
    private let path: String
    private let listenFD: Int32
    private let wake: WakePipe
    /// Calls with news from their handler thread: (connection id, stream id), under `newsLock`.
    /// (NSLock rather than Mutex here and below: ThreadSanitizer sees through pthread locks, not
    /// through Mutex's futex, and reported its contended hand-offs as races.)
    private var news: [(UInt64, Int32)] = []
    private let newsLock = NSLock()
    private let stopRequested = Atomic<Bool>(false)
    /// Serializes `stop` (a second caller waits for the first to finish).
    private let stopLock = NSLock()
    private var stopped = false
    let active = Atomic<Int>(0)
    private let handlers = DispatchGroup()
    private let loopDone = DispatchSemaphore(value: 0)
    private var thread: Thread?

    // The loop thread's alone once it has started.
    private var connections: [UInt64: Connection] = [:]
    private var nextID: UInt64 = 0

    init(path: String, mode: UInt16, limits: GRPCServer.Limits, handler: @escaping GRPCServer.Handler) throws {
        self.limits = limits
        self.handler = handler
        self.path = path
        nghttp2 = try NGHTTP2Setup()
        wake = try WakePipe()
        listenFD = try UnixSocket.listen(path: path, mode: mode)
    }

    func start() {
        let t = Thread { [self] in run() }
        t.name = "vouch-grpc-loop"
        t.stackSize = 1 << 20
        thread = t
        t.start()
    }

    var isStopping: Bool { stopRequested.load(ordering: .acquiring) }

    /// GOAWAY to every connection, closes them (their calls are cancelled), waits for the loop
    /// thread and then for every handler thread to return, and removes the socket file.
    func stop() {
        stopLock.withLock {
            guard !stopped else { return }
            stopped = true
            stopRequested.store(true, ordering: .releasing)
            wake.signal()
            if thread != nil { loopDone.wait() }
            handlers.wait()
        }
    }

    // MARK: handler threads

    func makeCallState(connection: UInt64, stream: Int32) -> CallState {
        active.add(1, ordering: .relaxed)
        return CallState(maxMessageBytes: limits.maxResponseMessageBytes,
                         notify: { [weak self] in self?.post(connection, stream) },
                         retire: { [weak self] in _ = self?.active.subtract(1, ordering: .relaxed) })
    }

    private func post(_ connection: UInt64, _ stream: Int32) {
        newsLock.withLock { news.append((connection, stream)) }
        wake.signal()
    }

    /// Runs the handler on a thread of its own; its result becomes the call's trailers: OK when
    /// it returns, its status when it throws a `GRPCStatus`, INTERNAL for any other error.
    func startHandler(_ request: GRPCRequest, _ state: CallState) {
        handlers.enter()
        let handler = self.handler
        let stream = GRPCResponseStream(call: state)
        let t = Thread { [self] in
            let result: GRPCStatus
            do {
                try handler(request, stream)
                result = GRPCStatus(.ok, "")
            } catch let status as GRPCStatus {
                result = status
            } catch {
                result = GRPCStatus(.internalError, "internal server error")
            }
            state.finish(result)
            handlers.leave()
        }
        t.name = "vouch-grpc-call"
        t.stackSize = 512 << 10
        t.start()
    }

    // MARK: the loop

    private func run() {
        while !isStopping {
            let order = Array(connections.values)
            var fds = [pollfd(fd: wake.readFD, events: Int16(POLLIN), revents: 0), pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)]
            for c in order {
                fds.append(pollfd(fd: c.fd, events: Int16(POLLIN) | (c.wantsWrite ? Int16(POLLOUT) : 0), revents: 0))
            }
            if poll(&fds, nfds_t(fds.count), -1) < 0 { continue }   // EINTR; nothing else is expected
            if fds[0].revents != 0 { wake.drain() }
            if isStopping { break }
            processNews()
            if fds[1].revents != 0 { acceptPending() }
            for (i, c) in order.enumerated() where fds[i + 2].revents != 0 && connections[c.id] != nil {
                let events = fds[i + 2].revents
                var ok = true
                if events & Int16(POLLIN | POLLHUP | POLLERR) != 0 { ok = c.readable() }
                if ok { ok = c.flush() }
                if !ok || c.isFinished { drop(c) }
            }
        }
        for c in connections.values {
            c.goAway()
            c.close()
        }
        connections.removeAll()
        close(listenFD)
        unlink(path)
        loopDone.signal()
    }

    private func processNews() {
        let items = newsLock.withLock {
            defer { news.removeAll() }
            return news
        }
        var touched: Set<UInt64> = []
        for (cid, sid) in items {
            guard let c = connections[cid], let call = c.calls[sid] else { continue }
            c.pump(call)
            touched.insert(cid)
        }
        for cid in touched {
            guard let c = connections[cid] else { continue }
            if !c.flush() || c.isFinished { drop(c) }
        }
    }

    /// Accepts what is waiting; beyond `maxConnections` (or `maxConnectionsPerUID` of its user) a
    /// connection is closed at once.
    private func acceptPending() {
        for _ in 0..<64 {
            guard let fd = UnixSocket.accept(listenFD) else { return }
            guard connections.count < limits.maxConnections, let peer = UnixSocket.peerCredentials(fd),
                  connections.values.lazy.filter({ $0.peer.uid == peer.uid }).count < limits.maxConnectionsPerUID else {
                close(fd)
                continue
            }
            nextID += 1
            // A session that fails to start closes the socket in the connection's deinit.
            guard let c = try? Connection(id: nextID, fd: fd, peer: peer, loop: self) else { continue }
            connections[c.id] = c
            if !c.flush() { drop(c) }
        }
    }

    private func drop(_ c: Connection) {
        c.close()
        connections[c.id] = nil
    }
}
