"""Where the packager spends its time under a load: py-spy attached to the server process.

`Sampler` runs `py-spy record --format raw` (collapsed stacks) against the running server for
the length of one load run; `summarize` turns the stacks into the functions holding the CPU
(self time) and the project's functions on the path to them (inclusive time), as text.
Only threads holding the GIL are sampled (`--gil`), so idle waiting in epoll is left out and
the percentages are of the time the interpreter was busy.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    return shutil.which("py-spy")


class Sampler:
    def __init__(self, pid: int, seconds: float, out: Path, rate: int = 100) -> None:
        binary = py_spy()
        assert binary is not None
        self.out = out
        out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                str(rate),
                "--gil",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait(self) -> str | None:
        """The summary, or None when py-spy could not attach (e.g. no ptrace rights)."""
        self.proc.communicate(timeout=120)
        if not self.out.exists() or self.out.stat().st_size == 0:
            return None
        return summarize(self.out)


def summarize(collapsed: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if total == 0:
        return "(no samples)\n"
    lines = [f"{total} samples of the busy interpreter", "", "self time (where the CPU is):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive time, project code (what leads there):"]
    ours = [(f, n) for f, n in inclusive.most_common() if "packager/" in f and "cli.py" not in f]
    ours = [(f, n) for f, n in ours if "__main__" not in f][:top]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in ours]
    return "\n".join(lines) + "\n"
