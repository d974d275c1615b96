"""The README's screenshots of the dashboard, taken anew: `python -m csms.dashboard.screenshots`.

Starts an embedded CSMS of its own (a temporary folder, a free port), seeds the demo data, connects
the demo charger and two more as `csms-sim --obey` chargers, starts the demo customer's session
through the REST API, lets energy rise, and photographs the overview and the demo charger's page in
headless Chromium. Needs the development dependencies (Selenium) and Debian's chromium and
chromedriver, as the browser tests do; writes `overview.png` and `charger.png` beside this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "screenshots"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
EXTRA_CHARGERS = {"CP-NORTH-2": "north-2-key-0123456789", "CP-NORTH-3": "north-3-key-0123456789"}


def chromium_paths() -> tuple[str, str] | None:
    """Chromium and its driver, or None when either is missing."""
    binary = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator:
    """Headless Chromium through Selenium, with the page's console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError(
            "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(paths[1]), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _flask(env: dict[str, str], *args: str) -> str:
    command = [sys.executable, "-m", "flask", "--app", "wsgi", *args]
    return subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout


def _post(url: str, body: dict, token: str | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{url}: {error.code} {error.read().decode()}") from None


def _serve(env: dict[str, str], port: int) -> subprocess.Popen:
    web = subprocess.Popen(
        [sys.executable, "wsgi.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return web
        time.sleep(0.1)
    web.kill()
    raise RuntimeError("the web process did not start")


def _obedient_fleet(url: str, chargers: dict[str, str]) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    from csms.sim.obedient import ObedientCharger

    loop = asyncio.new_event_loop()

    async def fleet() -> None:
        await asyncio.gather(*(ObedientCharger(cp, key, url).run(600) for cp, key in chargers.items()))

    def live() -> None:
        try:
            loop.run_until_complete(fleet())
        except asyncio.CancelledError:
            pending = asyncio.all_tasks(loop)  # let every cancelled task finish before the loop ends
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))

    thread = threading.Thread(target=live, daemon=True)
    thread.start()
    return loop, thread


def take(out: Path = OUT, settle_seconds: float = 14.0) -> list[Path]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        port = _free_port()
        env = {
            **os.environ,
            "CSMS_INSTANCE_PATH": folder,
            "CSMS_PORT": str(port),
            "CSMS_RABBITMQ_URL": "",
            "CSMS_DATABASE_URL": "",
            "CSMS_BOOT_CONFIGURATION": "MeterValueSampleInterval=2",
        }
        _flask(env, "db", "upgrade")
        _flask(env, "seed-demo")
        for charge_point_id, key in EXTRA_CHARGERS.items():
            _flask(env, "charger", "add", charge_point_id, "--auth-key", key, "--connectors", "2")
        demo = json.loads((Path(folder) / "demo-credentials.json").read_text())
        web = _serve(env, port)
        base = f"http://127.0.0.1:{port}"
        loop, fleet = _obedient_fleet(
            f"ws://127.0.0.1:{port}", {demo["charge_point_id"]: demo["auth_key"], **EXTRA_CHARGERS}
        )
        try:
            time.sleep(3)  # boots and status notifications
            login = {"email": demo["customer_email"], "password": demo["customer_password"]}
            token = _post(f"{base}/api/auth/login", login)["access_token"]
            start = {"deviceId": demo["charge_point_id"], "connectorId": 1, "amount": "20"}
            _post(f"{base}/api/user/charging/start", start, token)
            time.sleep(settle_seconds)  # energy rises
            shots = []
            with chromium(1280, 860) as browser:
                browser.get(f"{base}/login")
                browser.find_element(By.NAME, "email").send_keys(demo["operator_email"])
                browser.find_element(By.NAME, "password").send_keys(demo["operator_password"])
                button = browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]")
                button.click()
                WebDriverWait(browser, 15).until(ec.staleness_of(button))
                WebDriverWait(browser, 15).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
                shots.append(out / "overview.png")
                browser.save_screenshot(str(shots[-1]))
                browser.set_window_size(1280, 1500)
                browser.get(f"{base}/chargers/{demo['charge_point_id']}")
                WebDriverWait(browser, 15).until(
                    ec.presence_of_element_located((By.CSS_SELECTOR, "#chart .u-over"))
                )
                WebDriverWait(browser, 15).until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
                shots.append(out / "charger.png")
                browser.save_screenshot(str(shots[-1]))
            return shots
        finally:
            loop.call_soon_threadsafe(lambda: [task.cancel() for task in asyncio.all_tasks(loop)])
            fleet.join(timeout=10)
            web.terminate()
            web.wait(timeout=15)


if __name__ == "__main__":
    for path in take(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(path)
