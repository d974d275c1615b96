"""Every actor module, for `dramatiq csms.worker actors` (or `csms.broker.bind_actors`) to load.

Importing an actor module only declares its actors on Dramatiq's global broker: it builds no app and
opens no connection. The process that runs them chooses the broker first (`csms.worker`).
"""

from actors import (  # noqa: F401
    billing,
    cms,
    commands,
    integration,
    load,
    local_lists,
    metering,
    notifications,
    storage,
    transactions,
)
