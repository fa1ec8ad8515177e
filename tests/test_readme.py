"""The README's flows work as written: every ```bash block marked `<!-- flow: serve ARGS -->`
runs in bash against `botrequests serve ARGS` (access control on, as by default) with `$KEY`
set to the key the service printed. The README's `export KEY=br_…` placeholder line and the
`botrequests serve` line (the marker starts it) are the only lines left out; `curl` fails on
any HTTP error status, so a 401 or 404 fails the flow."""

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.servers import ROOT, served

README = (ROOT / "README.md").read_text()
FLOWS = re.findall(r"<!-- flow: (.*?) -->\n```bash\n(.*?)```", README, re.S)

# What each flow's output shows when it worked (keyed by a line the block holds).
EXPECTED = {
    "seed_example.py": ['"name": "Hellow world bot"', '"message": "Hellow word"'],
    "groupBy=model": ['"model":"gpt-4o-mini"', '"tokens":42', '"averageScore":1.0'],
    "prompt-preview": ["Write 4 calm lines about the sea. Use {braces} freely."],
    "649bc73858b7391cbaa555ff": ['"id":"649bc73858b7391cbaa555ff"', '"name":"Hellow world bot"'],
}


def test_readme_has_the_flows_this_file_checks():
    assert len(FLOWS) >= 4
    for needle in EXPECTED:
        assert any(needle in block for _, block in FLOWS), needle


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


@pytest.mark.parametrize(("marker", "block"), FLOWS, ids=[b.split("\n")[1][:40] for _, b in FLOWS])
def test_readme_flow_works_as_written(marker: str, block: str):
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
