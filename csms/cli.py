"""The Flask CLI: `flask seed-demo`, `flask charger add|import`, `flask user
add|list|role|disable|enable|policy`, `flask idtag set|import`, `flask wallet adjust|refund-session`,
`flask firmware update|status`.

Each command reports a bad argument as a one-line error and exits non-zero (click's usage errors
exit 2, refused input exits 1), so scripts can rely on the status.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask, current_app

from csms.broker import is_embedded
from csms.extensions import db
from csms.models.network import DEFAULT_SECURITY_PROFILE
from csms.services import chargers, demo, firmware, id_tags, users, wallet
from csms.services.errors import ServiceError
from csms.services.money import format_minor, parse_amount


def _fail(exc: ServiceError) -> click.ClickException:
    lines = [exc.message, *(f"  {where}: {problem}" for where, problem in exc.details.items())]
    return click.ClickException("\n".join(lines))


@click.command("seed-demo")
@click.option("--force", is_flag=True, help="Seed even in production mode (CSMS_RABBITMQ_URL set).")
def seed_demo(force: bool) -> None:
    """Create the demo station, charger, tariff, operator and customer (idempotent); print credentials."""
    if not is_embedded(current_app) and not force:
        raise click.ClickException(
            "refusing to seed demo accounts in production mode (CSMS_RABBITMQ_URL is set): their "
            "logins would open this CSMS to anybody who reads them; pass --force to seed anyway"
        )
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

SECURITY_PROFILE = click.option(
    "--security-profile",
    type=click.IntRange(0, 2),
    default=DEFAULT_SECURITY_PROFILE,
    show_default=True,
    help="How the charger connects: 0 without credentials (chargers without Basic auth), 1 Basic auth, "
    "2 Basic auth over TLS.",
)


@charger_cli.command("add")
@click.argument("charge_point_id")
@click.option("--auth-key", help="The charger's key (16-40 printable characters); generated if omitted.")
@click.option("--connectors", default=1, show_default=True, type=int, help="Number of connectors.")
@click.option("--pending", is_flag=True, help="Register as Pending: BootNotification is not yet accepted.")
@SECURITY_PROFILE
def charger_add(
    charge_point_id: str, auth_key: str | None, connectors: int, pending: bool, security_profile: int
) -> None:
    """Register one charger and print its authorization key."""
    try:
        result = chargers.register(
            charge_point_id,
            auth_key,
            connectors=connectors,
            status="Pending" if pending else "Accepted",
            security_profile=security_profile,
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
@SECURITY_PROFILE
def charger_import(file: Path, connectors: int, skip_existing: bool, security_profile: int) -> None:
    """Register a fleet from a CSV of `chargePointId,authKey` rows (header optional); all or nothing."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text") from exc
    try:
        result = chargers.import_fleet(
            _read_fleet(text),
            connectors=connectors,
            skip_existing=skip_existing,
            security_profile=security_profile,
        )
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


@user_cli.command("list")
@click.option("--search", "q", help="Email contains.")
@click.option("--role", type=click.Choice(["customer", "operator"]))
def user_list(q: str | None, role: str | None) -> None:
    """List accounts: id, email, role, and whether disabled."""
    for user in db.session.scalars(users.search(q, role).order_by("id")):
        state = "disabled" if user.disabled_at else "active"
        click.echo(f"{user.id}\t{user.email}\t{user.role}\t{state}")


@user_cli.command("role")
@click.argument("user")
@click.argument("role", type=click.Choice(["customer", "operator"]))
def user_role(user: str, role: str) -> None:
    """Make an account (id or email) a customer or an operator."""
    try:
        found = users.change(users.find(user), role=role, currency=current_app.config["CURRENCY"])
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"{found.email} is now {found.role}")


def _set_disabled(user: str, disabled: bool) -> None:
    try:
        found = users.change(users.find(user), disabled=disabled)
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"{found.email} {'disabled: it cannot log in' if disabled else 'enabled'}")


@user_cli.command("disable")
@click.argument("user")
def user_disable(user: str) -> None:
    """Disable an account (id or email): no login, and its tokens stop working at once."""
    _set_disabled(user, True)


@user_cli.command("enable")
@click.argument("user")
def user_enable(user: str) -> None:
    """Enable a disabled account again."""
    _set_disabled(user, False)


@user_cli.command("policy")
@click.argument("email")
@click.argument("policy", type=click.Choice(["prepaid", "postpaid"]))
def user_policy(email: str, policy: str) -> None:
    """Set how a customer pays for charging with their tag: prepaid (wallet) or postpaid (on account)."""
    try:
        users.set_account_policy(email, policy)
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"{email}: {policy}")


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


