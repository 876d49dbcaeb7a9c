"""Consistent hashing end to end: RING_HASH and MAGLEV clusters of three real
backends, picked by a route's hash_policy (header, cookie, query parameter,
source address). Each backend names itself in x-backend, so the tests see
which host answered: one key always reaches one host (on either worker, over
fresh connections), and different keys spread over the hosts."""

import os
import re
import socket
import tempfile
import unittest

import skiffharness as h
from skiffharness import LOCALHOST
from test_outlier import StatusBackend


def hashed(prefix, cluster, *policies):
    return {"match": {"prefix": prefix},
            "route": {"cluster": cluster, "hash_policy": list(policies)}}


USER_HEADER = {"header": {"header_name": "x-user"}}


class HashLbTest(h.SkiffTestCase):
    @classmethod
    def setUpClass(cls):
        cls.backends = [cls.class_backend(n) for n in ("a", "b", "c")]
        endpoints = [(LOCALHOST, b.port) for b in cls.backends]
        routes = [
            hashed("/ring", "ring", USER_HEADER),
            hashed("/maglev", "maglev", USER_HEADER),
            hashed("/cookie", "ring", {"cookie": {"name": "session"}}),
            hashed("/made", "ring", {"cookie": {"name": "sticky", "ttl": "3600s", "path": "/"}}),
            hashed("/query", "maglev", {"query_parameter": {"name": "user"}}),
            hashed("/source", "ring", {"connection_properties": {"source_ip": True}}),
            # The header is terminal when present; else the query parameter.
            hashed("/either", "ring", {**USER_HEADER, "terminal": True},
                   {"query_parameter": {"name": "user"}}),
            {"match": {"prefix": "/nohash"}, "route": {"cluster": "ring"}},
            # A hash policy toward a round robin cluster changes nothing.
            hashed("/rr", "rr", USER_HEADER),
        ]
        cls.skiff = cls.class_skiff(h.bootstrap(
            [h.listener("ingress", routes)],
            [h.cluster("ring", endpoints, extra={
                "lb_policy": "RING_HASH",
                "ring_hash_lb_config": {"minimum_ring_size": 512}}),
             h.cluster("maglev", endpoints, extra={
                 "lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 1009}}),
             h.cluster("rr", endpoints, extra={"lb_policy": "ROUND_ROBIN"})]))
        cls.port = cls.skiff.port("ingress")

    def backend_of(self, path, headers=None):
        status, resp, body = h.http_request(self.port, path=path, headers=headers)
        self.assertEqual(status, 200, body)
        return resp.get("x-backend")

    def assert_sticky_and_spread(self, pick, keys=40, repeats=4):
        """pick(key) -> backend name: each key always gets one backend, and
        the keys reach all three."""
        chosen = {}
        for k in range(keys):
            seen = {pick(f"user-{k}") for _ in range(repeats)}
            self.assertEqual(len(seen), 1, f"key user-{k} reached {seen}")
            chosen[k] = seen.pop()
        # 40 keys over three equal hosts: all three, unless the ring is
        # very unlucky (each key's host depends on the backends' ports).
        self.assertEqual(set(chosen.values()), {"a", "b", "c"}, chosen)
        return chosen

    def test_ring_hash_by_header(self):
        self.assert_sticky_and_spread(lambda k: self.backend_of("/ring", {"x-user": k}))

    def test_maglev_by_header(self):
        self.assert_sticky_and_spread(lambda k: self.backend_of("/maglev", {"x-user": k}))

    def test_cookie(self):
        self.assert_sticky_and_spread(
            lambda k: self.backend_of("/cookie", {"cookie": f"theme=dark; session={k}"}))

    def test_cookie_with_ttl_is_made_and_sticks(self):
        """A client without the cookie gets one made (Envoy's Set-Cookie), and
        its later requests carrying it reach the host that answered first."""
        first = {}
        for k in range(30):
            # Each connection has its own source port: its own cookie.
            status, headers, body = h.http_request(self.port, path="/made")
            self.assertEqual(status, 200, body)
            set_cookie = headers.get("set-cookie", "")
            m = re.fullmatch(r'sticky="([0-9a-f]{16})"; Max-Age=3600; Path=/; HttpOnly',
                             set_cookie)
            self.assertTrue(m, set_cookie)
            first[m.group(1)] = headers.get("x-backend")
        self.assertEqual(len(first), 30)
        self.assertEqual(set(first.values()), {"a", "b", "c"}, first)
        for value, backend in first.items():
            for _ in range(2):
                status, headers, _ = h.http_request(self.port, path="/made",
                                                    headers={"cookie": f"sticky={value}"})
                self.assertEqual((status, headers.get("x-backend")), (200, backend), value)
                self.assertNotIn("set-cookie", headers)  # It had one.

    def test_query_parameter(self):
        self.assert_sticky_and_spread(lambda k: self.backend_of(f"/query/x?a=1&user={k}"))

    def test_terminal_header_then_query(self):
        by_header = self.assert_sticky_and_spread(
            lambda k: self.backend_of("/either", {"x-user": k}))
        # With the header, the query parameter is not looked at.
        for k in range(10):
            self.assertEqual(self.backend_of(f"/either?user=other-{k}", {"x-user": f"user-{k}"}),
                             by_header[k])
        # Without it, the query parameter alone decides, as the header would.
        for k in range(10):
            self.assertEqual(self.backend_of(f"/either?user=user-{k}"), by_header[k])

    def source_request(self, source_ip):
        s = socket.create_connection((LOCALHOST, self.port), timeout=10,
                                     source_address=(source_ip, 0))
        try:
            s.sendall(b"GET /source HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        self.assertIn(" 200 ", head[0] + " ")
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "x-backend":
                return value.strip()
        self.fail(f"no x-backend in {head}")

    def test_source_ip(self):
        # The whole of 127.0.0.0/8 is loopback: each client address is a key.
        self.assert_sticky_and_spread(
            lambda k: self.source_request(f"127.0.0.{int(k.split('-')[1]) + 1}"))

    def test_source_ip_is_the_address_x_forwarded_for_names(self):
        # As Envoy: without use_remote_address the downstream remote address
        # is x-forwarded-for's last entry, so clients behind a load balancer
        # (one peer address for all) still spread, each to its own host.
        self.assert_sticky_and_spread(
            lambda k: self.backend_of(
                "/source", {"x-forwarded-for": f"192.0.2.9, 10.0.{k.split('-')[1]}.7"}))

    def test_no_hash_picks_any_host(self):
        # No hash policy (or no key in the request): a random host, as Envoy.
        seen = {self.backend_of("/nohash") for _ in range(40)}
        self.assertEqual(seen, {"a", "b", "c"})
        seen = {self.backend_of("/ring") for _ in range(40)}  # No x-user.
        self.assertEqual(seen, {"a", "b", "c"})

    def test_round_robin_ignores_the_hash(self):
        seen = [self.backend_of("/rr", {"x-user": "same"}) for _ in range(12)]
        self.assertEqual(set(seen), {"a", "b", "c"}, seen)

    def test_gauges(self):
        stats = self.skiff.stats()
        # 512 points at least, rounded up so each of 3 hosts has a whole 171.
        self.assertEqual(stats.get("cluster.ring.ring_hash_lb.size"), 513)
        self.assertEqual(stats.get("cluster.ring.ring_hash_lb.min_hashes_per_host"), 171)
        self.assertEqual(stats.get("cluster.ring.ring_hash_lb.max_hashes_per_host"), 171)
        self.assertEqual(stats.get("cluster.maglev.maglev_lb.min_entries_per_host"), 336)
        self.assertEqual(stats.get("cluster.maglev.maglev_lb.max_entries_per_host"), 337)


class HashLbHealthTest(unittest.TestCase):
    def test_ejected_host_is_skipped(self):
        """As Envoy's: with a host ejected by outlier detection, the ring is
        built over the healthy hosts, so its keys go elsewhere and stay."""
        backends = [StatusBackend(name, mode) for name, mode in (("a", 503), ("b", 200),
                                                                 ("c", 200))]
        for b in backends:
            self.addCleanup(b.stop)
        route = hashed("/", "ring", USER_HEADER)
        skiff = h.Skiff(h.bootstrap(
            [h.listener("ingress", [route])],
            [h.cluster("ring", [(LOCALHOST, b.port) for b in backends], extra={
                "lb_policy": "RING_HASH",
                "outlier_detection": {"consecutive_5xx": 3, "interval": "1s",
                                      "base_ejection_time": "300s",
                                      "max_ejection_percent": 100}})]), concurrency=1)
        self.addCleanup(skiff.stop)

        def request(key):
            status, headers, _ = h.http_request(skiff.port(), path="/x", headers={"x-user": key})
            return status, headers.get("x-backend")

        keys = [f"user-{k}" for k in range(40)]
        before = {k: request(k) for k in keys}
        # Some keys are a's (three 503 in a row eject it); the rest answered.
        self.assertIn((503, "a"), before.values())
        h.wait_until(lambda: [request(k) for k in keys if before[k][1] == "a"] and
                     skiff.stat("cluster.ring.membership_healthy") == 2, 20,
                     what="a ejected")
        for k in keys:
            after = {request(k) for _ in range(3)}
            self.assertEqual(len(after), 1, f"{k}: {after}")
            status, backend = after.pop()
            self.assertEqual(status, 200, k)
            self.assertIn(backend, ("b", "c"), k)


class HashLbRetryTest(unittest.TestCase):
    def test_previous_hosts_retry_steps_to_another_host(self):
        """As Envoy's: a retry that must avoid the hosts already tried steps
        along the ring from the key's point, so it reaches another host, the
        same one for the same key every time."""
        backends = [StatusBackend(name, mode) for name, mode in (("a", 503), ("b", 200),
                                                                 ("c", 200))]
        for b in backends:
            self.addCleanup(b.stop)
        route = hashed("/", "ring", USER_HEADER)
        route["route"]["retry_policy"] = {
            "retry_on": "retriable-status-codes", "retriable_status_codes": [503],
            "num_retries": 1,
            "retry_host_predicate": [{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.retry.host."
                                          "previous_hosts.v3.PreviousHostsPredicate"}}],
            # A step can land on another point of the same host; this many
            # steps make a key that never leaves a's points impossible here.
            "host_selection_retry_max_attempts": 30}
        skiff = h.Skiff(h.bootstrap(
            [h.listener("ingress", [route])],
            [h.cluster("ring", [(LOCALHOST, b.port) for b in backends],
                       extra={"lb_policy": "RING_HASH"})]))
        self.addCleanup(skiff.stop)
        for k in range(40):
            seen = set()
            for _ in range(3):
                status, headers, _ = h.http_request(skiff.port(), path="/x",
                                                    headers={"x-user": f"user-{k}"})
                seen.add((status, headers.get("x-backend")))
            self.assertEqual(len(seen), 1, f"user-{k}: {seen}")
            self.assertIn(seen.pop(), {(200, "b"), (200, "c")}, f"user-{k}")
        # Some keys were a's and were retried.
        self.assertGreater(len(backends[0].requests), 0)
        self.assertEqual(skiff.stat("cluster.ring.upstream_rq_retry"), len(backends[0].requests))


class HashLbConfigTest(unittest.TestCase):
    def validate(self, cluster_extra, route_extra=None):
        route = {"match": {"prefix": "/"}, "route": {"cluster": "c", **(route_extra or {})}}
        config = h.bootstrap([h.listener("l", [route])],
                             [h.cluster("c", [(LOCALHOST, 1)], extra=cluster_extra)])
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config)
        self.addCleanup(os.remove, f.name)
        return h.run_skiff(["--mode", "validate", "-c", f.name])

    def test_maglev_table_size_must_be_prime(self):
        rc, out = self.validate({"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 1000}})
        self.assertEqual(rc, 1, out)
        self.assertIn("static_resources.clusters[0].maglev_lb_config.table_size: must be a prime "
                      "number up to 5000011, got 1000", out)
        rc, out = self.validate({"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 1009}})
        self.assertEqual(rc, 0, out)

    def test_refused_fields_are_named(self):
        rc, out = self.validate(
            {"lb_policy": "RING_HASH",
             "common_lb_config": {"consistent_hashing_lb_config": {"hash_balance_factor": 150}}},
            {"hash_policy": [{"filter_state": {"key": "k"}}]})
        self.assertEqual(rc, 1, out)
        self.assertIn("static_resources.clusters[0].common_lb_config.consistent_hashing_lb_config."
                      "hash_balance_factor: not supported yet", out)
        self.assertIn(".route_config.virtual_hosts[0].routes[0].route.hash_policy[0].filter_state: "
                      "not supported yet", out)


if __name__ == "__main__":
    unittest.main()
