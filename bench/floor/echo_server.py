"""The floor under the CSMS gateway: flask-sock on gevent's WSGI server, read and written as the CSMS
does it (`csms.ocpp.websocket`: the connection's greenlet parses its own frames), with nothing behind the
socket: each CALL gets a fixed, valid CALLRESULT. No authentication, validation, storage, hand-off
or keepalive; what this costs per round trip, no gateway built on this stack can go below."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
from threading import Lock  # noqa: E402

from flask import Flask  # noqa: E402
from flask_sock import Sock  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from csms.ocpp.websocket import NoReaderThread, messages, plain_frames, send_text  # noqa: E402

ANSWERS = {
    "BootNotification": '{"currentTime":"2026-01-01T00:00:00Z","interval":300,"status":"Accepted"}',
    "Heartbeat": '{"currentTime":"2026-01-01T00:00:00Z"}',
    "StartTransaction": '{"transactionId":1,"idTagInfo":{"status":"Accepted"}}',
}

app = Flask(__name__)
app.config["SOCK_SERVER_OPTIONS"] = {"subprotocols": ["ocpp1.6"], "thread_class": NoReaderThread}
sock = Sock(app)


@sock.route("/ocpp/<charge_point_id>")
def charger(ws, charge_point_id: str) -> None:
    plain = plain_frames(ws)
    for raw in messages(ws, Lock()):
        parts = raw.split('"', 4)  # [2,"<id>","<action>",{...}]
        unique_id, action = parts[1], parts[3]
        send_text(ws, f'[3,"{unique_id}",{ANSWERS.get(action, "{}")}]', plain)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    WSGIServer(("127.0.0.1", parser.parse_args().port), app, log=None).serve_forever()
