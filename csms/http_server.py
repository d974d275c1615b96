"""The web process's HTTP connections, as gevent's WSGI server handles them, less one delay.

gevent's `pywsgi` writes a response's headers and its body in two sends. With Nagle's algorithm on
(the default), the body then waits until the client acknowledges the headers, and clients delay
that acknowledgement by up to 40 ms on Linux hoping to piggyback it on their next request: every
answer on a keep-alive connection (an app polling sessions, an operator's script, the dashboard's
fetches) took 40 ms more than its work (bench/README.md, `routing`). TCP_NODELAY sends each write
at once; the chargers' WebSocket frames, one write each, go out at once too.
"""

from __future__ import annotations

import contextlib
import socket

from gevent.pywsgi import WSGIHandler


class NoDelayHandler(WSGIHandler):
    def handle(self):
        with contextlib.suppress(OSError, AttributeError):  # not TCP (a Unix socket in tests)
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return super().handle()
