"""A real headless Chromium for the dashboard's tests (Debian's `chromium` and `chromedriver`, driven
by Selenium). Where none is installed the tests skip with the reason, except under
CSMS_REQUIRE_SERVICES=1, where that fails them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.conftest import service_unavailable

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    binary = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        service_unavailable(
            "Chromium", "chromium and chromedriver are not installed (.ci/services installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """What the page logged at error level (a failed resource load, an exception in a script)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
