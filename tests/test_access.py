"""Who may do what: roles, per-blueprint scopes, lockout, sessions, the access audit."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from runs.models import AccessChange, BlueprintScope, Decision, Run, RunAction, Source
from runs.services.notifications import suspensions_announce
from runs.services.operations import run_replay_request
from tests.conftest import PASSWORD, ROOT, form_data, log_in, make_user, start_run

pytestmark = pytest.mark.django_db(transaction=True)


def scope(pattern: str, action: str, *groups: str) -> BlueprintScope:
    made = BlueprintScope.objects.create(pattern=pattern, action=action)
    made.groups.set([Group.objects.get_or_create(name=name)[0] for name in groups])
    return made


# -- per-blueprint scopes ------------------------------------------------------------


@pytest.fixture
def finance_scope() -> BlueprintScope:
    """Only Finance decides payment* runs (tests/project's gate.yaml is 'payment')."""
    return scope("pay*", "decide", "Finance")


def test_a_scoped_approver_sees_and_decides_only_their_teams_runs(
    finance_scope: BlueprintScope,
) -> None:
    payment, publication = start_run(), start_run("two_gates.yaml")
    finance = make_user("fiona", "Approvers", "Finance")
    other = make_user("otis", "Approvers")

    inside, outside = Client(), Client()
    inside.force_login(finance)
    outside.force_login(other)
    assert [r.run_id for r, *_ in inside.get("/approvals/").context["rows"]] == [
        payment.run_id,
        publication.run_id,
    ]
    assert [r.run_id for r, *_ in outside.get("/approvals/").context["rows"]] == [
        publication.run_id
    ]

    review = reverse("approvals:review", args=[payment.run_id])
    assert outside.get(review).context["form"] is None
    assert outside.post(review, form_data(payment)).status_code == 403
    assert not Decision.objects.exists()
    assert inside.post(review, form_data(payment)).status_code == 302
    assert Decision.objects.get().decided_by == finance


def test_scopes_tell_only_the_teams_approvers_by_email(finance_scope: BlueprintScope) -> None:
    make_user("fiona", "Approvers", "Finance")
    make_user("otis", "Approvers")
    start_run()
    suspensions_announce()
    assert [m.to for m in mail.outbox] == [["fiona@example.com"]]


def test_scopes_apply_to_the_command_line(finance_scope: BlueprintScope) -> None:
    make_user("otis", "Approvers")
    run = start_run()
    with pytest.raises(CommandError, match="You may not approve or reject this run"):
        call_command("runs", "approve", run.run_id, "--by", "otis", stdout=StringIO())
    assert not Decision.objects.exists()


def test_operate_scopes_narrow_operators() -> None:
    scope("nightly-*", "operate", "Data team")
    outsider = make_user("otto", "Operators")
    insider = make_user("dana", "Operators", "Data team")
    run = start_run("flaky.yaml")  # nightly-import
    with pytest.raises(PermissionDenied):
        run_replay_request(run_id=run.run_id, actor=outsider, source=Source.WEB)
    run_replay_request(run_id=run.run_id, actor=insider, source=Source.WEB)
    assert RunAction.objects.count() == 1


def test_superusers_are_never_scoped_out(finance_scope: BlueprintScope, superuser: Any) -> None:
    run = start_run()
    client = Client()
    client.force_login(superuser)
    assert client.get(reverse("approvals:review", args=[run.run_id])).context["form"] is not None


def test_globs_match_whole_names(finance_scope: BlueprintScope) -> None:
    from runs.permissions import Scope, blueprint_allowed

    otis = make_user("otis", "Approvers")
    scopes = [Scope("pay*", frozenset({1}))]
    assert not blueprint_allowed(otis, "payment", scopes)
    assert blueprint_allowed(otis, "repayment", scopes)  # the pattern is anchored
    assert blueprint_allowed(otis, "Payment", scopes)  # and case-sensitive


# -- the permission matrix -----------------------------------------------------------


ROLE_USERS = {
    "anonymous": None,
    "no role": [],
    "viewer": ["Viewers"],
    "approver": ["Approvers"],
    "scoped in": ["Approvers", "Finance"],
    "scoped out": ["Approvers"],
    "operator": ["Operators"],
    "superuser": "superuser",
}
LOGIN = "/accounts/login/?next="


def client_for(role: str) -> Client:
    client = Client()
    groups = ROLE_USERS[role]
    if groups is None:
        return client
    if groups == "superuser":
        user = get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    else:
        user = make_user(role.replace(" ", "-"), *groups)
    client.force_login(user)
    return client


# (method, url name, expected status per role); {run} is a run waiting in scope "pay*".
MATRIX: list[tuple[str, str, dict[str, int]]] = [
    (
        "get",
        "/approvals/",
        {
            "anonymous": 302,
            "no role": 403,
            "viewer": 200,
            "approver": 200,
            "scoped in": 200,
            "scoped out": 200,
            "operator": 200,
            "superuser": 200,
        },
    ),
    (
        "get",
        "/approvals/{run}/",
        {
            "anonymous": 302,
            "no role": 403,
            "viewer": 200,
            "approver": 200,
            "scoped in": 200,
            "scoped out": 200,
            "operator": 200,
            "superuser": 200,
        },
    ),
    (
        "post",
        "/approvals/{run}/",
        {
            "anonymous": 302,
            "no role": 403,
            "viewer": 403,
            "approver": 403,
            "scoped in": 302,
            "scoped out": 403,
            "operator": 403,
            "superuser": 302,
        },
    ),
    (
        "get",
        "/admin/",
        {
            "anonymous": 302,
            "no role": 302,
            "viewer": 200,
            "approver": 200,
            "scoped in": 200,
            "scoped out": 200,
            "operator": 200,
            "superuser": 200,
        },
    ),
    (
        "get",
        "/admin/runs/run/",
        {
            "anonymous": 302,
            "no role": 302,
            "viewer": 200,
            "approver": 200,
            "scoped in": 200,
            "scoped out": 200,
            "operator": 200,
            "superuser": 200,
        },
    ),
    (
        "get",
        "/admin/runs/decision/",
        {
            "anonymous": 302,
            "no role": 302,
            "viewer": 200,
            "approver": 200,
            "scoped in": 200,
            "scoped out": 200,
            "operator": 200,
            "superuser": 200,
        },
    ),
    (
        "get",
        "/admin/auth/user/",
        {
            "anonymous": 302,
            "no role": 302,
            "viewer": 403,
            "approver": 403,
            "scoped in": 403,
            "scoped out": 403,
            "operator": 403,
            "superuser": 200,
        },
    ),
    (
        "get",
        "/admin/runs/accesschange/",
        {
            "anonymous": 302,
            "no role": 302,
            "viewer": 403,
            "approver": 403,
            "scoped in": 403,
            "scoped out": 403,
            "operator": 403,
            "superuser": 200,
        },
    ),
    (
        "get",
        "/admin/runs/blueprintscope/",
        {
            "anonymous": 302,
            "no role": 302,
            "viewer": 403,
            "approver": 403,
            "scoped in": 403,
            "scoped out": 403,
            "operator": 403,
            "superuser": 200,
        },
    ),
    ("get", "/healthz", dict.fromkeys(ROLE_USERS, 200)),
    (
        "get",
        "/admin/runs/run/{run}/act/replay/",
        {
            "anonymous": 302,
            "no role": 302,
            "viewer": 403,
            "approver": 403,
            "scoped in": 403,
            "scoped out": 403,
            "operator": 200,
            "superuser": 200,
        },
    ),
    # Last: it changes the run (for those who may).
    (
        "post",
        "/admin/runs/run/{run}/act/cancel/",
        {
            "anonymous": 302,
            "no role": 302,
            "viewer": 403,
            "approver": 403,
            "scoped in": 403,
            "scoped out": 403,
            "operator": 302,
            "superuser": 302,
        },
    ),
    (
        "get",
        "/accounts/password_change/",
        {
            "anonymous": 302,
            "no role": 200,
            "viewer": 200,
            "approver": 200,
            "scoped in": 200,
            "scoped out": 200,
            "operator": 200,
            "superuser": 200,
        },
    ),
]


@pytest.mark.parametrize("role", list(ROLE_USERS))
def test_permission_matrix(role: str, finance_scope: BlueprintScope) -> None:
    run = start_run()
    client = client_for(role)
    for method, url_pattern, expected in MATRIX:
        url = url_pattern.format(run=run.run_id)
        data = None
        if method == "post":
            data = {"confirm": "yes"} if "/act/" in url else form_data(run)
        response = getattr(client, method)(url, data) if data else getattr(client, method)(url)
        assert response.status_code == expected[role], f"{role} {method.upper()} {url}"
        if response.status_code == 302 and expected[role] == 302 and role == "anonymous":
            assert response["Location"].startswith(LOGIN) or url == "/admin/"
    decided = role in {"scoped in", "superuser"}
    assert Decision.objects.count() == (1 if decided else 0)
    # Only the operator's cancel went through: the superuser's was refused, the
    # run being busy resuming their decision (in the worker, never inline).
    expected = Run.Status.CANCELLED if role == "operator" else Run.Status.SUSPENDED
    assert Run.objects.get(pk=run.pk).status == expected


# -- brute force -----------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_from_that_address() -> None:
    make_user("ada", "Approvers")
    client = Client(enforce_csrf_checks=True)
    for _ in range(4):
        response = log_in(client, "ada", "wrong")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()
    fifth = log_in(client, "ada", "wrong")
    assert fifth.status_code == 429  # the fifth failure locks
    locked = log_in(client, "ada", PASSWORD)  # even the right password, now
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    elsewhere = Client(REMOTE_ADDR="198.51.100.9")
    assert log_in(elsewhere, "ada", PASSWORD).status_code == 302  # another address is not locked


def test_a_burst_of_fifty_parallel_wrong_passwords_is_locked_too(record_property: Any) -> None:
    """Measure how many password checks slip through the race before the lock holds."""
    make_user("ada", "Approvers")
    barrier = threading.Barrier(50)

    def attempt(_: int) -> str:
        client = Client()
        try:
            barrier.wait()
            response = client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
        finally:
            connection.close()
        if response.status_code == 429:
            return "locked"
        body = response.content.decode()
        return "checked" if "Please enter a correct username and password" in body else "other"

    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(attempt, range(50)))
    checked = outcomes.count("checked")
    record_property("password_checks_in_burst", checked)
    print(
        f"\nburst of 50 wrong passwords: {checked} refused by a password check, "
        f"{outcomes.count('locked')} locked out"
    )
    assert outcomes.count("locked") + checked == 50
    assert checked <= 9, f"{checked} password checks slipped through"  # 4 allowed + a handful
    assert log_in(Client(), "ada", PASSWORD).status_code == 429  # and the account stays locked


