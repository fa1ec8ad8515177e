"""The benchmark script runs end to end (tiny sizes; no timing assertions)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def run_script(*args: str) -> str:
    """A script of scripts/, run as a user runs it; what it printed."""
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout


def test_bench_smoke_prints_the_table_and_writes_it_into_the_docs(tmp_path):
    page = tmp_path / "benchmarks.md"
    original = (ROOT / "docs" / "benchmarks.md").read_text()
    page.write_text(original)
    table = run_script("scripts/bench.py", "--smoke", "--docs", str(page))
    for name in (
        "single POST /bot-requests (HTTP)",
        "POST /bot-requests/batch",
        "page of 100, populated",
        "page of 100, naive population",
        "thread of depth 5, endpoint",
        "GET /bot-requests/{id}, botrequests serve",
        "bare FastAPI endpoint",
        "embedded, 300 requests stored",
    ):
        assert name in table
    assert "| page of 100, populated |" in table
    assert "| 6 trips |" in table  # a populated page: the page + one query per collection
    assert "| 8 trips |" in table  # a thread: up, down, population, feedback
    # --docs: the embedded region holds this table, headed by when, where and how; the
    # rest of the page is as it was.
    written = page.read_text()
    region = written.split("<!-- generated: bench-embedded -->\n")[1].split("<!-- end:")[0]
    assert region.startswith("Measured ")
    assert "`python scripts/bench.py --smoke --docs" in region
    assert table.strip().splitlines()[-1] in region
    outside = written.replace(region, "")
    assert outside == original.replace(
        original.split("<!-- generated: bench-embedded -->\n")[1].split("<!-- end:")[0], ""
    )


def test_latency_script_prints_both_sides_and_ratios():
    """scripts/latency.py end to end with its fallback load generator (CI may lack wrk)."""
    table = run_script(
        "scripts/latency.py", "--rounds", "1", "--seconds", "1", "--generator", "processes"
    )
    assert "figures are a floor" in table
    for case in ("GET /bot-requests/{id}", "page of 100"):
        for auth in ("off", "on"):
            line = next(
                x for x in table.splitlines() if x.startswith(f"| {case}, access control {auth}")
            )
            assert line.count("×") == 2, line
    # The service's stack alone (no database, no serializer), measured against the same bare
    # endpoint: how much of the gap is the framework's.
    alone = next(x for x in table.splitlines() if "the service's stack alone" in x)
    assert alone.count("×") == 2, alone


def test_deadline_cost_script_prints_both_sides():
    table = run_script("scripts/deadline_cost.py", "--documents", "500")
    for row in ("| page of 100, filtered |", "| stats by bot |"):
        line = next(x for x in table.splitlines() if x.startswith(row))
        assert line.count(" ms |") == 2, line


def test_embedded_pages_script_prints_both_sides():
    table = run_script("scripts/embedded_pages.py", "--sizes", "1000")
    rows = [line for line in table.splitlines() if line.startswith("| 1,000 |")]
    assert len(rows) == 5  # four pages and the insert
    for row in rows:
        assert row.count(" ms |") == 2, row


def test_page_cost_script_parts_add_up_to_the_call(tmp_path):
    """scripts/page_cost.py: a figure per part, and the parts with the rest make the
    whole call (the table written into the page given)."""
    page = tmp_path / "benchmarks.md"
    page.write_text((ROOT / "docs" / "benchmarks.md").read_text())
    table = run_script(
        "scripts/page_cost.py", "--requests", "150", "--rounds", "1", "--calls", "2",
        "--docs", str(page),
    )  # fmt: skip
    rows = {
        line.split("|")[1].strip(): float(line.split("|")[2])
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("| part")
    }
    assert len(rows) == 8
    assert all(value > 0 for name, value in rows.items() if not name.startswith("the rest"))
    whole = rows.pop("whole call through HTTP (in process)")
    rows.pop("the service's page alone")
    assert sum(rows.values()) == pytest.approx(whole, abs=0.05)
    region = page.read_text().split("<!-- generated: page-cost -->\n")[1].split("<!-- end:")[0]
    assert table.strip().splitlines()[-1] in region


def test_durable_bench_smoke_measures_both_sides_in_one_run(tmp_path):
    """scripts/durable_bench.py end to end (wrk: skipped where it is missing)."""
    import shutil

    import pytest

    if shutil.which("wrk") is None:
        pytest.skip("needs wrk (apt-get install wrk)")
    page = tmp_path / "benchmarks.md"
    page.write_text((ROOT / "docs" / "benchmarks.md").read_text())
    table = run_script("scripts/durable_bench.py", "--smoke", "--docs", str(page))
    for row in ("single `POST /bot-requests`", "`POST /bot-requests/batch` of 50"):
        line = next(x for x in table.splitlines() if x.startswith(f"| {row}"))
        memory, disk, ratio = line.split("|")[2:5]
        assert int(memory.replace(" ", "")) > 0
        assert int(disk.replace(" ", "")) > 0
        assert ratio.strip().endswith("%")
    assert "start-up until `/readyz` answers 200" in table
    assert "with 300 requests stored" in table
    region = page.read_text().split("<!-- generated: durable -->\n")[1].split("<!-- end:")[0]
    assert table.strip().splitlines()[-1] in region


def test_growth_smoke_measures_every_row_at_each_size(tmp_path):
    """scripts/growth.py end to end at two tiny sizes (wrk: skipped where it is missing):
    every row has a figure per size and the ratio between the last and the first."""
    import shutil

    import pytest

    if shutil.which("wrk") is None:
        pytest.skip("needs wrk (apt-get install wrk)")
    page = tmp_path / "benchmarks.md"
    page.write_text((ROOT / "docs" / "benchmarks.md").read_text())
    table = run_script("scripts/growth.py", "--smoke", "--docs", str(page))
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| stored requests | 120 | 240 | 240 / 120 |")
    named = {row.split(" | ")[0].removeprefix("| ") for row in rows[1:]}
    for wanted in ("page of 50: newest 50", "page of 50: bot", "stats by bot", "GET by id"):
        assert any(name.startswith(wanted) for name in named), wanted
    assert "export (records/s)" in named
    assert "start-up (s)" in named
    for row in rows[1:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4, row
        assert all(cells), row
        assert cells[3].endswith("×"), row
    region = page.read_text().split("<!-- generated: growth -->\n")[1].split("<!-- end:")[0]
    assert rows[-1] in region


def test_otlp_bench_smoke_compares_spans_with_batch_items(tmp_path):
    """scripts/otlp_bench.py end to end on tiny exports: a figure per path, the ratios of
    the same run, constant round trips, written into the page's region."""
    import re
    import shutil

    import pytest

    if shutil.which("wrk") is None:
        pytest.skip("needs wrk (apt-get install wrk)")
    page = tmp_path / "benchmarks.md"
    page.write_text((ROOT / "docs" / "benchmarks.md").read_text())
    table = run_script("scripts/otlp_bench.py", "--smoke", "--docs", str(page))
    rows = [line for line in table.splitlines() if line.startswith("| `POST")]
    assert len(rows) == 4
    for row in rows:
        assert re.search(r"\| [\d,]+ \| [\d,]+ \|", row), row
    ratios = re.findall(r"\*\*([\d.]+)×\*\*", table)
    assert len(ratios) == 2
    assert all(float(ratio) > 0 for ratio in ratios)
    trips = re.search(r"(\d+) for 64 spans, (\d+) for 512", table)
    assert trips is not None
    assert trips.group(1) == trips.group(2)
    region = page.read_text().split("<!-- generated: otlp -->\n")[1].split("<!-- end:")[0]
    assert rows[0] in region


def test_search_bench_smoke_times_each_search_with_and_without_the_index(tmp_path):
    """scripts/search_bench.py end to end at two small sizes: each search timed with the
    word index and as a scan, the ratio of the same run, written into the page's region."""
    import re

    page = tmp_path / "benchmarks.md"
    page.write_text((ROOT / "docs" / "benchmarks.md").read_text())
    table = run_script("scripts/search_bench.py", "--smoke", "--docs", str(page))
    rows = [line for line in table.splitlines() if "page of 50" in line or "stats of" in line]
    searches = [row for row in rows if "no search" not in row]
    assert len(searches) == 6
    for row in searches:
        pairs = re.findall(r"([\d.]+) ms; scan ([\d.]+) ms \((\d+)×\)", row)
        assert len(pairs) == 2, row  # one per size
    assert "ingest, word index kept (items/s)" in table
    region = page.read_text().split("<!-- generated: search -->\n")[1].split("<!-- end:")[0]
    assert rows[0] in region
