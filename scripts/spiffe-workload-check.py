#!/usr/bin/env python3
"""A workload that uses unmodified py-spiffe (the `spiffe` package on PyPI) against a Workload API
socket; the integration tests and the benchmark run it (docs/agents.md).

  fetch SOCKET AUDIENCE        X.509-SVID, bundles, a JWT-SVID for AUDIENCE, validated by the
                               Workload API and locally with the JWT bundle; prints one JSON line
  watch SOCKET                 streams X.509 contexts: "SVID <id> <serial>" per update, "ERROR <code>" at the end
  serve SOCKET PORT PEER_ID    a TLS server on 127.0.0.1:PORT with only the SVID and bundle py-spiffe
                               handed it, requiring a client certificate whose SPIFFE ID is PEER_ID
  connect SOCKET PORT PEER_ID  the client side of the same
  noheader SOCKET              FetchX509SVID through plain grpcio without the workload.spiffe.io metadata

Exit 0 on success, 3 when the Workload API refused (the gRPC code is printed: "ERROR <CODE> ...").
"""
import json
import os
import re
import socket
import ssl
import sys
import tempfile
import threading

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from spiffe import JwtSvid, WorkloadApiClient


def grpc_code(err):
    """The gRPC status code behind an error py-spiffe raised (it wraps grpc.RpcError)."""
    cause = err
    while cause is not None:
        if isinstance(cause, grpc.RpcError) and hasattr(cause, "code"):
            return cause.code().name
        cause = cause.__cause__ or cause.__context__
    m = re.search(r"StatusCode\.([A-Z_]+)", str(err))
    return m.group(1) if m else type(err).__name__


def refused(err):
    print("ERROR %s %s" % (grpc_code(err), str(err).replace("\n", " ")[:300]), flush=True)
    sys.exit(3)


def client(sock):
    return WorkloadApiClient(socket_path="unix:" + sock, default_timeout=60)


def spiffe_uri(cert):
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if len(uris) == 1 else None


def fetch(sock, audience):
    try:
        c = client(sock)
        svid = c.fetch_x509_svid()
        bundles = c.fetch_x509_bundles()
        td = svid.spiffe_id.trust_domain
        bundle = bundles.get_bundle_for_trust_domain(td)
        jwt_svid = c.fetch_jwt_svid(audience={audience})
        validated = c.validate_jwt_svid(jwt_svid.token, audience)
        jwt_bundle = c.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
        local = JwtSvid.parse_and_validate(jwt_svid.token, jwt_bundle, {audience})
    except Exception as e:  # the Workload API refused, or py-spiffe refused what it got
        refused(e)
    # The chain links up to one of the bundle's authorities (signatures checked by cryptography).
    chain = svid.cert_chain
    for child, parent in zip(chain, chain[1:]):
        child.verify_directly_issued_by(parent)
    top = chain[-1]
    anchored = False
    for authority in bundle.x509_authorities:
        try:
            if top == authority:
                anchored = True
            else:
                top.verify_directly_issued_by(authority)
                anchored = True
        except Exception:
            pass
    print(json.dumps({
        "spiffeId": str(svid.spiffe_id),
        "serial": format(svid.leaf.serial_number, "x"),
        "notAfter": svid.leaf.not_valid_after_utc.isoformat(),
        "chain": len(chain),
        "bundleAuthorities": len(bundle.x509_authorities),
        "anchored": anchored,
        "jwtSpiffeId": str(jwt_svid.spiffe_id),
        "jwtAudience": sorted(jwt_svid.audience),
        "validatedSpiffeId": str(validated.spiffe_id),
        "localSpiffeId": str(local.spiffe_id),
        "jwtToken": jwt_svid.token,
    }), flush=True)


def watch(sock):
    done = threading.Event()

    def on_success(ctx):
        svid = ctx.default_svid
        print("SVID %s %s" % (svid.spiffe_id, format(svid.leaf.serial_number, "x")), flush=True)

    def on_error(err):
        print("ERROR %s %s" % (grpc_code(err), str(err).replace("\n", " ")[:200]), flush=True)
        done.set()

    c = client(sock)
    c.stream_x509_contexts(on_success=on_success, on_error=on_error, retry_connect=False)
    done.wait(600)


def tls_files(sock):
    """The SVID and bundle py-spiffe hands this workload, as files for Python's ssl module."""
    try:
        c = client(sock)
        svid = c.fetch_x509_svid()
        bundle = c.fetch_x509_bundles().get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
    except Exception as e:
        refused(e)
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "svid.pem"), "wb") as f:
        for cert in svid.cert_chain:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(d, "key.pem"), "wb") as f:
        f.write(svid.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open(os.path.join(d, "bundle.pem"), "wb") as f:
        for a in bundle.x509_authorities:
            f.write(a.public_bytes(serialization.Encoding.PEM))
    return svid, d


def context(d, side):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if side == "server" else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(d, "svid.pem"), os.path.join(d, "key.pem"))
    ctx.load_verify_locations(os.path.join(d, "bundle.pem"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    if side == "client":
        ctx.check_hostname = False  # SPIFFE: the peer is its URI SAN, checked below
    return ctx


def peer_id(tls):
    return spiffe_uri(x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)))


def serve(sock, port, expected):
    svid, d = tls_files(sock)
    ctx = context(d, "server")
    with socket.create_server(("127.0.0.1", int(port))) as s:
        print("LISTENING", flush=True)
        conn, _ = s.accept()
        with ctx.wrap_socket(conn, server_side=True) as tls:
            peer = peer_id(tls)
            if peer != expected:
                print("ERROR PEER %s" % peer, flush=True)
                sys.exit(4)
            tls.sendall(("hello %s from %s\n" % (peer, svid.spiffe_id)).encode())
            print("PEER %s" % peer, flush=True)


def connect(sock, port, expected):
    svid, d = tls_files(sock)
    ctx = context(d, "client")
    with socket.create_connection(("127.0.0.1", int(port))) as raw:
        with ctx.wrap_socket(raw) as tls:
            peer = peer_id(tls)
            if peer != expected:
                print("ERROR PEER %s" % peer, flush=True)
                sys.exit(4)
            line = tls.recv(4096).decode().strip()
            print("PEER %s SAID %s" % (peer, line), flush=True)


def noheader(sock):
    channel = grpc.insecure_channel("unix:" + sock)
    call = channel.unary_stream("/SpiffeWorkloadAPI/FetchX509SVID", request_serializer=None, response_deserializer=None)
    try:
        for _ in call(b"", timeout=30):
            print("ANSWERED", flush=True)
            return
    except grpc.RpcError as e:
        print("ERROR %s %s" % (e.code().name, e.details()), flush=True)
        sys.exit(3)


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"fetch": fetch, "watch": watch, "serve": serve, "connect": connect, "noheader": noheader}[mode](*args)
