"""Real Chromium against a live console and a real worker process.

An approver logs in, finds the run in the inbox, approves with a note and
watches it complete; a rejection ends failed with the note; a viewer sees no
form. In CI (CI=true) these never skip: a missing Chromium fails the run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from runs.models import Decision, Run, RunAction
from tests.conftest import PASSWORD, make_user
from tests.conftest import start_run as start_run_here

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists() and os.environ.get("CI") != "true":
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def static_files_the_live_server_finds(settings: Any) -> None:
    """The live server serves /static/ from the apps' own files (Django's static files
    handler, ahead of whitenoise), which know no hashed names: link those names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop on this thread; the ORM calls
    # the tests make between browser steps are not inside it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def start_run(*args: Any, **kwargs: Any) -> Run:
    """Run a blueprint through NeuroCore off this thread, where Playwright's loop lives."""

    def in_own_thread() -> Run:
        try:
            return start_run_here(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(in_own_thread).result()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


def log_in(page: Page, live_server: Any, username: str, next_path: str = "/approvals/") -> None:
    page.goto(live_server.url + next_path)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(live_server.url + next_path)


def test_an_approver_approves_and_watches_the_run_complete(
    page: Page, live_server: Any, start_worker: Any
) -> None:
    make_user("ada", "Approvers")
    run = start_run(amount=250, payee="ACME GmbH")
    start_worker("browser-worker")

    log_in(page, live_server, "ada")
    expect(page.locator(".count")).to_have_text("1")
    row = page.get_by_role("row", name=re.compile("payment"))
    expect(row).to_contain_text("Approve the payment?")
    expect(row).to_contain_text("payee: ACME GmbH")
    row.get_by_role("link", name="Review").click()

    expect(page.locator(".gate-message")).to_have_text("Approve the payment?")
    expect(page.locator("dl.fields").first).to_contain_text("ACME GmbH")
    page.get_by_label("Note").fill("Invoice 42 checked")
    page.get_by_role("button", name="Approve").click()

    expect(page.get_by_role("status").first).to_have_text(
        "Approved. The run continues in the background."
    )
    # The page refreshes itself until the worker has resumed the run.
    expect(page.get_by_text("The run completed.")).to_be_visible(timeout=30_000)
    expect(page.locator(".count")).to_have_text("0")
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    decision = Decision.objects.get()
    assert decision.note == "Invoice 42 checked"
    assert decision.decided_by_identity == "ada@example.com"


def test_a_rejection_ends_rejected_and_another_approver_reopens_it(
    page: Page, live_server: Any, start_worker: Any
) -> None:
    make_user("ada", "Approvers")
    make_user("bea", "Approvers")
    run = start_run()
    start_worker("browser-worker")

    log_in(page, live_server, "ada", f"/approvals/{run.run_id}/")
    page.get_by_role("button", name="Reject").click()  # no note: refused, nothing changes
    expect(page.get_by_text("a note is required to reject").first).to_be_visible()
    assert not Decision.objects.exists()

    page.get_by_label("Note").fill("Vendor not on the approved list")
    page.get_by_role("button", name="Reject").click()
    expect(page.get_by_text("The run was rejected and has ended.")).to_be_visible(timeout=30_000)
    expect(page.locator(".badge.status-rejected").first).to_have_text("Rejected")
    run.refresh_from_db()
    assert run.status == Run.Status.REJECTED
    page.get_by_role("button", name="Log out").click()

    log_in(page, live_server, "bea", f"/approvals/{run.run_id}/")
    expect(page.locator(".banner.rejected")).to_contain_text("Rejected by ada@example.com at")
    reason = page.get_by_label("Reopen for a new decision")
    page.get_by_role("button", name="Reopen").click()  # no reason: the browser asks for one
    assert reason.evaluate("field => field.validity.valueMissing")
    assert not RunAction.objects.filter(kind=RunAction.Kind.REOPEN).exists()
    reason.fill("Vendor was added to the list today")
    page.get_by_role("button", name="Reopen").click()
    expect(page.get_by_text("Reopened: the run goes back to its gate")).to_be_visible()
    # Once the worker has run the gate again, the run waits in the inbox, saying why.
    expect(page.locator(".gate-message")).to_have_text("Approve the payment?", timeout=30_000)
    page.goto(live_server.url + "/approvals/")
    row = page.get_by_role("row", name=re.compile("payment"))
    expect(row).to_contain_text("rejected by ada@example.com at")
    expect(row).to_contain_text("“Vendor not on the approved list”")
    expect(row).to_contain_text("reopened by bea@example.com at")
    expect(row).to_contain_text("“Vendor was added to the list today”")
    row.get_by_role("link", name="Review").click()
    expect(page.locator(".banner.reopened")).to_contain_text("reopened by bea@example.com")
    page.get_by_label("Note").fill("Vendor checked")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_text("The run completed.")).to_be_visible(timeout=30_000)
    reopen = RunAction.objects.get(run=run, kind=RunAction.Kind.REOPEN)
    assert (reopen.requested_by_identity, reopen.note) == (
        "bea@example.com",
        "Vendor was added to the list today",
    )
    assert list(
        Decision.objects.filter(run=run)
        .order_by("decided_at")
        .values_list("approved", "decided_by_identity")
    ) == [(False, "ada@example.com"), (True, "bea@example.com")]


