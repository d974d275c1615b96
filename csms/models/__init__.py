"""Every model, importable from one place (Alembic's autogenerate and the services use this)."""

from csms.models.base import Base
from csms.models.charging import (
    ACTIVE_SESSION_STATES,
    ChargingSession,
    MeterSample,
    SessionState,
    Transaction,
    TransactionState,
)
from csms.models.cluster import ChargerConnection, ClusterNode
from csms.models.command_queue import CommandState, QueuedCommand
from csms.models.login import LoginFailure
from csms.models.logs import CmsEvent, CommandAudit, OcppMessage
from csms.models.network import ChargePoint, Connector, RegistrationStatus, Station
from csms.models.outbox import OutboxMessage
from csms.models.smart_charging import ChargingProfile, LoadAllocation, LoadChange
from csms.models.tariff import Tariff
from csms.models.users import IdTag, IdTagStatus, Role, User
from csms.models.wallet import LedgerEntry, LedgerKind, Wallet

__all__ = [
    "ACTIVE_SESSION_STATES",
    "Base",
    "ChargePoint",
    "ChargerConnection",
    "ChargingProfile",
    "ChargingSession",
    "ClusterNode",
    "CmsEvent",
    "CommandAudit",
    "CommandState",
    "Connector",
    "IdTag",
    "IdTagStatus",
    "LedgerEntry",
    "LedgerKind",
    "LoadAllocation",
    "LoadChange",
    "LoginFailure",
    "MeterSample",
    "OcppMessage",
    "OutboxMessage",
    "QueuedCommand",
    "RegistrationStatus",
    "Role",
    "SessionState",
    "Station",
    "Tariff",
    "Transaction",
    "TransactionState",
    "User",
    "Wallet",
]
