"""Searching the runs list: id prefix, blueprint name, error text and input values together.

Run ids are hex, so words like ``bad``, ``feed``, ``cafe`` or ``dead`` are id
prefixes too: a run whose id starts with one must not hide the runs whose
error or inputs mention it. And no search term, however odd, is a server error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db.models import QuerySet
from django.test import Client
from django.urls import reverse

from runs import selectors
from runs.admin.listing import RunPaginator
from runs.models import INPUT_VALUE_CHARS, Run, RunInputText, RunQuerySet
from runs.selectors import TRIGRAM, storable
from runs.selectors import runs as run_selectors
from runs.selectors.runs import _prefix_upper_bound as prefix_upper_bound
from runs.store import DjangoRunStore
from tests.test_store import make_run

pytestmark = pytest.mark.django_db

RUNS = reverse("admin:runs_run_changelist")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def save(run_id: str, minute: int, **fields: Any) -> str:
    """A run with this id, created ``minute`` minutes after T0."""
    created = (T0 + timedelta(minutes=minute)).isoformat()
    DjangoRunStore().save_run(
        make_run(run_id=run_id, created_at=created, updated_at=created, **fields)
    )
    return run_id


def hexid(prefix: str, digit: str) -> str:
    return (prefix + digit * 32)[:32]


def matching(term: str) -> list[str]:
    """``runs_matching`` over the list in its order (newest first), as run ids."""
    runs: QuerySet[Run] = Run.objects.order_by("-created_at", "-run_id")
    return list(selectors.runs_matching(runs, term).values_list("run_id", flat=True))


@pytest.fixture
def admin_client(client: Client, superuser: Any) -> Client:
    client.force_login(superuser)
    return client


def listed(client: Client, query: str) -> list[str]:
    response = client.get(f"{RUNS}?{query}")
    assert response.status_code == 200, response.content[:500]
    return [run.run_id for run in response.context["cl"].result_list]


@pytest.mark.parametrize("word", ["bad", "feed", "cafe", "dead"])
def test_a_hex_word_finds_its_id_and_the_errors_and_blueprints_that_say_it(
    admin_client: Client, word: str
) -> None:
    in_error = save(hexid("1", "1"), 3, error=f"upstream said {word.upper()} request")
    in_blueprint = save(hexid("2", "2"), 2, blueprint_name=f"{word}-sync")
    save(hexid("3", "3"), 5, error="fine")
    older_in_error = save(hexid("4", "4"), 1, error=f"{word} gateway")

    # No id starts with the word: the errors and blueprints that mention it.
    expected = [in_error, in_blueprint, older_in_error]
    assert matching(word) == expected
    assert listed(admin_client, f"q={word}") == expected

    # One id starts with it: that run first, and still all the others.
    by_id = save(hexid(word, "0"), 0)
    assert matching(word) == [by_id, *expected]
    assert listed(admin_client, f"q={word}") == [by_id, *expected]
    assert listed(admin_client, f"q={by_id}") == [by_id]
    # The list's own order (here by blueprint, ascending) follows the id matches.
    assert listed(admin_client, f"q={word}&o=2")[0] == by_id


def test_an_error_mentioning_a_whole_id_is_found_with_it(admin_client: Client) -> None:
    first = save(hexid("ab", "1"), 0)
    replay = save(hexid("cd", "2"), 1, error=f"replay of {first} failed")
    save(hexid("ef", "3"), 2)
    assert matching(first) == [first, replay]
    assert listed(admin_client, f"q={first}") == [first, replay]


def test_a_common_prefix_is_a_range_and_keeps_the_union(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_selectors, "PREFIX_IDS_LIMIT", 2)
    ids = [save(hexid(f"cafe{i}", "0"), i) for i in range(3)]
    in_error = save(hexid("0", "0"), 10, error="cafe closed")
    save(hexid("caff", "0"), 11)  # after the range
    save(hexid("cafd", "0"), 12)  # before it
    assert matching("cafe") == [in_error, *reversed(ids)]
    assert listed(admin_client, "q=cafe") == [in_error, *reversed(ids)]


@pytest.mark.parametrize("limit", [1000, 2])
def test_common_text_matches_stay_conditions_and_keep_the_union(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(run_selectors, "PREFIX_IDS_LIMIT", limit)
    by_id = save(hexid("dead", "0"), 0)
    texts = [save(hexid(f"{i}", "1"), 1 + i, error=f"deadline {i} missed") for i in range(3)]
    save(hexid("5", "5"), 9, error="alive")
    assert matching("dead") == [by_id, *reversed(texts)]
    assert listed(admin_client, "q=dead") == [by_id, *reversed(texts)]


def test_rare_matches_are_read_by_key_after_four_lookups(
    django_assert_num_queries: Any,
) -> None:
    for i in range(3):
        save(hexid(f"bad{i}", "0"), i)
    in_error = save(hexid("0", "0"), 5, error="bad request")
    with django_assert_num_queries(4) as captured:
        searched = selectors.runs_matching(Run.objects.order_by("-created_at"), "bad")
    by_id, by_blueprint, by_error, by_input = (query["sql"] for query in captured.captured_queries)
    # The id prefix and the blueprint prefix: ranges of their indexes.
    assert '"run_id" >=' in by_id
    assert '"run_id" <' in by_id
    assert "LIKE" not in by_id.upper()
    assert '"blueprint_name" >=' in by_blueprint
    assert '"blueprint_name" <' in by_blueprint
    assert "error" not in by_blueprint  # each match through its own index, never an OR
    assert "error" in by_error
    assert "blueprint_name" not in by_error
    assert "runs_runinputtext" in by_input  # the inputs' own table and index, not runs_run
    assert 'runs_run"' not in by_input
    assert "FROM runs_run " not in by_input
    with django_assert_num_queries(1) as captured:
        assert len(list(searched)) == 4
    assert "LIKE" not in captured.captured_queries[0]["sql"].upper()
    assert list(searched)[-1].run_id == in_error


def test_code_points_at_the_edge_of_the_surrogates_and_of_unicode() -> None:
    before_surrogates = save("x\ud7ffz", 0, blueprint_name="\ud7ff-name")
    last = save("y\U0010ffff", 1)
    beyond = save("z", 2)
    assert matching("\ud7ff") == [before_surrogates]  # by blueprint
    assert matching("x\ud7ff") == [before_surrogates]  # by id, up to U+E000
    assert matching("y\U0010ffff") == [last]
    assert matching("x\U0010ffff") == []  # not every id after it
    assert matching("\U0010ffff") == []
    assert beyond in matching("z")
    assert prefix_upper_bound("a\ud7ff") == "a\ue000"
    assert prefix_upper_bound("ab\U0010ffff\U0010ffff") == "ac"
    assert prefix_upper_bound("\U0010ffff") is None


@pytest.mark.parametrize("term", ["\x00", "bad\x00", "\udcff", "\ud800x", "a\udfff"])
def test_a_term_no_stored_text_holds_matches_nothing_without_a_query(
    term: str, django_assert_num_queries: Any
) -> None:
    save(hexid("bad", "0"), 0, error="bad \ufffd")
    with django_assert_num_queries(0):
        assert list(selectors.runs_matching(Run.objects.all(), term)) == []


HOSTILE_QUERIES = [
    "q=%ED%9F%BF",  # U+D7FF
    "q=%ED%9F%BFa",
    "q=a%ED%9F%BF",
    "q=%EE%80%80",  # U+E000
    "q=%F4%8F%BF%BF",  # U+10FFFF
    "q=a%F4%8F%BF%BF",
    "q=%ED%B3%BF",  # a lone surrogate's bytes: not UTF-8, read as U+FFFD
    "q=%FF",
    "q=%25",
    "q=_",
    "q=%5C",
    "q=" + "f" * 10_000,
    "q=%E6%BC%A2%F0%9F%98%80",
    "q=%27%20OR%201%3D1%20--",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_hostile_terms_are_a_list_not_an_error(admin_client: Client, query: str) -> None:
    save(hexid("bad", "0"), 0, error="x")
    save("x\ud7ffz", 1, blueprint_name="\ud7ff")
    response = admin_client.get(f"{RUNS}?{query}")
    assert response.status_code == 200


NUL_QUERIES = ["q=%00", "q=bad%00", "q=%00%ED%B3%BF"]


@pytest.mark.parametrize("query", NUL_QUERIES)
def test_a_nul_in_the_term_is_never_a_server_error(admin_client: Client, query: str) -> None:
    save(hexid("bad", "0"), 0, error="x")
    response = admin_client.get(f"{RUNS}?{query}")
    # RefuseNulMiddleware answers first; runs_matching's own guard is tested above.
    assert response.status_code == 400


@pytest.mark.parametrize("query", NUL_QUERIES)
def test_past_any_nul_middleware_the_list_answers(
    admin_client: Client, settings: Any, query: str
) -> None:
    # Django's search form refuses a NUL ("Null characters are not allowed") and
    # lists unfiltered; ``runs_matching`` itself finds nothing for one (above).
    settings.MIDDLEWARE = [name for name in settings.MIDDLEWARE if "Nul" not in name]
    save(hexid("bad", "0"), 0, error="x")
    response = admin_client.get(f"{RUNS}?{query}")
    assert response.status_code == 200


# -- input values ---------------------------------------------------------------

ISSUE_INPUTS = {"vendor": "ACME Corp", "topic": "Hiring", "demo": True, "amount": 40008}


def input_text(run_id: str) -> str | None:
    return RunInputText.objects.filter(run_id=run_id).values_list("text", flat=True).first()


@pytest.mark.parametrize("term", ["ACME", "acme", "Corp", "Hiring", "hIRING", "ACME Corp", "40008"])
def test_a_value_in_the_inputs_finds_its_run(admin_client: Client, term: str) -> None:
    found = save(hexid("1", "1"), 1, initial_data=ISSUE_INPUTS)
    save(hexid("2", "2"), 2, initial_data={"vendor": "Globex", "topic": "Sales", "demo": True})
    save(hexid("3", "3"), 3, initial_data={})
    assert matching(term) == [found]
    assert listed(admin_client, f"q={term.replace(' ', '+')}") == [found]


@pytest.mark.parametrize("term", ["vendor", "topic", "demo", "amount", "true", '": "', "{"])
def test_key_names_booleans_and_json_punctuation_match_nothing(term: str) -> None:
    save(hexid("1", "1"), 1, initial_data=ISSUE_INPUTS)
    # Keys jsonb would reorder: runs.agentjson stores their order as a list of the
    # key names, which is not an input value either.
    save(hexid("2", "2"), 2, initial_data={"topic": "x1", "vendor": "x2", "demo": False})
    assert matching(term) == []


def test_values_nested_in_objects_and_lists_are_found_and_each_is_cut() -> None:
    nested = save(
        hexid("1", "1"),
        1,
        initial_data={"order": {"lines": [{"sku": "WIDGET-9"}, ["deep", 7.25]]}},
    )
    long_value = save(hexid("2", "2"), 2, initial_data={"doc": "x" * 1000 + "NEEDLE", "b": "pin"})
    assert matching("widget-9") == [nested]
    assert matching("deep") == [nested]
    assert matching("7.25") == [nested]
    assert matching("pin") == [long_value]
    assert matching("NEEDLE") == []  # past the first INPUT_VALUE_CHARS of its value
    assert len(input_text(long_value) or "") == INPUT_VALUE_CHARS + len("\npin")


def test_wrapped_inputs_are_searched_by_their_values() -> None:
    # "4e" looks like a float's exponent to runs.agentjson: the document is stored
    # wrapped, as its JSON text; its values are still what is searched.
    wrapped = save(hexid("1", "1"), 1, initial_data={"ref": "4e7a", "vendor": "Initech"})
    stored = Run.objects.filter(pk=wrapped).values_list("initial_data", flat=True).get()
    assert stored == {"ref": "4e7a", "vendor": "Initech"}
    assert matching("initech") == [wrapped]
    assert matching("vendor") == []
    # NaN has no JSON on either database: such inputs are stored, not searchable.
    save(hexid("2", "2"), 2, initial_data={"vendor": "Umbrella", "x": float("nan")})
    assert matching("umbrella") == []


def test_the_input_text_follows_the_run_and_a_status_update_leaves_it(
    django_assert_max_num_queries: Any,
) -> None:
    run_id = save(hexid("1", "1"), 1, initial_data={"vendor": "ACME Corp"})
    before = RunInputText.objects.get(run_id=run_id).pk
    # The store's upsert of a later state does not rewrite the inputs' row.
    save(run_id, 1, initial_data={"vendor": "ACME Corp"}, status="completed")
    assert RunInputText.objects.get(run_id=run_id).pk == before
    # A change of the inputs (no store does this; the triggers still follow it).
    Run.objects.filter(pk=run_id).update(initial_data={"vendor": "Globex"})
    assert matching("globex") == [run_id]
    assert matching("acme") == []
    DjangoRunStore().delete_run(run_id)
    assert not RunInputText.objects.exists()
    assert matching("globex") == []
    again = save(run_id, 2, initial_data={"vendor": "Globex"})  # the same id, new inputs
    assert matching("globex") == [again]
    with django_assert_max_num_queries(5):
        assert matching("globex") == [again]


def test_an_id_prefix_and_an_input_word_both_find(admin_client: Client) -> None:
    by_id = save(hexid("cafe", "0"), 0)
    in_input = save(hexid("1", "1"), 3, initial_data={"shop": "Cafe Nero"})
    in_error = save(hexid("2", "2"), 2, error="cafe closed")
    save(hexid("3", "3"), 4, initial_data={"shop": "Tea house"})
    assert matching("cafe") == [by_id, in_input, in_error]
    assert listed(admin_client, "q=cafe") == [by_id, in_input, in_error]


@pytest.mark.parametrize("limit", [1000, 2])
def test_common_input_words_stay_a_condition_and_keep_the_union(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(run_selectors, "PREFIX_IDS_LIMIT", limit)
    by_id = save(hexid("acde", "0"), 0)
    vendors = [
        save(hexid(f"{i}", "1"), 1 + i, initial_data={"vendor": "ACDE Ltd"}) for i in range(3)
    ]
    save(hexid("5", "5"), 9, initial_data={"vendor": "Globex"})
    assert matching("acde") == [by_id, *reversed(vendors)]
    assert listed(admin_client, "q=acde") == [by_id, *reversed(vendors)]


def test_a_term_shorter_than_a_trigram_does_not_search_inputs() -> None:
    save(hexid("1", "1"), 1, initial_data={"vendor": "xy"})
    in_blueprint = save(hexid("2", "2"), 2, blueprint_name="xy-sync")
    assert matching("xy") == [in_blueprint]


def test_a_searched_list_counts_at_most_a_thousand(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RunPaginator, "SEARCH_CAP", 2)
    for i in range(3):
        save(hexid(f"{i}", "1"), i, initial_data={"vendor": "ACME Corp"})
    response = admin_client.get(f"{RUNS}?q=acme")
    assert response.context["cl"].paginator.summary.startswith("more than 2 runs")
    assert len(response.context["cl"].result_list) == 3


def test_the_searched_list_page_costs_a_fixed_number_of_queries(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    for i in range(30):
        save(hexid(f"{i:02x}", "1"), i, initial_data={"vendor": "ACME Corp", "topic": "Hiring"})
    admin_client.get(f"{RUNS}?q=acme")  # warm-up: the session, the content types
    with django_assert_max_num_queries(16):
        assert len(listed(admin_client, "q=acme")) == 30


FTS_HOSTILE_TERMS = [
    '"',
    '""',
    'AC"ME',
    '"ACME"',
    "ACME*",
    "*",
    "NEAR(ACME Corp)",
    "NEAR",
    "-ACME",
    "ACME -Corp",
    "(ACME)",
    "ACME)",
    "AND",
    "ACME OR Globex",
    "NOT ACME",
    "text:ACME",
    "{text}: ACME",
    "^ACME",
    "ACME + Corp",
    "'",
    "%",
    "_",
    "\\",
    "a%b_c\\",
    "ACME\x00",
    "\x00",
    "\udcff",
]


@pytest.mark.parametrize("term", FTS_HOSTILE_TERMS)
def test_fts_syntax_in_a_term_is_plain_text(admin_client: Client, term: str) -> None:
    odd = save(hexid("1", "1"), 1, initial_data={"note": 'AC"ME (NEAR) *x* -y a%b_c\\ ^z'})
    save(hexid("2", "2"), 2, initial_data=ISSUE_INPUTS, error='"quoted" (NEAR) *x*')
    found = matching(term)  # never raises
    if storable(term) and len(term) >= TRIGRAM and term in 'AC"ME (NEAR) *x* -y a%b_c\\ ^z':
        assert odd in found
    if storable(term):  # NUL and lone surrogates: tested through the address above
        response = admin_client.get(RUNS, {"q": term})
        assert response.status_code == 200


def test_fts_syntax_terms_find_the_values_that_hold_them() -> None:
    odd = save(hexid("1", "1"), 1, initial_data={"note": 'AC"ME (NEAR) *x* -y a%b_c\\ ^z'})
    save(hexid("2", "2"), 2, initial_data=ISSUE_INPUTS)
    for term in ['AC"ME', "(NEAR)", "*x*", "x* -y", "a%b_c\\", "\\ ^z"]:
        assert matching(term) == [odd], term
    assert matching("a%b") == [odd]
    assert matching("a_b") == []  # "_" is a character here, not a wildcard


def test_a_common_search_is_counted_from_the_runs_it_found(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_selectors, "PREFIX_IDS_LIMIT", 2)
    monkeypatch.setattr(RunPaginator, "SEARCH_CAP", 2)
    for i in range(3):
        save(hexid(f"{i}", "1"), i, initial_data={"vendor": "ACME Corp"})
    save(hexid("4", "1"), 4, initial_data={"vendor": "ACME Corp"}, status="failed", error="x")
    searched = selectors.runs_matching(Run.objects.all(), "acme")
    assert isinstance(searched, RunQuerySet)
    assert len(searched.search_keys) == 3  # PREFIX_IDS_LIMIT + 1 found by the index
    assert searched.count_up_to(2) == 3  # counted by key: more than 2
    # Filters the found runs do not pass: every run is tested instead.
    failed = selectors.runs_matching(Run.objects.filter(status="failed"), "acme")
    assert isinstance(failed, RunQuerySet)
    assert failed.count_up_to(2) == 1
    summary = admin_client.get(f"{RUNS}?q=acme").context["cl"].paginator.summary
    assert summary.startswith("more than 2 runs")
    summary = admin_client.get(f"{RUNS}?q=acme&status=failed").context["cl"].paginator.summary
    assert summary == "1 run"
