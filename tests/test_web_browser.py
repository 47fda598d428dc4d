"""The console in headless Chromium: live DP values without reload, the frame monitor, writes."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_gateway import TWIN, WebServed, require_tool, start_web, web_config

from gateway.regmap.load import load_map

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402 - after the importorskip
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_S = 30.0
PREPAYMENT = load_map(Path(__file__).resolve().parents[1] / "register_map.yaml").point("prepayment")
# Set to a folder to keep the screenshots (docs/console.png comes from there).
SCREENSHOT_DIR = os.environ.get("WEB_SCREENSHOT_DIR")


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium through Debian's chromedriver, with a fresh profile."""
    require_tool(CHROMIUM, "chromium")
    require_tool(CHROMEDRIVER, "chromium-driver")
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1150",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def gateway() -> AsyncIterator[WebServed]:
    started: list[WebServed] = []
    served = await start_web(web_config(TWIN), started)
    yield served
    for each in started:
        await each.stop()


async def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Wait in a thread, so the gateway's loop keeps serving the page meanwhile."""
    wait = WebDriverWait(driver, WAIT_S)
    return await asyncio.to_thread(wait.until, condition, f"timed out waiting for {what}")


def dp_text(driver: Any, dpid: int) -> str:
    cells = driver.find_elements(By.CSS_SELECTOR, f'#dps-1 tr[data-dp="{dpid}"] td.dp-value')
    return str(cells[0].text) if cells else ""


async def screenshot(driver: Any, folder: Path, name: str) -> Path:
    path = folder / name
    await asyncio.to_thread(driver.save_screenshot, str(path))
    if SCREENSHOT_DIR:
        shutil.copy(path, Path(SCREENSHOT_DIR) / name)
    return path


async def test_console_follows_the_twin_live(
    browser: Any, gateway: WebServed, tmp_path: Path
) -> None:
    await gateway.ready()
    await asyncio.to_thread(browser.get, gateway.url + "/")
    await wait_for(browser, lambda d: "voltage 230.0 V" in dp_text(d, 6), "the twin's voltage")
    await asyncio.to_thread(browser.execute_script, "window.notReloaded = true;")

    gateway.twin().set_voltage(244.4)
    await wait_for(browser, lambda d: "voltage 244.4 V" in dp_text(d, 6), "the new voltage")
    assert await asyncio.to_thread(browser.execute_script, "return window.notReloaded === true;")

    reply = await gateway.client.write_coil(PREPAYMENT.address, True, device_id=1)
    assert not reply.isError()
    await wait_for(
        browser,
        lambda d: "confirmed" in d.find_element(By.ID, "writes-1").text,
        "the write in the last writes",
    )
    report = 'tr.frame[data-command="DP_REPORT"]'
    await wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, report), "a DP_REPORT")
    assert "Unit 1" in browser.find_element(By.ID, "unit-1").text
    assert "READY" in browser.find_element(By.CSS_SELECTOR, "#unit-1 .badge").text
    assert "voltage" in browser.find_element(By.ID, "registers-1").text
    shot = await screenshot(browser, tmp_path, "console.png")
    assert shot.stat().st_size > 10_000


async def test_frame_monitor_filters_by_direction_and_dp(
    browser: Any, gateway: WebServed, tmp_path: Path
) -> None:
    await gateway.ready()
    await asyncio.to_thread(browser.get, gateway.url + "/")
    report = 'tr.frame[data-command="DP_REPORT"]'
    await wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, report), "a DP_REPORT")

    await asyncio.to_thread(_select, browser, "filter-dir", "tx")
    await wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, report), "tx only")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.frame")
    assert rows
    assert {row.get_attribute("data-dir") for row in rows} == {"tx"}

    await asyncio.to_thread(_select, browser, "filter-dir", "rx")
    await asyncio.to_thread(browser.find_element(By.ID, "filter-dp").send_keys, "6")
    await wait_for(
        browser,
        lambda d: (
            {r.get_attribute("data-command") for r in d.find_elements(By.CSS_SELECTOR, "tr.frame")}
            == {"DP_REPORT"}
        ),
        "only DP 6 reports",
    )
    for row in browser.find_elements(By.CSS_SELECTOR, "tr.frame"):
        assert "dp6 phase_a voltage" in row.text
    await screenshot(browser, tmp_path, "console-filtered.png")


def _select(driver: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, element_id)).select_by_value(value)
