"""The web process: HTTP, the chargers' WebSocket and Socket.IO on one port, under gevent.

Monkey-patching must happen before anything else is imported, or sockets, locks and the database
driver would block the whole process instead of one greenlet.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402
from gevent import pywsgi  # noqa: E402

from csms import create_app  # noqa: E402
from csms.broker import is_embedded  # noqa: E402
from csms.gc_policy import freeze_survivors  # noqa: E402
from csms.http_server import NoDelayHandler  # noqa: E402
from csms.logs import configure_logging  # noqa: E402
from csms.runtime import start_background  # noqa: E402
from csms.startup import refuse_flask_run, refuse_unsafe_production  # noqa: E402
from csms.web_processes import listener, stop_when_orphaned, supervise  # noqa: E402

refuse_flask_run()  # `flask --app wsgi run` would serve without the gateway
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="csms-web", description="Serve the CSMS on CSMS_HOST:CSMS_PORT.")
    parser.add_argument(
        "--processes",
        type=_processes,
        help="web processes on the port, each a node (default: CSMS_WEB_PROCESSES, 1); production mode only",
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="bind with SO_REUSEPORT, sharing the port with other web processes (--processes passes it)",
    )
    parser.add_argument(
        "--parent-pid",
        type=int,
        help="stop when this process is no longer the parent: the supervisor of --processes passes it",
    )
    return parser.parse_args(argv)


def _processes(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted (in embedded mode the actors run in this process too), or with
    more than one process, supervise that many (csms.web_processes)."""
    configure_logging(app.config)
    options = parse_args(argv)
    refuse_unsafe_production(app.config, "csms-web")
    processes = options.processes or app.config["WEB_PROCESSES"]
    if processes > 1:
        return supervise(app.config, processes, script=__file__, embedded=is_embedded(app))
    if options.parent_pid is not None:
        stop_when_orphaned(options.parent_pid)
    serve(reuse_port=options.reuse_port)
    return 0


def serve(reuse_port: bool) -> None:
    """Serve in this process: the gateway, the API, Socket.IO and the background tasks."""
    host, port = app.config["HOST"], app.config["PORT"]
    # Our own listener (gevent's default backlog) so that it can share the port (SO_REUSEPORT);
    # bound first, so that a port in use stops the start before anything runs.
    sock = listener(host, port, backlog=pywsgi.WSGIServer.backlog, reuse_port=reuse_port)
    freeze_survivors(app.config["GC_FULL_SECONDS"])
    descriptors = raise_open_files_limit()
    stop_background = start_background(app)
    ssl = {}
    if app.config["TLS_CERT"] and app.config["TLS_KEY"]:
        ssl = {"certfile": app.config["TLS_CERT"], "keyfile": app.config["TLS_KEY"]}
    logging.getLogger("csms").info(
        "serving on %s://%s:%s (%s mode, node %s); open files limit %d, room for about %d chargers",
        "https" if ssl else "http",
        host,
        port,
        "embedded" if is_embedded(app) else "production",
        app.config["NODE_ID"],
        descriptors,
        descriptors - OTHER_FILES,
    )
    server = pywsgi.WSGIServer(sock, app, log=None, handler_class=NoDelayHandler, **ssl)
    gevent.signal_handler(signal.SIGINT, _interrupted, server)
    try:
        server.serve_forever()
    finally:
        stop_background()
        logging.getLogger("csms").info("stopped")


def _interrupted(server: pywsgi.WSGIServer) -> None:
    """Ctrl-C (`make run`): stop serving and the background work, without a traceback."""
    logging.getLogger("csms").info("interrupted: stopping")
    server.stop(timeout=2)


if __name__ == "__main__":
    raise SystemExit(main())
