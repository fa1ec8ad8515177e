"""Search (`q=`) on the list, export and stats, on both lanes: every word, case and accents
aside, whole words, nothing in `q` an operator, another organization's matches never."""

import json
import random
from datetime import datetime

import pytest
from bson import ObjectId

from botrequests import search, words
from botrequests.storage import db
from tests.factories import seed_world
from tests.setup_writes import insert_all
from tests.test_access import ADMIN, tenant

# (prompt, inputs, response) of each request, and a name to find it by.
CORPUS = {
    "refund": ("I was charged twice, I want a REFUND.", {"color": "Green"}, {"message": "Sorry!"}),
    "refunds": ("Do you do refunds?", {}, {"message": "Yes"}),
    "split": (
        "My card",
        {"note": "was double-charged"},
        {"text": "we'll", "parts": [{"deep": ["refund"]}]},
    ),
    "cafe": ("Un café crème", {}, {"message": "Voilà"}),
    "regex": ("price is $5.00 (a.*b) [x] | {y}", {}, {"message": "ok"}),
    "quotes": ('He said "hello" — then “goodbye”…', {}, {"message": "naïve"}),
    "snake": ("call foo_bar now", {}, {"message": "5€ each"}),
    "keys": ("nothing here", {"refund": "x"}, {"refund_reason": "no", "note": "thanks"}),
}


async def _corpus(client) -> dict[str, str]:
    """The corpus stored (oldest first, in CORPUS's order); name → id."""
    definitions = [
        {"inputGroup": 0, "inputType": "text", "step": 1, "label": name, "name": name}
        for name in ("color", "note", "refund")
    ]
    bot = await client.post("/bots", json={"name": "S", "slug": "s", "inputs": definitions})
    assert bot.status_code == 201, bot.text
    ids = {}
    for name, (prompt, inputs, response) in CORPUS.items():
        made = await client.post(
            "/bot-requests",
            json={
                "bot": bot.json()["id"],
                "success": True,
                "ip": "10.0.0.1",
                "prompt": prompt,
                "inputs": inputs,
                "response": response,
                "tags": [name],
            },
        )
        assert made.status_code == 201, made.text
        ids[name] = made.json()["id"]
    return ids


async def _found(client, q: str, **params) -> list[str]:
    answer = await client.get("/bot-requests", params={"q": q, **params})
    assert answer.status_code == 200, answer.text
    return [item["tags"][0] for item in answer.json()["items"]]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("refund", ["split", "refund"]),  # newest first; not "refunds", not a key's name
        ("Refund", ["split", "refund"]),
        ("REFUND charged", ["split", "refund"]),
        ("REFUND twice", ["refund"]),
        ("refund double", ["split"]),  # words in different fields, at any depth
        ("double-charged card", ["split"]),  # `-` separates words
        ("cafe creme", ["cafe"]),  # accents aside
        ("CAFÉ", ["cafe"]),
        ("voila", ["cafe"]),  # the response
        ("naive goodbye hello", ["quotes"]),  # curly quotes and dashes separate
        ("a.*b", ["regex"]),  # regex syntax only separates: the words a, b
        ("$5", ["regex"]),
        ("[x] | {y}", ["regex"]),
        ('"hello" -goodbye', ["quotes"]),  # no phrase, no negation: two words
        ("foo_bar", ["snake"]),
        ("foo", []),  # `_` belongs to the word
        ("5€", ["snake"]),
        ("5", ["regex"]),  # not in 5€
        ("thanks", ["keys"]),
        ("refund_reason", []),  # keys are not searched
        ("charge", []),  # whole words only
        ("twice refunds", []),
    ],
)
async def test_list_q_finds_every_word_whole_case_and_accents_aside(client, q, expected):
    await _corpus(client)
    assert await _found(client, q) == expected


async def test_list_q_combines_with_every_filter_and_pages(client):
    ids = await _corpus(client)
    assert await _found(client, "refund", tag="refund") == ["refund"]
    assert await _found(client, "refund", success="false") == []
    first = await client.get("/bot-requests", params={"q": "refund", "limit": 1})
    page = first.json()
    assert [item["id"] for item in page["items"]] == [ids["split"]]
    assert page["search"] == {"words": ["refund"]}
    second = await client.get(
        "/bot-requests", params={"q": "refund", "limit": 1, "cursor": page["next"]}
    )
    assert [item["id"] for item in second.json()["items"]] == [ids["refund"]]
    assert second.json()["next"] is None
    # A search's cursor is refused by the same query without the search, and the reverse.
    unsearched = await client.get("/bot-requests", params={"limit": 1, "cursor": page["next"]})
    assert unsearched.status_code == 422
    other = await client.get("/bot-requests", params={"q": "card", "cursor": page["next"]})
    assert other.status_code == 422


