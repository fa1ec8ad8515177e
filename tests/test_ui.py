"""The viewer pages end to end: Debian's Chromium driven by Playwright, against
`botrequests serve` with access control on (the development key it prints)."""

import json
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from tests import otlp_export
from tests.servers import FIXTURES, served

CHROMIUM = "/usr/bin/chromium"
XSS = "<img src=x onerror=alert(1)>"
SHOTS = os.environ.get("BOTREQUESTS_SCREENSHOTS")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium (.ci/run installs it)",
)


@pytest.fixture(scope="module")
def site() -> Iterator[dict]:
    with served(auth=True) as server:
        headers = {"Authorization": f"Bearer {server.key}"}
        with httpx.Client(base_url=server.base, headers=headers) as api:
            yield {"base": server.base, "key": server.key, **populate(api)}


LONG = "A long answer. " * 150  # 2 250 characters: starts folded
CHAT_TEMPLATE = "You are a helpful assistant. Answer: {question}"


def populate(api: httpx.Client) -> dict:
    def post(path: str, body: dict) -> dict:
        response = api.post(path, json=body)
        assert response.status_code in (200, 201), response.text
        return response.json()

    user = post("/users", {"name": "Grace"})
    bot = post(
        "/bots",
        {
            "name": "Colour bot",
            "slug": "colour",
            "creditCost": 2,
            "inputs": [{"name": "color", "inputType": "text"}],
            "promptTemplate": "Say hello in {color}",
        },
    )
    other = post("/bots", {"name": "Other bot", "slug": "other"})
    image = post("/files", {"fileName": "diagram.png", "s3Key": "k/diagram.png"})

    def record(**extra) -> dict:
        body = {"bot": bot["id"], "createdBy": user["id"], "success": True, "response": {}}
        return post("/bot-requests", {**body, **extra})

    root = record(inputs={"color": XSS}, response={"text": XSS}, images=[image["id"]])
    child = record(originalRequest=root["id"], inputs={"color": "red"}, success=False)
    sibling = record(originalRequest=root["id"], inputs={"color": "blue"})
    grandchild = record(originalRequest=child["id"], inputs={"color": "green"})
    post("/bot-requests", {"bot": other["id"], "success": True, "response": {"n": 1}})

    # A conversation: a question, two branches of follow-ups, a long and a JSON answer.
    chat = post(
        "/bots",
        {
            "name": "Chat bot",
            "slug": "chat",
            "creditCost": 1,
            "inputs": [{"name": "question", "inputType": "textarea"}],
            "promptTemplate": CHAT_TEMPLATE,
        },
    )
    ada = post("/users", {"name": "Ada"})

    def say(question: str, answer, parent: dict | None = None, **extra) -> dict:
        body = {
            "bot": chat["id"],
            "createdBy": ada["id"],
            "success": True,
            "inputs": {"question": question},
            "response": answer,
            "sessionKey": "chat-session-1",
            **({"originalRequest": parent["id"]} if parent else {}),
        }
        return post("/bot-requests", {**body, **extra})

    usage = {"model": "gpt-4o-mini", "promptTokens": 20, "completionTokens": 22, "latencyMs": 640}
    q1 = say("Hi there\nsecond line", {"message": "Hello!\nHow can I help?"}, usage=usage)
    q2a = say("Tell me a story", {"message": "Once upon a time."}, q1, tags=["story"])
    q2b = say("Write a lot", {"message": LONG}, q1)
    table = {f"field{i}": i for i in range(30)}
    q3 = say("As JSON please", table, q2a, success=False)
    post(f"/bot-requests/{q2a['id']}/feedback", {"score": 1, "comment": "lovely"})
    invoice = post(
        "/invoices", {"organization": q1["organization"]["id"], "credits": 5, "status": "paid"}
    )
    api.patch(f"/bot-requests/{q2a['id']}", json={"invoice": invoice["id"]}).raise_for_status()

    # a wide thread of 1 001 requests: a root, 10 branches of 99 follow-ups each
    big = record(inputs={"color": "big"})
    heads = post(
        "/bot-requests/batch",
        {
            "items": [
                {
                    "bot": bot["id"],
                    "success": True,
                    "response": {"b": i},
                    "originalRequest": big["id"],
                }
                for i in range(10)
            ]
        },
    )["items"]
    for head in heads:
        post(
            "/bot-requests/batch",
            {
                "items": [
                    {
                        "bot": bot["id"],
                        "success": i % 7 != 0,
                        "response": {"leaf": i},
                        "originalRequest": head["id"],
                    }
                    for i in range(99)
                ]
            },
        )
    support = support_conversation(post)
    leaf = api.get("/bot-requests", params={"originalRequest": heads[3]["id"], "limit": 1})
    spans = otlp_conversation()
    sent = api.post("/v1/traces", content=spans, headers=otlp_export.PROTOBUF)
    assert sent.status_code == 200, sent.content
    traced = api.get("/bot-requests", params={"sessionKey": "parcel-7"}).json()["items"]
    return {
        "traced": sorted(traced, key=lambda r: r["createdAt"]),
        "root": root,
        "child": child,
        "sibling": sibling,
        "grandchild": grandchild,
        "other_bot": other,
        "chat_bot": chat,
        "ada": ada,
        "q1": q1,
        "q2a": q2a,
        "q2b": q2b,
        "q3": q3,
        "invoice": invoice,
        "big_leaf": leaf.json()["items"][0],
        **support,
    }


