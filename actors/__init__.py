"""What `dramatiq actors` loads: every actor module, then (in a worker process) the app.

Building the app installs the configured broker (RabbitMQ in production) with the app-context
middleware and moves the actors declared below onto it. In the web process the app is already being
built when this package is imported, so nothing is built twice.
"""

from actors import billing, cms, commands, metering, notifications, storage, transactions  # noqa: F401
from csms.broker import app_installed

if not app_installed():
    from csms import create_app

    app = create_app()