async def test_list_q_pages_through_many_reads_when_matches_are_rare(client, monkeypatch):
    """Matches far apart among candidates: the search reads on, chunk after chunk, and
    finds each once, in order."""
    monkeypatch.setattr(search, "SCAN_FIRST", 3)
    world = await seed_world(client)
    body = {"bot": world["bot"]["id"], "success": True, "ip": "10.0.0.1", "response": {}}
    wanted = []
    for i in range(40):
        prompt = f"needle {i}" if i % 9 == 0 else f"hay {i}"
        made = await client.post("/bot-requests", json={**body, "prompt": prompt})
        if i % 9 == 0:
            wanted.append(made.json()["id"])
    seen, cursor = [], None
    while True:
        params = {"q": "needle", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/bot-requests", params=params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next"]
        if not cursor:
            break
    assert seen == wanted[::-1]


@pytest.mark.parametrize(
    ("q", "problem"),
    [
        ("***", "holds no word"),
        ("x" * 501, "at most 500 characters"),
        (" ".join(f"w{i}" for i in range(17)), "at most 16 different words"),
    ],
)
async def test_list_q_without_words_or_too_long_422_changes_nothing(client, q, problem):
    for path in ("/bot-requests", "/bot-requests/stats", "/bot-requests/export"):
        answer = await client.get(path, params={"q": q})
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["query", "q"]
        assert problem in answer.json()["detail"][0]["msg"]


async def test_list_q_empty_searches_nothing(client):
    await _corpus(client)
    assert len(await _found(client, "  ")) == len(CORPUS)


async def test_export_and_stats_q_count_the_same_matches(client):
    ids = await _corpus(client)
    exported = await client.get("/bot-requests/export", params={"q": "refund"})
    assert exported.status_code == 200
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [line["id"] for line in lines] == [ids["split"], ids["refund"]]
    csv = await client.get("/bot-requests/export", params={"q": "refund", "format": "csv"})
    assert csv.text.count("\r\n") == 3  # the header and two rows
    stats = await client.get("/bot-requests/stats", params={"q": "refund", "groupBy": "tag"})
    assert stats.status_code == 200
    assert sorted((g["tag"], g["requests"]) for g in stats.json()["items"]) == [
        ("refund", 1),
        ("split", 1),
    ]
    none = await client.get("/bot-requests/stats", params={"q": "zebra"})
    assert none.json()["items"] == []


async def test_export_q_reads_past_pages_without_a_match(client, monkeypatch):
    """Export pages of candidates holding no match are read past, not taken as the end."""
    from botrequests import analytics

    monkeypatch.setattr(analytics, "EXPORT_FIRST_PAGE", 2)
    monkeypatch.setattr(analytics, "EXPORT_BATCH", 2)
    world = await seed_world(client)
    body = {"bot": world["bot"]["id"], "success": True, "ip": "10.0.0.1", "response": {}}
    first = await client.post("/bot-requests", json={**body, "prompt": "needle"})
    for i in range(7):
        await client.post("/bot-requests", json={**body, "prompt": f"hay {i}"})
    exported = await client.get("/bot-requests/export", params={"q": "needle"})
    assert [json.loads(line)["id"] for line in exported.text.splitlines()] == [first.json()["id"]]


async def test_list_q_follows_a_patched_response_and_a_deletion(client, raw):
    ids = await _corpus(client)
    patched = await client.patch(
        f"/bot-requests/{ids['cafe']}", json={"response": {"message": "zebra"}}
    )
    assert patched.status_code == 200
    assert await _found(client, "zebra") == ["cafe"]
    assert await _found(client, "voila") == []
    assert await _found(client, "cafe") == ["cafe"]  # the prompt still holds it
    await raw.botrequests.delete_one({"_id": ObjectId(ids["cafe"])})
    assert await _found(client, "zebra") == []