LONG_QUESTION = (
    "Hello, I ordered the blue winter jacket last Tuesday (order 88213) and when I looked at "
    "my bank statement this morning I saw that my card was hit with a double charge for the "
    "same amount, 129.90 EUR each. I only placed one order. Can you please check what "
    "happened and give me a refund for the second charge as soon as possible?"
)


def support_conversation(post) -> dict:
    """A support conversation as support staff meet it: 15 requests with real input
    lengths, two branches, usage, tags, metadata, a failure with its error, two follow-ups
    saying the same, and 7 pieces of feedback with comments (script payloads in every
    field a search row or the request page shows)."""
    dana = post("/users", {"name": "Dana"})
    bot = post(
        "/bots",
        {
            "name": "Support bot",
            "slug": "support",
            "inputs": [{"name": "message", "inputType": "textarea"}],
        },
    )
    answers = [
        "I am sorry about the double charge. I can see order 88213 and two card payments of "
        "129.90 EUR. I have opened a refund request for the second payment.",
        "The refund usually reaches your card within 3 to 5 business days.",
        "Yes, you will receive a confirmation email with the refund reference.",
        "Your refund reference is RF-55120.",
    ]
    made: list[dict] = []

    def say(text: str, answer, parent: dict | None = None, **extra) -> dict:
        body = {
            "bot": bot["id"],
            "createdBy": dana["id"],
            "success": True,
            "inputs": {"message": text},
            "response": answer,
            "sessionKey": "support-42",
            "usage": {
                "model": "gpt-4o",
                "promptTokens": 900 + 37 * len(made),
                "completionTokens": 310,
                "latencyMs": 1834.6,
                "cost": 0.01234,
            },
            "tags": ["billing", "refund"],
            "metadata": {"tier": "pro", "channel": "web"},
            **({"originalRequest": parent["id"]} if parent else {}),
            **extra,
        }
        made.append(post("/bot-requests", body))
        return made[-1]

    root = say(LONG_QUESTION, {"text": answers[0]}, tags=["billing", XSS])
    twin_a = say("Thanks", {"text": answers[1]}, root)
    twin_b = say("Thanks", {"text": answers[2]}, root)
    node = twin_a
    for i in range(9):
        node = say(
            f"{LONG_QUESTION[: 120 + 10 * i]} (follow-up {i + 1})", {"text": answers[3]}, node
        )
    failed = say(
        "Is the refund on its way? " * 8,
        {"error": {"type": "RateLimitError", "message": "Rate limit reached for gpt-4o"}},
        node,
        success=False,
        usage={"model": XSS, "latencyMs": 95},
        metadata={"note": XSS},
    )
    say("And the confirmation email?", {"text": answers[2]}, twin_b)
    last = say("Thank you, that is all.", {"text": "You are welcome!"}, twin_b)
    scores = [(1, "spot on"), (0.5, "fine"), (-1, "not helpful"), (1, XSS), (0.75, None)]
    scores += [(1, "quick refund"), (1, "clear")]
    for number, (value, comment) in enumerate(scores):
        body = {"score": value, "by": dana["id"], **({"comment": comment} if comment else {})}
        post(f"/bot-requests/{made[number % 3]['id']}/feedback", body)
    return {
        "support_root": root,
        "support_twins": [twin_a, twin_b],
        "support_deep": node,
        "support_failed": failed,
        "support_last": last,
        "support_all": made,
        "dana": dana,
    }


