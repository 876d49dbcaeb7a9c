"""The admin's POST /drain_listeners, as Envoy's without options: every
listener closes (a new connection is refused), each open connection drains
(an idle HTTP/1.1 keep-alive connection is closed; one with a request in
flight would say `connection: close` on its response), and skiff keeps running (the admin answers, /ready is
LIVE). GET is 405; the options skiff does not have (inboundonly, graceful,
skip_exit) are 400 and change nothing."""

import socket
import unittest

import skiffharness as h
from skiffharness import LOCALHOST


def refused(port):
    try:
        socket.create_connection((LOCALHOST, port), timeout=2).close()
        return False
    except ConnectionResetError:
        # It reached the accept queue as the listener closed: ask again.
        return False
    except ConnectionRefusedError:
        return True


class DrainListenersTest(h.SkiffTestCase):
    def test_drain_listeners(self):
        backend = self.start_backend()
        skiff = self.start_skiff(h.bootstrap(
            [h.listener("ingress", [h.route("/", cluster="backend")])],
            [h.cluster("backend", [(LOCALHOST, backend.port)])]), concurrency=2)
        port = skiff.port("ingress")
        self.assertEqual(skiff.admin_get("/drain_listeners")[0], 405)
        for option in ("inboundonly", "graceful", "skip_exit"):
            status, body = skiff.admin_request("POST", f"/drain_listeners?{option}")
            self.assertEqual(status, 400, option)
            self.assertIn(option, body)
        self.assertFalse(refused(port))

        # A keep-alive connection with a request answered before the drain.
        conn = socket.create_connection((LOCALHOST, port), timeout=10)
        self.addCleanup(conn.close)
        conn.sendall(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        reader = conn.makefile("rb")
        self.assertIn(b" 200 ", reader.readline())
        head = []
        while (line := reader.readline()) not in (b"\r\n", b""):
            head.append(line.lower())
        length = int(next(l for l in head if l.startswith(b"content-length")).split(b":")[1])
        reader.read(length)
        self.assertFalse(any(l.startswith(b"connection: close") for l in head))

        status, body = skiff.admin_request("POST", "/drain_listeners")
        self.assertEqual((status, body), (200, "OK\n"))
        h.wait_until(lambda: refused(port), 10, what="the listener to close")
        # The idle keep-alive connection is drained: skiff closes it.
        self.assertEqual(reader.read(), b"")
        # skiff goes on.
        self.assertEqual(skiff.admin_get("/ready"), (200, "LIVE\n"))
        self.assertIsNone(skiff.proc.poll())


if __name__ == "__main__":
    unittest.main()
