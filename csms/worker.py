"""The worker process's entry module: `dramatiq csms.worker actors`.

Dramatiq imports this module first and runs whatever broker is global once it is imported; only then
does it import `actors`, whose actors declare themselves on that broker. So this module builds the app,
which installs the configured broker (RabbitMQ in production) with the app-context middleware.
"""

from csms import create_app
from csms.broker import get_app_broker

app = create_app()
broker = get_app_broker(app)