def otlp_conversation() -> bytes:
    """Two turns of a conversation as an instrumented bot exports them (OTLP protobuf)."""
    system = {"role": "system", "parts": [{"type": "text", "content": "You track parcels."}]}
    ask = {"role": "user", "parts": [{"type": "text", "content": "Where is my parcel?"}]}
    said = {"role": "assistant", "parts": [{"type": "text", "content": "It left this morning."}]}
    again = {"role": "user", "parts": [{"type": "text", "content": f"{XSS} Saturday?"}]}
    done = {"role": "assistant", "parts": [{"type": "text", "content": "Saturday works."}]}
    start = time.time_ns() - 120 * 10**9
    turns = []
    exchanges = (([system, ask], said), ([system, ask, said, again], done))
    for number, (given, answer) in enumerate(exchanges):
        attributes = otlp_export.chat_attributes(**{"gen_ai.conversation.id": "parcel-7"})
        attributes["gen_ai.input.messages"] = json.dumps(given)
        attributes["gen_ai.output.messages"] = json.dumps([answer])
        turns.append(otlp_export.span(attributes, start_ns=start + number * 10**9))
    return otlp_export.protobuf(turns, service="Parcel bot")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser, site):
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    tab = await context.new_page()
    dialogs: list[str] = []

    async def dismiss(dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    tab.on("dialog", dismiss)
    tab.dialogs = dialogs
    # The first visit asks for the API key and keeps it for the tab.
    await tab.goto(f"{site['base']}/ui")
    await tab.fill("#key-form input[name=key]", site["key"])
    await tab.click("#key-form button")
    await tab.wait_for_selector("#results tbody tr")
    yield tab
    await context.close()


async def shot(tab, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        await tab.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=False)


async def test_ui_key_kept_in_this_tab_unless_remembered(browser, site, page):
    assert await page.evaluate("sessionStorage.getItem('botrequests.apiKey')") == site["key"]
    assert await page.evaluate("localStorage.length") == 0
    assert await page.evaluate("document.cookie") == ""
    # Opt in: "remember on this device" keeps it in localStorage, for a new tab too.
    context = await browser.new_context()
    tab = await context.new_page()
    await tab.goto(f"{site['base']}/ui")
    await tab.fill("#key-form input[name=key]", site["key"])
    await tab.check("#key-form input[name=remember]")
    await tab.click("#key-form button")
    await tab.wait_for_selector("#results tbody tr")
    assert await tab.evaluate("localStorage.getItem('botrequests.apiKey')") == site["key"]
    other = await context.new_page()
    await other.goto(f"{site['base']}/ui")
    await other.wait_for_selector("#results tbody tr")
    await other.click("#forget-key")
    await other.wait_for_selector("#key-form:not([hidden])")
    assert await other.evaluate("localStorage.length") == 0
    await context.close()


async def test_ui_no_key_and_wrong_key_are_told_apart(browser, site):
    context = await browser.new_context()
    tab = await context.new_page()
    await tab.goto(f"{site['base']}/ui")
    await tab.wait_for_selector("#key-form:not([hidden])")
    assert "An API key is needed" in await tab.inner_text("#key-form .key-message")
    await tab.fill("#key-form input[name=key]", "br_not-a-real-key")
    await tab.click("#key-form button")
    await tab.wait_for_selector("#key-form:not([hidden]) .key-message.error")
    assert "was not accepted" in await tab.inner_text("#key-form .key-message")
    assert await tab.locator("#results tbody tr").count() == 0
    await context.close()


async def test_ui_pick_bot_by_name_search_in_url_and_history(page, site):
    other = site["other_bot"]
    await page.fill("input[name=bot]", "Other")
    await expect(page.locator("#bot-choices option")).to_have_count(1)
    assert await page.locator("#bot-choices option").get_attribute("value") == "Other bot (other)"
    await page.fill("input[name=bot]", "Other bot (other)")
    await page.click("#filters button[type=submit]")
    await expect(page.locator("#results tbody tr")).to_have_count(1)
    assert f"bot={other['id']}" in page.url
    assert await page.inner_text("#results tbody tr td:nth-child(2)") == "Other bot"
    # the URL is a shareable search: opened again it shows the bot by name
    await page.goto(page.url)
    await expect(page.locator("#results tbody tr")).to_have_count(1)
    assert await page.input_value("input[name=bot]") == "Other bot (other)"
    # each search is a history entry: Back returns to the unfiltered one
    await page.go_back()
    await expect(page.locator("#results tbody tr")).to_have_count(50)
    assert "bot=" not in page.url


async def test_ui_failed_requests_marked_and_names_filter(page, site):
    await page.goto(f"{site['base']}/ui?success=false")
    await page.wait_for_selector("#results tbody tr")
    cells = await page.locator("#results tbody td:nth-child(4)").all_inner_texts()
    assert set(cells) == {"✗ failed"}
    assert await page.locator("#results tbody tr.failed").count() == len(cells)
    await shot(page, "search")
    # a user's name is a link that filters by that user
    await page.goto(f"{site['base']}/ui?sessionKey=chat-session-1")
    await expect(page.locator("#results tbody tr")).to_have_count(4)
    await page.locator("#results tbody tr td:nth-child(3) a").first.click()
    await page.wait_for_url(f"**/ui?createdBy={site['ada']['id']}")
    await expect(page.locator("#results tbody tr")).to_have_count(4)
    users = await page.locator("#results tbody td:nth-child(3)").all_inner_texts()
    assert set(users) == {"Ada"}
    assert await page.input_value("input[name=createdBy]") == f"Ada · {site['ada']['id'][-6:]}"


async def test_ui_pick_user_and_session_by_name(page, site):
    await page.fill("input[name=createdBy]", "ad")
    await expect(page.locator("#createdBy-choices option")).to_have_count(1)
    await page.fill("input[name=sessionKey]", "chat-")
    await expect(page.locator("#sessionKey-choices option")).to_have_count(1)
    session = await page.locator("#sessionKey-choices option").get_attribute("value")
    assert session == "chat-session-1"
    await page.fill("input[name=sessionKey]", session)
    label = await page.locator("#createdBy-choices option").get_attribute("value")
    await page.fill("input[name=createdBy]", label)
    await page.click("#filters button[type=submit]")
    await expect(page.locator("#results tbody tr")).to_have_count(4)
    assert f"createdBy={site['ada']['id']}" in page.url


async def test_ui_more_follows_next_cursor(page, site):
    rows = page.locator("#results tbody tr")
    assert await rows.count() == 50
    await page.click("#more")
    await expect(page.locator("#results tbody tr")).to_have_count(100)
    ids = await page.eval_on_selector_all(
        "#results tbody tr", "rows => rows.map(r => r.dataset.id)"
    )
    assert len(set(ids)) == 100


async def test_ui_bad_filter_said_in_words_and_stale_rows_cleared(page, site):
    await page.fill("input[name=organization]", "not-an-id")
    await page.click("#filters button[type=submit]")
    await page.wait_for_selector("#status.error")
    message = await page.inner_text("#status")
    assert message.startswith("Could not search: organization:")
    assert "{" not in message  # words, not raw JSON
    assert "[" not in message
    assert await page.locator("#results tbody tr").count() == 0


async def test_ui_conversation_along_the_path_with_branches(page, site):
    q1, q2a, q2b, q3 = site["q1"], site["q2a"], site["q2b"], site["q3"]
    await page.goto(f"{site['base']}/ui/requests/{q3['id']}")
    await page.wait_for_selector("#turns li.turn")
    turns = page.locator("#turns li.turn")
    assert await turns.count() == 6  # question and answer, for each request on the path
    ids = await page.eval_on_selector_all("#turns li.turn", "t => t.map(x => x.dataset.id)")
    assert ids == [q1["id"], q1["id"], q2a["id"], q2a["id"], q3["id"], q3["id"]]
    # read as text: line breaks are line breaks, not "\\n"
    first_answer = await turns.nth(1).locator(".text").inner_text()
    assert first_answer == "Hello!\nHow can I help?"
    assert await turns.nth(0).locator(".text").inner_text() == "question: Hi there\nsecond line"
    assert "\\n" not in await page.inner_text("#turns")
    # the template every request shares is not the turn; it is one click away
    assert CHAT_TEMPLATE.split(":")[0] not in await turns.nth(0).locator(".text").inner_text()
    # a JSON answer is pretty-printed and folded
    json_turn = turns.nth(5)
    assert "failed" in await json_turn.get_attribute("class")
    details = json_turn.locator("details.json")
    assert await details.get_attribute("open") is None
    assert "JSON answer (32 lines)" in await details.locator("summary").inner_text()
    await details.locator("summary").click()
    assert '"field29": 29' in await details.locator("pre").inner_text()
    await shot(page, "conversation")
    # the branch is one click away
    switch = turns.nth(2).locator(".branches")
    assert "branch 1 of 2" in await switch.inner_text()
    await switch.locator("a", has_text="›").click()
    await page.wait_for_url(f"**/ui/requests/{q2b['id']}")
    await page.wait_for_selector("#turns li.turn")
    long_turn = page.locator("#turns li.turn").nth(3)
    assert "branch 2 of 2" in await page.locator("#turns li.turn").nth(2).inner_text()
    folded = await long_turn.locator(".text").inner_text()
    assert len(folded) < 1300
    await long_turn.locator("button.fold").click()
    assert await long_turn.locator(".text").inner_text() == LONG
    await page.goto(f"{site['base']}/ui/requests/{q1['id']}")
    await page.wait_for_selector("#followups:not([hidden])")
    assert "Continues in 2 follow-ups" in await page.inner_text("#followups")


async def test_ui_traced_conversation_reads_as_turns(page, site):
    """Requests recorded from OpenTelemetry spans: each turn shows what the user said in
    it (not the history resent with it) and the model's answer; markup stays text."""
    first, second = site["traced"]
    await page.goto(f"{site['base']}/ui/requests/{second['id']}")
    await page.wait_for_selector("#turns li.turn")
    turns = page.locator("#turns li.turn")
    assert await turns.count() == 4
    assert await turns.nth(0).locator(".text").inner_text() == "Where is my parcel?"
    assert await turns.nth(1).locator(".text").inner_text() == "It left this morning."
    assert await turns.nth(2).locator(".text").inner_text() == f"{XSS} Saturday?"
    assert await turns.nth(3).locator(".text").inner_text() == "Saturday works."
    assert await page.locator("#turns img").count() == 0
    assert "Parcel bot" in await turns.nth(3).inner_text()
    assert page.dialogs == []


async def test_ui_tree_rows_say_what_differs(page, site):
    q2a = site["q2a"]
    await page.goto(f"{site['base']}/ui/requests/{q2a['id']}")
    await page.wait_for_selector("#tree li.current")
    rows = page.locator("#tree li")
    labels = [await rows.nth(i).locator("a").inner_text() for i in range(await rows.count())]
    assert labels[0] == "question: Hi there second line → Hello! How can I help?"
    assert any(label.startswith("question: Tell me a story →") for label in labels)
    assert all("You are a helpful assistant" not in label for label in labels)
    text = await page.inner_text("#tree")
    assert "#1" not in text  # depth is indentation, not a number
    pads = await page.eval_on_selector_all(
        "#tree li",
        "r => r.map(x => [x.dataset.depth, parseFloat(getComputedStyle(x).paddingLeft)])",
    )
    by_depth = dict(pads)
    assert by_depth["0"] < by_depth["1"] < by_depth["2"]
    first = await rows.nth(0).locator(".meta").inner_text()
    for shown in ("640 ms", "42 tokens", "1 credit"):
        assert shown in first
    current = await page.locator("#tree li.current .meta").inner_text()
    assert "feedback +1 (1)" in current
    failed = page.locator(f"#tree li[data-id='{site['q3']['id']}']")
    assert "failed" in await failed.get_attribute("class")
    facts = await page.inner_text("#facts")
    assert f"5 credits · paid · {site['invoice']['id']}" in facts
    assert "story" in facts


async def test_ui_request_page_marks_failure_and_links_names(page, site):
    child = site["child"]
    await page.goto(f"{site['base']}/ui/requests/{child['id']}")
    await page.wait_for_selector("#tree li")
    assert await page.is_visible("#failed")
    assert (
        await page.inner_text("#title")
        == f"Colour bot · {child['createdAt'][:19].replace('T', ' ')} UTC"
    )
    assert "Colour bot (colour)" in await page.inner_text("#facts")
    link = page.locator("#facts a", has_text="Grace")
    assert await link.get_attribute("href") == f"/ui?createdBy={site['child']['createdBy']['id']}"
    totals = (await page.inner_text("#totals")).replace("\t", "\n")
    assert "Requests\n4" in totals
    assert "Failures\n1" in totals
    assert "Credits\n8" in totals
    items = await page.locator("#tree li").all()
    assert [await li.get_attribute("data-depth") for li in items] == ["0", "1", "2", "1"]
    await page.click(f"#tree li[data-id='{site['grandchild']['id']}'] a")
    await page.wait_for_url(f"**/ui/requests/{site['grandchild']['id']}")
    await page.wait_for_selector("#tree li.current")
    assert await page.is_hidden("#failed")


async def test_ui_xss_payload_shown_as_text(page, site):
    await page.goto(f"{site['base']}/ui/requests/{site['root']['id']}")
    await page.wait_for_selector("#tree li")
    assert XSS in await page.inner_text("#response")
    assert XSS in await page.inner_text("#inputs")
    assert f"Say hello in {XSS}" in await page.inner_text("#prompt")
    assert XSS in await page.inner_text("#turns")
    assert XSS in await page.inner_text("#tree")
    assert await page.locator("main img").count() == 0
    assert "diagram.png" in await page.inner_text("#images")
    await page.goto(f"{site['base']}/ui")
    await page.wait_for_selector("#results tbody tr")
    assert await page.locator("main img").count() == 0
    assert page.dialogs == []


async def test_ui_unknown_and_malformed_id_pages_say_so(page, site):
    missing = "0123456789abcdef01234567"
    await page.goto(f"{site['base']}/ui/requests/{missing}")
    await page.wait_for_selector("#status.error")
    assert await page.inner_text("#status") == f"No request with id {missing}."
    await page.goto(f"{site['base']}/ui/requests/not-an-id")
    await page.wait_for_selector("#status.error")
    assert "is not a request id" in await page.inner_text("#status")
    await shot(page, "unknown")


async def test_ui_thread_of_1001_collapses_branches(page, site):
    leaf = site["big_leaf"]
    await page.goto(f"{site['base']}/ui/requests/{leaf['id']}")
    # Two thread answers (THREAD_MAX_MEMBERS is 1 000), each a scan per level on the
    # embedded backend: seconds, not what this test is about.
    await page.wait_for_selector("#tree li.current", timeout=60_000)
    totals = (await page.inner_text("#totals")).replace("\t", "\n")
    assert "Requests\n1001" in totals
    rows = page.locator("#tree li")
    assert await rows.count() == 1 + 10 + 99  # the root, its branches, the open branch
    await page.locator("#tree button[aria-expanded=false]").first.click()
    await expect(page.locator("#tree li")).to_have_count(209)
    await shot(page, "thread")


async def test_ui_thread_shows_computed_depth_and_feedback_not_the_record_own(browser, tmp_path):
    """A Mongoose application that stores its own `depth` and `feedback` on a request: the
    tree indents by the thread's depth and shows the service's feedback summary."""
    for path in FIXTURES.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    lines = (tmp_path / "botrequests.json").read_text().splitlines()
    own = ',"depth":9,"feedback":{"count":7,"averageScore":1}'
    lines = [
        line[:-1] + own + "}" if "649bc7f958b7391cbaa5561a" in line[:40] else line for line in lines
    ]
    (tmp_path / "botrequests.json").write_text("\n".join(lines) + "\n")
    root, follow = "649bc7f958b7391cbaa5561a", "649bc81558b7391cbaa55624"
    with served("--import", *map(str, sorted(tmp_path.glob("*.json"))), auth=True) as server:
        headers = {"Authorization": f"Bearer {server.key}"}
        given = httpx.post(
            f"{server.base}/bot-requests/{follow}/feedback", json={"score": -1}, headers=headers
        )
        assert given.status_code == 201, given.text
        stored = httpx.get(f"{server.base}/bot-requests/{root}", headers=headers).json()
        assert stored["depth"] == 9
        assert stored["feedback"]["count"] == 7
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        tab = await context.new_page()
        try:
            await tab.goto(f"{server.base}/ui")
            await tab.fill("#key-form input[name=key]", server.key)
            await tab.click("#key-form button")
            await tab.wait_for_selector("#results tbody tr")
            await tab.goto(f"{server.base}/ui/requests/{follow}")
            await tab.wait_for_selector("#tree li.current")
            depths = await tab.eval_on_selector_all(
                "#tree li", "r => r.map(x => [x.dataset.id, x.dataset.depth])"
            )
            assert depths == [[root, "0"], [follow, "1"]]
            root_meta = await tab.locator(f"#tree li[data-id='{root}'] .meta").inner_text()
            assert "feedback" not in root_meta
            follow_meta = await tab.locator(f"#tree li[data-id='{follow}'] .meta").inner_text()
            assert "feedback -1 (1)" in follow_meta
            turns = await tab.inner_text("#turns")
            assert "feedback -1 (1)" in turns
            assert "(7)" not in turns
            totals = (await tab.inner_text("#totals")).replace("\t", "\n")
            assert "Feedback\n-1 avg · 1 rating" in totals
        finally:
            await context.close()


async def test_ui_stats_chart_and_table_show_the_apis_numbers(page, site):
    headers = {"Authorization": f"Bearer {site['key']}"}
    api = httpx.get(
        f"{site['base']}/bot-requests/stats", params={"groupBy": "bot"}, headers=headers
    )
    expected = sorted(api.json()["items"], key=lambda item: -item["requests"])
    await page.goto(f"{site['base']}/ui/stats")
    await page.wait_for_selector("#stats tbody tr")
    chart = "Chart.getChart(document.getElementById('chart')).data"
    data = await page.evaluate(f"{chart}.datasets[0].data")
    labels = await page.evaluate(f"{chart}.labels")
    assert data == [item["requests"] for item in expected]
    assert labels == [item["bot"]["name"] for item in expected]
    rows = page.locator("#stats tbody tr")
    assert await rows.count() == len(expected)
    chat = next(item for item in expected if item["bot"]["name"] == "Chat bot")
    row = page.locator("#stats tbody tr[data-group='Chat bot'] td")
    assert await row.nth(1).inner_text() == str(chat["requests"])
    assert await row.nth(2).inner_text() == f"{chat['successRate'] * 100:.1f}%"
    assert await row.nth(5).inner_text() == str(chat["tokens"])
    assert await row.nth(9).inner_text() == "1 (1)"
    await page.select_option("select[name=metric]", "credits")
    await page.wait_for_url("**metric=credits**")
    await expect(page.locator("#status")).to_contain_text("requests in")
    data = await page.evaluate(f"{chart}.datasets[0].data")
    assert data == [item["credits"] for item in expected]
    await shot(page, "stats")
    # per model, a day range (UTC, `to` inclusive)
    await page.select_option("select[name=groupBy]", "model")
    await page.wait_for_selector("#stats tbody tr[data-group='gpt-4o-mini']")
    assert await page.inner_text("#group-name") == "Model"
    # the requests behind the numbers, downloaded with the key
    async with page.expect_download() as info:
        await page.click("#export-csv")
    download = await info.value
    assert download.suggested_filename.endswith(".csv")
    lines = Path(await download.path()).read_text().strip().splitlines()
    assert lines[0].startswith("id,createdAt,updatedAt,bot,botName")
    assert len(lines) - 1 == sum(item["requests"] for item in expected)
    async with page.expect_download() as info:
        await page.click("#export-ndjson")
    assert (await info.value).suggested_filename.endswith(".ndjson")


async def test_ui_usable_at_phone_width(browser, site):
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    tab = await context.new_page()
    await tab.goto(f"{site['base']}/ui")
    await tab.evaluate(f"sessionStorage.setItem('botrequests.apiKey', {site['key']!r})")
    for path, ready in (
        (f"/ui/requests/{site['q3']['id']}", "#tree li.current"),
        ("/ui", "#results tbody tr"),
        ("/ui/stats", "#stats tbody tr"),
    ):
        await tab.goto(site["base"] + path)
        await tab.wait_for_selector(ready)
        width = await tab.evaluate("document.documentElement.scrollWidth")
        wide = await tab.evaluate(
            "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
            " > 391).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"
        )
        assert width <= 390, (path, width, wide)  # no sideways scrolling of the page
        if path.startswith("/ui/requests"):
            turns = await tab.locator("#conversation").bounding_box()
            tree = await tab.locator("#thread").bounding_box()
            assert turns["y"] < tree["y"]  # stacked: the conversation first
            await shot(tab, "phone")
    await context.close()


async def test_ui_api_docs_work_offline_with_examples(browser, site):
    """/docs with every request to another host refused: Swagger UI comes from the
    service, and the example body of POST /bot-requests is a valid one."""
    context = await browser.new_context()
    outside: list[str] = []

    async def only_local(route) -> None:
        if route.request.url.startswith(site["base"]):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_local)
    tab = await context.new_page()
    await tab.goto(f"{site['base']}/docs")
    await tab.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    assert outside == []
    block = tab.locator(".opblock-post", has_text="/bot-requests").first
    await block.locator(".opblock-summary").click()
    await tab.wait_for_selector(".opblock-post .body-param__example, .opblock-post .microlight")
    assert "29.251.124.244" in await block.inner_text()
    await context.close()


