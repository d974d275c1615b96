"""Applying a batch of exchanges in one database transaction.

The gateway hands exchanges off in batches (one RabbitMQ message per batch and queue), because one
commit per message caps a worker at a few hundred messages a second. A batch must still behave like
the messages it carries: one bad exchange must not hold back the others, and none may be lost. So a
batch that fails for a reason other than the database being unreachable is split: each exchange is
applied on its own, and one that still fails is sent again as a batch of one, with the actor's own
retries and, in the end, its dead-letter queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from sqlalchemy.exc import OperationalError

from actors.exchanges import Exchange, Notifications
from csms.extensions import db

log = logging.getLogger(__name__)

Apply = Callable[[list[Exchange], Notifications], Any]


def run_batch(actor: dramatiq.Actor, exchanges: list[dict], apply: Apply) -> None:
    """Apply `exchanges` together and commit once; publish their notifications after the commit."""
    try:
        _apply_and_commit(exchanges, apply)
        return
    except OperationalError:
        # Database unreachable, or a deadlock/serialisation failure: retry the whole batch later.
        db.session.rollback()
        raise
    except Exception:
        db.session.rollback()
        if len(exchanges) == 1:
            raise
        log.exception("a batch of %d exchanges failed; applying them one by one", len(exchanges))
    for exchange in exchanges:
        try:
            _apply_and_commit([exchange], apply)
        except OperationalError:
            db.session.rollback()
            raise  # what is committed stays committed; the redelivered batch finds it done
        except Exception:
            db.session.rollback()
            log.exception("exchange from %s failed; queued on its own", exchange.get("charge_point_id"))
            actor.send([exchange])


def _apply_and_commit(exchanges: list[dict], apply: Apply) -> None:
    notifications = Notifications()
    views = [Exchange(raw) for raw in exchanges]
    apply(views, notifications)
    db.session.commit()
    for view in views:
        if view.notes:
            log.warning(
                "%s: %s %s applied with adjustments: %s",
                view.charge_point_id,
                view.action or "reply",
                view.first.get("unique_id"),
                "; ".join(view.notes),
            )
    notifications.publish()
