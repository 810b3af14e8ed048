"""Copies the latest bench report into the README's "Results" section.

    python -m bench.readme

The section keeps its hand-written opening (what was run, where the
targets stand); everything from the report's date line on is replaced by
bench/report/REPORT.md, its headings one level down and its plots linked
from the repository's root.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REPORT = ROOT / "bench" / "report" / "REPORT.md"
DATE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC;")


def report_for_readme(report: str) -> str:
    lines = report.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out = []
    for line in lines:
        if line.startswith("#"):
            line = "#" + line
        out.append(re.sub(r"\]\((?!https?:|/)([^)]+\.png)\)", r"](bench/report/\1)", line))
    return "\n".join(out).strip() + "\n"


def main() -> int:
    readme = README.read_text()
    head, sep, section = readme.partition("\n## Results\n")
    if not sep:
        print("README.md has no '## Results' section", file=sys.stderr)
        return 1
    kept = []
    for line in section.splitlines():
        if DATE_LINE.match(line):
            break
        kept.append(line)
    else:
        print("the Results section has no report date line to replace from", file=sys.stderr)
        return 1
    body = report_for_readme(REPORT.read_text())
    README.write_text(head + sep + "\n".join(kept).rstrip() + "\n\n" + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
