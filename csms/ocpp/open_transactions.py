"""The transactions a connected charger has started and not stopped, as this connection saw them.

OCPP 1.6 answers a StartTransaction whose idTag "is already involved in another transaction" with
idTagInfo status `ConcurrentTx` (§7.2 AuthorizationStatus). The answer is on the hot path, and the
database cannot tell in time: a StopTransaction answered a moment ago may not be applied by a
worker yet, and a customer who stops and starts again with the same tag would be refused. What the
charger itself said on this connection, in order, is exact and costs a dict lookup. After a
reconnect it is empty, and the workers close a superseded transaction whatever was answered
(`csms.services.unplanned`).
"""

from __future__ import annotations

CONCURRENT_TX = "ConcurrentTx"


class OpenTransactions:
    """Per connector: the latest transaction started on it, its idTag and the status answered."""

    __slots__ = ("_by_connector",)

    def __init__(self) -> None:
        self._by_connector: dict[int, tuple[int, str, str]] = {}

    def started(self, connector_id: int, transaction_id: int, id_tag: str, status: str) -> str:
        """The status to answer for this start: `ConcurrentTx` instead of Accepted when the same
        idTag's earlier transaction on this connector is still open. A resent start (same id) gets
        the answer it got the first time."""
        known = self._by_connector.get(connector_id)
        if known is not None and known[0] == transaction_id:
            return known[2]
        if known is not None and known[0] > transaction_id:
            return status  # a late copy of an older start: the newer one stays the connector's
        if status == "Accepted" and known is not None and known[1] == id_tag:
            status = CONCURRENT_TX
        self._by_connector[connector_id] = (transaction_id, id_tag, status)
        return status

    def stopped(self, transaction_id: int) -> None:
        for connector_id, known in list(self._by_connector.items()):
            if known[0] == transaction_id:
                del self._by_connector[connector_id]
