"""Instants in one format, in the reader's time zone: chosen, else the browser's, else UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.messages import get_messages
from django.core import mail
from django.db import DatabaseError, connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from runs.errors import ConsoleError
from runs.middleware import ReaderTimeZoneMiddleware
from runs.models import Decision, Preference, Run
from runs.presentation import instant_html, instant_iso, instant_text
from runs.selectors import chosen_time_zone
from runs.services.notifications import suspensions_announce
from runs.services.preferences import PreferenceRefused, preference_time_zone_set
from runs.zones import ReaderZone, reader_zone, zone_named
from tests.conftest import decide, form_data, make_user, start_run

# NeuroCore writes a gate's steps from a helper thread: it needs committed data.
pytestmark = pytest.mark.django_db(transaction=True)

INSTANT = datetime(2026, 11, 30, 7, 35, 12, 345678, tzinfo=UTC)
RUNS = "/admin/runs/run/"
TIME_ZONE_PAGE = "/accounts/time-zone/"
HOSTILE_ZONES = [
    "",
    "Not/AZone",
    "../../../../etc/passwd",
    "/etc/localtime",
    "Europe/../Europe/Berlin",
    "Europe/Berlin\x00",
    "Europe/Berlin; path=/",
    "europe/berlin",  # names are exact
    "x" * 5000,
    "Asia/Tokyo\xa0",  # cookies are Latin-1 at most
    "%2Fetc%2Fpasswd",
    "posixrules/../UTC",
]


# -- the format ---------------------------------------------------------------------------


def test_one_format_says_the_zone() -> None:
    assert instant_text(INSTANT, ZoneInfo("Europe/Berlin")) == "30 Nov 2026, 08:35 CET"
    assert instant_text(INSTANT, ZoneInfo("Asia/Tokyo")) == "30 Nov 2026, 16:35 JST"
    assert instant_text(INSTANT, ZoneInfo("America/New_York")) == "30 Nov 2026, 02:35 EST"
    assert instant_text(INSTANT, UTC) == "30 Nov 2026, 07:35 UTC"
    # Summer time is said as such; a zone without a name gives its offset.
    summer = datetime(2026, 7, 1, 7, 5, tzinfo=UTC)
    assert instant_text(summer, ZoneInfo("Europe/Berlin")) == "1 Jul 2026, 09:05 CEST"
    assert instant_text(summer, ZoneInfo("Asia/Dubai")) == "1 Jul 2026, 11:05 +04"


def test_the_tooltip_is_iso_8601_to_the_second_with_its_offset() -> None:
    assert instant_iso(INSTANT, ZoneInfo("Europe/Berlin")) == "2026-11-30T08:35:12+01:00"
    assert instant_iso(INSTANT, UTC) == "2026-11-30T07:35:12+00:00"


def test_without_a_zone_given_it_is_the_current_one() -> None:
    with timezone.override(ZoneInfo("Asia/Tokyo")):
        assert str(instant_html(INSTANT)) == (
            '<time datetime="2026-11-30T16:35:12+09:00" title="2026-11-30T16:35:12+09:00">'
            "30 Nov 2026, 16:35 JST</time>"
        )
    assert str(instant_html(None)) == "—"
    assert instant_text(INSTANT.replace(tzinfo=None), UTC) == "30 Nov 2026, 07:35 UTC"


def test_django_renders_its_own_dates_in_the_same_format() -> None:
    """Admin columns of plain fields and read-only detail pages use DATETIME_FORMAT."""
    from django.utils import formats

    with timezone.override(ZoneInfo("Europe/Berlin")):
        shown = formats.localize(timezone.template_localtime(INSTANT))
    assert shown == "30 Nov 2026, 08:35 CET"


# -- which zone ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_ZONES)
def test_a_name_that_is_no_known_zone_is_refused(name: str) -> None:
    assert zone_named(name) is None
    assert reader_zone(chosen="", browser=name).source == ReaderZone.DEFAULT


def test_chosen_wins_over_the_browser_which_wins_over_the_default() -> None:
    assert reader_zone(chosen="Asia/Tokyo", browser="Europe/Berlin").name == "Asia/Tokyo"
    assert reader_zone(chosen="", browser="Europe/Berlin").source == ReaderZone.BROWSER
    assert reader_zone(chosen="Gone/Zone", browser="Europe/Berlin").name == "Europe/Berlin"
    default = reader_zone(chosen="", browser=None)
    assert (default.name, default.source, default.abbreviation) == ("UTC", "default", "UTC")


def shown_zone(client: Client, **cookies: str) -> str:
    for name, value in cookies.items():
        client.cookies[name] = value
    response = client.get("/approvals/")
    assert response.status_code == 200
    return response.context["reader_zone"].name


def test_the_middleware_uses_the_browser_cookie_until_a_zone_is_chosen(
    approver_client: Client, approver: Any
) -> None:
    assert shown_zone(approver_client) == "UTC"
    assert shown_zone(approver_client, tz="Asia/Tokyo") == "Asia/Tokyo"
    preference_time_zone_set(actor=approver, time_zone="America/Chicago")
    assert shown_zone(approver_client, tz="Asia/Tokyo") == "America/Chicago"
    preference_time_zone_set(actor=approver, time_zone="")  # back to the browser's
    assert shown_zone(approver_client, tz="Asia/Tokyo") == "Asia/Tokyo"


@pytest.mark.parametrize("value", HOSTILE_ZONES)
def test_a_hostile_cookie_is_ignored_never_a_server_error(
    approver_client: Client, value: str
) -> None:
    assert shown_zone(approver_client, tz=value) == "UTC"


def test_a_stored_zone_this_machine_does_not_know_is_ignored(
    approver_client: Client, approver: Any
) -> None:
    Preference.objects.create(user=approver, time_zone="Mars/Olympus_Mons")  # e.g. old tzdata
    assert shown_zone(approver_client, tz="Europe/Berlin") == "Europe/Berlin"


def test_with_the_database_down_the_browser_zone_still_applies() -> None:
    class Unreadable:
        @property
        def is_authenticated(self) -> bool:
            raise DatabaseError("down")

    request = RequestFactory().get("/healthz", HTTP_COOKIE="tz=Asia/Tokyo")
    request.user = Unreadable()  # type: ignore[attr-defined]
    seen = []

    def view(request: Any) -> Any:
        seen.append(timezone.get_current_timezone_name())
        return "response"

    assert ReaderTimeZoneMiddleware(view)(request) == "response"
    assert seen == ["Asia/Tokyo"]
    assert timezone.get_current_timezone_name() == "UTC"  # and only for that request


def test_the_preference_is_one_query_a_request_whatever_the_rows(
    viewer_client: Client, viewer: Any
) -> None:
    preference_time_zone_set(actor=viewer, time_zone="Asia/Tokyo")
    for _ in range(3):
        start_run()
    with CaptureQueriesContext(connection) as queries:
        html = viewer_client.get(RUNS).content.decode()
    assert html.count(" JST</time>") == 3
    assert sum("runs_preference" in query["sql"] for query in queries) == 1


# -- pages ---------------------------------------------------------------------------------


@pytest.fixture
def viewer_client(client: Client, viewer: Any) -> Client:
    client.force_login(viewer)
    return client


def test_every_page_shows_instants_in_the_readers_zone(
    client: Client, approver: Any, superuser: Any
) -> None:
    run = start_run(amount=1)
    decided = start_run(amount=2)
    decide(decided, approver, note="fine")
    client.force_login(superuser)
    client.cookies["tz"] = "Asia/Tokyo"
    decision = Decision.objects.get()
    pages = [
        "/approvals/",
        "/approvals/?show=recent",
        f"/approvals/{run.run_id}/",
        f"/approvals/{decision.run_id}/",
        RUNS,
        f"/admin/runs/run/{run.run_id}/change/",
        "/admin/runs/decision/",
        f"/admin/runs/decision/{decision.pk}/change/",
        "/admin/runs/runaction/",
    ]
    for page in pages:
        html = client.get(page).content.decode()
        assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d JST", html), page
        assert " UTC<" not in html, page
        assert " UTC " not in html, page
        assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", html), page  # the old formats
        assert not re.search(r"[ap]\.m\.", html), page  # Django's default


def test_the_header_names_the_zone_and_leads_to_the_page_to_choose_it(
    approver_client: Client,
) -> None:
    approver_client.cookies["tz"] = "Europe/Berlin"
    html = approver_client.get("/approvals/").content.decode()
    assert re.search(r'<a class="zone" href="/accounts/time-zone/"[^>]*>CE[S]?T</a>', html)
    assert "Times are shown in Europe/Berlin (your browser&#x27;s zone)" in html
    assert 'data-zone="Europe/Berlin" data-source="browser" data-get="yes"' in html
    admin = approver_client.get("/admin/").content.decode()
    assert re.search(r'href="/accounts/time-zone/"[^>]*>Time zone: CES?T</a>', admin)


def test_choosing_a_zone_on_its_page(approver_client: Client, approver: Any) -> None:
    approver_client.cookies["tz"] = "Europe/Berlin"
    page = approver_client.get(TIME_ZONE_PAGE)
    html = page.content.decode()
    assert page.status_code == 200
    assert "Your browser says it is in Europe/Berlin." in html
    assert '<option value="Asia/Tokyo">Tokyo (UTC+09:00)</option>' in html
    assert '<optgroup label="America">' in html

    response = approver_client.post(TIME_ZONE_PAGE, {"time_zone": "Asia/Tokyo"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Saved: times are now shown in the zone below."
    ]
    assert chosen_time_zone(approver) == "Asia/Tokyo"
    assert response.context["reader_zone"].source == ReaderZone.CHOSEN
    assert '<option value="Asia/Tokyo" selected>' in response.content.decode()


@pytest.mark.parametrize("value", ["Not/AZone", "../../etc/passwd", "x" * 500])
def test_a_zone_not_in_the_list_is_refused_by_the_page(
    approver_client: Client, approver: Any, value: str
) -> None:
    response = approver_client.post(TIME_ZONE_PAGE, {"time_zone": value})
    assert response.status_code == 400
    assert "Choose a time zone from the list." in response.content.decode()
    assert not Preference.objects.exists()


def test_the_service_refuses_an_unknown_zone(approver: Any) -> None:
    with pytest.raises(PreferenceRefused, match="is not a time zone this console knows"):
        preference_time_zone_set(actor=approver, time_zone="Atlantis/Capital")
    assert issubclass(PreferenceRefused, ConsoleError)
    assert not Preference.objects.exists()
    preference_time_zone_set(actor=approver, time_zone="Europe/Paris")
    preference_time_zone_set(actor=approver, time_zone="Europe/Rome")
    assert list(Preference.objects.values_list("time_zone", flat=True)) == ["Europe/Rome"]


def test_the_time_zone_page_needs_a_sign_in(client: Client) -> None:
    response = client.get(TIME_ZONE_PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_messages_about_a_decision_say_when_in_the_readers_zone(
    approver_client: Client, approver: Any
) -> None:
    run = start_run(amount=3)
    stale = form_data(run)
    decide(run, make_user("cy", "Approvers"))
    approver_client.cookies["tz"] = "Asia/Kolkata"
    response = approver_client.post(f"/approvals/{run.run_id}/", stale)
    message, *_ = [str(m) for m in get_messages(response.wsgi_request)]  # then the note back
    assert re.search(r"approved this at \d{1,2} \w{3} \d{4}, \d\d:\d\d IST", message)


# -- the runs list's dates ------------------------------------------------------------------


def listed(client: Client, **params: str) -> tuple[list[str], list[str], str]:
    response = client.get(RUNS, params)
    assert response.status_code == 200
    ids = [run.run_id for run in response.context["cl"].result_list]
    return ids, [str(m) for m in response.context["messages"]], response.content.decode()


def at(run: Run, when: datetime) -> None:
    Run.objects.filter(pk=run.pk).update(created_at=when)


def test_days_of_the_date_filter_are_the_readers(viewer_client: Client) -> None:
    run = start_run()
    at(run, datetime(2026, 11, 29, 20, 0, tzinfo=UTC))  # 30 Nov, 05:00 in Tokyo
    assert listed(viewer_client, created_from="2026-11-29", created_to="2026-11-29")[0] == [
        run.run_id
    ]
    viewer_client.cookies["tz"] = "Asia/Tokyo"
    assert listed(viewer_client, created_from="2026-11-29", created_to="2026-11-29")[0] == []
    assert listed(viewer_client, created_from="2026-11-30", created_to="2026-11-30")[0] == [
        run.run_id
    ]


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"created_from": "2026-12-01", "created_to": "2026-11-01"}, "From (2026-12-01) is after"),
        ({"created_from": "yesterday"}, "From “yesterday” is not a date"),
        ({"created_to": "11/30/2026"}, "To “11/30/2026” is not a date"),
        ({"created_from": "2026-02-30"}, "From “2026-02-30” is not a date"),
        ({"created_from": "2026-W48-1"}, "From “2026-W48-1” is not a date"),
        ({"created_from": "20261130"}, "From “20261130” is not a date"),
    ],
)
def test_a_wrong_date_range_is_said_not_an_empty_or_reset_list(
    viewer_client: Client, params: dict[str, str], said: str
) -> None:
    run = start_run()
    ids, messages, html = listed(viewer_client, **params)
    assert ids == [run.run_id]  # the range is not applied, the other filters are
    [message] = messages
    assert said in message
    assert message.endswith("The list is not filtered by these dates.")
    assert 'aria-invalid="true"' in html
    assert html.count(said) == 2  # above the list and beside the dates


def test_the_date_inputs_are_iso_text_with_their_zone(viewer_client: Client) -> None:
    viewer_client.cookies["tz"] = "Europe/Berlin"
    _, messages, html = listed(viewer_client, created_from="2026-11-01", created_to="2026-11-30")
    assert messages == []
    assert 'name="created_from" value="2026-11-01" placeholder="YYYY-MM-DD"' in html
    assert 'type="date"' not in html
    assert "Days as YYYY-MM-DD, both included, in your time zone (Europe/Berlin)." in html


def test_the_first_day_ever_east_of_utc_is_no_server_error(viewer_client: Client) -> None:
    run = start_run()
    viewer_client.cookies["tz"] = "Pacific/Kiritimati"  # UTC+14
    ids, messages, _ = listed(viewer_client, created_from="0001-01-01", created_to="9999-12-31")
    assert (ids, messages) == ([run.run_id], [])


# -- email ---------------------------------------------------------------------------------


def test_the_email_says_since_when_in_the_approvers_zone(settings: Any) -> None:
    settings.MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
    tokyo = make_user("ada", "Approvers")
    make_user("bea", "Approvers")
    preference_time_zone_set(actor=tokyo, time_zone="Asia/Tokyo")
    run = start_run()
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() - timedelta(minutes=1))
    suspensions_announce()
    bodies = {message.to[0]: message.body for message in mail.outbox}
    assert re.search(r"since \d{1,2} \w{3} \d{4}, \d\d:\d\d JST:", bodies["ada@example.com"])
    assert re.search(r"since \d{1,2} \w{3} \d{4}, \d\d:\d\d UTC:", bodies["bea@example.com"])
