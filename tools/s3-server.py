"""A local S3 server (moto) on the loopback interface, for tensorseal's tests and demos.

    python tools/s3-server.py [BUCKET ...]

Starts moto's threaded server on 127.0.0.1 on a free port, creates each BUCKET (with versioning
enabled when its name ends in "-versioned"), prints the
environment a client needs, one `export NAME=value` line each, then a line `ready`, and serves
until its standard input closes (so a test that spawns it stops it by dropping the pipe) or it
is interrupted.

It also starts a fault-injecting proxy in front of moto, whose URL it prints as
`TENSORSEAL_TEST_FAULT_PROXY`: a client whose `AWS_ENDPOINT_URL` is the proxy talks to moto
through it, and a test arms faults for the next requests with
`POST /__fault__?kind=KIND&count=N[&status=CODE][&method=GET][&seconds=S]` (an S3 bucket name
cannot contain `_`, so the path never collides): `kind=status` answers with CODE and an S3 error
body without forwarding; `kind=drop` forwards, then sends half the response body and closes the
connection; `kind=stall` waits S seconds before forwarding. `GET /__fault__` answers
`{"faults": [{"kind", "count", "hits"}...], "access_key": ...}`: how many requests each armed
fault has hit, and the access key id the last signed request used; `DELETE /__fault__` disarms
all.
"""

import http.client
import json
import logging
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from moto.server import ThreadedMotoServer

# moto accepts any credentials; these only have to be present and the same on both sides.
ENV = {
    "AWS_ACCESS_KEY_ID": "tensorseal-test",
    "AWS_SECRET_ACCESS_KEY": "tensorseal-test-secret",
    "AWS_REGION": "us-east-1",
}


class Faults:
    """Faults armed by a test, each for its next `count` matching requests."""

    def __init__(self):
        self.lock = threading.Lock()
        self.armed = []  # dicts: kind, count, status, method, seconds, hits
        self.access_key = None

    def arm(self, query):
        q = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
        fault = {"kind": q["kind"], "count": int(q.get("count", "1")), "hits": 0,
                 "status": int(q.get("status", "503")), "method": q.get("method"),
                 "seconds": float(q.get("seconds", "0"))}
        with self.lock:
            self.armed.append(fault)

    def take(self, method):
        with self.lock:
            for f in self.armed:
                if f["count"] > f["hits"] and f["method"] in (None, method):
                    f["hits"] += 1
                    return dict(f)
        return None

    def report(self):
        with self.lock:
            return {"faults": [{k: f[k] for k in ("kind", "count", "hits")} for f in self.armed],
                    "access_key": self.access_key}

    def saw(self, authorization):
        # AWS4-HMAC-SHA256 Credential=AKID/date/region/s3/aws4_request, ...
        cred = authorization.partition("Credential=")[2].partition("/")[0]
        if cred:
            with self.lock:
                self.access_key = cred

    def clear(self):
        with self.lock:
            self.armed = []


def proxy_handler(upstream, faults):
    host, port = upstream

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body, content_type="application/xml"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path, _, query = self.path.partition("?")
            if path == "/__fault__":
                if self.command == "POST":
                    faults.arm(query)
                elif self.command == "DELETE":
                    faults.clear()
                return self.reply(200, json.dumps(faults.report()).encode(), "application/json")
            faults.saw(self.headers.get("Authorization", ""))
            fault = faults.take(self.command)
            if fault and fault["kind"] == "status":
                code = {403: "AccessDenied", 404: "NoSuchKey", 500: "InternalError"}.get(
                    fault["status"], "SlowDown")
                return self.reply(fault["status"], (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                    f"<Message>injected by the test proxy</Message></Error>").encode())
            if fault and fault["kind"] == "stall":
                time.sleep(fault["seconds"])
            conn = http.client.HTTPConnection(host, port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            # A HEAD answer has no body but the object's length.
            length = resp.getheader("Content-Length") if self.command == "HEAD" else len(data)
            self.send_header("Content-Length", str(length or 0))
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault and fault["kind"] == "drop" and data:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_any

    return Proxy


def main() -> int:
    # One log line per request would drown a test's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=ENV["AWS_REGION"],
    )
    for bucket in sys.argv[1:]:
        s3.create_bucket(Bucket=bucket)
        if bucket.endswith("-versioned"):
            s3.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
            )
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), proxy_handler((host, port), Faults()))
    proxy.daemon_threads = True
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    for name, value in {**ENV, "AWS_ENDPOINT_URL": endpoint,
                        "TENSORSEAL_TEST_FAULT_PROXY": proxy_url}.items():
        print(f"export {name}={value}")
    print("ready", flush=True)
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
