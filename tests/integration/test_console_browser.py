"""The web console in headless chromium against a live `dccgate run`: a bad token is
refused; real clicks sign in, find quarantined requests, release one, bulk-delete after a
confirmation that says how many, look a decision up; the Forecasts tab shows the SEC H3.24
variance report with its flags and offers its CSV; a User sees and decides only its own.
Screenshots are saved (tmp_path, and $DCCGATE_CONSOLE_SCREENSHOTS when set) to be looked
at."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from broker.settings import KafkaSettings
from tests.integration.brokers import SessionBroker
from tests.integration.cdp import Page, browser_page
from tests.integration.helpers import wait_until
from tests.integration.live_gateway import OPERATOR_TOKEN, LiveGateway, live_gateway
from tests.integration.quarantine_helpers import A, B, disable_supply
from workers.config.months import month_index, month_of_s
from workers.config.settings import Settings
from workers.tools.send import send_requests

pytestmark = pytest.mark.usefixtures("topics_ready")


def _setup(gw: LiveGateway, settings: Settings) -> dict[str, str]:
    """Users A and B, each with a token and an ADT of 0 on 7.2: every 7.2 is quarantined."""
    tokens = {}
    for name, user in (("A", A), ("B", B)):
        gw.put(f"/v1/users/{user}", {"name": f"User {name}", "roles": ["IS", "GS"]})
        gw.put(f"/v1/adt/users/{user}", {"thresholds": [{"srv": "7.2", "window_s": 3600,
                                                          "max": 0}]})  # fmt: skip
        status, doc = gw.api("POST", f"/v1/users/{user}/tokens")
        assert status in (200, 201), doc
        tokens[name] = doc["token"]
    return tokens


def _report(gw: LiveGateway, month: str) -> dict[str, dict[str, Any]]:
    status, doc = gw.api("GET", f"/v1/reports/sr-variance?month={month}")
    return {u["user_id"]: u for u in doc["users"]} if status == 200 else {}


async def _forecast_rows(page: Page) -> dict[str, dict[str, str]]:
    """The Forecasts table's User rows: User ID -> column -> shown text."""
    value = await page.eval(
        "Object.fromEntries([...document.querySelectorAll('#f-table tr.user-row')].map(r =>"
        " [r.dataset.user, Object.fromEntries([...r.querySelectorAll('td[data-col]')]"
        ".map(c => [c.dataset.col, c.innerText]))]))"
    )
    return dict(value)


def _ids(user: str, counters: range) -> list[str]:
    return [orjson.loads(disable_supply(n, user))["request_id"] for n in counters]


def _pending(gw: LiveGateway, user: str) -> list[dict[str, Any]]:
    status, doc = gw.api("GET", f"/v1/quarantine?user_id={user}")
    assert status == 200, doc
    items: list[dict[str, Any]] = doc["items"]
    return items


async def _sign_in(page: Page, base: str, token: str) -> None:
    await page.goto(f"{base}/")  # redirected to /ui/
    await page.wait_for("location.pathname === '/ui/'")
    await page.type_into("#token", token)
    await page.click("#signin")
    await page.wait_for("!document.getElementById('nav').hidden", what="signed in")


async def _rows(page: Page) -> list[str]:
    value = await page.eval(
        "[...document.querySelectorAll('#q-table tbody tr')].map(r => r.dataset.id)"
    )
    return list(value)


async def _wait_rows(page: Page, expected: list[str]) -> None:
    await page.wait_for(
        "JSON.stringify([...document.querySelectorAll('#q-table tbody tr')]"
        f".map(r => r.dataset.id)) === {json.dumps(json.dumps(expected, separators=(',', ':')))}",
        what=f"the queue to list {expected}",
    )


