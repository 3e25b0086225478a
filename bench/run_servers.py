#!/usr/bin/env python3
"""Local servers for bench/run_bench.sh, all on 127.0.0.1 only.

- a DNS server (UDP) answering every A query with 127.0.0.1 and every other
  query with an empty NOERROR answer;
- a threaded HTTP server answering 200 with a small page;
- a "blackhole" TCP port: a listening socket with a full accept queue that
  never accepts, so new SYNs are dropped and connects time out.

With DNS_LOSS=P in the environment (0 <= P < 1), the DNS server ignores that
share of the queries it receives (seeded, so a run is repeatable): a lossy
line for the resolver's datagrams.

Prints "dns=PORT http=PORT blackhole=PORT" on stdout once ready, then serves
until killed.
"""

import http.server
import os
import random
import socket
import socketserver
import sys
import threading
import time


def dns_reply(q):
    if len(q) < 12:
        return None
    i = 12
    while i < len(q) and q[i] != 0:
        i += 1 + q[i]
    if i + 5 > len(q):
        return None
    qtype = q[i + 1] * 256 + q[i + 2]
    answer = qtype == 1
    r = q[:2] + bytes([0x81, 0x80, 0, 1, 0, 1 if answer else 0, 0, 0, 0, 0]) + q[12 : i + 5]
    if answer:
        r += bytes([0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1])
    return r


def serve_dns(sock):
    loss = float(os.environ.get("DNS_LOSS", "0"))
    rng = random.Random(23)
    while True:
        q, peer = sock.recvfrom(1500)
        if loss > 0 and rng.random() < loss:
            continue
        r = dns_reply(q)
        if r:
            sock.sendto(r, peer)


class Page(http.server.BaseHTTPRequestHandler):
    body = b"<html><head><title>bench</title></head><body>" + b"x" * 2000 + b"</body></html>"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 512


def main():
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    threading.Thread(target=serve_dns, args=(dns,), daemon=True).start()

    httpd = Server(("127.0.0.1", 0), Page)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    # Blackhole: backlog 0 and never accept(); fill the queue so that
    # further SYNs are dropped (net.ipv4.tcp_abort_on_overflow = 0).
    bh = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    bh.bind(("127.0.0.1", 0))
    bh.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(bh.getsockname())
        except (BlockingIOError, OSError):
            pass
        fillers.append(c)
    time.sleep(0.5)

    print(
        "dns=%d http=%d blackhole=%d"
        % (dns.getsockname()[1], httpd.server_address[1], bh.getsockname()[1]),
        flush=True,
    )
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