def test_an_operator_cannot_pass_a_gate_and_nothing_changes(
    page: Page, live_server: Any, start_worker: Any
) -> None:
    make_user("otto", "Operators")
    run = start_run()
    waiting_since = run.updated_at
    start_worker("browser-worker")

    log_in(page, live_server, "otto", f"/admin/runs/run/{run.run_id}/change/")
    expect(page.get_by_text("review page: approve or reject")).to_be_visible()
    expect(page.get_by_role("link", name="Resume")).to_have_count(0)

    # Straight to the resume page: refused before anything is confirmed.
    page.goto(f"{live_server.url}/admin/runs/run/{run.run_id}/act/resume/")
    expect(page.locator("ul.refused")).to_contain_text(
        "Only a decision passes it: approve or reject it on its review page"
    )
    expect(page.get_by_role("button", name=re.compile("Yes"))).to_have_count(0)

    # From the list, with resume data that claims an approval: refused, one by one.
    page.goto(f"{live_server.url}/admin/runs/run/")
    page.locator("input[name=_selected_action]").first.check()
    page.locator("select[name=action]").select_option("resume_runs")
    page.locator("button[name=index]").click()
    expect(page.locator("ul.refused")).to_contain_text("Only a decision passes it")
    assert not Decision.objects.exists()
    assert not RunAction.objects.exists()
    run.refresh_from_db()
    assert (run.status, run.updated_at, run.suspended_at_node) == (
        Run.Status.SUSPENDED,
        waiting_since,
        "finance_review",
    )


def test_a_viewer_sees_the_run_but_no_form(page: Page, live_server: Any) -> None:
    make_user("vera", "Viewers")
    run = start_run()

    log_in(page, live_server, "vera", f"/approvals/{run.run_id}/")
    expect(page.locator(".gate-message")).to_have_text("Approve the payment?")
    expect(page.get_by_text("you may not approve or reject it")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)


def test_logging_out_ends_the_session(page: Page, live_server: Any) -> None:
    make_user("ada", "Approvers")
    log_in(page, live_server, "ada")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You are logged out.")).to_be_visible()
    page.goto(live_server.url + "/approvals/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/approvals/"))


def test_a_scoped_approver_sees_only_their_teams_runs(page: Page, live_server: Any) -> None:
    from django.contrib.auth.models import Group

    from runs.models import BlueprintScope

    finance = Group.objects.create(name="Finance")
    scope = BlueprintScope.objects.create(pattern="pay*", action="decide")
    scope.groups.set([finance])
    make_user("fiona", "Approvers", "Finance")
    make_user("otis", "Approvers")
    payment = start_run()
    publication = start_run("two_gates.yaml")

    log_in(page, live_server, "otis")
    expect(page.locator(".count")).to_have_text("1")
    expect(page.get_by_role("row", name=re.compile("publication"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("payment"))).to_have_count(0)
    page.goto(f"{live_server.url}/approvals/{payment.run_id}/")
    expect(page.get_by_text("you may not approve or reject it")).to_be_visible()
    page.get_by_role("button", name="Log out").click()

    log_in(page, live_server, "fiona")
    expect(page.locator(".count")).to_have_text("2")
    expect(page.get_by_role("row", name=re.compile("payment"))).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("publication"))).to_be_visible()
    assert publication.run_id != payment.run_id


