"""LbEndpoint.health_status, as Envoy reads it: HEALTHY and UNKNOWN hosts are
picked; UNHEALTHY and TIMEOUT ones are not (/failed_eds_health); DRAINING
ones are excluded (/eds_status_draining) and do not count in the healthy
percentage; DEGRADED ones (/degraded_eds_health) take the share of requests
that healthy hosts cannot, healthy share times 1.4 first. A host whose status
changes keeps its place. Over ADS (Istio sets health_status on every
endpoint) and from the static bootstrap."""

import collections
import shutil
import unittest

import skiffharness as h
import xdsharness as x
from skiffharness import LOCALHOST


def cla(cluster_name, endpoints):
    """A ClusterLoadAssignment: endpoints is [(port, health_status or None)]."""
    lb = []
    for port, status in endpoints:
        e = {"endpoint": {"address": {"socket_address": {"address": LOCALHOST,
                                                         "port_value": port}}}}
        if status is not None:
            e["health_status"] = status
        lb.append(e)
    return {"@type": x.ENDPOINT, "cluster_name": cluster_name, "endpoints": [{"lb_endpoints": lb}]}


def by_port(values):
    return {int(address.rsplit(":", 1)[1]): value for address, value in values.items()}


def health_flags(skiff, cluster="web"):
    """{port: flags} of a cluster in /clusters."""
    return by_port(h.cluster_host_values(skiff, cluster, "health_flags"))


def backends_seen(skiff, n, path="/x"):
    """How many of n requests each backend answered."""
    seen = collections.Counter()
    for _ in range(n):
        status, headers, _ = h.http_request(skiff.port(), path=path)
        assert status == 200, status
        seen[headers.get("x-backend")] += 1
    return seen


class EdsTestCase(unittest.TestCase):
    """Four backends b0..b3 and a control plane."""

    def setUp(self):
        if not x.CONTROL_PLANE_BIN and not shutil.which("skiff_control_plane"):
            self.skipTest("SKIFF_CONTROL_PLANE_BIN is not set")
        reserved = h.ReservedPort()
        self.addCleanup(reserved.close)
        self.cp = x.ControlPlane().start(port=reserved.port)
        self.addCleanup(self.cp.stop)
        self.b = []
        for i in range(4):
            b = h.Backend(f"b{i}")
            self.addCleanup(b.stop)
            self.b.append(b)

    def push(self, version, statuses, wait=True):
        """Sets the endpoints' statuses; waits for skiff's ACK unless told not to."""
        since = self.cp.mark()
        self.cp.set(x.ENDPOINT, version,
                    [cla("web", [(b.port, s) for b, s in zip(self.b, statuses)])])
        if not wait:
            return
        self.cp.wait_event(
            lambda e: e["event"] == "request" and e["request"].get("type_url") == x.ENDPOINT
            and e["request"].get("version_info") == version and "error_detail" not in e["request"],
            timeout=10, since=since)

    def wait_flags(self, skiff, expected):
        h.wait_until(lambda: health_flags(skiff) == expected, 10,
                     what=f"health flags {expected} (now {health_flags(skiff)})")

    def wait_membership(self, skiff, healthy, degraded=0, excluded=0):
        """Until the worker (one: its gauges are the cluster's) took the update."""
        def now():
            return tuple(skiff.stat(f"cluster.web.membership_{k}")
                         for k in ("healthy", "degraded", "excluded"))
        h.wait_until(lambda: now() == (healthy, degraded, excluded), 10,
                     what=f"membership {(healthy, degraded, excluded)} (now {now()})")