def test_ui_pages_send_content_security_policy(site):
    for path in ("/ui", "/ui/requests/x", "/ui/sessions", "/ui/stats", "/ui/static/request.js"):
        response = httpx.get(site["base"] + path)
        assert response.headers["content-security-policy"] == "default-src 'self'"
    assert httpx.get(site["base"] + "/ui/static/vendor/chartjs/chart.umd.min.js").status_code == 200


# --- search, sessions, and a thread support staff can read ---------------------------------


async def search_for(page, **fields) -> None:
    for name, value in fields.items():
        await page.fill(f"#filters [name={name}]", value)
    await page.click("#filters button[type=submit]")
    await expect(page.locator("#status")).not_to_have_text("Loading…")


async def test_ui_search_words_find_the_conversation_and_are_highlighted(page, site):
    """From a remembered phrase to the conversation in two steps: the words, then the row."""
    await search_for(page, q="Double CHARGE refund")
    assert "q=Double+CHARGE+refund" in page.url
    rows = page.locator("#results tbody tr")
    ids = [await rows.nth(i).get_attribute("data-id") for i in range(await rows.count())]
    assert site["support_root"]["id"] in ids
    row = page.locator(f"#results tr[data-id='{site['support_root']['id']}']")
    marks = {m.lower() for m in await row.locator("mark").all_inner_texts()}
    # The row's excerpts, around the first match, show what they hold of the words.
    assert {"double", "charge"} <= marks <= {"double", "charge", "refund"}
    await shot(page, "search-words")
    await row.locator("td.time a").click()
    await page.wait_for_url(f"**/ui/requests/{site['support_root']['id']}?q=*")
    await page.wait_for_selector("#tree li.current")
    turn_marks = [m.lower() for m in await page.locator("#turns mark").all_inner_texts()]
    assert {"double", "charge", "refund"} <= set(turn_marks)
    assert await page.locator("#inputs mark").count() >= 2
    assert "Highlighted: double, charge, refund" in await page.inner_text("#words-note")


