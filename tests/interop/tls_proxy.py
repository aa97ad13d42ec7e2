"""An HTTPS front for a plain-HTTP server (registry, index server): terminates TLS with the
given certificate and forwards every request to the backend, so tests can point Sluice at an
`https` server with a private CA. With TLS_PROXY_REQUIRE_AUTH set, a request whose
Authorization header is not exactly that value gets 401. With TLS_PROXY_REFUSE_FILE set, a
`_bulk` request that writes to the index named in that file, or an `_mget` of it, gets 429
while the file exists (one index failing while others work); "INDEX N" in the file refuses
only the first N such requests (a server that is busy for a moment). A `tcp://HOST:PORT`
backend (a Kafka broker) gets the bytes of each connection as they are, TLS taken off. Prints
"ready" once listening; serves until killed.

usage: tls_proxy.py PORT CERT KEY BACKEND_URL
"""

import asyncio

import gzip
import http.server
import os
import ssl
import sys
import urllib.error
import urllib.request


def main():
    port, cert, key, backend = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4].rstrip("/")
    if backend.startswith("tcp://"):
        host, _, backend_port = backend.removeprefix("tcp://").rpartition(":")
        asyncio.run(forward_bytes(port, cert, key, host, int(backend_port)))
        return
    required = os.environ.get("TLS_PROXY_REQUIRE_AUTH")
    refuse_file = os.environ.get("TLS_PROXY_REFUSE_FILE")

    refusals = {}  # file content -> requests refused under it

    def refused(path, headers, body):
        if not (refuse_file and body):
            return False
        try:
            with open(refuse_file) as f:
                rule = f.read().strip()
        except FileNotFoundError:
            return False
        index, _, limit = rule.partition(" ")
        if path.startswith(f"/{index}/_mget"):
            hit = True
        elif path.startswith("/_bulk"):
            if headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            hit = f'"_index":"{index}"'.encode() in body
        else:
            hit = False
        if not hit or (limit and refusals.get(rule, 0) >= int(limit)):
            return False
        refusals[rule] = refusals.get(rule, 0) + 1
        return True

    class Forward(http.server.BaseHTTPRequestHandler):
        def answer(self, status, data):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if required and self.headers.get("Authorization") != required:
                self.answer(401, b'{"error": "missing or wrong credentials"}')
                return
            if refused(self.path, self.headers, body):
                self.answer(429, b'{"error": "too many requests (refused by the test proxy)"}')
                return
            req = urllib.request.Request(backend + self.path, data=body, method=self.command)
            for name in ("Content-Type", "Content-Encoding", "Accept", "Authorization"):
                if self.headers.get(name):
                    req.add_header(name, self.headers[name])
            try:
                with urllib.request.urlopen(req) as r:
                    status, headers, data = r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                status, headers, data = e.code, e.headers, e.read()
            self.send_response(status)
            self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = forward

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Forward)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print("ready", flush=True)
    server.serve_forever()


async def forward_bytes(port, cert, key, host, backend_port):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:  # reset, timed out, or a TLS error: the connection is over
            pass
        finally:
            writer.close()

    async def serve(client_reader, client_writer):
        try:
            reader, writer = await asyncio.open_connection(host, backend_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))

    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=context)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    main()
