"""The worker process's entry module: `dramatiq csms.worker actors`.

Dramatiq imports this module first and runs whatever broker is global once it is imported; only then
does it import `actors`, whose actors declare themselves on that broker. So this module builds the app,
which installs the configured broker (RabbitMQ in production) with the app-context middleware.

Metrics: with `dramatiq_prom_port` set (Dramatiq's own setting), the worker adds Dramatiq's
Prometheus middleware, which serves every process of this `dramatiq` command on that port
(prometheus_client's multiprocess mode, files under `dramatiq_prom_db`). The CSMS's own worker
metrics (`csms.metrics`) join them: the multiprocess directory is set before anything imports
prometheus_client.
"""

import os

METRICS = bool(os.environ.get("dramatiq_prom_port"))  # noqa: SIM112 (Dramatiq spells it so)
if METRICS:
    from dramatiq.middleware.prometheus import DB_PATH  # imports no prometheus_client

    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DB_PATH)

from csms import create_app  # noqa: E402
from csms.broker import get_app_broker  # noqa: E402
from csms.logs import use_format  # noqa: E402
from csms.startup import refuse_unsafe_production  # noqa: E402

app = create_app()
use_format(app.config)
refuse_unsafe_production(app.config, "dramatiq csms.worker")
broker = get_app_broker(app)
if METRICS:
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
