"""Helpers for the headless-browser tests (Selenium is imported only when they run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TIMEOUT = 30.0


def wait_for(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``condition`` until it is truthy; fail naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def frame_step(driver: Any) -> int:
    """The step of the imagined frame on screen (its ``data-step``)."""
    return int(driver.find_element("id", "imagined-frame").get_attribute("data-step"))


def settled_step(driver: Any) -> int:
    """The shown step once no more frames arrive (the last step's frame may be in flight)."""
    previous = -1
    while (step := frame_step(driver)) != previous:
        previous = step
        time.sleep(0.3)
    return step


def press(driver: Any, key: str, hold: float = 0.0) -> None:
    """Press ``key`` on the page (held for ``hold`` seconds; arrows: ``"ArrowUp"``...)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    key = {"ArrowUp": Keys.ARROW_UP, "ArrowDown": Keys.ARROW_DOWN}.get(key, key)
    chain = ActionChains(driver).key_down(key)
    if hold:
        chain = chain.pause(hold)
    chain.key_up(key).perform()


def severe_console_errors(driver: Any) -> list[str]:
    """Script errors and CSP violations the page logged."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def select(driver: Any, element_id: str, value: str) -> None:
    """Choose ``value`` in the ``<select>`` with id ``element_id``."""
    from selenium.webdriver.support.select import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)
