"""checkov, offline, over the HCL of every stack: nothing fails but what policy/checkov-accepted.txt lists."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iac import ROOT

ACCEPTED_FILE = ROOT / "policy" / "checkov-accepted.txt"
_ACCEPTED_LINE = re.compile(r"(CKV2?_[A-Z0-9]+_\d+) ([a-z0-9_]+): (.+)")


def accepted() -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for number, line in enumerate(ACCEPTED_FILE.read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            match = _ACCEPTED_LINE.fullmatch(line)
            assert match, f"{ACCEPTED_FILE.name}:{number}: expected 'CHECK_ID RESOURCE_TYPE: reason'"
            check, kind = match.group(1, 2)
            pairs.add((check, kind))
    return pairs


@pytest.fixture(scope="session")
def checkov_failures(synth_hcl: Path) -> set[tuple[str, str, str]]:
    checkov = shutil.which("checkov") or str(Path(sys.executable).parent / "checkov")
    result = subprocess.run(
        [
            checkov,
            "--framework",
            "terraform",
            "--skip-download",
            "--quiet",
            "--compact",
            "-d",
            str(synth_hcl / "stacks"),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert reports and all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert sum(r["summary"]["resource_count"] for r in reports) > 0, "checkov scanned nothing"
    return {
        (check["check_id"], check["resource"].split(".")[0], check["file_path"])
        for r in reports
        for check in r["results"]["failed_checks"]
    }


def test_no_unaccepted_checkov_failure(checkov_failures: set[tuple[str, str, str]]) -> None:
    allowed = accepted()
    unexpected = sorted(f for f in checkov_failures if f[:2] not in allowed)
    assert unexpected == []


def test_every_accepted_finding_still_occurs(checkov_failures: set[tuple[str, str, str]]) -> None:
    assert accepted() <= {f[:2] for f in checkov_failures}, "remove lines that no longer fail"
