"""The dashboard in a real headless Chromium against a real web process (embedded mode) and a
simulated charger on a real WebSocket: sign in, watch a charger come online and its connectors change
without a reload, refusals for customers and for forms without their CSRF token. A failing test saves
a screenshot next to the web process's log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from ocpp.v16 import call
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import chromium, console_errors
from tests.support.chargers import LibraryCharger, RawCharger
from tests.support.deployment import AUTH_KEY, deployment

pytestmark = pytest.mark.slow

OPERATOR = ("operator@example.test", "password-123")
CUSTOMER = ("ada@example.test", "password-123")


@pytest.fixture(scope="module")
def site(tmp_path_factory, sqlite_template):
    workdir = tmp_path_factory.mktemp("dashboard")
    with deployment(
        "embedded",
        workdir,
        sqlite_template=sqlite_template,
        charge_points={"CP-LIVE": AUTH_KEY},
        customers={CUSTOMER[0]: ("ADA-TAG", 0)},
        operators={OPERATOR[0]: OPERATOR[1]},
    ) as csms:
        yield csms


@pytest.fixture
def browser(request, site):
    with chromium() as driver:
        yield driver
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            shot = Path(site.env["CSMS_INSTANCE_PATH"]) / f"{request.node.name}.png"
            driver.save_screenshot(str(shot))
            print(f"screenshot: {shot}")


def now() -> str:
    return datetime.now(UTC).isoformat()


def snake(payload: dict) -> dict:
    """The `ocpp` library's dataclasses take snake_case fields."""
    return {
        "connector_id": payload["connectorId"],
        "transaction_id": payload["transactionId"],
        "meter_value": payload["meterValue"],
    }


def sign_in(driver, base_url: str, email: str, password: str) -> None:
    driver.get(f"{base_url}/")
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(password)
    button = driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]")
    button.click()
    WebDriverWait(driver, 15).until(ec.staleness_of(button))  # the next page has replaced this one


def wait(driver, seconds: float = 15) -> WebDriverWait:
    """Waits out elements the live page replaces while they are read (a swapped figure or row)."""
    return WebDriverWait(driver, seconds, ignored_exceptions=[StaleElementReferenceException])


def cell(driver, charge_point_id: str, connector_id: int):
    return driver.find_element(
        By.CSS_SELECTOR, f'[data-charger="{charge_point_id}"][data-connector="{connector_id}"]'
    )


def test_a_charger_comes_online_and_its_connectors_change_without_a_reload(site, browser):
    sign_in(browser, site.web.base_url, *OPERATOR)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
    page = browser.find_element(By.TAG_NAME, "html")
    assert browser.find_element(By.CSS_SELECTOR, '[data-figure="online"]').text == "0"

    with RawCharger(site.ws_url, "CP-LIVE", AUTH_KEY) as charger:
        assert charger.boot()[2]["status"] == "Accepted"
        charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
        wait(browser).until(lambda d: "status-Available" in cell(d, "CP-LIVE", 1).get_attribute("class"))
        wait(browser).until(lambda d: d.find_element(By.CSS_SELECTOR, '[data-figure="online"]').text == "1")
        assert "online" in cell(browser, "CP-LIVE", 1).get_attribute("class").split()

        charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        wait(browser).until(lambda d: cell(d, "CP-LIVE", 1).text.endswith("Charging"))

    # the charger leaves: its cells turn offline, still without a reload
    wait(browser).until(lambda d: "offline" in cell(d, "CP-LIVE", 1).get_attribute("class").split())
    assert browser.find_element(By.TAG_NAME, "html") == page  # the same document throughout
    assert console_errors(browser) == []