@pytest.mark.parametrize("width", [1280, 390])
def test_the_inbox_and_review_page_fit_the_screen(
    browser: Browser, live_server: Any, width: int
) -> None:
    make_user("ada", "Approvers")
    long_note = "Checked" + "x" * 1_960 + "\nsecond line \u202eevil"
    run = start_run(amount=250, payee="ACME GmbH " * 30)
    other = start_run()
    from tests.conftest import decide

    decide(other, get_user_model().objects.get(username="ada"), approved=False, note=long_note)
    assert page_css_loads(browser, live_server)
    context = browser.new_context(viewport={"width": width, "height": 844})
    page = context.new_page()
    try:
        log_in(page, live_server, "ada")
        for path in ("/approvals/", f"/approvals/{run.run_id}/", f"/approvals/{other.run_id}/"):
            page.goto(live_server.url + path)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            widest = page.evaluate(
                "[...document.querySelectorAll('body *')].filter(e => e.scrollWidth > "
                "window.innerWidth).slice(-3).map(e => e.tagName + '.' + e.className + ' ' + "
                "e.scrollWidth)"
            )
            page.screenshot(path=str(SCREENSHOTS / f"fit-{width}-{len(path)}.png"))
            assert overflow <= 0, f"{path} is {overflow} px too wide at {width} px: {widest}"
        note = page.locator("bdi.note").first
        assert "\n" in note.inner_text()  # line breaks kept
        # The right-to-left override stays inside the note.
        assert note.evaluate("el => getComputedStyle(el).unicodeBidi") == "isolate"
    finally:
        context.close()


SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS", "/tmp/console-screenshots"))
SCREENSHOTS.mkdir(parents=True, exist_ok=True)