async def test_list_q_never_finds_another_organizations_requests(client, secured):
    a, b = await tenant(client, "A"), await tenant(client, "B")
    made = {}
    for who in (a, b):
        bot = await client.post(
            "/bots", json={"name": "B", "slug": f"b-{who['org']['id']}"}, headers=who["headers"]
        )
        answer = await client.post(
            "/bot-requests",
            json={
                "bot": bot.json()["id"],
                "success": True,
                "prompt": "double charge refund",
                "response": {"owner": who["org"]["name"]},
            },
            headers=who["headers"],
        )
        made[who["org"]["name"]] = answer.json()["id"]
    for who, name in ((a, "A"), (b, "B")):
        page = await client.get("/bot-requests", params={"q": "refund"}, headers=who["headers"])
        assert [item["id"] for item in page.json()["items"]] == [made[name]]
        exported = await client.get(
            "/bot-requests/export", params={"q": "refund"}, headers=who["headers"]
        )
        assert [json.loads(line)["id"] for line in exported.text.splitlines()] == [made[name]]
        stats = await client.get(
            "/bot-requests/stats", params={"q": "refund"}, headers=who["headers"]
        )
        assert sum(g["requests"] for g in stats.json()["items"]) == 1
    both = await client.get("/bot-requests", params={"q": "refund"}, headers=ADMIN)
    assert len(both.json()["items"]) == 2  # the admin token reads every organization


async def test_list_q_reads_index_candidates_only_on_the_embedded_backend(client, app, monkeypatch):
    """The embedded word index narrows a search to its matches: a rare word among 300
    requests is decided on the few holding it, not on every request."""
    if not app.state.settings.embedded:
        pytest.skip("the embedded backend's word index")
    world = await seed_world(client)
    body = {"bot": world["bot"]["id"], "success": True, "ip": "10.0.0.1", "response": {}}
    for i in range(300):
        prompt = "rare word" if i in (10, 200) else f"common {i}"
        await client.post("/bot-requests", json={**body, "prompt": prompt})
    checked = []
    real = words.matches

    def counting(document, wanted):
        checked.append(document["_id"])
        return real(document, wanted)

    monkeypatch.setattr(words, "matches", counting)
    assert len((await client.get("/bot-requests", params={"q": "rare"})).json()["items"]) == 2
    assert len(checked) == 2


async def test_search_index_decided_beside_another_text_index(client):
    """MongoDB allows one text index per collection: the Mongoose application's own is
    left alone, and search goes on without one (what it costs is said)."""
    from botrequests.storage import indexes

    theirs = {
        "_id_": {"key": [("_id", 1)]},
        "prompt_text": {"key": [("_fts", "text"), ("_ftsx", 1)], "default_language": "english"},
    }
    decision = indexes.decide_search("botrequests", theirs)
    assert decision.action == "missing"
    assert "prompt_text" in decision.detail
    assert "one per collection" in decision.detail
    assert "reads every request" in decision.cost
    ours = {
        indexes.SEARCH_INDEX: {"key": [("_fts", "text"), ("_ftsx", 1)], "default_language": "none"}
    }
    assert indexes.decide_search("botrequests", ours).action == "present"
    assert indexes.decide_search("botrequests", {"_id_": {"key": [("_id", 1)]}}).action == "create"


async def test_search_candidates_clause_for_a_text_index(monkeypatch, app):
    """With the text index, every word is a phrase of one `$text` (all must appear)."""
    if app.state.settings.embedded:
        pytest.skip("a server's text index")
    monkeypatch.setitem(db._limits, "text_index", True)
    from botrequests.documents import BotRequest

    clause = await db.search_candidates(BotRequest, ["refund", "cafe"])
    assert clause == {"$text": {"$search": '"refund" "cafe"', "$diacriticSensitive": False}}


async def test_list_q_past_query_timeout_504(client, app, monkeypatch):
    """A search past QUERY_TIMEOUT_MS is stopped (504): on a server without a text index,
    while it reads chunk after chunk of candidates; on the embedded backend, inside the
    read (its own deadline). Each clock moves an hour per reading here."""
    from botrequests.storage import mongomock_deadline

    monkeypatch.setattr(search, "SCAN_FIRST", 2)
    world = await seed_world(client)
    body = {"bot": world["bot"]["id"], "success": True, "ip": "10.0.0.1", "response": {}}
    for i in range(6):
        prompt = "hay needle" if i == 0 else f"hay {i}"
        await client.post("/bot-requests", json={**body, "prompt": prompt})
    hours = iter(range(0, 10**9, 3600))
    clock = (mongomock_deadline, "clock") if app.state.settings.embedded else (search, "clock")
    monkeypatch.setattr(*clock, lambda: float(next(hours)))
    answer = await client.get("/bot-requests", params={"q": "needle", "limit": 1})
    assert answer.status_code == 504, answer.text
    assert "did not finish this query in time" in answer.json()["detail"]


