"""The markdown report: number formats, tables, targets, and the text of RESULTS.md.

Sections add their tables and targets to one `Report` as they finish; the runner renders it
once at the end, with the sections in their numbered order whatever order they ran in (the
churn's clips expire while other sections run, so run order is not report order).
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field

from bench.load import LoadResult

MB = 1e6


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def table(head: list[str], rows: list[list[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(head) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def ms(seconds: float) -> str:
    if seconds >= 10:
        return f"{seconds:.1f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def mb(n: float) -> str:
    return f"{n / MB:,.1f} MB"


def ratio(x: float, y: float) -> str:
    return f"{x / y:.2f}x" if y else "n/a"


def label_seconds(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def load_row(
    label: str, conc: int, ours: LoadResult, base: LoadResult | None, rate: bool
) -> list[str]:
    """One row of ours against nginx: req/s first (`rate`) or MB/s first, then latency."""

    def errs(r: LoadResult | None) -> str:
        if r is None:
            return "-"
        return str(r.errors) + (f" ({r.detail})" if r.detail else "")

    def drops(r: LoadResult | None) -> str:
        return "-" if r is None or r.listen_drops is None else str(r.listen_drops)

    if rate:
        head = [
            f"{ours.rps:,.0f}",
            f"{base.rps:,.0f}" if base else "-",
            ratio(ours.rps, base.rps) if base else "-",
        ]
    else:
        head = [
            f"{ours.mbps:,.0f}",
            f"{base.mbps:,.0f}" if base else "-",
            ratio(ours.mbps, base.mbps) if base else "-",
            f"{ours.rps:,.0f}",
            f"{base.rps:,.0f}" if base else "-",
        ]
    return [
        label,
        str(conc),
        *head,
        ms(ours.p50),
        ms(base.p50) if base else "-",
        ms(ours.p99),
        ms(base.p99) if base else "-",
        f"{errs(ours)}, {errs(base)}",
        f"{drops(ours)}, {drops(base)}",
    ]


@dataclass
class Target:
    name: str
    wanted: str
    got: str
    met: bool | None  # None: not measured


def _numbered(title: str) -> tuple[int, int, str]:
    """'3b. MP4...' sorts after '3a.' and before '10.'; unnumbered (failures) go last."""
    m = re.match(r"\d+", title)
    return (0, int(m[0]), title) if m else (1, 0, title)


@dataclass
class Report:
    sections: list[tuple[str, str]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    profiles: list[tuple[str, str]] = field(default_factory=list)  # (name, py-spy summary)

    def add(self, title: str, body: str) -> None:
        self.sections.append((title, body))
        print(f"\n## {title}\n\n{body}", flush=True)

    def markdown(self, intro: list[str]) -> str:
        """The whole report: `intro` (title, machine, settings), targets, then the sections."""
        lines = list(intro)
        if self.targets:
            lines += [
                "## Targets",
                "",
                table(
                    ["target", "wanted", "measured", "met"],
                    [
                        [
                            t.name,
                            t.wanted,
                            t.got,
                            "-" if t.met is None else ("yes" if t.met else "**no**"),
                        ]
                        for t in self.targets
                    ],
                    "llll",
                ),
            ]
        for title, body in sorted(self.sections, key=lambda x: _numbered(x[0])):
            lines += [f"## {title}", "", body]
        if self.profiles:
            lines += ["## Profiles (py-spy on the packager, a separate sampled run)", ""]
            for name, summary in self.profiles:
                top = summary.split("\n\n")[1] if "\n\n" in summary else summary
                lines += [f"### {name}", "", "```", top.strip(), "```", ""]
            lines += ["Full summaries and collapsed stacks: bench/profiles/.", ""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        if self.failures:
            lines += ["## Failures", ""] + [f"- {f}" for f in self.failures] + [""]
        return "\n".join(lines).rstrip() + "\n"
