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
from csms.models.firmware import (
    DiagnosticsRequest,
    DiagnosticsTarget,
    FirmwareTarget,
    FirmwareUpdate,
    StoredFile,
)
from csms.models.integration import IntegrationEvent, Webhook, WebhookDelivery
from csms.models.local_list import LocalList, LocalListPolicy
from csms.models.login import LoginFailure
from csms.models.logs import CmsEvent, CommandAudit, OcppMessage
from csms.models.maintenance import ChargerOperation
from csms.models.money import Payment, PaymentState, Receipt, ReceiptCounter
from csms.models.network import ChargePoint, Connector, RegistrationStatus, Station
from csms.models.outbox import OutboxMessage
from csms.models.reservations import Reservation, ReservationState
from csms.models.smart_charging import ChargingProfile, LoadAllocation, LoadChange
from csms.models.tariff import Tariff
from csms.models.users import AccountPolicy, IdTag, IdTagStatus, Role, User
from csms.models.wallet import LedgerEntry, LedgerKind, Wallet

__all__ = [
    "ACTIVE_SESSION_STATES",
    "AccountPolicy",
    "Base",
    "ChargePoint",
    "ChargerConnection",
    "ChargerOperation",
    "ChargingProfile",
    "ChargingSession",
    "ClusterNode",
    "CmsEvent",
    "CommandAudit",
    "CommandState",
    "Connector",
    "DiagnosticsRequest",
    "DiagnosticsTarget",
    "FirmwareTarget",
    "FirmwareUpdate",
    "IdTag",
    "IdTagStatus",
    "IntegrationEvent",
    "LedgerEntry",
    "LedgerKind",
    "LoadAllocation",
    "LoadChange",
    "LocalList",
    "LocalListPolicy",
    "LoginFailure",
    "MeterSample",
    "OcppMessage",
    "OutboxMessage",
    "Payment",
    "PaymentState",
    "QueuedCommand",
    "Receipt",
    "ReceiptCounter",
    "RegistrationStatus",
    "Reservation",
    "ReservationState",
    "Role",
    "SessionState",
    "Station",
    "StoredFile",
    "Tariff",
    "Transaction",
    "TransactionState",
    "User",
    "Wallet",
    "Webhook",
    "WebhookDelivery",
]