# -- sessions, CSRF, headers ---------------------------------------------------------------


def test_a_session_idle_past_its_age_is_over_and_a_form_sent_then_changes_nothing() -> None:
    make_user("ada", "Approvers")
    run = start_run()
    client = Client()
    log_in(client, "ada")
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    review = reverse("approvals:review", args=[run.run_id])
    response = client.post(review, form_data(run))
    assert response.status_code == 302
    assert response["Location"].startswith(LOGIN)
    assert not Decision.objects.exists()


def test_requests_renew_the_idle_timeout_at_most_once_a_minute(settings: Any) -> None:
    from runs.middleware import SessionIdleRefreshMiddleware as Refresh

    assert settings.SESSION_COOKIE_AGE == 8 * 3600
    make_user("ada", "Approvers")
    client = Client()
    log_in(client, "ada")
    inbox = reverse("approvals:inbox")
    client.get(inbox)
    session = Session.objects.get()
    assert session.expire_date > timezone.now() + timedelta(hours=7, minutes=59)
    # Within the minute: a page view writes nothing.
    Session.objects.update(expire_date=session.expire_date - timedelta(hours=1))
    client.get(inbox)
    assert Session.objects.get().expire_date == session.expire_date - timedelta(hours=1)
    # A minute later: the next page view slides the expiry to a full idle period again.
    store = client.session
    store[Refresh.KEY] -= Refresh.REFRESH_SECONDS
    store.save()
    Session.objects.update(expire_date=session.expire_date - timedelta(hours=1))
    client.get(inbox)
    assert Session.objects.get().expire_date > timezone.now() + timedelta(hours=7, minutes=59)


