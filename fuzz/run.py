"""Runs the fuzz harnesses and reports executions/s and coverage.

    python fuzz/run.py [--seconds N] [--seed S] [--smoke] [harness ...]

Harnesses: stack, framering (C, built by fuzz/build.sh) and control
(Python, atheris; installed from the 'fuzz' extra when missing). Each runs
over its committed corpus (fuzz/corpus/<harness>: seeds and the regression
inputs of earlier crashes, which run first) and a working corpus of its own:
build/fuzz/work/<harness> for long runs (kept between runs), a temporary
directory for --smoke (make test), so the committed corpus is never
written. A crash's input goes to build/fuzz/artifacts/<harness>/; copy it
to fuzz/corpus/<harness>/crash-<what> once it is fixed.

Exit status: 0 when every harness ran clean, 1 when one crashed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
BUILD = ROOT / "build" / "fuzz"
HARNESSES = ("stack", "framering", "control")
# The largest input each harness reads: a few frames, a ring's worth of
# operations, a handful of control messages.
MAX_LEN = {"stack": 8192, "framering": 4096, "control": 16384}
STAT_RE = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/\S+ .*exec/s: (\d+)")


@dataclass
class Result:
    harness: str
    ok: bool
    runs: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    execs_per_s: int = 0
    seconds: float = 0.0
    log_tail: str = ""

    def line(self) -> str:
        status = "ok" if self.ok else "CRASH"
        return (f"{self.harness:10s} {status:5s} {self.execs_per_s:>7,} exec/s  cov: {self.cov:>5}  "
                f"ft: {self.ft:>6}  corpus: {self.corpus:>5}  runs: {self.runs:,} in {self.seconds:.0f} s")


def have_clang() -> bool:
    return shutil.which("clang") is not None


def python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def ensure_atheris() -> bool:
    """The 'fuzz' extra's packages, installed into the venv if missing."""
    py = python()
    if subprocess.run([py, "-c", "import atheris"], capture_output=True).returncode == 0:
        return True
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["fuzz"]
    r = subprocess.run([py, "-m", "pip", "install", "-q", *extra], capture_output=True, text=True,
                       env={**__import__("os").environ, "CC": "clang", "CXX": "clang++"})
    if r.returncode != 0:
        sys.stderr.write(r.stderr[-2000:])
    return r.returncode == 0


def build(harnesses: list[str]) -> None:
    native = [h for h in harnesses if h != "control"]
    if native:
        subprocess.run([str(FUZZ / "build.sh"), *native], check=True, stdout=subprocess.DEVNULL)


def command(harness: str) -> list[str]:
    if harness == "control":
        return [python(), str(FUZZ / "fuzz_control.py")]
    return [str(BUILD / f"fuzz_{harness}")]


def run(harness: str, seconds: float, seed: int, smoke: bool) -> Result:
    artifacts = BUILD / "artifacts" / harness
    artifacts.mkdir(parents=True, exist_ok=True)
    tmp = None
    if smoke:
        tmp = tempfile.TemporaryDirectory(prefix=f"dn-fuzz-{harness}-")
        work = Path(tmp.name)
    else:
        work = BUILD / "work" / harness
        work.mkdir(parents=True, exist_ok=True)
    args = [
        *command(harness),
        f"-seed={seed}",
        f"-max_total_time={int(seconds)}",
        # A unit that runs this long is a hang, not slow work.
        "-timeout=10",
        f"-max_len={MAX_LEN[harness]}",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        str(work),
        str(FUZZ / "corpus" / harness),
    ]
    try:
        # libFuzzer does not stop a unit at max_total_time: the timeout
        # above bounds it, this bounds everything else.
        p = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, cwd=ROOT)
        out, code = p.stderr + p.stdout, p.returncode
    except subprocess.TimeoutExpired as exc:
        out, code = str(exc.stderr or ""), -1
    finally:
        if tmp is not None:
            tmp.cleanup()
    res = Result(harness, ok=code == 0, log_tail="\n".join(out.splitlines()[-60:]))
    for line in out.splitlines():
        m = STAT_RE.search(line)
        if m:
            res.cov, res.ft, res.corpus, res.execs_per_s = map(int, m.groups())
        m = re.match(r"Done (\d+) runs in (\d+) second", line)
        if m:
            res.runs, res.seconds = int(m.group(1)), float(m.group(2))
        m = re.match(r"stat::number_of_executed_units: (\d+)", line)
        if m:
            res.runs = int(m.group(1))
    if res.seconds and res.runs:
        res.execs_per_s = int(res.runs / res.seconds)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("harness", nargs="*", help=f"any of {', '.join(HARNESSES)} (default: all)")
    ap.add_argument("--seconds", type=float, default=60.0, help="per harness (default 60)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="temporary working corpus (make test)")
    opts = ap.parse_args(argv)
    harnesses = list(opts.harness) or list(HARNESSES)
    unknown = set(harnesses) - set(HARNESSES)
    if unknown:
        ap.error(f"no harness {', '.join(sorted(unknown))}")
    if not have_clang():
        print("fuzz: clang not found (scripts/bootstrap.sh installs it)", file=sys.stderr)
        return 2
    if "control" in harnesses and not ensure_atheris():
        print("fuzz: atheris cannot be installed; the control harness is left out", file=sys.stderr)
        harnesses.remove("control")
    build(harnesses)
    results = []
    # One at a time: the machine is shared.
    for h in harnesses:
        res = run(h, opts.seconds, opts.seed, opts.smoke)
        print(res.line(), flush=True)
        if not res.ok:
            print(res.log_tail, flush=True)
        results.append(res)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
