"""The live page in headless Chromium (Debian's package): the ESCO's meters
with balance and health, and a top-up's new balance on screen within a second
of the worker recording it."""

import uuid
from datetime import UTC, datetime

import pytest
from playwright.async_api import async_playwright

from flows.emulator import MeterConfig
from tests.worker.conftest import new_esco, register, serials, wait_for

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        await chromium.close()


async def test_the_live_page_shows_a_top_up_within_a_second(stack, fleet_of, running_worker, gateway, browser,
                                                             tmp_path):
    api = stack.api
    esco, code = new_esco(stack)
    other_esco, _ = new_esco(stack)
    fleet = await fleet_of(*(MeterConfig(serial=s, hardware="B1.w") for s in serials(3, 901)))
    others = await fleet_of(MeterConfig(serial=serials(1, 911)[0], hardware="B1.w"))
    ids = register(stack, fleet, esco)
    register(stack, others, other_esco)
    await running_worker(stack.worker_url)
    async with api.async_client("operator", code) as http:
        assert (await http.post("/rpc/request_sync", json={"metrics": ["prepay_balance"]})).status_code == 200

    page = await browser.new_page()
    await page.goto(f"{gateway.url}/live#token={api.token('operator', code)}")
    assert "token" not in page.url, "the token is taken out of the address"
    await page.wait_for_function("document.querySelectorAll('#meters tbody tr').length === 3")
    serial = fleet.meters[0].serial
    row = page.locator("#meters tbody tr", has_text=serial)
    await page.wait_for_function(f"""() => {{
        const row = [...document.querySelectorAll('#meters tbody tr')].find(r => r.cells[0].textContent === '{serial}');
        return row && row.cells[2].dataset.balance !== '' && row.cells[3].textContent === 'healthy'; }}""")
    before = float(await row.locator("td").nth(2).get_attribute("data-balance"))
    await page.evaluate(f"""() => {{
        window.shownAt = null;
        const row = [...document.querySelectorAll('#meters tbody tr')].find(r => r.cells[0].textContent === '{serial}');
        new MutationObserver(() => {{
            if (window.shownAt === null && Number(row.cells[2].dataset.balance) > {before} + 9)
                window.shownAt = Date.now();
        }}).observe(row, {{subtree: true, childList: true, characterData: true, attributes: true}});
    }}""")

    async with api.async_client("operator", code) as http:
        response = await http.post("/rpc/send_token", json={"meter_id": ids[serial], "amount": 10,
                                                             "idempotency_key": uuid.uuid4().hex})
        assert response.status_code == 200, response.text
        command = response.json()[0]["id"]

    def finished():
        with stack.sql() as conn:
            return conn.execute("SELECT c.committed_at FROM flows.meter_commands AS m"
                                " JOIN flows.realtime_events AS e"
                                " ON e.key = m.id::text AND e.relation = 'meter_commands'"
                                " JOIN flows.realtime_commits AS c ON c.xid = e.xid"
                                " WHERE m.id = %s AND m.status = 'done' ORDER BY c.position DESC LIMIT 1",
                                (command,)).fetchone()
    recorded = (await wait_for(finished))[0]  # the commit that recorded the new balance
    shown_at = await page.wait_for_function("window.shownAt", timeout=5000)
    shown = datetime.fromtimestamp(await shown_at.json_value() / 1000, UTC)
    delay = (shown - recorded).total_seconds()
    assert 0 <= delay < 1.0, f"shown {delay:.3f} s after the sync committed"
    text = await row.locator("td").nth(2).text_content()
    assert float(text) == pytest.approx(before + 10, abs=0.01)
    assert (await page.locator("#meters tbody tr").count()) == 3, "no meter of the other ESCO"
    await page.screenshot(path=str(tmp_path / "live.png"))
