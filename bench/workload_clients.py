#!/usr/bin/env python3
"""Workload API benchmark clients (bench/workload.sh): gRPC streams to the attester's workload
socket with py-spiffe's generated messages, as SPIFFE libraries open them.

  SOCKET ATTESTER_LOG ATTESTER_PID SECONDS WORKLOADS

Prints JSON lines: the sustained FetchX509SVID rate (a stream opened, its first SVID read, the
stream cancelled; 32 at a time) with the attester's CPU; WORKLOADS streams, one connection each,
from open to every first SVID; then, with all of them held open, the rotation latency: from the
moment the attester stored a renewed SVID (its log line) to each stream receiving it.
"""
import asyncio
import hashlib
import json
import os
import re
import sys
import time

import grpc
from spiffe._proto import workload_pb2, workload_pb2_grpc

SOCKET, LOG, PID, SECONDS, WORKLOADS = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
MD = (("workload.spiffe.io", "true"),)
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds():
    with open("/proc/%d/stat" % PID) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def status(field):
    with open("/proc/%d/status" % PID) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])


def channel():
    # Its own connection, as a separate workload process has (grpcio otherwise shares one
    # connection among channels to the same target).
    return grpc.aio.insecure_channel("unix:" + SOCKET, options=[("grpc.use_local_subchannel_pool", 1)])


async def first_svid(stub):
    call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=MD)
    async for response in call:
        call.cancel()
        return response


async def sustained():
    channels = [channel() for _ in range(32)]
    stubs = [workload_pb2_grpc.SpiffeWorkloadAPIStub(c) for c in channels]
    await asyncio.gather(*(first_svid(s) for s in stubs))   # warm: connections open, SVID issued
    count = 0
    deadline = time.monotonic() + SECONDS

    async def worker(stub):
        nonlocal count
        while time.monotonic() < deadline:
            await first_svid(stub)
            count += 1
    cpu0, t0 = cpu_seconds(), time.monotonic()
    await asyncio.gather(*(worker(s) for s in stubs))
    cpu1, t1 = cpu_seconds(), time.monotonic()
    for c in channels:
        await c.close()
    return {"name": "Workload API: FetchX509SVID served (32 streams at a time, one SVID each)", "unit": "SVIDs/s",
            "rate": count / (t1 - t0),
            "detail": "%d SVIDs in %.1f s; attester at %.0f %% of a core; the client (Python grpcio, same machine) shares the 2 cores"
                      % (count, t1 - t0, 100 * (cpu1 - cpu0) / (t1 - t0))}


async def fleet():
    received = [[] for _ in range(WORKLOADS)]
    first = asyncio.Event()
    channels = [channel() for _ in range(WORKLOADS)]
    t0 = time.time()
    done_first = 0

    async def hold(i):
        nonlocal done_first
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channels[i])
        call = stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=MD)
        try:
            async for response in call:
                received[i].append((time.time(), hashlib.sha256(response.svids[0].x509_svid).hexdigest()))
                if len(received[i]) == 1:
                    done_first += 1
                    if done_first == WORKLOADS:
                        first.set()
                if len({h for _, h in received[i]}) >= 2:
                    call.cancel()
                    return
        except asyncio.CancelledError:
            pass
        except grpc.aio.AioRpcError as e:
            errors[e.code().name] = errors.get(e.code().name, 0) + 1
            if len(errors) == 1 and sum(errors.values()) == 1:
                print("first error: %s %s" % (e.code().name, e.details()), file=sys.stderr, flush=True)
    errors = {}
    tasks = [asyncio.create_task(hold(i)) for i in range(WORKLOADS)]
    try:
        await asyncio.wait_for(first.wait(), 120)
    except asyncio.TimeoutError:
        raise SystemExit("only %d of %d workloads got an SVID within 120 s; errors: %s" % (done_first, WORKLOADS, errors))
    t1 = time.time()
    rss, threads = status("VmRSS"), status("Threads")
    results = [{"name": "Workload API: %d workloads (one registration entry) connect and receive their SVID" % WORKLOADS, "unit": "SVIDs/s",
                "rate": WORKLOADS / (t1 - t0),
                "detail": "all %d first SVIDs in %.2f s, one connection and stream each; then attester RSS %.0f MiB, %d threads with the streams open"
                          % (WORKLOADS, t1 - t0, rss / 1024, threads)}]
    # Rotation: the certificate lives 1 minute; the attester renews it at 30 s.
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    except asyncio.TimeoutError:
        pass
    stored = None
    with open(LOG) as f:
        for line in f:
            m = re.search(r"renewed .* stored at ([0-9.]+)", line)
            if m and float(m.group(1)) > t1:   # the first renewal after every stream had its SVID
                stored = float(m.group(1))
                break
    rotated = sorted(r[-1][0] - stored for r in received if stored and len({h for _, h in r}) >= 2)
    if stored and rotated:
        q = lambda p: rotated[min(len(rotated) - 1, int(p * len(rotated)))]
        results.append({"name": "Workload API: a rotation reaches %d open streams" % WORKLOADS, "unit": "ms (p99)",
                        "rate": 1000 * q(0.99),
                        "detail": "from the renewed SVID stored to each stream receiving it: p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d of %d streams rotated"
                                  % (1000 * q(0.5), 1000 * q(0.99), 1000 * rotated[-1], len(rotated), WORKLOADS)})
    else:
        results.append({"name": "Workload API: a rotation reaches %d open streams" % WORKLOADS, "unit": "ms (p99)", "rate": None,
                        "detail": "no rotation seen within 2 minutes (attester log: %s)" % LOG})
    for c in channels:
        await c.close()
    return results


async def main():
    print(json.dumps(await sustained()), flush=True)
    for r in await fleet():
        print(json.dumps(r), flush=True)


asyncio.run(main())
