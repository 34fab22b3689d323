"""No stored value and no request makes a page fail: a walk over every URL, every role.

The URLs come from the URLconf and the admin's registered models, so a page
added later is walked too. Stored values are the odd but legal ones agents
write (ids with '/', newlines, lone surrogates, infinite durations); request
values are hostile (NUL, 10,000 characters, out-of-range dates, 30-digit numbers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from runs.store import DjangoRunStore
from tests.conftest import make_user
from tests.test_store import make_run, make_step

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_IDS = [
    "batch/2026/1",
    "line\nbreak",
    "job_5Fx",
    "job_x",
    "# ?%20 ü",
    "..",
    "trailing/",
]
HOSTILE_VALUES = [
    "\x00",
    "%00",
    "a/b",
    "%",
    "x" * 10_000,
    "9999-12-31",
    "0000-00-00",
    "2026-13-45",
    "-1",
    "1" * 30,
    "\ud7ff",
    "\udcff",
    "ü€😀",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
]


@pytest.fixture
def hostile_runs() -> list[str]:
    store = DjangoRunStore()
    snapshot = {
        "name": "payment",
        "components": [{"name": " finance_review ", "type": "approval", "config": {}}],
    }
    for run_id in HOSTILE_IDS:
        store.save_run(
            make_run(
                run_id=run_id,
                blueprint_name="pay\nments\x1b[2J",
                blueprint_snapshot=snapshot,
                status="suspended",
                suspended_at_node=" finance_review ",
                suspension_reason="Pay?\nReally?",
                initial_data={"file": "report\udcff.pdf", "n": math.inf},
                final_context={"data": {"file": "report\udcff.pdf"}},
                duration_ms=math.inf,
            )
        )
        store.save_step(make_step(run_id, 0, duration_ms=math.inf))
    store.save_run(make_run(run_id="nan-run", duration_ms=math.nan, status="completed"))
    return [*HOSTILE_IDS, "nan-run"]


def url_patterns(patterns: list[Any] | None = None, prefix: str = "") -> Iterator[str]:
    """Every route of the URLconf as a string, with converters left in."""
    for pattern in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from url_patterns(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            yield route


def admin_urls(run_ids: list[str]) -> Iterator[str]:
    from django.contrib.admin.utils import quote

    for model in admin.site._registry:
        opts = model._meta
        base = f"admin:{opts.app_label}_{opts.model_name}"
        yield reverse(f"{base}_changelist")
        for value in [*run_ids[:3], *HOSTILE_VALUES[:6]]:
            for view in ("change", "history", "delete"):
                yield reverse(f"{base}_{view}", args=[quote(value)])


def as_sent(value: str, *_: Any) -> str:
    """``value`` percent-encoded as its UTF-8 bytes (a lone surrogate's too)."""
    return quote(value, safe="", errors="surrogatepass")


def filled(route: str, value: str) -> str:
    """A route with every converter replaced by ``value`` (regex routes are skipped)."""
    import re

    return "/" + re.sub(r"<(?:\w+:)?\w+>", value.replace("\\", ""), route)


ROLES = ["Viewers", "Approvers", "Operators", None]


@pytest.fixture(params=ROLES, ids=["viewer", "approver", "operator", "superuser"])
def role_client(request: Any, client: Client) -> Client:
    if request.param is None:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    else:
        user = make_user("someone", request.param)
    client.force_login(user)
    return client


def test_every_url_answers_below_500_for_every_role(
    hostile_runs: list[str], role_client: Client
) -> None:
    failures: list[str] = []

    def check(method: str, path: str, query_params: dict[str, str] | None = None) -> None:
        if query_params:  # encoded as a client may send it, lone surrogates and all
            path += "?" + urlencode(query_params, quote_via=as_sent)
        try:
            response = getattr(role_client, method)(path)
        except Exception as error:  # a traceback is a failure too
            failures.append(f"{method.upper()} {path[:150]!r}: {type(error).__name__}: {error}")
            return
        if response.status_code >= 500:
            failures.append(f"{method.upper()} {path[:150]!r}: {response.status_code}")

    routes = [r for r in url_patterns() if not r.startswith("^")]
    values = [*hostile_runs, *HOSTILE_VALUES]
    for route in routes:
        if "<" in route:
            for value in values:
                check("get", filled(route, as_sent(value)))
        else:
            for value in HOSTILE_VALUES:
                check("get", filled(route, ""), query_params={"q": value, "steps": value})
    for path in admin_urls(hostile_runs):
        check("get", path)
    changelist = reverse("admin:runs_run_changelist")
    for name in [
        "q",
        "status",
        "blueprint",
        "flow",
        "created",
        "created_from",
        "created_to",
        "has_error",
        "p",
        "o",
    ]:
        for value in HOSTILE_VALUES:
            check("get", changelist, query_params={name: value})
    for model in ("decision", "accesschange"):
        url = reverse(f"admin:runs_{model}_changelist")
        field = "decided_at" if model == "decision" else "changed_at"
        for year in ["9999", "1" * 20, "0", "-1"]:
            check("get", url, query_params={f"{field}__year": year})
            check("get", url, query_params={f"{field}__year": year, f"{field}__month": "12"})
            check(
                "get",
                url,
                query_params={
                    f"{field}__year": year,
                    f"{field}__month": "12",
                    f"{field}__day": "31",
                },
            )
    for run_id in hostile_runs:
        from django.contrib.admin.utils import quote as admin_quote

        check(
            "get",
            reverse("admin:runs_run_change", args=[admin_quote(run_id)]),
            query_params={"steps": "1"},
        )
    assert not failures, "\n".join(failures[:40]) + f"\n({len(failures)} in all)"


# -- each kind of fault, with the value that showed it -----------------------------------


def waiting_run(run_id: str, gate: str = "finance_review", **overrides: Any) -> str:
    """A run waiting at ``gate`` (an approval gate, unless the snapshot says otherwise)."""
    values: dict[str, Any] = {
        "blueprint_snapshot": {
            "name": "payment",
            "components": [{"name": gate, "type": "approval"}],
        },
        "status": "suspended",
        "suspended_at_node": gate,
        "suspension_reason": "Pay?",
        **overrides,
    }
    DjangoRunStore().save_run(make_run(run_id=run_id, **values))
    return run_id


@pytest.mark.parametrize("run_id", ["batch/2026/1", "line\nbreak", "job_5Fx", "# ?%20 ü"])
def test_an_odd_run_id_is_listed_reviewed_and_decided(run_id: str, approver_client: Client) -> None:
    waiting_run(run_id)
    inbox = approver_client.get("/approvals/")
    assert inbox.status_code == 200
    link = reverse("approvals:review", args=[run_id])
    assert link in inbox.content.decode()
    page = approver_client.get(link)
    assert page.status_code == 200
    form = page.context["form"]
    response = approver_client.post(
        link,
        {
            "decision": "approve",
            "note": "ok",
            "gate": form.initial["gate"],
            "suspended_at": form.initial["suspended_at"],
        },
    )
    assert response.status_code == 302
    from runs.models import Decision

    assert Decision.objects.get().run_id == run_id


def test_a_gate_named_with_spaces_can_be_decided_on_the_web(approver_client: Client) -> None:
    waiting_run("spaced", gate=" finance_review ")
    page = approver_client.get(reverse("approvals:review", args=["spaced"]))
    form = page.context["form"]
    response = approver_client.post(
        reverse("approvals:review", args=["spaced"]),
        {"decision": "approve", "note": "", **form.initial},
    )
    assert response.status_code == 302
    from runs.models import Decision

    assert Decision.objects.get().gate == " finance_review "


def test_the_cancel_link_of_job_5Fx_cancels_job_5Fx(client: Client, operator: Any) -> None:
    for run_id in ("job_5Fx", "job_x"):
        waiting_run(run_id, blueprint_snapshot={"name": "sync", "components": []})
    client.force_login(operator)
    from django.contrib.admin.utils import quote as admin_quote

    page = client.get(reverse("admin:runs_run_change", args=[admin_quote("job_5Fx")]))
    cancel = reverse("admin:runs_run_act", args=["job_5Fx", "cancel"])
    assert cancel in page.content.decode()
    client.post(cancel, {"confirm": "yes"})
    from runs.models import Run

    assert Run.objects.get(pk="job_5Fx").status == "cancelled"
    assert Run.objects.get(pk="job_x").status == "suspended"


def test_a_lone_surrogate_and_infinite_durations_are_shown_readably(
    approver_client: Client, superuser: Any
) -> None:
    waiting_run("odd", initial_data={"file": "report\udcff.pdf"}, duration_ms=math.inf)
    page = approver_client.get(reverse("approvals:review", args=["odd"]))
    assert page.status_code == 200
    assert "report\\udcff.pdf" in page.content.decode()
    approver_client.force_login(superuser)
    page = approver_client.get(reverse("admin:runs_run_change", args=["odd"]))
    assert page.status_code == 200


def test_a_nul_in_the_address_is_refused_plainly(approver_client: Client) -> None:
    for path in ("/approvals/ab%00/", "/admin/runs/run/?blueprint=%00"):
        response = approver_client.get(path)
        assert response.status_code == 400
        assert "NUL character" in response.content.decode()


def test_the_admin_shortcut_tells_nothing_to_those_who_may_not_see_the_object(
    client: Client, viewer: Any, superuser: Any
) -> None:
    from django.contrib.contenttypes.models import ContentType

    users = ContentType.objects.get_for_model(type(superuser))
    client.force_login(viewer)
    assert client.get(f"/admin/r/{users.pk}/{superuser.pk}/").status_code == 404
    assert client.get(f"/admin/r/{users.pk}/999999/").status_code == 404


@pytest.mark.parametrize("run_id", [".", ".."])
def test_dot_ids_are_one_segment_in_every_link(run_id: str, approver_client: Client) -> None:
    waiting_run(run_id)
    link = reverse("approvals:review", args=[run_id])
    assert link == f"/approvals/{'_2E' * len(run_id)}/"  # browsers keep it as it is
    assert approver_client.get(link).context["run"].run_id == run_id
    html = approver_client.get("/approvals/").content.decode()
    assert link in html


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("run_id", "", "run_id must not be empty"),
        ("run_id", "a\udcffb", "run_id must not contain a lone surrogate"),
        ("blueprint_name", "pay\udcff", "blueprint_name must not contain a lone surrogate"),
    ],
)
def test_an_id_no_page_could_show_is_refused_when_saved(
    field: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DjangoRunStore().save_run(make_run(**{field: value}))


def test_free_text_with_a_lone_surrogate_is_stored_readably() -> None:
    store = DjangoRunStore()
    store.save_run(make_run(run_id="odd-error", error="disk \udcff full"))
    assert store.load_run("odd-error").error == "disk \ufffd full"


def test_odd_step_outputs_and_bidi_names_show_inert(superuser: Any, client: Client) -> None:
    store = DjangoRunStore()
    store.save_run(make_run(run_id="\u202eevil\u202cid", blueprint_name="\u202eevil\u202cbp"))
    store.save_step(make_step("\u202eevil\u202cid", 0, output_keys=["\udcff"]))
    client.force_login(superuser)
    from django.contrib.admin.utils import quote as admin_quote

    page = client.get(reverse("admin:runs_run_change", args=[admin_quote("\u202eevil\u202cid")]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "\u202e" not in html
    assert "\\u202eevil\\u202cbp" in html
    assert "\\udcff" in html
    listing = client.get("/admin/runs/run/").content.decode()
    # Shown nowhere; only a checkbox's value (not displayed) carries the id as it is.
    assert "\u202e" not in re.sub(r'value="[^"]*"', "", listing)


def test_an_email_subject_holds_no_control_character(approver: Any) -> None:
    from django.core import mail

    from runs.services.notifications import suspensions_announce

    waiting_run("red", blueprint_name="\x1b[31mRED\x1b[0m\x07")
    suspensions_announce()
    [message] = mail.outbox
    assert "\x1b" not in message.subject
    assert "\\x1b[31mRED" in message.subject