class EdsHealthStatus(EdsTestCase):
    def test_status_takes_hosts_out_of_and_back_into_the_load_balancer(self):
        self.cp.set(x.CLUSTER, "1", [x.cluster("web")])
        self.cp.set(x.LISTENER, "1", [x.listener("ingress", 0, "routes")])
        self.cp.set(x.ROUTE, "1", [x.route_config("routes", cluster="web")])
        self.push("1", ["HEALTHY", "UNHEALTHY", "DRAINING", None], wait=False)
        skiff = h.Skiff(h.to_yaml(x.ads_bootstrap(self.cp.port)) + "\n", concurrency=1)
        self.addCleanup(skiff.stop)
        b0, b1, b2, b3 = (b.port for b in self.b)
        self.wait_flags(skiff, {b0: "healthy", b1: "/failed_eds_health",
                                b2: "/eds_status_draining", b3: "healthy"})
        self.wait_membership(skiff, healthy=2, excluded=1)
        self.assertEqual(skiff.stat("cluster.web.membership_total"), 4)
        self.assertEqual(set(backends_seen(skiff, 12)), {"b0", "b3"})

        # The same hosts with other statuses: TIMEOUT fails b0, the others
        # come back.
        self.push("2", ["TIMEOUT", "HEALTHY", "UNKNOWN", "HEALTHY"])
        self.wait_flags(skiff, {b0: "/failed_eds_health", b1: "healthy", b2: "healthy",
                                b3: "healthy"})
        self.wait_membership(skiff, healthy=3)
        self.assertEqual(set(backends_seen(skiff, 12)), {"b1", "b2", "b3"})

        # Three healthy hosts of four carry 3/4 x 1.4 > 100% of the load:
        # the degraded one gets none.
        self.push("3", ["HEALTHY", "HEALTHY", "HEALTHY", "DEGRADED"])
        self.wait_flags(skiff, {b0: "healthy", b1: "healthy", b2: "healthy",
                                b3: "/degraded_eds_health"})
        self.wait_membership(skiff, healthy=3, degraded=1)
        self.assertEqual(set(backends_seen(skiff, 30)), {"b0", "b1", "b2"})

        # One healthy host of four carries 35%: the rest spills to the
        # degraded ones.
        self.push("4", ["HEALTHY", "DEGRADED", "DEGRADED", "DEGRADED"])
        self.wait_flags(skiff, {b0: "healthy", b1: "/degraded_eds_health",
                                b2: "/degraded_eds_health", b3: "/degraded_eds_health"})
        self.wait_membership(skiff, healthy=1, degraded=3)
        seen = backends_seen(skiff, 200)
        self.assertGreater(seen["b0"], 0)
        self.assertGreater(seen["b1"] + seen["b2"] + seen["b3"], seen["b0"])

        # Half the hosts draining: the other two are all that count, both
        # failed, so the cluster panics and every host is picked.
        panics = skiff.stat("cluster.web.lb_healthy_panic")
        self.push("5", ["UNHEALTHY", "DRAINING", "DRAINING", "UNHEALTHY"])
        self.wait_flags(skiff, {b0: "/failed_eds_health", b1: "/eds_status_draining",
                                b2: "/eds_status_draining", b3: "/failed_eds_health"})
        self.wait_membership(skiff, healthy=0, excluded=2)
        self.assertEqual(set(backends_seen(skiff, 40)), {"b0", "b1", "b2", "b3"})
        self.assertGreaterEqual(skiff.stat("cluster.web.lb_healthy_panic"), panics + 40)


def priority_cla(cluster_name, priorities):
    """A ClusterLoadAssignment with one LocalityLbEndpoints per priority:
    priorities is [[(port, health_status or None), ...], ...], priority 0 first."""
    endpoints = []
    for priority, hosts in enumerate(priorities):
        group = cla(cluster_name, hosts)["endpoints"][0]
        group["priority"] = priority
        group["locality"] = {"region": "r", "zone": f"z{priority}"}
        endpoints.append(group)
    return {"@type": x.ENDPOINT, "cluster_name": cluster_name, "endpoints": endpoints}


def priorities(skiff, cluster="web"):
    """{port: priority} of a cluster in /clusters."""
    return {port: int(p) for port, p in
            by_port(h.cluster_host_values(skiff, cluster, "priority")).items()}


