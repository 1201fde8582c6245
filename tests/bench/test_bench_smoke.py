"""The bench keeps working: its quick mode runs every section end to end and meets the
no-errors parts of its targets (speed figures are for bench/RESULTS.md, not for tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_bench_quick_run_completes_with_zero_errors(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--output", str(out)],
        capture_output=True,
        check=False,
        timeout=240,
        cwd=ROOT,
    )
    log = run.stderr.decode()
    said = log[-3000:]  # what each assertion shows when it fails
    # a failed section logs its traceback; show it whole, wherever it fell in the log
    failed = log[max(0, log.find("FAILED:") - 40) :][:6000] if "FAILED:" in log else ""
    assert run.returncode == 0, failed + "\n...\n" + said
    report = out.read_text()
    for section in (
        "## 1. Playlists",
        "## 2. Segments",
        "## 3a. MP4",
        "## 4. Memory",
        "## 5. Mixed",
        "## 9. Frame-accurate clips",
    ):
        assert section in report, (section, report[-3000:], said)
    mixed = report.split("## 5. Mixed", 1)[1]
    row = next(line for line in mixed.splitlines() if line.startswith("| 50 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    http_errors, late, lost, ingest_errors = cells[6], cells[10], cells[11], cells[13]
    assert (http_errors, late, lost, ingest_errors) == ("0", "0", "0", "0"), (row, said)
