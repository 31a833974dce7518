"""The review app in a real browser (Debian's Chromium driven by Playwright): sign in, the
list, a patient, a decision, a changed decision, the print view, sign out; screenshots of
the main pages; then the next `casefind run` leaves the declined patient off, and every
identifiable view and decision the browser made is in the audit log."""
from __future__ import annotations

import datetime as dt
import shutil
import socket
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.app.conftest import PASSWORD, make_world
from tests.app.helpers import decided
from tests.casefind_testdata import cli

from casefind import audit
from casefind.project import shipped_rules
from casefind.store import listings

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENS_COPY = Path("/tmp/app-screens")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium (/usr/bin/chromium) is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(built_store, tmp_path):
    import uvicorn

    world = make_world(built_store, tmp_path)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(world.app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the app did not start"
    yield world, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_review_in_the_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    world, base = served
    a = world.practices[0]
    screens = tmp_path / "screens"
    screens.mkdir()
    print(f"\nscreenshots: {screens} (copied to {SCREENS_COPY})")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        page.goto(base + "/")
        assert page.url.endswith("/login")
        page.screenshot(path=screens / "1-sign-in.png")
        page.fill("#username", "clin_a")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"**/practice/{a}")
        assert page.locator("td.nhs").count() == len(world.listed[a])
        page.screenshot(path=screens / "2-list.png", full_page=True)

        page.locator("table.list tbody tr td a").first.click()
        page.wait_for_url("**/patient/*")
        patient_url = page.url
        name = page.locator("h1").inner_text()
        assert page.locator("strong.nhs").count() == 1
        page.screenshot(path=screens / "3-patient.png", full_page=True)

        page.check("input[value=accepted]")
        page.click("form.decide button[type=submit]")
        page.wait_for_url("**done=saved")
        assert "Accepted" in page.locator("span.decision").first.inner_text()
        page.screenshot(path=screens / "4-decided.png", full_page=True)

        page.check("input[value=declined]")
        page.select_option("#reason", "patient declined")
        page.fill("#note", "prefers to wait until the spring")
        page.click("form.decide button[type=submit]")
        page.wait_for_url("**done=saved")
        assert "Declined" in page.locator("span.decision").first.inner_text()
        assert page.locator("table.history tbody tr").count() >= 3  # accepted, withdrawn, declined
        page.screenshot(path=screens / "5-changed.png", full_page=True)

        page.goto(f"{base}/practice/{a}?status=decided")
        assert page.locator("table.list tbody tr").count() == 1
        assert name in page.content()
        page.goto(f"{base}/practice/{a}/print")
        page.emulate_media(media="print")
        assert not page.locator("header.top").is_visible()
        page.screenshot(path=screens / "6-print.png", full_page=True)
        page.emulate_media(media="screen")

        page.click("form.signout button")
        page.wait_for_url("**/login")
        page.goto(patient_url)
        assert page.url.endswith("/login")  # signed out: the patient is not shown again
        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors
    shutil.rmtree(SCREENS_COPY, ignore_errors=True)
    shutil.copytree(screens, SCREENS_COPY)
    _declined_patient_left_off(world)
    _audited(world)


def _declined_patient_left_off(world):
    declined = decided(world.store)
    pid = declined[-1][0]
    assert declined[-1][2] == "declined"
    today = dt.date.today().isoformat()
    out = world.root / "out2"
    r = cli("run", shipped_rules() / "frail.yml", "--store", world.store, "--out", out, "--as-of", today,
            "--allow-partial")
    assert r.exit_code == 0, r.output
    latest = listings.runs(world.store)[-1]
    assert latest.as_of.isoformat() == today and pid not in latest.practice_of
    listed = pq.read_table(next(out.glob("frail-*/list.parquet"))).column("patient_id").to_pylist()
    assert pid not in listed


def _audited(world):
    mine = audit.entries(world.store, user="clin_a")
    actions = [e["action"] for e in mine]
    a = world.practices[0]
    views = [e for e in mine if e["action"] == "view_list"]
    shown = [set(e["patient_ids"] or [e["patient_id"]]) for e in views]  # one patient: in patient_id
    assert views and all(e["practice"] == a for e in views) and all(ids <= set(world.listed[a]) for ids in shown)
    assert shown[0] == set(world.listed[a])  # the whole list, after sign-in
    assert len(views) >= 2  # after sign-in, and the decided filter
    patient_views = [e for e in mine if e["action"] == "view_patient"]
    assert len(patient_views) >= 3 and len({e["patient_id"] for e in patient_views}) == 1
    decisions = [e for e in mine if e["action"] == "decide"]
    assert [e["detail"]["decision"] for e in decisions] == ["accepted", "declined"]
    assert {e["patient_id"] for e in decisions} == {patient_views[0]["patient_id"]}
    assert actions.count("print_list") == 1 and actions[0] == "sign_in" and actions[-1] == "sign_out"
    assert audit.verify(world.store).ok