async def test_console_quarantine_decisions_and_user_isolation(
    kafka_broker: SessionBroker,
    settings: Settings,
    kafka: KafkaSettings,
    tmp_path: Path,
) -> None:
    with live_gateway(kafka_broker.bootstrap, settings, tmp_path / "gateway.log") as gw:
        tokens = _setup(gw, settings)
        # A forecasts 2 of 7.2 this month and sends 4 (exceptional demand: over 150%);
        # B sends 2 with no forecast.
        month = month_of_s(time.time())
        gw.put(f"/v1/forecasts/{A}/{month}", {"counts": {"7.2": 2}})
        a_ids, b_ids = _ids(A, range(1, 5)), _ids(B, range(1, 3))
        records = [disable_supply(n, A) for n in range(1, 5)]
        records += [disable_supply(n, B) for n in range(1, 3)]
        result = await send_requests(
            records, settings=kafka, topics=settings.topics, timeout_s=30, out=None
        )
        assert {a["response_code"] for a in result.answers} == {"Q1"}
        wait_until(
            lambda: len(_pending(gw, A)) == 4 and len(_pending(gw, B)) == 2,
            timeout_s=30,
            what="the quarantine service to hold every request",
        )
        wait_until(
            lambda: (
                (r := _report(gw, month)).get(A, {}).get("actual_total") == 4
                and r.get(B, {}).get("actual_total") == 2
            ),
            timeout_s=30,
            what="the actuals to count every request",
        )
        base = f"http://127.0.0.1:{gw.port}"
        downloads = tmp_path / "downloads"
        downloads.mkdir()

        async with browser_page(tmp_path) as page:
            await page.goto(f"{base}/ui/")
            # The Content-Security-Policy is in force: an inline script does not run, and
            # the violation is reported (so the check that none happened below is live).
            await page.eval(
                "document.head.append(Object.assign(document.createElement('script'),"
                " {textContent: 'window.injected = 1'}))"
            )
            assert await page.eval("window.injected === undefined")
            for _ in range(100):  # the report arrives as an event, soon after
                if any("Content Security Policy" in p for p in page.problems):
                    break
                await asyncio.sleep(0.05)
            assert any("Content Security Policy" in p for p in page.problems), page.problems
            page.problems.clear()

            # A bad token is refused, and nothing is kept.
            await page.type_into("#token", "not-a-token-" + "x" * 40)
            await page.click("#signin")
            await page.wait_for("!document.getElementById('signin-error').hidden")
            assert "not valid" in await page.text("#signin-error")
            assert await page.eval("sessionStorage.getItem('dccgate.token')") is None
            assert not await page.visible("#nav")
            await page.screenshot("0-bad-token.png")

            # The operator signs in and sees every quarantined request, oldest first.
            await _sign_in(page, base, OPERATOR_TOKEN)
            assert "operator" in await page.text("#who")
            assert OPERATOR_TOKEN not in await page.eval("location.href")
            assert await page.eval("sessionStorage.getItem('dccgate.token')") == OPERATOR_TOKEN
            await page.wait_for("document.querySelectorAll('#q-table tbody tr').length === 6")
            assert sorted(await _rows(page)) == sorted(a_ids + b_ids)
            await page.screenshot("1-operator-queue.png")

            # Release one with its row's button, after the confirmation.
            await page.click(f'button[data-decide="release"][data-id="{a_ids[0]}"]')
            await page.wait_for("document.getElementById('confirm').open")
            assert "Release 1 request?" in await page.text("#confirm-title")
            await page.click("#confirm-ok")
            await page.wait_for(
                f"!document.querySelector('tr[data-id=\"{a_ids[0]}\"]')",
                what="the released request to leave the pending queue",
            )
            assert f"Released {a_ids[0]}" in await page.text("#status")
            assert [e["id"] for e in _pending(gw, A)] == a_ids[1:]

            # Bulk-delete A's other three: the confirmation says how many it touches.
            await page.type_into("#q-user", A)
            await page.click("#q-refresh")
            await _wait_rows(page, a_ids[1:])
            await page.click("#q-bulk-delete")
            await page.wait_for("document.getElementById('confirm').open")
            title = await page.text("#confirm-title")
            assert title == "Delete 3 pending requests?"
            text = await page.text("#confirm-text")
            assert f"User {A}" in text
            assert await page.text("#confirm-list") == "\n".join(a_ids[1:])
            await page.screenshot("2-bulk-delete-confirmation.png")
            # Cancel first: nothing is decided.
            await page.click("#confirm-cancel")
            await page.wait_for("!document.getElementById('confirm').open")
            assert len(_pending(gw, A)) == 3
            await page.click("#q-bulk-delete")
            await page.wait_for("document.getElementById('confirm').open")
            await page.click("#confirm-ok")
            await _wait_rows(page, [])
            assert "Deleted 3 requests" in await page.text("#status")
            assert _pending(gw, A) == []
            assert len(_pending(gw, B)) == 2

            # Why was it decided: the lookup shows the answers and the quarantine history.
            await page.click('.tab[data-view="decisions"]')
            await page.type_into("#d-id", a_ids[0])
            await page.click("#d-lookup")
            await page.wait_for(
                "document.getElementById('d-result').innerText.includes('released')"
            )
            result_text = await page.text("#d-result")
            assert "quarantined" in result_text
            assert f"user:{A}:7.2:3600" in result_text
            await page.screenshot("3-decision-lookup.png")
            # One of the bulk: its history names the bulk decision and its filters.
            await page.type_into("#d-id", a_ids[1])
            await page.click("#d-lookup")
            await page.wait_for(
                f"document.getElementById('d-result').innerText.includes('bulk (User {A})')"
            )
            await page.screenshot("3b-decision-lookup-bulk.png")

            # The configuration in force and the audit log.
            await page.click('.tab[data-view="config"]')
            await page.wait_for("document.getElementById('c-result').innerText.includes('7.2')")
            await page.screenshot("4-configuration.png")
            await page.click('.tab[data-view="audit"]')
            await page.wait_for(
                "document.getElementById('a-table').innerText.includes('quarantine.delete')"
            )
            await page.screenshot("5-audit.png")

            # Forecasts: last month by default, then this month's report with the flags.
            await page.click('.tab[data-view="forecasts"]')
            last = f"{(month_index(month) - 1) // 12:04d}-{(month_index(month) - 1) % 12 + 1:02d}"
            await page.wait_for("!!document.getElementById('f-summary')", what="a report")
            assert await page.eval("document.getElementById('f-month').value") == last
            assert (await page.text("#f-summary")).startswith(last)
            await page.click("#f-this")
            await page.wait_for(
                "document.querySelectorAll('#f-table tr.user-row').length === 2",
                what="this month's report",
            )
            rows = await _forecast_rows(page)
            assert set(rows) == {A, B}
            # Only the newest of the two loads (the tab's, then "This month") is shown.
            assert await page.eval("document.querySelectorAll('#f-summary').length") == 1
            assert (await page.text("#f-summary")).startswith(month)
            assert (rows[A]["actual"], rows[A]["forecast"], rows[A]["variance"]) == ("4", "2", "+2")
            assert rows[A]["flags"] == "exceptional demand (>150%)"
            assert await page.eval(
                f"document.querySelector('#f-table tr.user-row[data-user=\"{A}\"]')"
                ".classList.contains('flagged')"
            )
            assert (rows[B]["actual"], rows[B]["forecast"]) == ("2", "none")
            assert rows[B]["flags"] == "no forecast"
            assert not await page.visible(f'tr.srv-row[data-user="{A}"][data-srv="7.2"]')
            await page.click(f'button.expand[data-user="{A}"]')
            srv = f'tr.srv-row[data-user="{A}"][data-srv="7.2"]'
            assert await page.visible(srv)
            srv_text = await page.text(srv)
            assert "exceptional demand" in srv_text, srv_text
            assert "+2" in srv_text, srv_text
            await page.screenshot("5b-forecasts.png")
            # The CSV: fetched with the token in a header, saved from a Blob URL.
            await page.send(
                "Page.setDownloadBehavior", behavior="allow", downloadPath=str(downloads)
            )
            await page.click("#f-csv")
            await page.wait_for(
                f"document.getElementById('status').innerText.includes('sr-variance-{month}.csv')"
            )
            saved = downloads / f"sr-variance-{month}.csv"
            wait_until(saved.exists, timeout_s=10, what="the CSV to be saved")
            lines = saved.read_text().splitlines()
            assert lines[0].startswith("month,user_id,srv,forecast,actual")
            assert any(line.startswith(f"{month},{A},7.2,2,4,") for line in lines), lines
            assert any(line.startswith(f"{month},{B},total,,2,") for line in lines), lines

            # User B: only its own requests, no operator sections, A's decisions hidden.
            await page.click("#sign-out")
            await page.wait_for("!document.getElementById('view-signin').hidden")
            assert await page.eval("sessionStorage.getItem('dccgate.token')") is None
            await _sign_in(page, base, tokens["B"])
            assert B in await page.text("#who")
            await page.wait_for("document.querySelectorAll('#q-table tbody tr').length === 2")
            assert sorted(await _rows(page)) == sorted(b_ids)
            assert not await page.visible('.tab[data-view="audit"]')
            assert not await page.visible("#q-user")
            await page.screenshot("6-user-b-queue.png")
            # B decides on its own: a release, confirmed.
            await page.click(f'button[data-decide="release"][data-id="{b_ids[0]}"]')
            await page.wait_for("document.getElementById('confirm').open")
            await page.click("#confirm-ok")
            await _wait_rows(page, b_ids[1:])
            assert [e["id"] for e in _pending(gw, B)] == b_ids[1:]
            await page.click('.tab[data-view="decisions"]')
            await page.type_into("#d-id", a_ids[0])
            await page.click("#d-lookup")
            await page.wait_for(
                "document.getElementById('d-result').innerText.includes('no decision kept')"
            )
            assert "released" not in await page.text("#d-result")
            await page.screenshot("7-user-b-cannot-see-a.png")
            # B's Forecasts tab: its own row only.
            await page.click('.tab[data-view="forecasts"]')
            await page.click("#f-this")
            await page.wait_for(
                f"!!document.querySelector('#f-table tr.user-row[data-user=\"{B}\"]')"
            )
            rows = await _forecast_rows(page)
            assert list(rows) == [B]
            assert await page.eval("document.querySelectorAll('#f-summary').length") == 1
            assert rows[B]["flags"] == "no forecast"
            assert A not in await page.text("#f-result")
            await page.screenshot("8-user-b-forecasts.png")
            assert page.problems == [], page.problems
        assert gw.alive(), gw.log_tail()