@pytest.mark.parametrize(
    ("url", "data"),
    [
        ("/accounts/login/", {"username": "ada", "password": PASSWORD}),
        ("/accounts/logout/", {}),
        ("/accounts/password_change/", {"old_password": PASSWORD, "new_password1": "x"}),
        ("/accounts/password_reset/", {"email": "ada@example.com"}),
    ],
)
def test_every_post_needs_its_csrf_token(url: str, data: dict[str, str]) -> None:
    ada = make_user("ada", "Approvers")
    client = Client(enforce_csrf_checks=True)
    if url != "/accounts/login/":
        client.force_login(ada)
    response = client.post(url, data)
    assert response.status_code == 403
    assert "The form expired" in response.content.decode()


def test_pages_carry_a_strict_content_security_policy(approver_client: Client) -> None:
    response = approver_client.get("/approvals/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"


def test_no_template_of_ours_has_inline_script_or_handlers() -> None:
    for template in (ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        # Scripts only from our own static files, never inline.
        for script in re.findall(r"<script\b[^>]*>(.*?)</script>", text, re.S):
            assert not script.strip(), template
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template
        assert not re.search(r"\son[a-z]+=", text), template


def test_healthz_tells_anyone_only_up_or_down(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_healthz_gives_the_queue_to_those_who_may_see_runs(client: Client, viewer: Any) -> None:
    client.force_login(viewer)
    report = client.get("/healthz").json()
    assert report["ok"] is True
    assert report["database"] == "ok"
    assert set(report["worker_queue"]) == {"ready", "running", "oldest_ready_seconds"}


def test_healthz_answers_json_with_the_database_down_whatever_the_session(
    client: Client, viewer: Any, monkeypatch: Any
) -> None:
    client.force_login(viewer)  # a session cookie the server cannot read now
    from django.db import OperationalError, connections

    def unreachable() -> None:
        raise OperationalError('connection to server at "db.internal" (10.0.0.5), port 5432')

    wrapper = connections["default"]
    monkeypatch.setattr(wrapper, "ensure_connection", unreachable)
    monkeypatch.setattr(wrapper, "connection", None)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"ok": False}
    assert "db.internal" not in response.content.decode()


# -- production settings ---------------------------------------------------------------------


def _django(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={**clean, "DJANGO_SETTINGS_MODULE": "neurocore_console.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = _django(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="k" * 20 + "a-long-random-production-secret-0123456789",
        DJANGO_ALLOWED_HOSTS="console.example.com",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues" in result.stdout


def test_the_server_refuses_to_start_without_a_secret_key() -> None:
    result = _django(["check"], DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


# -- createuser and the access audit -------------------------------------------------------------


def test_createuser_creates_a_user_in_roles_with_a_generated_password() -> None:
    Group.objects.create(name="Finance")
    out = StringIO()
    call_command(
        "createuser",
        "fiona",
        "--role",
        "approver",
        "--role",
        "viewer",
        "--email",
        "fiona@example.com",
        "--group",
        "Finance",
        stdout=out,
    )
    text = out.getvalue()
    assert "Created fiona in Approvers, Finance, Viewers." in text
    password = re.search(r"Password \(shown once\): (\S+)", text).group(1)
    fiona = get_user_model().objects.get(username="fiona")
    assert fiona.check_password(password)
    assert sorted(fiona.groups.values_list("name", flat=True)) == [
        "Approvers",
        "Finance",
        "Viewers",
    ]
    assert list(
        AccessChange.objects.order_by("pk").values_list("kind", "target", "actor_identity")
    ) == [
        ("user-created", "fiona", f"{getpass.getuser()} (OS user, createuser)"),
        ("password-set", "fiona", f"{getpass.getuser()} (OS user, createuser)"),
        ("user-groups", "fiona", f"{getpass.getuser()} (OS user, createuser)"),
    ]


def test_createuser_updates_and_reads_the_password_from_stdin(monkeypatch: Any) -> None:
    make_user("fiona", "Viewers")
    monkeypatch.setattr("sys.stdin", StringIO("a-Long-unusual-passphrase-42\n"))
    out = StringIO()
    call_command("createuser", "fiona", "--role", "operator", "--password-stdin", stdout=out)
    assert "Updated fiona in Operators." in out.getvalue()
    assert "Password" not in out.getvalue()
    fiona = get_user_model().objects.get(username="fiona")
    assert fiona.check_password("a-Long-unusual-passphrase-42")
    assert list(fiona.groups.values_list("name", flat=True)) == ["Operators"]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--role", "approver", "--group", "Nope"], "", "No such group: Nope"),
        (["--role", "approver", "--password-stdin"], "123\n", "Password refused"),
        (["--role", "approver", "--password-stdin"], "\n", "No password on standard input"),
    ],
)
def test_createuser_refuses_bad_input_clearly(
    monkeypatch: Any, args: list[str], stdin: str, message: str
) -> None:
    monkeypatch.setattr("sys.stdin", StringIO(stdin))
    with pytest.raises(CommandError, match=message):
        call_command("createuser", "fiona", *args, stdout=StringIO())
    assert not get_user_model().objects.filter(username="fiona").exists()


def test_changes_to_users_groups_and_scopes_in_the_admin_are_audited(superuser: Any) -> None:
    client = Client()
    client.force_login(superuser)
    ada = make_user("ada", "Viewers")
    approvers = Group.objects.get(name="Approvers")
    response = client.post(
        reverse("admin:auth_user_change", args=[ada.pk]),
        {
            "username": "ada",
            "email": "ada@example.com",
            "is_active": "on",
            "groups": [approvers.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    finance = Group.objects.create(name="Finance")
    response = client.post(
        reverse("admin:runs_blueprintscope_add"),
        {"pattern": "payments*", "action": "decide", "groups": [finance.pk], "note": ""},
    )
    assert response.status_code == 302
    changes = list(
        AccessChange.objects.order_by("pk").values_list(
            "actor_identity", "kind", "target", "before", "after"
        )
    )
    assert changes == [
        # Who gave Ada the Approvers role, when, and what she had before:
        (
            "root@example.com",
            "user-groups",
            "ada",
            {"groups": ["Viewers"]},
            {"groups": ["Approvers"]},
        ),
        (
            "root@example.com",
            "scope-saved",
            "payments* (approve or reject)",
            {},
            {"pattern": "payments*", "action": "decide", "groups": ["Finance"], "note": ""},
        ),
    ]
    listing = client.get(reverse("admin:runs_accesschange_changelist"))
    assert "payments* (approve or reject)" in listing.content.decode()


def test_the_access_audit_is_for_superusers_only(viewer: Any) -> None:
    client = Client()
    client.force_login(viewer)
    assert client.get(reverse("admin:runs_accesschange_changelist")).status_code == 403


def test_every_access_change_says_what_it_was_and_is(superuser: Any) -> None:
    """Deactivating, a new password and a deletion in the admin: one row of its kind each."""
    client = Client()
    client.force_login(superuser)
    bob = make_user("bob", "Operators")
    form = {
        "username": "bob",
        "email": "bob@example.com",
        "groups": [Group.objects.get(name="Operators").pk],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }  # is_active left out: unticked
    assert client.post(reverse("admin:auth_user_change", args=[bob.pk]), form).status_code == 302
    response = client.post(
        reverse("admin:auth_user_password_change", args=[bob.pk]),
        {"password1": "a-Fresh-long-passphrase-7", "password2": "a-Fresh-long-passphrase-7"},
    )
    assert response.status_code == 302
    client.post(reverse("admin:auth_user_delete", args=[bob.pk]), {"post": "yes"})
    rows = list(AccessChange.objects.order_by("pk").values_list("kind", "before", "after"))
    assert [kind for kind, _, _ in rows] == ["user-deactivated", "password-set", "user-deleted"]
    assert rows[0][1:] == ({"is_active": True}, {"is_active": False})
    assert rows[1][2] == {"password_usable": True}
    assert (rows[2][1]["groups"], rows[2][2]) == (["Operators"], {})


def test_the_demo_keeps_a_password_its_user_changed_and_audits_its_users() -> None:
    from runs.demo import DEMO_IDENTITY, create_demo_users

    create_demo_users()
    ada = get_user_model().objects.get(username="ada")
    ada.set_password("ada-chose-her-own-passphrase")
    ada.save()
    create_demo_users()  # make run, again
    ada.refresh_from_db()
    assert ada.check_password("ada-chose-her-own-passphrase")
    kinds = set(
        AccessChange.objects.filter(actor_identity=DEMO_IDENTITY).values_list("kind", flat=True)
    )
    assert {"user-created", "password-set", "user-groups"} <= kinds
