"""Slow and abusive clients, through the shipped nginx configuration (scripts/replicas.sh renders
deploy/nginx/nginx.local.conf.template, the same settings as deploy/nginx/nginx.conf) in front of two replicas.

Clients that drip their request head or body a byte at a time must not take the replicas' connections: nginx
holds them (it reads the whole request before it opens an upstream connection) and closes them after
client_header_timeout / client_body_timeout (10 s), while normal searches keep being answered. An oversized
header is refused by nginx and never reaches a replica.
"""

from __future__ import annotations

import os
import socket
import time

import httpx
import pytest

from tests.integration.test_replicas import Cluster, cluster  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

DRIPS = 60


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_slow_drip_clients_do_not_take_the_replicas(cluster: Cluster) -> None:  # noqa: F811
    host, port = cluster.lb_url.removeprefix("http://").split(":")
    pids = [cluster.pid(i) for i in range(2)]
    with httpx.Client(timeout=10) as http:
        assert http.post(f"{cluster.lb_url}/v1/search", json={"query": "warm the pool"}).status_code == 200
    fds_before = [open_fds(p) for p in pids]

    drips: list[socket.socket] = []
    for i in range(DRIPS):
        s = socket.create_connection((host, int(port)), timeout=30)
        if i % 2:  # a head that never ends
            s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: lb\r\nX-Slow: ")
        else:  # a complete head, then a body that never comes
            s.sendall(b"POST /v1/search HTTP/1.1\r\nHost: lb\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"query\": ")
        drips.append(s)
    opened = time.monotonic()
    try:
        # While they hang on, searches are answered, and the replicas hold no connection for them.
        with httpx.Client(timeout=10) as http:
            for i in range(20):
                answer = http.post(f"{cluster.lb_url}/v1/search", json={"query": f"while dripping {i}"})
                assert answer.status_code == 200, answer.text
                for s in drips[i % 4::4]:  # keep dripping one byte now and then, below the timeouts
                    s.sendall(b"a")
                time.sleep(0.2)
        fds_during = [open_fds(p) for p in pids]
        assert all(d <= b + 4 for b, d in zip(fds_before, fds_during, strict=True)), (fds_before, fds_during)

        # nginx closes every drip once its timeout passes (408, or a closed connection).
        closed = 0
        for s in drips:
            s.settimeout(max(1.0, opened + 25 - time.monotonic()))
            try:
                data = s.recv(200)
            except (TimeoutError, OSError):
                continue
            if data == b"" or data.startswith(b"HTTP/1.1 408"):
                closed += 1
        assert closed == DRIPS, f"only {closed} of {DRIPS} slow connections were closed by nginx"
        assert time.monotonic() - opened < 30
    finally:
        for s in drips:
            s.close()
    with httpx.Client(timeout=10) as http:
        assert http.post(f"{cluster.lb_url}/v1/search", json={"query": "after the drips"}).status_code == 200


def test_oversized_headers_are_refused_by_nginx(cluster: Cluster) -> None:  # noqa: F811
    def healthz_served(http: httpx.Client) -> float:
        """/healthz requests the replicas answered, from their own metrics."""
        total = 0.0
        for url in cluster.replica_urls:
            for line in http.get(f"{url}/metrics").text.splitlines():
                if line.startswith("zerosearch_requests_total{") and 'route="/healthz"' in line:
                    total += float(line.rsplit(" ", 1)[1])
        return total

    with httpx.Client(timeout=10) as http:
        before = healthz_served(http)
        refused = http.get(f"{cluster.lb_url}/healthz", headers={"x-big": "a" * 100_000})
        assert refused.status_code in (400, 431, 494), refused.status_code
        many = http.get(f"{cluster.lb_url}/healthz", headers={f"x-h-{i}": "y" * 100 for i in range(2000)})
        assert many.status_code in (400, 431, 494), many.status_code
        assert http.get(f"{cluster.lb_url}/healthz").status_code == 200
        assert healthz_served(http) - before == 1  # only the normal request reached a replica