async def test_ui_search_rows_show_model_cost_tags_feedback_and_filter(page, site):
    await search_for(page, tag="billing", model="gpt-4o", metadata="tier=pro, channel=web")
    assert "metadata.tier=pro" in page.url
    assert "metadata.channel=web" in page.url
    rows = page.locator("#results tbody tr")
    assert await rows.count() == 14  # the support conversation but its failed request
    root = page.locator(f"#results tr[data-id='{site['support_root']['id']}']")
    cells = {
        name: await root.locator(f"td[data-label='{name}']").inner_text()
        for name in ("Model", "Cost", "Tags", "Feedback")
    }
    assert cells["Model"] == "gpt-4o"
    assert cells["Cost"] == "0.0123"
    assert "billing" in cells["Tags"]
    assert XSS in cells["Tags"]  # as text
    assert cells["Feedback"] == "+1 avg · 3 ratings"
    # The filters come back from the URL.
    await page.reload()
    await page.wait_for_selector("#results tbody tr")
    assert await page.input_value("#filters [name=metadata]") == "tier=pro, channel=web"
    assert await page.locator("main img").count() == 0
    assert page.dialogs == []


async def test_ui_sessions_page_lists_sessions_and_opens_one(page, site):
    await page.goto(f"{site['base']}/ui/sessions")
    await page.wait_for_selector("#results tbody tr")
    row = page.locator("#results tr[data-session='support-42']")
    text = await row.inner_text()
    assert "Dana" in text
    assert "15" in text
    first, last = await row.locator("time").evaluate_all("ts => ts.map(t => t.dateTime)")
    created = sorted(r["createdAt"] for r in site["support_all"])
    assert (first, last) == (created[0], created[-1])
    await shot(page, "sessions")
    await row.locator("a", has_text="support-42").click()
    await page.wait_for_url("**/ui?sessionKey=support-42")
    await page.wait_for_selector("#results tbody tr")
    assert await page.locator("#results tbody tr").count() == 15
    await page.goto(f"{site['base']}/ui/sessions?q=chat")
    await page.wait_for_selector("#results tbody tr")
    sessions = await page.locator("#results tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.session)"
    )
    assert sessions == ["chat-session-1"]


