"""A real headless Chromium for the dashboard's tests (Debian's `chromium` and `chromedriver`, driven
by Selenium, launched as the README's screenshot script launches it). Where none is installed the
tests skip with the reason, except under CSMS_REQUIRE_SERVICES=1, where that fails them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from selenium import webdriver

from csms.dashboard import screenshots
from tests.conftest import service_unavailable


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    if screenshots.chromium_paths() is None:
        service_unavailable(
            "Chromium", "chromium and chromedriver are not installed (.ci/services installs them)"
        )
    with screenshots.chromium(width, height) as driver:
        yield driver


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """What the page logged at error level (a failed resource load, an exception in a script)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