async def test_list_feedback_true_gives_summaries_beside_the_items(client):
    ids = await _corpus(client)
    for score in (1, 0.5):
        made = await client.post(f"/bot-requests/{ids['cafe']}/feedback", json={"score": score})
        assert made.status_code == 201
    page = (await client.get("/bot-requests", params={"feedback": "true"})).json()
    assert page["feedback"] == {ids["cafe"]: {"count": 2, "averageScore": 0.75}}
    item = next(item for item in page["items"] if item["id"] == ids["cafe"])
    assert "feedback" not in item  # beside the record, never among its keys
    assert "feedback" not in (await client.get("/bot-requests")).json()


# Words of a random corpus: accents, case, punctuation and symbols around them.
VOCABULARY = ["Refund", "refund", "réfund", "CAFÉ", "cafe", "naïve", "charge", "double", "5€"]
VOCABULARY += ["foo_bar", "a.b", "(x)", "$where", "don’t", "—", "…", "x" * 30, "Zoë", "zoe"]


async def test_search_answers_what_a_plain_scan_answers_on_random_data(client, raw):
    """300 requests of random words stored as another application would (raw inserts, some
    fields missing or odd), then 40 random searches paged 7 at a time, some with another
    filter: every page is what checking each stored request in Python finds, in order."""
    rng = random.Random(33)
    world = await seed_world(client)
    org, bot = ObjectId(world["org"]["id"]), ObjectId(world["bot"]["id"])

    def text() -> str:
        return " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(0, 4)))

    docs = []
    for i in range(300):
        doc = {"_id": ObjectId(), "bot": bot, "success": i % 3 != 0, "organization": org}
        doc["createdAt"] = datetime(2026, 1, 1 + i % 28, i % 24, i % 60)
        if rng.random() < 0.8:
            doc["prompt"] = text()
        if rng.random() < 0.7:
            doc["inputs"] = {"a": text(), "b": [text(), {"c": text()}], "n": 5}
        doc["response"] = rng.choice(
            [{"text": text()}, text(), [text(), 7], None, {"deep": {"x": [text()]}}]
        )
        docs.append(doc)
    await insert_all(raw.botrequests, docs)
    newest = sorted(docs, key=lambda d: (d["createdAt"], d["_id"]), reverse=True)
    for _ in range(40):
        q = " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(1, 3)))
        wanted = words.query_words(q)
        if not wanted:
            continue
        only_failed = rng.random() < 0.3
        expected = [
            str(d["_id"])
            for d in newest
            if words.matches(d, wanted) and (not only_failed or d["success"] is False)
        ]
        found, cursor = [], None
        while True:
            params = {"q": q, **({"success": "false"} if only_failed else {})}
            paging = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/bot-requests", params={**params, **paging})).json()
            found += [item["id"] for item in page["items"]]
            cursor = page["next"]
            if not cursor:
                break
        assert found == expected, q
        stats = await client.get("/bot-requests/stats", params={**params, "groupBy": "bot"})
        assert sum(g["requests"] for g in stats.json()["items"]) == len(expected), q


async def test_word_index_built_by_the_first_search_only_then_kept(client, app):
    """No other query pays for the embedded word index: a filtered page leaves it unbuilt;
    the first search builds it; a write after is found through it."""
    if not app.state.settings.embedded:
        pytest.skip("the embedded backend's word index")
    from botrequests.documents import BotRequest
    from botrequests.storage import mongomock_keys

    await _corpus(client)
    store = db.collection(BotRequest)._sync()
    mongomock_keys.forget(store._store)  # as at a start: earlier tests' searches built it
    bot = (await client.get("/bot-requests", params={"limit": 1})).json()["items"][0]["bot"]
    assert (await client.get("/bot-requests", params={"bot": bot["id"]})).status_code == 200
    held = mongomock_keys._indexes(store)
    assert held is not None
    assert held.words is None
    assert await _found(client, "voila") == ["cafe"]
    assert held.words is not None
    made = await client.post(
        "/bot-requests",
        json={"bot": bot["id"], "success": True, "prompt": "zebra crossing", "response": {}},
    )
    assert mongomock_keys._indexes(store).words is held.words  # kept, not rebuilt
    answer = await client.get("/bot-requests", params={"q": "ZEBRA"})
    assert [item["id"] for item in answer.json()["items"]] == [made.json()["id"]]


def test_words_split_only_where_mongodb_text_index_splits():
    """Separators are a subset of MongoDB's text delimiters (so its index never misses a
    match): a control character, a middle dot, `_` or `€` join a word; white space,
    ASCII punctuation, dashes, curly quotes and `…` separate."""
    assert words.split("a\x01b x·y foo_bar 5€") == ["a\x01b", "x·y", "foo_bar", "5€"]
    assert words.split("a\tb\u00a0c—d“e”f…g,h") == list("abcdefgh")
    assert words.query_words("Café CAFE café") == ["cafe"]