@pytest.mark.parametrize("width", [390, 1400, 1920])
async def test_ui_thread_numbers_readable_at_every_width(browser, site, width):
    """Every row's time, latency, tokens, credits and feedback are shown whole (never cut
    or squeezed), with the label given the room left, at phone and desktop widths."""
    context = await browser.new_context(viewport={"width": width, "height": 1000})
    tab = await context.new_page()
    await tab.goto(f"{site['base']}/ui")
    await tab.evaluate(f"sessionStorage.setItem('botrequests.apiKey', {site['key']!r})")
    await tab.goto(f"{site['base']}/ui/requests/{site['support_deep']['id']}")
    await tab.wait_for_selector("#tree li.current")
    rows = await tab.eval_on_selector_all(
        "#tree li",
        """rows => rows.map(row => {
            const meta = row.querySelector('.meta'), label = row.querySelector('a');
            const box = meta.getBoundingClientRect();
            const tree = row.closest('.tree').getBoundingClientRect();
            return {id: row.dataset.id, text: meta.textContent, width: box.width,
                    needed: meta.scrollWidth, shown: meta.clientWidth, right: box.right,
                    treeRight: tree.right, label: label.getBoundingClientRect().width};
        })""",
    )
    assert len(rows) >= 12
    for row in rows:
        assert row["needed"] <= row["shown"] + 1, row  # nothing cut
        assert row["right"] <= row["treeRight"] + 1, row  # inside the tree, not under its edge
        assert row["width"] > 100, row
        assert row["label"] > 40, row  # the label keeps room to read
        assert re.search(r"\b\d+ ms · ", row["text"]), row
        assert "credit" in row["text"], row
        if row["id"] != site["support_failed"]["id"]:
            assert "1835 ms · 1" in row["text"], row  # latency, then tokens
    if width == 1400:
        await shot(tab, "thread-numbers")
    await context.close()


