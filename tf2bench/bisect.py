"""`tf2bench bisect GOOD BAD [--repo DIR] [-- PYTEST_BENCH_ARGS...]`: the first commit between two revisions where
the selected benchmarks got slower, the slowdown, and the ops that explain it.

Each measured commit is checked out in a temporary git worktree (the user's working tree is never touched) and
measured with its own code: ``python -m pytest bench -p no:cacheprovider --benchmark-autosave ... ARGS`` run in the
worktree with the worktree first on PYTHONPATH, so the worktree's tf2bench (or the user's own package, beside which
the plugin runs) is imported, not the installed one. The ends are measured first, interleaved; which commit to probe
and whether it is good or bad is tf2bench.analysis.bisection's job. Everything stays under results/bisect/<id>/: a
folder per measured commit (its pytest-benchmark runs, pytest's output, the profiler traces), ``transcript.txt``
(what was printed) and ``bisect.json`` (the session: commits, probes and their verdicts, result, explanation).
Exit codes: add_subcommand's description (docs/gate.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tf2bench.errors import EXIT_FAILED, EXIT_OK, BadInputError, check_positive_int
from tf2bench.saved import storage

EXIT_FOUND = EXIT_OK
EXIT_NOT_REPRODUCIBLE = EXIT_FAILED  # 1
EXIT_CANNOT_TELL = 3  # tf2bench.errors has no name for it (compare's 3, "baseline missing", never meets it)
OUT = storage.RESULTS / "bisect"
OWNED = ("--benchmark-storage", "--benchmark-autosave", "--benchmark-save", "--trace-dir")  # bisect sets these


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    date: str

    @property
    def short(self) -> str:
        return self.sha[:7]

    def label(self) -> str:
        return f'{self.short} "{self.subject[:70]}"'


def git(repo: Path, *args: str, check: bool = True) -> str:
    """git's stdout, stripped; with ``check`` a failure raises BadInputError carrying git's own message."""
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BadInputError("git is not installed (or not on PATH): tf2bench bisect needs it") from None
    if check and done.returncode:
        raise BadInputError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.returncode}")
    return done.stdout.strip()


def repo_root(path: Path) -> Path:
    if not path.is_dir():
        raise BadInputError(f"--repo {path}: no such directory")
    top = git(path, "rev-parse", "--show-toplevel", check=False)
    if not top:
        raise BadInputError(
            f"{path} is not a git repository (a working tree): bisect needs one; --repo names a directory inside it "
            "(default: the current directory)"
        )
    return Path(top)


def resolve(repo: Path, rev: str, role: str) -> str:
    sha = git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}", check=False)
    if not sha:
        raise BadInputError(
            f"unknown revision {rev!r} ({role}) in {repo}: give a commit of it (a hash, branch, tag, or e.g. HEAD~3)"
        )
    return sha


def commit_line(repo: Path, good: str, bad: str) -> list[Commit]:
    """GOOD and the commits after it up to BAD along BAD's first parents, oldest first: [GOOD, ..., BAD]."""
    if good == bad:
        raise BadInputError(f"GOOD and BAD are the same commit ({good[:7]}): nothing to search")
    if subprocess.run(["git", "-C", str(repo), "merge-base", "--is-ancestor", good, bad]).returncode:
        raise BadInputError(f"GOOD {good[:7]} is not an ancestor of BAD {bad[:7]}: swapped? (GOOD is the older one)")
    fmt = "--format=%H%x1f%P%x1f%ci%x1f%s"
    rows = [
        r.split("\x1f") for r in git(repo, "log", "--first-parent", "--reverse", fmt, f"{good}..{bad}").splitlines()
    ]
    if not rows or rows[0][1].split()[:1] != [good]:
        raise BadInputError(
            f"GOOD {good[:7]} is not on BAD's first-parent line (it came in through a merge): name a commit of "
            "the line BAD was built on, e.g. the merge base"
        )
    (g,) = [r.split("\x1f") for r in git(repo, "show", "-s", fmt, good).splitlines()]
    return [Commit(sha, subject, date) for sha, _, date, subject in (g, *rows)]


