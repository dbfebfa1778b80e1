"""The README stays short and its Quickstart intact; the docs' links resolve and no table is repeated.

Fast and TensorFlow-free: it reads README.md and docs/*.md as text.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 200
QUICKSTART = [
    "pip install -e . && pytest bench --benchmark-autosave",
    'pip install -e ".[test]" && pytest',
]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)+\|?\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (code may show links and tables that are not ones)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text lowercased, punctuation removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors by its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and '_' (Unicode), as GitHub does
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a page; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    out = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        out.add(f"{base}-{seen[base]}" if seen[base] else base)
        seen[base] += 1
    return out


def relative_links(path: Path) -> list[str]:
    """The link targets of a page that point into this repository (no scheme, no mail)."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
                continue  # http:, https:, mailto:, ...
            targets.append(target)
    return targets


def table_headers(path: Path) -> list[str]:
    """The header line of every markdown table on a page, whitespace-normalised."""
    lines = prose_lines(path.read_text(encoding="utf-8"))
    return [
        " ".join(lines[i - 1].split())
        for i in range(1, len(lines))
        if TABLE_SEPARATOR.match(lines[i]) and lines[i - 1].lstrip().startswith("|")
    ]


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; move detail to docs/ (at most {MAX_README_LINES})"


def test_quickstart_is_two_commands():
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Quickstart\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "README.md has no '## Quickstart' section"
    block = re.search(r"^```[a-z]*\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, "the Quickstart has no code block"
    commands = [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands == QUICKSTART


def test_own_model_example_mirrors_examples_dir():
    """The README's bring-your-own-model code is what examples/my_model/ runs (tests/test_byom.py runs that)."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Benchmark your own model\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, "README.md has no '## Benchmark your own model' section"
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", section.group(1), re.M | re.S)
    python = [code for lang, code in blocks if lang == "python"]
    assert len(python) == 2, "expected the Python example and the pytest files"
    example = ROOT / "examples" / "my_model"
    module = (example / "my_model.py").read_text(encoding="utf-8")
    imported = re.search(r"^from my_model import (.+?)\s*(#.*)?$", python[0], re.M)
    assert imported, "the Python example imports the model builder and data from my_model"
    for name in (n.strip() for n in imported.group(1).split(",")):
        assert re.search(rf"^def {name}\(", module, re.M), f"examples/my_model/my_model.py defines no {name}()"
    assert re.search(r"^workload = tf2bench\.Workload\(", module, re.M)
    for line in (ln for ln in python[1].splitlines() if ln.startswith("from ")):
        test_module = (example / "test_tf2bench.py").read_text(encoding="utf-8").splitlines()
        assert line in test_module, f"{line!r} not in examples/my_model/test_tf2bench.py"
    shell = [code for lang, code in blocks if lang == "bash"]
    assert shell == ["pytest --benchmark-autosave\n"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_docs_exist():
    assert DOCS, "docs/ has no pages"


def test_no_table_repeated():
    where: dict[str, list[str]] = {}
    for page in PAGES:
        for header in table_headers(page):
            where.setdefault(header, []).append(str(page.relative_to(ROOT)))
    repeated = {h: pages for h, pages in where.items() if len(pages) > 1}
    assert not repeated, "tables appear more than once (keep one, link to it):\n" + "\n".join(
        f"{h}  in {', '.join(pages)}" for h, pages in repeated.items()
    )


def test_slug_matches_github():
    assert slug("Gate CI on throughput: `tf2bench compare`") == "gate-ci-on-throughput-tf2bench-compare"
    assert slug("Both techniques at once: `graph_xla`") == "both-techniques-at-once-graph_xla"
    assert slug("The harness's own cost") == "the-harnesss-own-cost"
    assert slug("pytest-benchmark's own `--benchmark-compare-fail`") == "pytest-benchmarks-own---benchmark-compare-fail"


def test_every_result_key_is_documented():
    """tf2bench/saved/record.py declares every extra_info key once; docs/record.md must explain each."""
    from tf2bench.saved.record import FIELDS

    text = (ROOT / "docs" / "record.md").read_text()
    missing = [key for key in FIELDS if f"`{key}`" not in text]
    assert not missing, f"docs/record.md does not explain: {missing}"


def test_ci_example_commands_parse():
    """Every tf2bench command the CI example runs is one the CLI accepts (options and all)."""
    import shlex

    from tf2bench.cli import build_parser

    text = (ROOT / "examples" / "ci" / "github-gpu-benchmark.yml").read_text()
    commands = [line.split("run:")[-1].strip() for line in text.splitlines() if "tf2bench " in line]
    commands = [c[c.index("tf2bench ") :].split(" ||")[0] for c in commands if not c.lstrip().startswith("#")]
    assert len(commands) >= 3, commands
    for command in commands:
        argv = [a.replace("$", "") for a in shlex.split(command)[1:]]  # shell variables stand for paths
        build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown option
    assert any("--history" in c for c in commands)
