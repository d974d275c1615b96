"""Every actor module, for `dramatiq csms.worker actors` (or `csms.broker.bind_actors`) to load.

Importing an actor module only declares its actors on Dramatiq's global broker: it builds no app and
opens no connection. The process that runs them chooses the broker first (`csms.worker`).
"""

from actors import billing, cms, commands, load, metering, notifications, storage, transactions  # noqa: F401