def page_css_loads(browser: Browser, live_server: Any) -> bool:
    """Whether the console's stylesheet is served to the browser (pages are styled)."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(live_server.url + "/accounts/login/")
        href = page.evaluate("document.querySelector('link[rel=stylesheet]').href")
        return page.request.get(href).status == 200
    finally:
        context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_two_people_approve_a_gate_with_an_answer_form(
    browser: Browser, live_server: Any, start_worker: Any, width: int
) -> None:
    """A gate needing two of Finance and a cost center: Ada answers and approves,
    the page says one more is needed; Bob approves and the run completes with
    both answers handed to NeuroCore."""
    from django.contrib.auth.models import Group

    finance = Group.objects.create(name="Finance")
    for name in ("ada", "bob"):
        make_user(name, "Approvers").groups.add(finance)
    run = start_run("policy.yaml", amount=420, requested_by="rita@example.com")
    start_worker("browser-worker")
    assert page_css_loads(browser, live_server)
    pages = []
    for name in ("ada", "bob"):
        context = browser.new_context(viewport={"width": width, "height": 844})
        context.set_default_timeout(20_000)
        pages.append(context.new_page())
        log_in(pages[-1], live_server, name)
    ada, bob = pages
    try:
        review = f"/approvals/{run.run_id}/"
        ada.goto(live_server.url + review)
        expect(ada.get_by_role("heading", name="How this gate is decided")).to_be_visible()
        expect(ada.locator(".policy")).to_contain_text("Needs 2 approvals from different people.")
        ada.get_by_role("button", name="Approve").click()
        expect(ada.get_by_role("status").first).to_contain_text("Cost center: required to approve.")
        ada.get_by_label("Cost center").fill("CC-4100")
        ada.get_by_label("Amount approved (optional)").fill("420")
        ada.get_by_label("Note").fill("Matches the contract")
        ada.get_by_role("button", name="Approve").click()
        expect(ada.get_by_role("status").first).to_have_text(
            "Approved. The gate needs more approvals: the run waits for them."
        )
        expect(ada.locator(".policy .progress")).to_contain_text(
            "1 of 2 approvals — ada@example.com approved"
        )
        assert ada.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        ada.screenshot(path=str(SCREENSHOTS / f"quorum-{width}-after-ada.png"), full_page=True)

        bob.goto(live_server.url + "/approvals/")
        row = bob.get_by_role("row", name=re.compile("invoice"))
        expect(row).to_contain_text("1 of 2 approvals — ada@example.com approved")
        row.get_by_role("link", name="Review").click()
        bob.get_by_label("Cost center").fill("CC-4100")
        bob.get_by_role("button", name="Approve").click()
        expect(bob.get_by_role("status").first).to_have_text(
            "Approved. The run continues in the background."
        )
        expect(bob.get_by_text("The run completed.")).to_be_visible(timeout=30_000)
        bob.screenshot(path=str(SCREENSHOTS / f"quorum-{width}-done.png"), full_page=True)
    finally:
        for each in pages:
            each.context.close()
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
    approval = run.final_context["data"]["approval"]
    assert approval["by"] == "ada@example.com, bob@example.com"
    assert approval["inputs"] == {"cost_center": "CC-4100", "amount_approved": 420.0}


def running_run(quiet_minutes: float, **fields: Any) -> str:
    """A run an agent saved "running", with nothing saved for ``quiet_minutes``."""
    from datetime import timedelta

    from django.utils import timezone

    from runs.store import DjangoRunStore
    from tests.test_store import make_run

    record = make_run(status="running", **fields)
    DjangoRunStore().save_run(record)
    then = timezone.now() - timedelta(minutes=quiet_minutes)
    Run.objects.filter(pk=record.run_id).update(created_at=then, updated_at=then)
    return record.run_id


def row_of(page: Page, run_id: str) -> Any:
    return page.locator("#result_list tbody tr", has=page.get_by_text(run_id[:12], exact=True))


def test_a_stalled_run_says_so_and_the_list_follows_running_ones(
    page: Page, live_server: Any
) -> None:
    make_user("otto", "Operators")
    stalled = running_run(quiet_minutes=14.5)
    moving = running_run(quiet_minutes=0)

    log_in(page, live_server, "otto", "/admin/runs/run/")
    expect(row_of(page, stalled)).to_contain_text("No progress for 14 minutes")
    expect(row_of(page, moving)).not_to_contain_text("No progress")
    row_of(page, stalled).get_by_role("link").first.click()
    expect(page.locator(".banner.stall")).to_contain_text(
        "No progress for 14 minutes — it may have stopped"
    )
    expect(page.locator('meta[name="console-refresh"]')).to_have_count(0)

    # The list refreshes itself while a run on it is running, and stops after.
    page.goto(live_server.url + "/admin/runs/run/")
    expect(page.locator('meta[name="console-refresh"]')).to_have_count(1)
    Run.objects.filter(pk=moving).update(status=Run.Status.COMPLETED)
    expect(row_of(page, moving)).to_contain_text("Completed", timeout=30_000)
    expect(page.locator('meta[name="console-refresh"]')).to_have_count(0)

    # Someone ticking runs on the list is not interrupted by a refresh.
    another = running_run(quiet_minutes=0)
    page.reload()
    row_of(page, another).locator("input[type=checkbox]").check()
    Run.objects.filter(pk=another).update(status=Run.Status.COMPLETED)
    page.wait_for_timeout(13_000)  # longer than the list's refresh (10 s)
    expect(row_of(page, another).locator("input[type=checkbox]")).to_be_checked()
    expect(row_of(page, another)).to_contain_text("Running")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_runs_list_fits_and_the_failed_list_shows_the_error(
    browser: Browser, live_server: Any, width: int
) -> None:
    make_user("otto", "Operators")
    for name in ("content-publication", "vendor-payment", "nightly-import"):
        running_run(quiet_minutes=60, blueprint_name=name)
    start_run()  # waiting at its gate, finance_review
    failed = running_run(quiet_minutes=5, blueprint_name="nightly-import")
    Run.objects.filter(pk=failed).update(
        status=Run.Status.FAILED, error="Component 'fetch_feed' failed: upstream unavailable"
    )
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        log_in(page, live_server, "otto", "/admin/runs/run/")
        page.screenshot(path=str(SCREENSHOTS / f"runs-list-{width}.png"), full_page=True)
        if width >= 1280:
            # Every column within the table's box, no horizontal scrolling.
            assert page.evaluate(
                "(() => { const r = document.querySelector('#changelist .results');"
                " return r.scrollWidth <= r.clientWidth; })()"
            )
            # A blueprint and its version, a gate: on one line each.
            lines = page.evaluate(
                "[...document.querySelectorAll('td.field-blueprint, td.field-waiting_at')]"
                ".map(td => { const range = document.createRange(); range.selectNodeContents(td);"
                " return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size; })"
            )
            assert lines
            assert set(lines) <= {0, 1}, lines
            expect(page.locator("td.field-waiting_at", has_text="finance_review")).to_be_visible()
        page.goto(live_server.url + "/admin/runs/run/?status=failed")
        page.screenshot(path=str(SCREENSHOTS / f"runs-failed-{width}.png"), full_page=True)
        expect(page.locator("#result_list thead")).to_contain_text("Error")
        expect(page.locator("td.field-error_shown")).to_contain_text("upstream unavailable")
    finally:
        context.close()


JST = re.compile(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d JST")


@pytest.mark.parametrize("width", [1280, 390])
def test_times_are_in_the_browsers_zone_until_one_is_chosen(
    browser: Browser, live_server: Any, width: int
) -> None:
    """Chromium in Tokyo: every page says JST without anyone choosing; a chosen zone wins."""
    make_user("ada", "Approvers", "Viewers")
    run = start_run(amount=250, payee="ACME GmbH")
    other = start_run(amount=9)
    from tests.conftest import decide

    decide(other, get_user_model().objects.get(username="ada"), approved=False, note="No.")
    context = browser.new_context(
        timezone_id="Asia/Tokyo", viewport={"width": width, "height": 844}
    )
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        log_in(page, live_server, "ada")  # the login page's script told the server: Tokyo
        expect(page.locator("td time").first).to_have_text(JST)
        expect(page.locator("a.zone")).to_have_text("JST")
        for name, path in [
            ("review", f"/approvals/{run.run_id}/"),
            ("rejected", f"/approvals/{other.run_id}/"),
            ("runs", "/admin/runs/run/"),
            ("run", f"/admin/runs/run/{run.run_id}/change/"),
        ]:
            page.goto(live_server.url + path)
            expect(page.locator("time").first).to_have_text(JST)
            tooltip = page.locator("time").first.get_attribute("title") or ""
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00", tooltip), tooltip
            page.screenshot(path=str(SCREENSHOTS / f"zone-{name}-{width}.png"), full_page=True)

        # Without the cookie (a new browser, say) the page is shown once in UTC, then
        # again, by itself, in the browser's zone.
        context.clear_cookies(name="tz")
        page.goto(live_server.url + "/approvals/")
        expect(page.locator("td time").first).to_have_text(JST)

        # A zone chosen on the page reached from the header wins over the browser's.
        page.locator("a.zone").click()
        page.get_by_label("Time zone").select_option("Europe/Berlin")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Saved: times are now shown in the zone below.")).to_be_visible()
        expect(page.locator("a.zone")).to_have_text(re.compile(r"^CES?T$"))
        page.screenshot(path=str(SCREENSHOTS / f"zone-choose-{width}.png"), full_page=True)
        page.goto(live_server.url + "/approvals/")
        expect(page.locator("td time").first).to_have_text(re.compile(r" CES?T$"))

        # The runs list's dates: ISO text, a From after the To is said.
        page.goto(
            live_server.url + "/admin/runs/run/?created_from=2026-12-01&created_to=2026-11-01"
        )
        expect(page.locator(".messagelist")).to_contain_text("is after To (2026-11-01)")
        page.screenshot(path=str(SCREENSHOTS / f"zone-range-{width}.png"), full_page=True)
    finally:
        context.close()


def test_a_run_page_fits_a_phone(browser: Browser, live_server: Any) -> None:
    """At 390 px the run page's steps and decisions tables scroll in their boxes."""
    make_user("otto", "Operators", "Viewers")
    run = start_run(amount=250, payee="ACME GmbH " * 20)
    assert page_css_loads(browser, live_server)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        log_in(page, live_server, "otto", f"/admin/runs/run/{run.run_id}/change/")
        expect(page.locator("table.steps")).to_be_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        page.screenshot(path=str(SCREENSHOTS / "run-page-390.png"), full_page=True)
        assert overflow <= 0, f"the run page is {overflow} px too wide at 390 px"
    finally:
        context.close()
