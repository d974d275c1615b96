"""The Flask CLI: `flask seed-demo`, `flask charger add|import`, `flask user add`, `flask idtag set`.

Each command reports a bad argument as a one-line error and exits non-zero (click's usage errors
exit 2, refused input exits 1), so scripts can rely on the status.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import click
from flask import Flask, current_app

from csms.extensions import db
from csms.services import chargers, demo, id_tags, users
from csms.services.errors import ServiceError


def _fail(exc: ServiceError) -> click.ClickException:
    lines = [exc.message, *(f"  {where}: {problem}" for where, problem in exc.details.items())]
    return click.ClickException("\n".join(lines))


@click.command("seed-demo")
def seed_demo() -> None:
    """Create the demo station, charger, tariff, operator and customer (idempotent); print credentials."""
    path = Path(current_app.instance_path) / "demo-credentials.json"
    try:
        creds = demo.seed(path)
    except ServiceError as exc:
        raise _fail(exc) from exc
    click.echo("Demo data ready:")
    click.echo(f"  charger      {creds.charge_point_id}  auth key: {creds.auth_key}")
    click.echo(
        f"  OCPP URL     ws://{current_app.config['HOST']}:{current_app.config['PORT']}"
        f"/ocpp/{creds.charge_point_id}"
    )
    click.echo(f"  operator     {creds.operator_email}  password: {creds.operator_password}")
    click.echo(
        f"  customer     {creds.customer_email}  password: {creds.customer_password}  idTag: {creds.id_tag}"
    )
    click.echo(f"  (kept in {path})")


charger_cli = click.Group("charger", help="Register charge points.")


@charger_cli.command("add")
@click.argument("charge_point_id")
@click.option("--auth-key", help="The charger's key (16-40 printable characters); generated if omitted.")
@click.option("--connectors", default=1, show_default=True, type=int, help="Number of connectors.")
@click.option("--pending", is_flag=True, help="Register as Pending: BootNotification is not yet accepted.")
def charger_add(charge_point_id: str, auth_key: str | None, connectors: int, pending: bool) -> None:
    """Register one charger and print its authorization key."""
    try:
        result = chargers.register(
            charge_point_id, auth_key, connectors=connectors, status="Pending" if pending else "Accepted"
        )
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"registered {result.charge_point_id}")
    click.echo(f"auth key: {result.auth_key}" + ("  (generated; shown only now)" if result.generated else ""))


def _read_fleet(text: str):
    reader = csv.reader(io.StringIO(text))
    for line, row in enumerate(reader, start=1):
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if line == 1 and row[0].strip() == "chargePointId":
            continue  # header
        if len(row) != 2:
            yield line, ",".join(row), ""
            continue
        yield line, row[0].strip(), row[1].strip()


@charger_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--connectors", default=1, show_default=True, type=int, help="Connectors per charger.")
@click.option("--skip-existing", is_flag=True, help="Leave chargers that already exist untouched.")
def charger_import(file: Path, connectors: int, skip_existing: bool) -> None:
    """Register a fleet from a CSV of `chargePointId,authKey` rows (header optional); all or nothing."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text") from exc
    try:
        result = chargers.import_fleet(_read_fleet(text), connectors=connectors, skip_existing=skip_existing)
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"imported {result.created} charger(s), skipped {result.skipped} existing")


user_cli = click.Group("user", help="Manage accounts.")


@user_cli.command("add")
@click.argument("email")
@click.option("--password", required=True, help="At least 8 characters.")
@click.option("--role", type=click.Choice(["customer", "operator"]), default="customer", show_default=True)
@click.option("--id-tag", help="An OCPP idTag (RFID) to issue to a customer.")
def user_add(email: str, password: str, role: str, id_tag: str | None) -> None:
    """Create a customer or operator account."""
    try:
        user = users.create_user(
            email, password, role=role, id_tag=id_tag, currency=current_app.config["CURRENCY"]
        )
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(
        f"created {user.role} {user.email} (id {user.id})" + (f" with idTag {id_tag}" if id_tag else "")
    )


@user_cli.command("priority")
@click.argument("email")
@click.argument("priority", type=int)
def user_priority(email: str, priority: int) -> None:
    """Set the priority of a customer's cars at sites that share by priority (higher first)."""
    try:
        user = users.set_charging_priority(email, priority)
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"{user.email}: charging priority {user.charging_priority}")


idtag_cli = click.Group("idtag", help="Manage id tags.")


@idtag_cli.command("set")
@click.argument("id_tag")
@click.option("--status", type=click.Choice(id_tags.STATUSES), help="Accepted, Blocked, Expired or Invalid.")
@click.option("--expires", type=datetime.fromisoformat, help="Expiry date, ISO 8601 with a time zone.")
def idtag_set(id_tag: str, status: str | None, expires: datetime | None) -> None:
    """Block, accept or expire an issued idTag; every web node decides by it at once."""
    if status is None and expires is None:
        raise click.UsageError("nothing to set: give --status and/or --expires")
    try:
        tag = id_tags.update(id_tag, status=status, expiry_date=expires)
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    expiry = tag.expiry_date.isoformat() if tag.expiry_date else "none"
    click.echo(f"idTag {tag.id_tag}: {tag.status}, expires {expiry}")


def init_app(app: Flask) -> None:
    for command in (seed_demo, charger_cli, user_cli, idtag_cli):
        app.cli.add_command(command)
