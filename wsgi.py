"""The web process: HTTP, the chargers' WebSocket and Socket.IO on one port, under gevent.

Monkey-patching must happen before anything else is imported, or sockets, locks and the database
driver would block the whole process instead of one greenlet.
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402
import resource  # noqa: E402

from csms import create_app  # noqa: E402
from csms.broker import is_embedded  # noqa: E402
from csms.extensions import socketio  # noqa: E402
from csms.gc_policy import freeze_survivors  # noqa: E402
from csms.runtime import start_background  # noqa: E402

app = create_app()

# Open files the web process keeps besides its chargers' sockets: its own modules and logs, the
# database pool, the broker, the listening socket, dashboards' and REST clients' connections.
OTHER_FILES = 100


def raise_open_files_limit() -> int:
    """Each charger costs the web process one file descriptor, its socket (`csms.ocpp.route`): take
    the whole hard limit, not the usual soft 1,024, which would hold about a thousand chargers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def main() -> None:
    """Serve until interrupted; in embedded mode the actors run in this process too."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    freeze_survivors(app.config["GC_FULL_SECONDS"])
    descriptors = raise_open_files_limit()
    stop_background = start_background(app)
    ssl = {}
    if app.config["TLS_CERT"] and app.config["TLS_KEY"]:
        ssl = {"certfile": app.config["TLS_CERT"], "keyfile": app.config["TLS_KEY"]}
    scheme = "https" if ssl else "http"
    logging.getLogger("csms").info(
        "serving on %s://%s:%s (%s mode); open files limit %d, room for about %d chargers",
        scheme,
        app.config["HOST"],
        app.config["PORT"],
        "embedded" if is_embedded(app) else "production",
        descriptors,
        descriptors - OTHER_FILES,
    )
    try:
        socketio.run(app, host=app.config["HOST"], port=app.config["PORT"], log_output=False, **ssl)
    finally:
        stop_background()


if __name__ == "__main__":
    main()
