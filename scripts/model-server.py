#!/usr/bin/env python3
"""A tiny OpenAI-compatible model server for tests and the demo (no dependencies, no model).

    python3 scripts/model-server.py --listen 127.0.0.1:8000

GET  /v1/models            one model, "vouch-echo"
POST /v1/chat/completions  {"model", "messages": [...], "stream": false|true}
                           answers deterministically: the words of the last user message,
                           reversed, prefixed by "echo:". With "stream": true, Server-Sent Events
                           (chunked transfer encoding), one chat.completion.chunk per word, then
                           "data: [DONE]". The same request always gets the same bytes.

--delay SECONDS waits that long before each streamed chunk (to watch a stream arrive).
Prints "model-server listening on HOST:PORT" once it accepts connections.
"""
import argparse
import hashlib
import http.server
import json
import sys
import time

MODEL = "vouch-echo"


def answer_words(request):
    messages = request.get("messages") or []
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if not isinstance(last, str):
        last = json.dumps(last, sort_keys=True)
    return ["echo:"] + list(reversed(last.split()))


def completion_id(body):
    return "chatcmpl-" + hashlib.sha256(body).hexdigest()[:24]


def encode(value):
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay = 0.0

    def version_string(self):
        return "vouch-model-server/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("model-server: " + (fmt % args) + "\n")

    def date_time_string(self, timestamp=None):
        return "Thu, 01 Jan 1970 00:00:00 GMT"   # deterministic answers, headers included

    def send_json(self, status, value):
        body = encode(value)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "vouch"}]})
        else:
            self.send_json(404, {"error": {"message": "no such endpoint", "type": "invalid_request_error"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": "no such endpoint", "type": "invalid_request_error"}})
            return
        try:
            request = json.loads(body)
            assert isinstance(request, dict)
        except Exception:
            self.send_json(400, {"error": {"message": "the body is not a JSON object", "type": "invalid_request_error"}})
            return
        words, ident, model = answer_words(request), completion_id(body), request.get("model") or MODEL
        if not request.get("stream"):
            self.send_json(200, {
                "id": ident, "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": " ".join(words)}}],
                "usage": {"prompt_tokens": length, "completion_tokens": len(words), "total_tokens": length + len(words)},
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunks = []
        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            chunks.append({"id": ident, "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        chunks.append({"id": ident, "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        for event in [b"data: " + encode(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]:
            if self.delay:
                time.sleep(self.delay)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main():
    parser = argparse.ArgumentParser(description="a tiny deterministic OpenAI-compatible model server")
    parser.add_argument("--listen", default="127.0.0.1:8000", help="HOST:PORT (default 127.0.0.1:8000)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each streamed chunk")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    Handler.delay = args.delay
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    print(f"model-server listening on {host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
