"""The approval pages: inbox, review, the decision POST, and what is refused."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from runs.models import Decision, Run, RunAction
from runs.store import DjangoRunStore
from tests.conftest import decide, form_data, log_in, make_user, run_queued_tasks, start_run
from tests.test_store import make_run

pytestmark = pytest.mark.django_db(transaction=True)

INBOX = reverse("approvals:inbox")


def review_url(run: Run) -> str:
    return reverse("approvals:review", args=[run.run_id])


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- the inbox -----------------------------------------------------------------------


def test_inbox_lists_waiting_runs_oldest_first_with_what_they_ask(approver_client: Client) -> None:
    first = start_run(amount=10, customer="ACME")
    second = start_run("two_gates.yaml", title="Q3 report")
    start_run("dag.yaml")  # completed: not waiting

    response = approver_client.get(INBOX)

    assert response.status_code == 200
    rows = response.context["rows"]
    assert [run.run_id for run, *_ in rows] == [first.run_id, second.run_id]
    html = response.content.decode()
    assert "Approve the payment?" in html
    assert "Editor: publish this draft?" in html
    assert "amount: 10; customer: ACME" in html  # whole fields, plainly
    assert review_url(first) in html
    assert '<span class="count" title="Runs waiting for your decision">2</span>' in html


def test_inbox_leaves_out_runs_already_decided(approver_client: Client, approver: Any) -> None:
    run = start_run()
    approver_client.post(review_url(run), form_data(run))
    response = approver_client.get(INBOX)
    assert response.context["rows"] == []
    assert "Nothing is waiting for you" in response.content.decode()


def test_inbox_queries_do_not_grow_with_the_number_of_runs(
    approver_client: Client, django_assert_num_queries: Any
) -> None:
    start_run(amount=1)
    approver_client.get(INBOX)  # the session's idle timeout is renewed (written) here
    with CaptureQueriesContext(connection) as few:
        approver_client.get(INBOX)
    for amount in range(12):
        start_run(amount=amount)
    with django_assert_num_queries(len(few)):
        response = approver_client.get(INBOX)
    assert len(response.context["rows"]) == 13
    # session, user, time zone chosen, permissions (2), delegations held, scopes,
    # blueprints, count, page of runs, reopenings, console policies, decisions on the
    # page's suspensions; no session write
    assert len(few) <= 13


def test_a_viewer_sees_what_waits_but_no_way_to_decide(client: Client, viewer: Any) -> None:
    run = start_run()
    client.force_login(viewer)
    response = client.get(INBOX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<h1>Waiting for a decision</h1>" in html
    assert "approving or rejecting them needs the Approvers role" in html
    assert [r.run_id for r, *_ in response.context["rows"]] == [run.run_id]
    assert f'href="{review_url(run)}">View</a>' in html


def test_every_role_finds_its_pages_from_the_header(client: Client, viewer: Any) -> None:
    """By permission, never by is_staff: a viewer is not staff."""
    client.force_login(viewer)
    html = client.get(INBOX).content.decode()
    for label, url in [
        ("Approvals", "/approvals/"),
        ("Runs", "/admin/runs/run/"),
        ("Dashboard", "/admin/"),
        ("Decisions", "/admin/runs/decision/"),
    ]:
        assert re.search(f'<a href="{url}"[^>]*>{label}', html), label
    assert "People and access" not in html
    assert client.get("/admin/runs/run/").status_code == 200


def test_an_approver_finds_what_they_and_others_decided(
    approver_client: Client, approver: Any
) -> None:
    mine, theirs = start_run(), start_run()
    decide(mine, approver, note="paid")
    decide(theirs, make_user("bea", "Approvers"), approved=False, note="no")
    by_me = approver_client.get(INBOX, {"show": "mine"}).context["decisions"]
    assert [(d.run_id, d.note) for d in by_me] == [(mine.run_id, "paid")]
    recent = approver_client.get(INBOX, {"show": "recent"}).context["decisions"]
    assert [d.run_id for d in recent] == [theirs.run_id, mine.run_id]


# -- the review page -----------------------------------------------------------------


def test_review_page_shows_the_question_inputs_data_steps_and_form(approver_client: Client) -> None:
    run = start_run(amount=75, memo="<script>alert('x')</script>")
    response = approver_client.get(review_url(run))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Approve the payment?" in html
    assert "&quot;amount&quot;: 75" in html
    assert "&quot;double&quot;: 150" in html  # data produced so far
    assert ">prepare<" in html  # steps done
    assert "<script>alert" not in html  # every stored value is escaped
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'value="approve"' in html
    assert 'value="reject"' in html


def test_a_viewer_sees_the_run_but_no_form(client: Client, viewer: Any) -> None:
    run = start_run()
    client.force_login(viewer)
    response = client.get(review_url(run))
    assert response.status_code == 200
    assert response.context["form"] is None
    assert 'value="approve"' not in response.content.decode()


def test_unknown_run_is_a_clear_404(approver_client: Client) -> None:
    response = approver_client.get(reverse("approvals:review", args=["nope"]))
    assert response.status_code == 404
    assert "No run has the id “nope”" in response.content.decode()


DJANGO_DEBUG_PAGE = ("URLconf", "urlpatterns", "Traceback", "DEBUG = True", "SECRET_KEY")


@override_settings(DEBUG=True)  # as `make run` serves the demo
def test_with_debug_on_a_stranger_gets_the_consoles_pages_not_djangos(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = Client(raise_request_exception=False)
    missing = stranger.get("/no/such/page/")
    assert missing.status_code == 404
    assert "There is nothing at this address." in missing.content.decode()
    assert not [shown for shown in DJANGO_DEBUG_PAGE if shown in missing.content.decode()]

    def broken() -> None:
        raise RuntimeError("the database said no")

    monkeypatch.setattr("runs.views.selectors.health", broken)
    with caplog.at_level("ERROR", logger="django.request"):
        error = stranger.get("/healthz")
    assert error.status_code == 500
    assert "Something went wrong" in error.content.decode()
    assert not [shown for shown in DJANGO_DEBUG_PAGE if shown in error.content.decode()]
    assert "the database said no" not in error.content.decode()
    assert "RuntimeError: the database said no" in caplog.text  # the terminal has it

    refused = stranger.get("/", HTTP_HOST="evil.example")  # a Host not allowed: 400
    assert refused.status_code == 400
    assert not [shown for shown in DJANGO_DEBUG_PAGE if shown in refused.content.decode()]


@override_settings(DEBUG=True)
def test_with_debug_on_a_missing_run_is_the_consoles_404(approver_client: Client) -> None:
    response = approver_client.get(reverse("approvals:review", args=["nope"]))
    assert response.status_code == 404
    assert "No run has the id “nope”" in response.content.decode()
    assert "Back to the console" in response.content.decode()
    assert not [shown for shown in DJANGO_DEBUG_PAGE if shown in response.content.decode()]
    unknown = approver_client.get("/admin/no-such-page/")
    assert unknown.status_code == 404
    assert "There is nothing at this address." in unknown.content.decode()  # not "Http404"
    assert approver_client.get("/approvals").status_code == 301  # a missing slash is added


# -- deciding ------------------------------------------------------------------------


def test_approve_records_redirects_and_shows_progress_then_the_result(
    approver_client: Client,
) -> None:
    run = start_run()
    response = approver_client.post(review_url(run), form_data(run, note="paid"), follow=True)

    assert response.redirect_chain == [(review_url(run), 302)]
    assert messages_of(response) == ["Approved. The run continues in the background."]
    html = response.content.decode()
    assert "Resuming the run" in html
    assert '<meta name="console-refresh" content="2">' in html
    decision = Decision.objects.get()
    assert (decision.approved, decision.note, decision.source) == (True, "paid", "web")
    assert decision.client_address == "127.0.0.1"

    run_queued_tasks()
    html = approver_client.get(review_url(run)).content.decode()
    assert "The run completed." in html
    assert "console-refresh" not in html


def test_a_rejection_ends_the_run_rejected_with_the_note(approver_client: Client) -> None:
    run = start_run()
    approver_client.post(review_url(run), form_data(run, "reject", "duplicate invoice"))
    run_queued_tasks()
    html = approver_client.get(review_url(run)).content.decode()
    assert "The run was rejected and has ended." in html
    assert "Rejected</strong> by ada@example.com at" in html
    assert '“<bdi class="note">duplicate invoice</bdi>”' in html
    assert "The run failed" not in html
    run.refresh_from_db()
    assert run.status == Run.Status.REJECTED


def test_the_next_gate_is_shown_after_the_first_is_approved(approver_client: Client) -> None:
    run = start_run("two_gates.yaml")
    approver_client.post(review_url(run), form_data(run))
    run_queued_tasks()
    response = approver_client.get(review_url(run))
    html = response.content.decode()
    assert "now waits at the next gate: <strong>legal_review</strong>" in html
    assert "Legal: cleared to publish?" in html
    assert response.context["form"] is not None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"decision": ""}, "Choose Approve or Reject."),
        ({"decision": "maybe"}, "Choose Approve or Reject."),
        ({"decision": "reject", "note": "  "}, "a note is required to reject"),
        ({"note": "x" * 2001}, "Keep the note to 2000 characters at most"),
        ({"suspended_at": "yesterday"}, "The form is incomplete: reload the page."),
    ],
)
def test_bad_input_is_explained_and_changes_nothing(
    approver_client: Client, data: dict[str, str], error: str
) -> None:
    run = start_run()
    response = approver_client.post(review_url(run), {**form_data(run), **data})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Decision.objects.exists()
    assert Run.objects.get(pk=run.pk).status == Run.Status.SUSPENDED


def test_missing_fields_are_explained(approver_client: Client) -> None:
    run = start_run()
    response = approver_client.post(review_url(run), {})
    assert response.status_code == 400
    assert "Choose Approve or Reject." in response.content.decode()
    assert not Decision.objects.exists()


def test_a_stale_tab_is_told_who_decided_what_and_keeps_the_typed_note(
    approver_client: Client,
) -> None:
    run = start_run("two_gates.yaml")
    stale = form_data(run)
    approver_client.post(review_url(run), stale)
    run_queued_tasks()  # the run moved on to the second gate
    other = Client()
    other.force_login(make_user("bea", "Approvers"))
    typed = "The headline has a typo;\nfix it before it goes out."
    response = other.post(review_url(run), {**stale, "decision": "reject", "note": typed})

    assert response.status_code == 409
    [message] = messages_of(response)
    assert re.fullmatch(
        r"Already decided: ada@example\.com approved this at "
        r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d UTC "
        r'\("fine"\)\. The run has moved on: it now waits at \'legal_review\', a new question\. '
        r"Nothing was changed\.",
        message,
    )
    form = response.context["form"]
    assert form.initial["note"] == typed  # kept, for the new question
    assert form.initial["gate"] == "legal_review"
    html = response.content.decode()
    assert "A new question." in html
    assert "Legal: cleared to publish?" in html
    assert Decision.objects.count() == 1


def test_deciding_twice_names_who_decided(approver_client: Client) -> None:
    run = start_run()
    approver_client.post(review_url(run), form_data(run))
    other = Client()
    other.force_login(make_user("bea", "Approvers"))
    response = other.post(review_url(run), form_data(run, "reject", "no"), follow=True)
    assert messages_of(response)[0].startswith("Already decided: ada@example.com approved this at")
    assert Decision.objects.count() == 1


@pytest.mark.parametrize("status", ["completed", "cancelled", "failed"])
def test_a_run_that_is_not_waiting_is_refused(approver_client: Client, status: str) -> None:
    run = start_run()
    data = form_data(run)
    Run.objects.filter(pk=run.pk).update(status=status)
    response = approver_client.post(review_url(run), data, follow=True)
    assert "not waiting for a decision" in messages_of(response)[0]
    assert not Decision.objects.exists()


def test_posting_for_an_unknown_run_is_a_404(approver_client: Client) -> None:
    response = approver_client.post(reverse("approvals:review", args=["nope"]), {})
    assert response.status_code == 404


# -- who may ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["Viewers", "Operators", None])
def test_only_approvers_may_post_a_decision(client: Client, role: str | None) -> None:
    run = start_run()
    client.force_login(make_user("someone", *([role] if role else [])))
    response = client.post(review_url(run), form_data(run))
    assert response.status_code == 403
    assert not Decision.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_users_are_sent_to_login(client: Client, method: str) -> None:
    run = start_run()
    for url in (INBOX, review_url(run)):
        response = getattr(client, method)(url)
        assert response.status_code == 302
        assert response["Location"].startswith(f"/accounts/login/?next={url}")
    assert not Decision.objects.exists()


def test_a_user_without_a_role_is_told_so(client: Client) -> None:
    client.force_login(make_user("nobody"))
    response = client.get(INBOX)
    assert response.status_code == 403
    assert "no role in this console" in response.content.decode()


def test_a_forged_csrf_token_is_refused_clearly(approver: Any) -> None:
    run = start_run()
    client = Client(enforce_csrf_checks=True)
    client.force_login(approver)
    response = client.post(review_url(run), {**form_data(run), "csrfmiddlewaretoken": "forged"})
    assert response.status_code == 403
    assert "The form expired" in response.content.decode()
    assert not Decision.objects.exists()


def test_a_real_form_post_with_its_csrf_token_works(approver: Any) -> None:
    run = start_run()
    client = Client(enforce_csrf_checks=True)
    log_in(client, approver.username)
    page = client.get(review_url(run))
    token = page.context["csrf_token"]
    response = client.post(review_url(run), {**form_data(run), "csrfmiddlewaretoken": str(token)})
    assert response.status_code == 302
    assert Decision.objects.count() == 1


# -- many clicks at once ----------------------------------------------------------------


def test_twenty_approvers_posting_at_once_get_one_decision_and_clear_messages() -> None:
    run = start_run()
    clients = []
    for i in range(20):
        client = Client()
        client.force_login(make_user(f"approver{i}", "Approvers"))
        clients.append(client)
    barrier = threading.Barrier(20)

    def post(client: Client) -> tuple[int, str]:
        barrier.wait()
        try:
            response = client.post(review_url(run), form_data(run), follow=True)
            # Not response.context: the test client collects it from every thread.
            # The outcome first; the refused are also given their note back.
            message, *_ = re.findall(
                r'<li class="message [a-z]+" role="status">([^<]*)</li>', response.content.decode()
            )
            return response.status_code, unescape(message)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(post, clients))

    # The winner is redirected to the page (200); the others are refused on it (409).
    assert sorted(status for status, _ in results) == [200] + [409] * 19
    texts = [text for _, text in results]
    assert texts.count("Approved. The run continues in the background.") == 1
    assert sum(t.startswith("Already decided: ") for t in texts) == 19
    assert Decision.objects.count() == 1
    assert RunAction.objects.count() == 1


def test_the_root_takes_people_to_the_inbox(approver_client: Client) -> None:
    response = approver_client.get("/")
    assert response.status_code == 302
    assert response["Location"] == INBOX


@pytest.mark.parametrize("role", ["Operators", "Viewers"])
def test_the_root_takes_everyone_else_to_the_runs_list(client: Client, role: str) -> None:
    client.force_login(make_user("someone", role))
    response = client.get("/")
    assert response["Location"] == reverse("admin:runs_run_changelist")


def test_steps_read_in_plain_words_and_the_decision_stays_on_top(
    approver_client: Client, approver: Any
) -> None:
    run = start_run()
    rows = approver_client.get(review_url(run)).context["step_rows"]
    assert [(r.number, r.step.component, r.outcome) for r in rows] == [
        (1, "prepare", "Completed"),
        (2, "finance_review", "Waiting for a decision"),
    ]
    decide(run, approver, note="paid in full")
    run_queued_tasks()
    html = approver_client.get(review_url(run)).content.decode()
    assert "<strong>Approved</strong> by ada@example.com at" in html
    assert '“<bdi class="note">paid in full</bdi>”' in html


def test_the_short_id_shown_everywhere_opens_the_run(approver_client: Client) -> None:
    DjangoRunStore().save_run(make_run(run_id="abc123def456" + "0" * 20))
    DjangoRunStore().save_run(make_run(run_id="abd000000000" + "1" * 20))
    full = "abc123def456" + "0" * 20
    response = approver_client.get("/approvals/abc123def456/")
    assert (response.status_code, response["Location"]) == (302, f"/approvals/{full}/")
    response = approver_client.get("/admin/runs/run/abc123def456/change/")
    assert (response.status_code, response["Location"]) == (302, f"/admin/runs/run/{full}/change/")
    # Ambiguous: the runs it could be.
    response = approver_client.get("/approvals/ab/")
    assert (response.status_code, response["Location"]) == (302, "/admin/runs/run/?q=ab")
    assert approver_client.get("/approvals/zz/").status_code == 404
    decisions = approver_client.get("/admin/runs/decision/", {"q": "abc1"})
    assert decisions.status_code == 200


def test_someone_without_a_role_is_told_so_without_a_loop(client: Client) -> None:
    client.force_login(make_user("nora"))
    for path in ("/", "/approvals/", "/admin/"):
        response = client.get(path, follow=True)
        html = response.content.decode()
        assert response.status_code == 403, path
        assert "with no role in this console yet" in html, path
        assert "Back to the console" not in html  # it would lead here again
        assert "different account" not in html


def test_a_logout_link_asks_then_logs_out(approver_client: Client) -> None:
    page = approver_client.get("/accounts/logout/")
    assert page.status_code == 200
    assert "Log out?" in page.content.decode()
    assert approver_client.post("/accounts/logout/").status_code == 200
    assert approver_client.get("/approvals/").status_code == 302  # to the login page


def test_the_review_page_leads_with_labelled_evidence_then_the_form(
    approver_client: Client,
) -> None:
    invoice = {"vendor": "Globex", "amount": 420, "number": "INV-2402", "lines": [{"sku": "A1"}]}
    run = start_run(invoice=invoice, demo=True)
    inbox = approver_client.get(INBOX).content.decode()
    assert "invoice: vendor Globex, amount 420, number INV-2402" in inbox  # not cut mid-field
    response = approver_client.get(review_url(run))
    html = response.content.decode()
    fields = response.context["inputs_fields"]
    assert [field.label for field in fields] == ["Invoice", "Demo"]
    assert [(f.label, f.text) for f in fields[0].fields[:3]] == [
        ("Vendor", "Globex"),
        ("Amount", "420"),
        ("Number", "INV-2402"),
    ]
    assert fields[1].text == "yes"
    assert "<summary>As raw JSON</summary>" in html
    assert html.index("What it has produced so far") < html.index(
        '<form method="post" class="decide"'
    )


def test_a_blueprint_author_names_the_fields_shown_first() -> None:
    from runs.presentation import labelled_fields

    data = {"notes": "x", "invoice": {"amount": 1}, "vendor": "Globex"}
    labels = [f.label for f in labelled_fields(data, first=("vendor", "invoice.amount"))]
    assert labels == ["Vendor", "Invoice", "Notes"]


def test_the_inbox_shows_fifty_at_a_time_and_counts_them_all(approver_client: Client) -> None:
    for amount in range(55):
        start_run(amount=amount)
    first = approver_client.get(INBOX)
    assert len(first.context["rows"]) == 50
    assert "Page 1 of 2 (55 waiting)" in first.content.decode()
    assert first.context["waiting_count"] == 55
    second = approver_client.get(INBOX, {"page": "2"})
    assert len(second.context["rows"]) == 5
