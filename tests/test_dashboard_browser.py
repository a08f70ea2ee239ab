"""The dashboard in a real headless browser: Debian's Chromium driven by Debian's chromedriver,
named explicitly (Selenium Manager, which would fetch a driver from the network, is never
run). What is rendered is checked against the registry: the leaderboard's rows and their order
are search()'s, the lineage graph has one linked node per ancestor shown, the stylesheet
applies under the page's Content-Security-Policy, and the screenshots are not blank. They are
saved under the test's tmp dir and copied to /tmp/dashboard-shots."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from adapter_registry import AdapterRecord, AdapterRegistry
from adapter_registry.dashboard.app import create_app
from adapter_registry.dashboard.reading import ReadOnlyRegistry
from adapter_registry.dashboard.serving import served

CHROMEDRIVER, CHROMIUM = "/usr/bin/chromedriver", "/usr/bin/chromium"
SHOTS = Path("/tmp/dashboard-shots")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _population(registry: AdapterRegistry, store_one: Any) -> list[AdapterRecord]:
    made: list[AdapterRecord] = []
    for i in range(12):
        parents = [made[-1].id] if i % 3 else []
        if i == 11:
            parents = [made[-1].id, made[-3].id]  # a crossover
        record = store_one(seed=i, source="evolution" if parents else "manual",
                           parent_ids=parents, agent_id=f"agent-{i % 3}")  # fmt: skip
        registry.update_fitness(record.id, fitness_score=(i * 7 % 12) / 12, pass_rate=0.5)
        made.append(record)
    registry.set_alias("champion", made[5].id)
    return made


def _shot(browser: webdriver.Chrome, name: str, tmp_path: Path) -> Image.Image:
    png = browser.get_screenshot_as_png()
    (tmp_path / f"{name}.png").write_bytes(png)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(tmp_path / f"{name}.png", SHOTS / f"{name}.png")
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 20, f"{name}: a blank screenshot"
    # Not one colour with specks: no single colour covers more than 97% of the page.
    assert max(count for count, _ in colors) < 0.97 * image.width * image.height, name
    return image


def test_overview_leaderboard_and_adapter_page_render_the_registry(
    registry: AdapterRegistry, store_one: Any, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    made = _population(registry, store_one)
    with (
        ReadOnlyRegistry(root=registry.root, db_url=registry.db_url) as reader,
        served(create_app(reader)) as url,
    ):
        browser.get(f"{url}/")
        totals = browser.find_element(By.ID, "totals").text
        assert "12" in totals
        nav = browser.find_element(By.TAG_NAME, "nav")
        assert nav.value_of_css_property("background-color") == "rgba(29, 43, 74, 1)"
        _shot(browser, "overview", tmp_path)

        browser.get(f"{url}/leaderboard/bug-fix?limit=8")
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.adapter-row")
        expected = registry.search(task_type="bug-fix", order_by="-fitness_score", limit=8)
        assert [r.get_attribute("data-id") for r in rows] == [r.id for r in expected]
        champion = next(r for r in rows if r.get_attribute("data-id") == made[5].id)
        assert "champion" in champion.text
        _shot(browser, "leaderboard", tmp_path)
        browser.find_element(By.ID, "next").click()
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.adapter-row")
        second = registry.search(task_type="bug-fix", order_by="-fitness_score", offset=8)
        assert [r.get_attribute("data-id") for r in rows] == [r.id for r in second]

        deepest = made[-1]
        browser.get(f"{url}/adapters/{quote(deepest.id)}")
        nodes = browser.find_elements(By.CSS_SELECTOR, "#lineage svg a.node-link")
        ancestors = [r.id for r in registry.lineage(deepest.id)]
        assert len(ancestors) == 5
        hrefs = [n.get_dom_attribute("href") for n in nodes]
        assert sorted(h.removeprefix("/adapters/") for h in hrefs) == sorted(ancestors)
        assert all(n.is_displayed() for n in nodes)
        image = _shot(browser, "adapter", tmp_path)
        assert image.width >= 1000
        nodes[0].click()
        assert browser.find_element(By.ID, "adapter-id").text in ancestors
