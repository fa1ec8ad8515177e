"""The documentation is the product's: README.md and the site under docs/.

Every ```bash block marked `<!-- flow: serve ARGS -->` runs in bash against `botrequests
serve ARGS` (access control on, as by default) with `$KEY` set to the key the service
printed. The `export KEY=br_…` placeholder line and the `botrequests serve` line (the
marker starts it) are the only lines left out; `curl` fails on any HTTP error status, so a
401 or 404 fails the flow. Every ```json block is marked as the service's exact answer
(checked by a test that names it) or as shortened. The settings page and `.env.example`
name every setting of `botrequests/config.py`, with its default. `mkdocs build --strict`
builds the site (a broken link or a page left out of the navigation fails it)."""

import glob
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT, served

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FLOWS = [
    (page.relative_to(ROOT).as_posix(), marker, block)
    for page in PAGES
    for marker, block in re.findall(
        r"<!-- flow: (.*?) -->\n```bash\n(.*?)```", page.read_text(), re.S
    )
]

# What each flow's output shows when it worked (keyed by a line the block holds).
EXPECTED = {
    "seed_example.py": ['"name": "Hellow world bot"', '"message": "Hellow word"'],
    "groupBy=model": ['"model":"gpt-4o-mini"', '"tokens":42', '"averageScore":1.0'],
    "prompt-preview": ["Write 4 calm lines about the sea. Use {braces} freely."],
    "649bc73858b7391cbaa555ff": ['"id":"649bc73858b7391cbaa555ff"', '"name":"Hellow world bot"'],
    """{"text": "Hi"}}'""": ['"response":{"text":"Hi"}', '"credits":0'],
    "Your order ships today.": ['"text":"Your order ships today."', '"success":true'],
    'botrequests dump "$DUMP"': ["document(s) written to", "organizations.metadata.json"],
    "q=Double+CHARGE+refunded": [
        '"prompt":"I was charged twice, please refund me"',
        '"search":{"words":["double","charge","refunded"]}',
    ],
}


def test_docs_have_the_flows_this_file_checks():
    assert len(FLOWS) >= 5
    for needle in EXPECTED:
        assert any(needle in block for _, _, block in FLOWS), needle


def runnable(block: str, port: int) -> str:
    lines = [
        line
        for line in block.splitlines()
        if not line.startswith(("export KEY=", "botrequests serve"))
    ]
    script = "\n".join(lines)
    for address in ("localhost:8000", "127.0.0.1:8000"):
        script = script.replace(address, f"127.0.0.1:{port}")
    prelude = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'
    return prelude + script


@pytest.mark.parametrize(
    ("page", "marker", "block"), FLOWS, ids=[f"{page}-{n}" for n, (page, _, _) in enumerate(FLOWS)]
)
def test_docs_flow_works_as_written(page: str, marker: str, block: str):
    words = shlex.split(marker)
    assert words[0] == "serve"
    args = [path for word in words[1:] for path in sorted(glob.glob(str(ROOT / word))) or [word]]
    with served(*args, auth=True) as server:
        port = server.base.rsplit(":", 1)[1]
        env = {
            **os.environ,
            "KEY": server.key,
            "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
        }
        env = {k: v for k, v in env.items() if not k.startswith("BOTREQUESTS_") or k == "KEY"}
        # A command of the flow works on the service's own data directory.
        env["BOTREQUESTS_DATA_DIR"] = str(server.data_dir)
        done = subprocess.run(
            ["bash", "-c", runnable(block, int(port))],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert "% Total" not in done.stderr, "a curl without -s prints its progress meter"
    for needle, shown in EXPECTED.items():
        if needle in block:
            for text in shown:
                assert text in done.stdout, (text, done.stdout[-2000:])


def test_seed_example_without_a_key_says_what_to_do_in_one_line():
    with served(auth=True) as server:
        done = subprocess.run(
            [sys.executable, "scripts/seed_example.py", server.base],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("BOTREQUESTS_")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "--key" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_seed_example_help_is_help_not_an_address():
    done = subprocess.run(
        [sys.executable, "scripts/seed_example.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "usage: seed_example.py" in done.stdout
    assert "--key" in done.stdout


def test_flow_scripts_need_only_the_runtime_dependencies():
    """The quick start installs `pip install -e .` (no test extras), then runs
    scripts/seed_example.py in that environment: what it imports must be installed."""
    import ast
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[<>=\[; ]", dep)[0].lower() for dep in project["dependencies"]}
    tree = ast.parse((ROOT / "scripts" / "seed_example.py").read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    third_party = imported - set(sys.stdlib_module_names) - {"botrequests"}
    assert third_party
    assert third_party <= runtime, third_party - runtime


def _env_name(name: str, field) -> str:
    alias = field.validation_alias
    return alias if isinstance(alias, str) else name.upper()


def _shown(default) -> str:
    if default == "":
        return "empty"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def test_settings_page_and_env_example_name_every_setting_with_its_default():
    from botrequests.config import Settings

    page = (ROOT / "docs" / "operating" / "settings.md").read_text()
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `?([^|`]*)`? \|", page, re.M))
    example = (ROOT / ".env.example").read_text()
    wanted = {
        _env_name(name, field): _shown(field.default)
        for name, field in Settings.model_fields.items()
    }
    assert rows == wanted
    for name in wanted:
        assert re.search(rf"^#? ?{name}=", example, re.M), f"{name} missing from .env.example"


JSON_BLOCK = re.compile(r"(?:<!-- json: (exact [\w-]+|shortened) -->\n)?```json\n(.*?)```", re.S)


def json_examples() -> dict[str, list[str]]:
    """Every JSON example of the docs by its mark (`exact NAME` or `shortened`)."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        for mark, body in JSON_BLOCK.findall(page.read_text()):
            assert mark, f"{page.name}: a JSON example marked neither exact nor shortened"
            found.setdefault(mark, []).append(body)
    return found


def exact_example(name: str) -> object:
    """The JSON example marked `exact NAME`: a test compares it to the service's answer."""
    import json

    (body,) = json_examples()[f"exact {name}"]
    return json.loads(body)


def test_every_json_example_is_marked_and_every_exact_one_is_checked():
    checked = {"exact thread-of-fixtures", "exact fixture-request"}  # tests/test_mongoose.py
    marks = set(json_examples())
    assert marks - {"shortened"} == checked


def test_docs_site_builds_strict(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "concepts" / "threads" / "index.html").exists()


def test_docs_speak_of_the_project_not_of_its_development():
    diary = re.compile(
        r"\b(this session|earlier sessions?|last session|we (?:added|changed|fixed)|"
        r"used to (?:be|take|scan)|before the change|what changed|this change)\b",
        re.I,
    )
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not diary.search(line), f"{page.relative_to(ROOT)}:{number}: {line}"


def test_readme_is_short_and_maps_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