class EdsPriorities(EdsTestCase):
    def push_priorities(self, version, groups, wait=True):
        since = self.cp.mark()
        self.cp.set(x.ENDPOINT, version, [priority_cla("web", groups)])
        if wait:
            self.cp.wait_event(
                lambda e: e["event"] == "request"
                and e["request"].get("type_url") == x.ENDPOINT
                and e["request"].get("version_info") == version
                and "error_detail" not in e["request"], timeout=10, since=since)

    def start(self, cluster):
        self.cp.set(x.CLUSTER, "1", [cluster])
        self.cp.set(x.LISTENER, "1", [x.listener("ingress", 0, "routes")])
        routes = x.route_config("routes", cluster="web")
        routes["virtual_hosts"][0]["routes"][0]["route"]["hash_policy"] = [
            {"header": {"header_name": "x-user"}}]
        self.cp.set(x.ROUTE, "1", [routes])
        skiff = h.Skiff(h.to_yaml(x.ads_bootstrap(self.cp.port)) + "\n", concurrency=1)
        self.addCleanup(skiff.stop)
        return skiff

    def test_lower_priorities_take_what_higher_ones_cannot(self):
        b0, b1, b2, b3 = (b.port for b in self.b)
        self.push_priorities("1", [[(b0, None), (b1, None)], [(b2, None), (b3, None)]],
                             wait=False)
        skiff = self.start(x.cluster("web"))
        h.wait_until(lambda: priorities(skiff) == {b0: 0, b1: 0, b2: 1, b3: 1}, 10,
                     what="priorities in /clusters")
        self.wait_membership(skiff, healthy=4)
        # A healthy priority 0 takes every request.
        self.assertEqual(set(backends_seen(skiff, 20)), {"b0", "b1"})

        # Priority 0 without a healthy host: priority 1 takes all.
        self.push_priorities("2", [[(b0, "UNHEALTHY"), (b1, "UNHEALTHY")],
                                   [(b2, None), (b3, None)]])
        self.wait_membership(skiff, healthy=2)
        self.assertEqual(set(backends_seen(skiff, 20)), {"b2", "b3"})

        # Half of priority 0 healthy carries 70%; priority 1 the rest.
        self.push_priorities("3", [[(b0, None), (b1, "UNHEALTHY")], [(b2, None), (b3, None)]])
        self.wait_membership(skiff, healthy=3)
        seen = backends_seen(skiff, 200)
        self.assertEqual(seen["b1"], 0)
        self.assertGreater(seen["b0"], seen["b2"] + seen["b3"])
        self.assertGreater(seen["b2"] + seen["b3"], 0)

        # Nothing healthy anywhere: every priority panics, each takes its
        # share of the hosts.
        panics = skiff.stat("cluster.web.lb_healthy_panic")
        self.push_priorities("4", [[(b0, "UNHEALTHY"), (b1, "TIMEOUT")],
                                   [(b2, "UNHEALTHY"), (b3, "UNHEALTHY")]])
        self.wait_membership(skiff, healthy=0)
        self.assertEqual(set(backends_seen(skiff, 60)), {"b0", "b1", "b2", "b3"})
        self.assertGreaterEqual(skiff.stat("cluster.web.lb_healthy_panic"), panics + 60)

    def test_a_hashing_cluster_keeps_keys_within_the_priority_that_serves(self):
        b0, b1, b2, b3 = (b.port for b in self.b)
        self.push_priorities("1", [[(b0, "UNHEALTHY"), (b1, "UNHEALTHY")],
                                   [(b2, None), (b3, None)]], wait=False)
        c = x.cluster("web")
        c["lb_policy"] = "RING_HASH"
        skiff = self.start(c)
        h.wait_until(lambda: priorities(skiff) == {b0: 0, b1: 0, b2: 1, b3: 1}, 10,
                     what="priorities in /clusters")
        self.wait_membership(skiff, healthy=2)
        chosen = {}
        for user in range(12):
            for _ in range(3):
                status, headers, _ = h.http_request(skiff.port(), path="/x",
                                                    headers={"x-user": str(user)})
                self.assertEqual(status, 200)
                chosen.setdefault(user, set()).add(headers.get("x-backend"))
        self.assertTrue(all(len(v) == 1 for v in chosen.values()), chosen)
        self.assertTrue(set().union(*chosen.values()) <= {"b2", "b3"}, chosen)


class StaticHealthStatus(unittest.TestCase):
    def test_static_endpoints_take_health_status(self):
        b0 = h.Backend("b0")
        self.addCleanup(b0.stop)
        b1 = h.Backend("b1")
        self.addCleanup(b1.stop)
        c = h.cluster("web", [(LOCALHOST, b0.port), (LOCALHOST, b1.port)])
        c["load_assignment"]["endpoints"][0]["lb_endpoints"][1]["health_status"] = "DRAINING"
        skiff = h.Skiff(h.bootstrap([h.listener("ingress", [h.route("/", cluster="web")])], [c]))
        self.addCleanup(skiff.stop)
        self.assertEqual(health_flags(skiff), {b0.port: "healthy", b1.port: "/eds_status_draining"})
        self.assertEqual(set(backends_seen(skiff, 6)), {"b0"})


if __name__ == "__main__":
    unittest.main()
