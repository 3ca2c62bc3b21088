"""Headless Chromium for the dashboard's end-to-end tests, and reading a page from a test.

Debian's chromium, driven by selenium through Debian's chromedriver: with its
path given, selenium never looks for or downloads a driver. The `browser`
fixture (tests/e2e/conftest.py) opens one per test; screenshots go to
log/dashboard/, which git ignores.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in requirements.txt (tests)")
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402 (after the skip above)
from tests.e2e.example_network import E2E_MARKS, LOG_DIR  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_MARKS = [
    *E2E_MARKS,
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason="Debian's chromium and chromium-driver are missing (PBFT_CI_TEST_IMAGES=1 scripts/setup.sh installs them)",
    ),
]
# No network beyond this machine: without these flags Chromium keeps trying to reach its services.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1500,1100",
)
SCREENSHOTS = LOG_DIR / "dashboard"
PAGE_WAIT_S = 30


@contextmanager
def chromium(driver_log: Path) -> Iterator:
    """Headless Chromium with a fresh profile; quit, and its profile removed, whatever the caller did."""
    profile = tempfile.mkdtemp(prefix="pbft-ci-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER), log_output=str(driver_log))
    try:
        driver = webdriver.Chrome(service=service, options=options)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        process = service.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, what: str, condition, timeout_s: float = PAGE_WAIT_S):
    """The condition's first truthy value, polled by WebDriverWait; the message says what never came."""
    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(lambda d: condition(d), message=what)


def texts(driver, css: str) -> list[str]:
    """The textContent of every element `css` selects, read in the page at one moment.

    Read by a script, not element by element: the pages re-render as they poll,
    and an element found a moment ago may be gone.
    """
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), (element) => element.textContent);", css
    )


def text_of(driver, css: str) -> str | None:
    found = texts(driver, css)
    return found[0] if found else None


def attributes(driver, css: str, name: str) -> list[str | None]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), (element) => element.getAttribute(arguments[1]));",
        css, name,
    )


def screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))
    return path