async def test_ui_feedback_comments_failure_and_follow_ups_told_apart(page, site):
    root = site["support_root"]
    await page.goto(f"{site['base']}/ui/requests/{root['id']}")
    await page.wait_for_selector("#feedback-items li")
    items = await page.locator("#feedback-items li").all_inner_texts()
    assert len(items) == 3
    assert any(text.startswith("+1 · Dana · ") and "spot on" in text for text in items)
    assert any(XSS in text for text in items)  # a comment is text
    titles = await page.locator("#feedback-items time").evaluate_all("ts => ts.map(t => t.title)")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", t) for t in titles)
    totals = (await page.inner_text("#totals")).replace("\t", "\n")
    assert "Feedback\n+0.61 avg · 7 ratings" in totals
    links = await page.locator("#followups a").all_inner_texts()
    assert len(links) == 2
    assert len(set(links)) == 2  # two follow-ups that both say "Thanks"
    assert all("Thanks" in link for link in links)
    await page.goto(f"{site['base']}/ui/requests/{site['support_twins'][1]['id']}")
    await page.wait_for_selector("#feedback-items li")
    assert "not helpful" in await page.inner_text("#feedback-items")
    await page.goto(f"{site['base']}/ui/requests/{site['support_failed']['id']}")
    await page.wait_for_selector("#tree li.current")
    banner = await page.inner_text("#failed")
    assert banner == "This request failed: RateLimitError: Rate limit reached for gpt-4o"
    assert XSS in await page.inner_text("#facts")  # model and metadata as text
    await shot(page, "failed")
    assert await page.locator("main img").count() == 0
    assert page.dialogs == []


async def test_ui_search_page_is_cards_on_a_phone(browser, site):
    context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    tab = await context.new_page()
    await tab.goto(f"{site['base']}/ui")
    await tab.evaluate(f"sessionStorage.setItem('botrequests.apiKey', {site['key']!r})")
    await tab.goto(f"{site['base']}/ui?q=refund")
    await tab.wait_for_selector("#results tbody tr")
    assert await tab.evaluate("document.documentElement.scrollWidth") <= 390
    table = await tab.locator("#results").bounding_box()
    assert table["width"] <= 390
    first = tab.locator("#results tbody tr").first
    for label in ("Input", "Answer", "Model", "Time"):
        cell = await first.locator(f"td[data-label='{label}']").bounding_box()
        assert cell["x"] >= 0, label
        assert cell["x"] + cell["width"] <= 391, label  # on screen, not off to the side
    assert await first.locator("td.clip mark").count() >= 1  # in its input or answer
    await shot(tab, "search-phone")
    await context.close()
