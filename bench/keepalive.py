#!/usr/bin/env python3
"""Opens N kept-alive TLS connections to a vouchd, each having fetched /healthz once, and S event
streams (GET /v1/events), and holds them; prints vouchd's thread count and RSS (from /proc)
before and with them open, and the CPU time vouchd used over 5 s of holding them (an idle
connection or a quiet stream should cost none).

usage: keepalive.py PORT CA_FILE VOUCHD_PID N [S [LABEL]]
With LABEL, prints one JSON row for bench/run.sh's broker.jsonl instead of the text line.
Connections come from 127.0.x.y, 50 per address, and streams from 127.1.x.y, 4 per address, so
vouchd's per-address limits (max-connections-per-address 64, event-streams-per-address 4) admit them."""
import json, os, resource, socket, ssl, sys, time
from concurrent.futures import ThreadPoolExecutor

def proc(pid):
    status = open(f"/proc/{pid}/status").read().split("\n")
    field = lambda name: next(l.split()[1] for l in status if l.startswith(name + ":"))
    return {"threads": int(field("Threads")), "rss_mib": round(int(field("VmRSS")) / 1024, 1)}

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def source(i, per, net):
    k = i // per
    return (f"127.{net}.{k // 250}.{2 + k % 250}", 0)

def ask(conn, request, marker):
    """Sends `request` and reads until `marker` arrived (true) or vouchd closed (false)."""
    conn.sendall(request)
    answer = b""
    while marker not in answer:
        chunk = conn.recv(4096)
        if not chunk:
            return False
        answer += chunk
    return True

def connect(context, port, src, request, marker):
    conn = context.wrap_socket(socket.create_connection(("127.0.0.1", port), source_address=src), server_hostname="127.0.0.1")
    if not ask(conn, request, marker):
        raise SystemExit(f"a connection from {src[0]} was closed by vouchd before its answer")
    return conn

def main():
    port, ca, pid, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    streams = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)   # a descriptor per connection held
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False
    before = proc(pid)
    started = time.time()
    healthz = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with ThreadPoolExecutor(8) as pool:   # handshakes in parallel: the client's CPU is not what is measured
        held = list(pool.map(lambda i: connect(context, port, source(i, 50, 0), healthz, b'"ok"'), range(n)))
    opened = time.time() - started
    open_streams = [connect(context, port, source(i, 4, 1), b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"\r\n\r\n") for i in range(streams)]
    time.sleep(2)
    cpu0 = cpu_seconds(pid)
    time.sleep(5)
    cpu = cpu_seconds(pid) - cpu0
    during = proc(pid)
    alive = sum(1 for conn in held if ask(conn, healthz, b'"ok"'))   # every connection still answers
    if len(sys.argv) > 6:
        print(json.dumps({"name": f"{n:,} kept-alive idle TLS connections and {streams} event streams, {sys.argv[6]}", "unit": "threads",
                          "rate": during["threads"], "threads_before": before["threads"], "rss_mib": during["rss_mib"],
                          "detail": f"vouchd threads {before['threads']} → {during['threads']}, RSS {before['rss_mib']} → {during['rss_mib']} MiB, "
                                    f"{cpu:.2f} s of CPU over 5 s holding them; {alive}/{n} answered again afterwards"}))
        return
    print(f"connections={n} streams={streams} opened_in_s={opened:.1f} still_answering={alive} "
          f"before_threads={before['threads']} before_rss_mib={before['rss_mib']} "
          f"open_threads={during['threads']} open_rss_mib={during['rss_mib']} cpu_s_over_5s={cpu:.2f}")

if __name__ == "__main__":
    main()