def check_inputs(repo: Path, line: list[Commit], suite: str, pytest_args: list[str]) -> None:
    """Uncommitted changes where they matter (an end is checked out), the suite at both ends, options bisect owns."""
    owned = [a for a in pytest_args if a.split("=")[0] in OWNED]
    if owned:
        raise BadInputError(
            f"leave out {', '.join(owned)}: bisect keeps every run under results/bisect/<id>/ (see --out)"
        )
    head = git(repo, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    dirty = git(repo, "status", "--porcelain", "--untracked-files=no")
    if dirty and head in (line[0].sha, line[-1].sha):
        which = "GOOD" if head == line[0].sha else "BAD"
        raise BadInputError(
            f"{repo} has uncommitted changes ({len(dirty.splitlines())} file(s)) and {which} is its checked-out "
            "commit: bisect measures commits, not the working tree; commit (or stash) them, or name another revision"
        )
    if Path(suite).as_posix().strip("/") not in ("", "."):
        for role, c in (("GOOD", line[0]), ("BAD", line[-1])):
            if git(repo, "cat-file", "-t", f"{c.sha}:{Path(suite).as_posix()}", check=False) != "tree":
                raise BadInputError(f"{role} {c.short} has no {suite}/: give --suite, the directory pytest runs")


class Measurer:
    """One more run of commit i of the line: its own code in a temporary worktree, saved under out/<i>-<sha>/."""

    def __init__(self, repo: Path, line: list[Commit], out: Path, suite: str, args: list[str], profile: bool) -> None:
        self.repo, self.line, self.out, self.suite, self.args, self.profile = repo, line, out, suite, args, profile

    def folder(self, i: int) -> Path:
        return self.out / f"{i:03d}-{self.line[i].short}"

    def env(self, tree: Path, folder: Path) -> dict[str, str]:
        env = dict(os.environ)
        first = [str(tree), *([str(tree / "src")] if (tree / "src").is_dir() else [])]  # src layouts too
        env["PYTHONPATH"] = os.pathsep.join([*first, *filter(None, [env.get("PYTHONPATH")])])
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["TF2BENCH_TRACE_DIR"] = str((folder / "traces").resolve())  # never into the worktree, which goes
        if self.profile:
            env["TF2BENCH_PROFILE"] = "1"  # the variable, not --profile: any version of the plugin reads it
        return env

    def __call__(self, i: int) -> Any:
        from tf2bench.analysis import bisection, runs
        from tf2bench.plugin.options import keep_out_of

        folder, commit = self.folder(i), self.line[i]
        store = folder / "runs"
        before = set(runs.saved_runs(store)) if store.is_dir() else set()
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / f"pytest-{len(list(folder.glob('pytest-*.log'))) + 1}.log"  # a failed run keeps its log too
        cmd = [sys.executable, "-m", "pytest", self.suite, "-p", "no:cacheprovider", "--benchmark-autosave"]
        cmd += [f"--benchmark-storage=file://{store.resolve()}", *self.args]
        with tempfile.TemporaryDirectory(prefix="tf2bench-bisect-") as tmp:
            tree = Path(tmp) / commit.short
            git(self.repo, "worktree", "add", "--detach", "--quiet", str(tree), commit.sha)
            cmd += keep_out_of(tree)  # a tf2bench from before its pytest11 plugin brings its own hooks
            try:
                with log.open("w", encoding="utf-8") as f:
                    f.write(f"$ cd <worktree of {commit.sha}> && {shlex.join(cmd)}\n")
                    f.flush()
                    rc = subprocess.run(cmd, cwd=tree, env=self.env(tree, folder), stdout=f, stderr=subprocess.STDOUT)
            finally:
                git(self.repo, "worktree", "remove", "--force", str(tree), check=False)
        new = [p for p in runs.saved_runs(store) if p not in before] if store.is_dir() else []
        if not new:
            raise bisection.MeasureError(f"pytest exited {rc.returncode} and saved no run; its output: {log}")
        try:
            saved = runs.load(new[-1], require_round_data=True)
        except runs.RunFileError as exc:
            raise bisection.MeasureError(str(exc)) from None
        note = f"(pytest exit {rc.returncode}: see {log})" if rc.returncode else ""
        return bisection.Run(bisection.loop_rounds(saved), new[-1], note)


class _Parser(argparse.ArgumentParser):
    """Everything after ``--`` is pytest's: argparse alone fills a ``*`` positional before the options only."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        cut = args.index("--") if "--" in args else len(args)
        ns, extra = super().parse_known_args(args[:cut], namespace)
        ns.pytest_args = [*ns.pytest_args, *args[cut + 1 :]]
        return ns, extra


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    """``tf2bench bisect`` (cli.py's SUBCOMMANDS): its parser lives here, beside its body."""
    sub._parser_class, cls = _Parser, sub._parser_class  # add_parser takes no class of its own
    try:
        p = sub.add_parser(
            "bisect",
            help="the first commit between GOOD and BAD where the selected benchmarks got slower, and why",
            description="Measure commits between GOOD and BAD (each in a temporary git worktree, with its own code: "
            "pytest bench ARGS) and find the first one where the selection got slower, with the gate's statistics; "
            "print it, the slowdown and its p-value, and the ops that explain it. Runs kept in results/bisect/<id>/. "
            "Exit 0 found, 1 not reproducible (the ends do not differ), 2 bad input, 3 cannot tell.",
        )
    finally:
        sub._parser_class = cls
    add_arguments(p)
    p.set_defaults(run=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("good", metavar="GOOD", help="a revision where the benchmarks were fast (older)")
    p.add_argument("bad", metavar="BAD", help="a revision where they are slow (newer; BAD descends from GOOD)")
    p.add_argument(
        "pytest_args", nargs="*", default=[], metavar="-- PYTEST_BENCH_ARGS", help="the selection for pytest"
    )
    p.add_argument("--repo", type=Path, default=Path("."), help="the git repository (default: the current one)")
    p.add_argument("--suite", default="bench", help="the directory pytest runs in each checkout (default bench)")
    p.add_argument("--out", type=Path, default=OUT, help=f"sessions go to OUT/<id>/ (default {OUT})")
    p.add_argument("--ends-runs", default=4, help="runs of GOOD and of BAD each, interleaved (default 4; >= 2)")
    p.add_argument("--max-runs", default=4, help="runs of an ambiguous probe before 'cannot tell' (default 4)")
    p.add_argument("--threshold", type=float, default=10.0, help="the ends must differ by more, percent (default 10)")
    p.add_argument("--no-profile", action="store_true", help="no profiles, so no op-level explanation (faster)")


def _pct(log_change: float) -> str:
    return f"{100 * math.expm1(log_change):+.1f}%"


def run(args: argparse.Namespace) -> int:
    from tf2bench.analysis import bisection, compare

    ends_runs, max_runs = (
        check_positive_int(o, v) for o, v in (("--ends-runs", args.ends_runs), ("--max-runs", args.max_runs))
    )
    if not 0 < args.threshold < 1000:
        raise BadInputError(f"--threshold must be a percentage between 0 and 1000, got {args.threshold!r}")
    if ends_runs < 2:
        raise BadInputError(
            f"--ends-runs must be >= 2 (the run-to-run noise needs two runs of an end), got {ends_runs}"
        )
    repo = repo_root(args.repo)
    line = commit_line(repo, resolve(repo, args.good, "GOOD"), resolve(repo, args.bad, "BAD"))
    check_inputs(repo, line, args.suite, list(args.pytest_args))
    out = _session_dir(args.out, line)
    transcript = (out / "transcript.txt").open("w", encoding="utf-8")

    def say(text: str) -> None:
        print(text, flush=True)
        transcript.write(text + "\n")
        transcript.flush()

    n, selection = len(line) - 1, shlex.join(args.pytest_args)
    say(f"tf2bench bisect: {n} commit(s) after GOOD {line[0].label()} up to BAD {line[-1].label()} in {repo}")
    say(f"each measured with its own code in a temporary git worktree: pytest {args.suite} {selection}")
    say(
        "assumes one step, as asv's find does: every commit before the first bad one is as fast as GOOD, every one "
        f"from it on as slow as BAD. A probe is bad when slower than GOOD at p < {compare.ALPHA:g} (one-sided t) and "
        f"within {bisection.MARGIN:g} of the step from BAD's level, good the other way round; else it is measured "
        f"again (at most {max_runs} runs), then 'cannot tell'"
    )
    say(f"runs kept in {out}/")
    measure = Measurer(repo, line, out, args.suite, list(args.pytest_args), not args.no_profile)
    label = {"say": say, "label": lambda i: line[i].label()}
    search = bisection.Bisection(
        n, measure, ends_runs=ends_runs, max_runs=max_runs, threshold_pct=args.threshold, **label
    )
    record: dict[str, Any] = {"repo": str(repo), "suite": args.suite, "pytest_args": list(args.pytest_args)}
    record.update(ends_runs=ends_runs, max_runs=max_runs, threshold=args.threshold, alpha=compare.ALPHA)
    record["commits"] = [asdict(c) for c in line]
    code = None
    try:
        try:
            result = search.search()
        except bisection.MeasureError as exc:  # an end: the suite does not run there with this selection
            raise BadInputError(f"an end could not be measured: {exc}") from None
        code = _report(result, line, say, record)
        return code
    finally:  # an interrupted or failed session keeps what it measured
        record.update(_outcome_record(search.out, line))
        record["status"] = search.out.status if code is not None else "interrupted or failed"
        text = json.dumps(record, indent=2, default=str).replace("NaN", "null")  # JSON has no NaN
        storage.atomic_write(out / "bisect.json", text.encode())
        transcript.close()


def _session_dir(root: Path, line: list[Commit]) -> Path:
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{line[0].short}-{line[-1].short}"
    for k in range(1, 100):
        out = root / (stem if k == 1 else f"{stem}-{k}")
        try:
            out.mkdir(parents=True)
            return out
        except FileExistsError:
            continue
    raise BadInputError(f"{root}: cannot make a new session directory {stem}")


def _report(result: Any, line: list[Commit], say: Any, record: dict[str, Any]) -> int:
    from tf2bench.analysis import bisection, compare

    if result.status == bisection.NOT_REPRODUCIBLE:
        say(f"not reproducible: {result.reason}; nothing to search")
        return EXIT_NOT_REPRODUCIBLE
    probes, probe_runs = len(result.probes), sum(len(result.runs[i]) for i, _ in result.probes)
    if result.status == bisection.CANNOT_TELL:
        suspects = line[result.lo + 1 : result.hi + 1]
        say(f"cannot tell: {result.reason}")
        say(f"the first bad commit is one of these {len(suspects)} (after {probes} probe(s), {probe_runs} run(s)):")
        for c in suspects[:10]:
            say(f"  {c.label()}")
        say("more runs (--max-runs, --ends-runs), more rounds (-- --rounds N) or a quieter machine would tell")
        return EXIT_CANNOT_TELL
    first, parent = line[result.hi], line[result.lo]
    say(f'first bad commit: {first.sha} "{first.subject}" ({first.date})')
    per_loop = ", ".join(f"{'/'.join(k)} {_pct(c)}" for k, c in result.loop_changes(result.lo, result.hi).items())
    say(f"  slowdown vs its parent {parent.short}: {_pct(result.slowdown)} (p {result.p_value:.2g}; {per_loop})")
    ends = len(result.runs[0]) + len(result.runs[len(line) - 1])
    say(
        f"  {probes} probe(s) ({probe_runs} run(s)) besides the ends' {ends} runs; {result.looks} call(s) at p < "
        f"{compare.ALPHA:g} each: the chance any was wrong is <= {100 * result.looks * compare.ALPHA:.0f}%"
    )
    record["explanations"] = _explain(result, parent, first, say)
    return EXIT_FOUND


def _explain(result: Any, parent: Commit, first: Commit, say: Any) -> list[dict[str, Any]]:
    """The op-level explanation of each loop with the step (issue 21.1): the parent's last run vs the first bad's."""
    from tf2bench.analysis import explain, runs

    base, new = (runs.load(result.runs[i][-1].path) for i in (result.lo, result.hi))
    say(f"explanation, parent {parent.short} -> first bad {first.short}:")
    out = []
    for key in result.keys:
        b, c = explain.unit_infos(base, *key), explain.unit_infos(new, *key)
        out.append(explain.explain(b, c, base_label=f"parent {parent.short}", new_label=f"first bad {first.short}"))
        for text in explain.lines(out[-1]):
            say(f"  {text}")
    return out


def _outcome_record(result: Any, line: list[Commit]) -> dict[str, Any]:
    found = result.status == "found"
    return {
        "status": result.status,
        "reason": result.reason,
        "steps": [{**asdict(s), "loop": "/".join(s.key), "pct": s.pct} for s in result.steps],
        "probes": [{"index": i, "sha": line[i].sha, "looks": [asdict(v) for v in looks]} for i, looks in result.probes],
        "runs": {line[i].sha: [{"path": str(r.path), "note": r.note} for r in rs] for i, rs in result.runs.items()},
        "first_bad": asdict(line[result.hi]) if found else None,
        "parent": asdict(line[result.lo]) if found else None,
        "range": [line[result.lo].sha, line[result.hi].sha],
        "slowdown_pct": 100 * math.expm1(result.slowdown),
        "p_value": result.p_value,
    }