@idtag_cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def idtag_import(file: Path) -> None:
    """Create or update id tags from a CSV with a header row naming its columns: idTag (required),
    status, expiryDate, parentIdTag, ownerId, note. Bad rows are refused with their reason, the
    others imported; importing the same file again changes nothing. Exits 1 if any row was refused."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{file}: not UTF-8 text") from exc
    reader = csv.DictReader(io.StringIO(text))
    columns = [name.strip() for name in reader.fieldnames or []]
    if "idTag" not in columns:
        raise click.ClickException(f"{file}: the header row must name an idTag column")
    unknown = sorted(set(columns) - set(id_tags.IMPORT_COLUMNS))
    if unknown:
        raise click.ClickException(f"{file}: unknown columns {', '.join(unknown)}")
    reader.fieldnames = columns
    rows = [
        (reader.line_num, {key: value for key, value in row.items() if key is not None})
        for row in reader
        if any((value or "").strip() for value in row.values() if isinstance(value, str))
    ]
    report = id_tags.import_rows(rows)
    click.echo(
        f"imported {report.created + report.updated} tag(s): {report.created} new, {report.updated} "
        f"updated; {report.unchanged} unchanged; {len(report.refused)} refused"
    )
    for line, id_tag, reason in report.refused:
        click.echo(f"  line {line} ({id_tag or 'no idTag'}): {reason}", err=True)
    if report.refused:
        raise SystemExit(1)


wallet_cli = click.Group("wallet", help="Adjust wallets and refund sessions (each a ledger entry with why).")


@wallet_cli.command("adjust")
@click.argument("email")
@click.argument("amount")
@click.option("--reason", required=True, help="Why: kept in the ledger entry.")
def wallet_adjust(email: str, amount: str, reason: str) -> None:
    """Credit (AMOUNT > 0) or debit (AMOUNT < 0, e.g. -- -5.00) a customer's wallet."""
    try:
        user = users.find(email)
        entry = wallet.adjust(user.id, parse_amount(amount), reason, operator_id=None)
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"{email}: {entry.kind} {format_minor(entry.amount_minor)} {entry.currency} ({reason})")


@wallet_cli.command("refund-session")
@click.argument("session_id", type=int)
@click.option("--amount", help="Part of the cost to refund; the whole rest if omitted.")
@click.option("--reason", required=True, help="Why: kept in the ledger entry.")
def wallet_refund_session(session_id: int, amount: str | None, reason: str) -> None:
    """Refund a billed session to its customer's wallet, in full or in part."""
    try:
        minor = parse_amount(amount) if amount is not None else None
        entry = wallet.refund_session(session_id, minor, reason, operator_id=None)
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"session {session_id}: refunded {format_minor(entry.amount_minor)} {entry.currency}")


firmware_cli = click.Group("firmware", help="Roll firmware out to chargers and follow it.")


@firmware_cli.command("update")
@click.option("--location", required=True, help="The image's URL, as chargers will fetch it.")
@click.option("--charger", "charge_point_ids", multiple=True, help="A charger to update (repeatable).")
@click.option("--station", "station_id", type=int, help="Every charger of this station.")
@click.option("--retrieve-date", type=click.DateTime(), help="Not before (UTC); now if omitted.")
@click.option("--retries", type=click.IntRange(0, 100))
@click.option("--retry-interval", type=click.IntRange(0, 86_400), help="Seconds between retries.")
@click.option("--ttl", "ttl_seconds", type=click.IntRange(1, 604_800), default=604_800, show_default=True)
def firmware_update(
    location: str,
    charge_point_ids: tuple[str, ...],
    station_id: int | None,
    retrieve_date: datetime | None,
    retries: int | None,
    retry_interval: int | None,
    ttl_seconds: int,
) -> None:
    """Queue UpdateFirmware for the chargers named and/or a station's, as the REST route does
    (POST /api/cms/firmware-updates), and print the job's id to follow it with `firmware status`."""
    try:
        job = firmware.create(
            charge_point_ids=list(charge_point_ids),
            station_id=station_id,
            location=location,
            file_id=None,
            retrieve_date=(retrieve_date or datetime.now(UTC)).replace(tzinfo=UTC),
            retries=retries,
            retry_interval=retry_interval,
            ttl_seconds=ttl_seconds,
            requested_by=None,
            base_url=current_app.config["PUBLIC_URL"] or "",
        )
    except ServiceError as exc:
        db.session.rollback()
        raise _fail(exc) from exc
    click.echo(f"firmware update {job.id}: {len(job.targets)} charger(s) queued")


@firmware_cli.command("status")
@click.argument("update_id", type=int)
def firmware_status(update_id: int) -> None:
    """Each target charger of a firmware update and where its update stands."""
    try:
        job = firmware.get(update_id)
    except ServiceError as exc:
        raise _fail(exc) from exc
    click.echo(f"firmware update {job.id}: {job.location}")
    for target in job.targets:
        click.echo(f"{target.charge_point_id}\t{target.status}")


def init_app(app: Flask) -> None:
    for command in (seed_demo, charger_cli, user_cli, idtag_cli, wallet_cli, firmware_cli):
        app.cli.add_command(command)
