"""Every CLI command, with good and bad input: bad input says what is wrong and exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from csms.extensions import db
from csms.models import (
    ChargePoint,
    Connector,
    IdTag,
    LedgerEntry,
    QueuedCommand,
    Station,
    Tariff,
    User,
    Wallet,
)
from csms.services import credentials


def _count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def _point(charge_point_id: str) -> ChargePoint | None:
    db.session.expire_all()
    return db.session.scalar(select(ChargePoint).where(ChargePoint.charge_point_id == charge_point_id))


# --- flask seed-demo ---------------------------------------------------------------------------


def test_seed_demo_creates_everything_and_prints_credentials(app, cli):
    result = cli.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    creds = json.loads((Path(app.instance_path) / "demo-credentials.json").read_text())
    assert "CP-DEMO-1" in result.output
    assert creds["auth_key"] in result.output
    assert creds["operator_password"] in result.output and creds["customer_password"] in result.output
    assert "DEMO-TAG-1" in result.output

    point = _point("CP-DEMO-1")
    assert credentials.verify_key(creds["auth_key"], point.auth_key_hash)
    assert [c.connector_id for c in point.connectors] == [0, 1, 2]
    assert point.station.name == "Demo Station"
    tariff = db.session.scalar(select(Tariff).where(Tariff.is_default.is_(True)))
    assert tariff is not None and tariff.currency == "EUR"
    customer = db.session.scalar(select(User).where(User.email == "customer@demo.local"))
    assert customer.role == "customer"
    assert db.session.scalar(select(IdTag.user_id).where(IdTag.id_tag == "DEMO-TAG-1")) == customer.id
    wallet = db.session.scalar(select(Wallet).where(Wallet.user_id == customer.id))
    assert wallet.available_minor == 5000
    operator = db.session.scalar(select(User).where(User.email == "operator@demo.local"))
    assert operator.role == "operator"


def test_seed_demo_is_idempotent(app, cli):
    first = cli.invoke(args=["seed-demo"])
    counts = {
        m: _count(m) for m in (ChargePoint, Connector, Station, Tariff, User, Wallet, LedgerEntry, IdTag)
    }
    second = cli.invoke(args=["seed-demo"])
    assert second.exit_code == 0
    assert first.output == second.output
    assert {m: _count(m) for m in counts} == counts
    assert db.session.scalar(select(Wallet.available_minor)) == 5000  # funded once, not twice


# --- flask charger add -------------------------------------------------------------------------


def test_charger_add_generates_and_prints_a_key(cli):
    result = cli.invoke(args=["charger", "add", "CP-100", "--connectors", "2"])
    assert result.exit_code == 0, result.output
    key = result.output.split("auth key: ")[1].split()[0]
    point = _point("CP-100")
    assert credentials.verify_key(key, point.auth_key_hash)
    assert key not in point.auth_key_hash  # stored hashed, never in clear
    assert not credentials.verify_key(key + "x", point.auth_key_hash)
    assert [c.connector_id for c in point.connectors] == [0, 1, 2]
    assert point.registration_status == "Accepted"


def test_charger_add_with_given_key_and_pending(cli):
    result = cli.invoke(args=["charger", "add", "CP-101", "--auth-key", "0123456789abcdef", "--pending"])
    assert result.exit_code == 0, result.output
    point = _point("CP-101")
    assert credentials.verify_key("0123456789abcdef", point.auth_key_hash)
    assert point.registration_status == "Pending"


def test_two_chargers_with_the_same_key_get_different_hashes(cli):
    for cp in ("CP-A", "CP-B"):
        assert cli.invoke(args=["charger", "add", cp, "--auth-key", "same-key-for-both"]).exit_code == 0
    assert _point("CP-A").auth_key_hash != _point("CP-B").auth_key_hash


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["charger", "add", "bad id"], "invalid chargePointId"),
        (["charger", "add", "CP:1"], "invalid chargePointId"),
        (["charger", "add", "x" * 49], "invalid chargePointId"),
        (["charger", "add", "CP-1", "--auth-key", "short"], "16 to 40 characters"),
        (["charger", "add", "CP-1", "--auth-key", "has a space in it!"], "printable ASCII"),
        (["charger", "add", "CP-1", "--connectors", "99"], "connectors must be between"),
    ],
)
def test_charger_add_refuses_bad_input(cli, args, message):
    result = cli.invoke(args=args)
    assert result.exit_code == 1
    assert message in result.output
    assert _count(ChargePoint) == 0


def test_charger_add_refuses_a_duplicate(cli):
    assert cli.invoke(args=["charger", "add", "CP-1"]).exit_code == 0
    result = cli.invoke(args=["charger", "add", "CP-1"])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert _count(ChargePoint) == 1


def test_charger_add_without_id_is_a_usage_error(cli):
    result = cli.invoke(args=["charger", "add"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output


# --- flask charger import ----------------------------------------------------------------------


def test_charger_import_a_fleet(cli, tmp_path):
    rows = "\n".join(f"CP-{n:05d},key-{n:012d}" for n in range(2000))
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("chargePointId,authKey\n" + rows + "\n")
    result = cli.invoke(args=["charger", "import", str(fleet)])
    assert result.exit_code == 0, result.output
    assert "imported 2000" in result.output
    assert _count(ChargePoint) == 2000
    assert _count(Connector) == 4000  # connector 0 and connector 1 each
    assert credentials.verify_key("key-000000001999", _point("CP-01999").auth_key_hash)


def test_charger_import_reports_every_bad_row_and_imports_nothing(cli, tmp_path):
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(
        "CP-1,0123456789abcdef\n"
        "CP 2,0123456789abcdef\n"  # line 2: bad id
        "CP-3,short\n"  # line 3: short key
        "CP-1,0123456789abcdef\n"  # line 4: duplicate
        "CP-5\n"  # line 5: missing key
    )
    result = cli.invoke(args=["charger", "import", str(fleet)])
    assert result.exit_code == 1
    for line in ("line 2", "line 3", "line 4: duplicate of line 1", "line 5"):
        assert line in result.output
    assert _count(ChargePoint) == 0


def test_charger_import_existing_chargers(cli, tmp_path):
    assert cli.invoke(args=["charger", "add", "CP-1"]).exit_code == 0
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("CP-1,0123456789abcdef\nCP-2,0123456789abcdef\n")
    refused = cli.invoke(args=["charger", "import", str(fleet)])
    assert refused.exit_code == 1 and "already exists" in refused.output
    skipped = cli.invoke(args=["charger", "import", str(fleet), "--skip-existing"])
    assert skipped.exit_code == 0, skipped.output
    assert "imported 1 charger(s), skipped 1" in skipped.output
    assert _count(ChargePoint) == 2


def test_charger_import_missing_or_binary_file(cli, tmp_path):
    assert cli.invoke(args=["charger", "import", str(tmp_path / "nope.csv")]).exit_code == 2
    binary = tmp_path / "fleet.csv"
    binary.write_bytes(b"\xff\xfe\x00bad")
    result = cli.invoke(args=["charger", "import", str(binary)])
    assert result.exit_code == 1 and "not UTF-8" in result.output


# --- flask user add ----------------------------------------------------------------------------


def test_user_add_customer_with_id_tag(cli):
    result = cli.invoke(
        args=["user", "add", "Eve@Example.test", "--password", "long-enough", "--id-tag", "RFID-9"]
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "eve@example.test"))
    assert user.role == "customer"
    assert user.password_hash.startswith("scrypt:")  # a slow hash, never the password
    assert db.session.scalar(select(IdTag.user_id).where(IdTag.id_tag == "RFID-9")) == user.id
    assert db.session.scalar(select(Wallet.currency).where(Wallet.user_id == user.id)) == "EUR"


def test_user_add_operator_has_no_wallet(cli):
    result = cli.invoke(
        args=["user", "add", "op@example.test", "--password", "long-enough", "--role", "operator"]
    )
    assert result.exit_code == 0, result.output
    assert _count(Wallet) == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["user", "add", "not-an-email", "--password", "long-enough"], 1, "invalid email"),
        (["user", "add", "a@example.test", "--password", "short"], 1, "at least 8"),
        (
            ["user", "add", "a@example.test", "--password", "long-enough", "--role", "admin"],
            2,
            "Invalid value",
        ),
        (["user", "add", "a@example.test"], 2, "Missing option"),
        (["user", "add", "a@example.test", "--password", "long-enough", "--id-tag", "x" * 21], 1, "idTag"),
    ],
)
def test_user_add_refuses_bad_input(cli, args, code, message):
    result = cli.invoke(args=args)
    assert result.exit_code == code
    assert message in result.output
    assert _count(User) == 0


def test_user_add_refuses_duplicates(cli):
    assert (
        cli.invoke(
            args=["user", "add", "a@example.test", "--password", "long-enough", "--id-tag", "T1"]
        ).exit_code
        == 0
    )
    again = cli.invoke(args=["user", "add", "A@example.test", "--password", "long-enough"])
    assert again.exit_code == 1 and "exists" in again.output
    tag_taken = cli.invoke(
        args=["user", "add", "b@example.test", "--password", "long-enough", "--id-tag", "T1"]
    )
    assert tag_taken.exit_code == 1 and "already issued" in tag_taken.output
    assert _count(User) == 1


# --- flask idtag set ---------------------------------------------------------------------------


def test_idtag_set_blocks_and_expires_a_tag_and_every_node_decides_by_it(app, cli):
    cli.invoke(args=["user", "add", "ada@example.test", "--password", "password-123", "--id-tag", "RFID-1"])
    cache = app.extensions["ocpp"].id_tags
    assert cache.info("RFID-1").status == "Accepted"
    result = cli.invoke(args=["idtag", "set", "RFID-1", "--status", "Blocked"])
    assert (result.exit_code, result.output) == (0, "idTag RFID-1: Blocked, expires none\n")
    assert cache.info("RFID-1").status == "Blocked"
    result = cli.invoke(
        args=["idtag", "set", "RFID-1", "--status", "Accepted", "--expires", "2030-01-01T00:00:00Z"]
    )
    assert (result.exit_code, result.output) == (
        0,
        "idTag RFID-1: Accepted, expires 2030-01-01T00:00:00+00:00\n",
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["idtag", "set", "RFID-1"], 2, "nothing to set: give --status and/or --expires"),
        (["idtag", "set", "RFID-1", "--status", "Lost"], 2, "'Lost' is not one of"),
        (["idtag", "set", "RFID-1", "--expires", "tomorrow"], 2, "Invalid value for '--expires'"),
        (["idtag", "set", "RFID-1", "--expires", "2030-01-01T00:00:00"], 1, "expiryDate needs a time zone"),
        (["idtag", "set", "NOPE", "--status", "Blocked"], 1, "no idTag 'NOPE'"),
    ],
)
def test_idtag_set_refuses_bad_input(cli, args, code, message):
    cli.invoke(args=["user", "add", "ada@example.test", "--password", "password-123", "--id-tag", "RFID-1"])
    result = cli.invoke(args=args)
    assert result.exit_code == code and message in result.output, result.output
    assert db.session.scalar(select(IdTag.status).where(IdTag.id_tag == "RFID-1")) == "Accepted"


def test_legacy_chargers_are_registered_with_their_security_profile(cli, tmp_path):
    assert cli.invoke(args=["charger", "add", "CP-OLD", "--security-profile", "0"]).exit_code == 0
    fleet = tmp_path / "fleet.csv"
    fleet.write_text("CP-OLD-1,0123456789abcdef\nCP-OLD-2,0123456789abcdef\n")
    assert cli.invoke(args=["charger", "import", str(fleet), "--security-profile", "0"]).exit_code == 0
    assert cli.invoke(args=["charger", "add", "CP-NEW"]).exit_code == 0
    profiles = {cp: _point(cp).security_profile for cp in ("CP-OLD", "CP-OLD-1", "CP-OLD-2", "CP-NEW")}
    assert profiles == {"CP-OLD": 0, "CP-OLD-1": 0, "CP-OLD-2": 0, "CP-NEW": 1}
    refused = cli.invoke(args=["charger", "add", "CP-X", "--security-profile", "3"])
    assert refused.exit_code == 2 and "--security-profile" in refused.output


# --- flask firmware ----------------------------------------------------------------------------


def test_firmware_update_queues_each_charger_and_status_follows_it(app, cli):
    for charge_point_id in ("FW-1", "FW-2"):
        assert cli.invoke(args=["charger", "add", charge_point_id]).exit_code == 0
    location = ["--location", "https://files.example.test/fw-2.0.bin"]
    targets = ["--charger", "FW-1", "--charger", "FW-2", "--retries", "3"]
    result = cli.invoke(args=["firmware", "update", *location, *targets])
    assert result.exit_code == 0, result.output
    update_id = int(result.output.split()[2].rstrip(":"))
    assert "2 charger(s) queued" in result.output
    status = cli.invoke(args=["firmware", "status", str(update_id)])
    assert status.exit_code == 0, status.output
    assert status.output.splitlines()[1:] == ["FW-1\tPending", "FW-2\tPending"]
    db.session.expire_all()
    queued = db.session.scalars(select(QueuedCommand).order_by(QueuedCommand.charge_point_id)).all()
    assert [(c.charge_point_id, c.action, c.payload["retries"]) for c in queued] == [
        ("FW-1", "UpdateFirmware", 3),
        ("FW-2", "UpdateFirmware", 3),
    ]


def test_firmware_update_refuses_an_unknown_charger_and_a_missing_job(cli):
    result = cli.invoke(args=["firmware", "update", "--location", "https://x.test/fw", "--charger", "NOPE"])
    assert result.exit_code == 1 and "NOPE" in result.output
    assert cli.invoke(args=["firmware", "status", "999"]).exit_code == 1
    assert cli.invoke(args=["firmware", "update", "--charger", "NOPE"]).exit_code == 2  # no --location