def test_a_customer_is_refused(site, browser):
    sign_in(browser, site.web.base_url, *CUSTOMER)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Operators only"
    browser.get(f"{site.web.base_url}/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Sign in"


def test_a_form_posted_without_its_csrf_token_is_refused(site, browser):
    sign_in(browser, site.web.base_url, *OPERATOR)
    wait(browser).until(ec.presence_of_element_located((By.ID, "connector-grid")))
    status = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch("/logout", {method: "POST", credentials: "same-origin"}).then(r => done(r.status));
        """
    )
    assert status == 400
    browser.refresh()
    assert browser.find_element(By.ID, "connector-grid")  # still signed in


def meter_values(transaction_id: int, register_wh: int, power_w: int, at: str) -> dict:
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [
            {
                "timestamp": at,
                "sampledValue": [
                    {"value": str(register_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                    {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
                ],
            }
        ],
    }


def test_a_charger_page_sends_commands_and_charts_its_transaction_live(site, browser):
    sign_in(browser, site.web.base_url, *OPERATOR)
    with LibraryCharger(site.ws_url, "CP-LIVE", AUTH_KEY) as charger:
        browser.get(f"{site.web.base_url}/chargers/CP-LIVE")
        wait(browser).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))

        # the configuration, read through GetConfiguration and shown as editable keys
        browser.find_element(By.ID, "read-configuration").click()
        table = wait(browser).until(ec.presence_of_element_located((By.ID, "configuration-keys")))
        assert "HeartbeatInterval" in table.text and "MeterValueSampleInterval" in table.text

        # RemoteStartTransaction from the form built from its schema; the charger's answer is shown
        wait(browser).until(ec.presence_of_element_located((By.ID, "field-idTag"))).send_keys("ADA-TAG")
        browser.find_element(By.ID, "field-connectorId").send_keys("1")
        browser.find_element(By.CSS_SELECTOR, "#command button[type=submit]").click()
        wait(browser).until(
            ec.text_to_be_present_in_element(
                (By.ID, "command-reply"), 'RemoteStartTransaction answered: {"status": "Accepted"}'
            )
        )

        # the charger starts; the running transaction and its chart appear, and energy rises live
        started = charger.run(
            charger.charge_point.call(
                call.StartTransaction(connector_id=1, id_tag="ADA-TAG", meter_start=10_000, timestamp=now())
            )
        )
        transaction_id = started.transaction_id
        for register, power in ((10_500, 7_000), (11_250, 7_200)):
            charger.run(
                charger.charge_point.call(
                    call.MeterValues(**snake(meter_values(transaction_id, register, power, now())))
                )
            )
            wait(browser).until(lambda d, r=register: d.find_element(By.ID, "energy").text == str(r - 10_000))
        assert browser.find_element(By.CSS_SELECTOR, "#chart .u-over")  # uPlot drew its plot area

        charger.run(
            charger.charge_point.call(
                call.StopTransaction(meter_stop=12_000, timestamp=now(), transaction_id=transaction_id)
            )
        )
        browser.refresh()
        history = wait(browser).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "section[aria-label=Transactions] tbody"))
        )
        wait(browser).until(
            lambda d: (
                str(transaction_id) in history.text
                and "2000" in d.find_element(By.CSS_SELECTOR, "section[aria-label=Transactions] tbody").text
            )
        )
        browser.get(f"{site.web.base_url}/transactions?chargePointId=CP-LIVE")
        assert browser.find_element(By.CSS_SELECTOR, "#transactions tbody a").text == str(transaction_id)
        browser.get(f"{site.web.base_url}/transactions/{transaction_id}")
        assert browser.find_element(By.CSS_SELECTOR, "#chart .u-over")
        samples = browser.find_elements(By.CSS_SELECTOR, "#samples tbody tr")
        assert len(samples) == 4  # 2 readings x 2 measurands
    assert console_errors(browser) == []


def test_the_analytics_page_draws_its_chart(site, browser):
    sign_in(browser, site.web.base_url, *OPERATOR)
    for group_by in ("day", "chargePoint"):
        browser.get(f"{site.web.base_url}/analytics?groupBy={group_by}")
        assert browser.find_element(By.CSS_SELECTOR, "#analytics-chart .u-over")
        assert browser.find_element(By.ID, "analytics-table")
    assert console_errors(browser) == []


def test_the_api_docs_render_from_local_assets(site, browser):
    browser.get(f"{site.web.base_url}/api/docs")
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title")))
    assert "CSMS" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    assert wait(browser).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    assert console_errors(browser) == []


def test_a_station_is_created_from_its_form(site, browser):
    sign_in(browser, site.web.base_url, *OPERATOR)
    browser.get(f"{site.web.base_url}/stations")
    form = browser.find_element(By.ID, "new-station")
    form.find_element(By.NAME, "name").send_keys("Harbour")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "stations"), "Harbour"))
    for path in ("/tariffs", "/points/new"):
        browser.get(f"{site.web.base_url}{path}")
        assert browser.find_element(By.CSS_SELECTOR, "form.stack")
    assert console_errors(browser) == []
