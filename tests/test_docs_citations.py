"""Settings and code cite their evidence as ``docs/performance.md § <section>``: every such
citation names a section that exists (a renamed or removed section fails here)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def headings(markdown: str) -> list[str]:
    return [line[3:].strip() for line in markdown.splitlines() if line.startswith("## ")]


def unresolved(text: str, sections: list[str]) -> list[str]:
    """The citations ``performance.md … § <name>`` in ``text`` (a name may wrap onto the next line
    of a comment or docstring) whose name starts with none of ``sections``."""
    joined = re.sub(r"\s*\n\s*(#\s*)?", " ", text)
    cites = [m.end() for m in re.finditer(r"performance\.md`? § ", joined)]
    return [joined[i : i + 40] for i in cites if not any(joined.startswith(s, i) for s in sections)]


def test_a_planted_citation_of_a_missing_section_is_found():
    text = (
        "lr  # docs/performance.md § Learning rate\n(docs/performance.md § Data-parallel\ntraining)"
    )
    assert unresolved(text, ["Learning rate", "Data-parallel training"]) == []
    assert unresolved(text, ["Learning rate"]) == ["Data-parallel training)"]


def test_every_performance_citation_names_an_existing_section():
    sections = headings((ROOT / "docs/performance.md").read_text())
    files = [*ROOT.glob("profiles/*.yaml"), ROOT / "params.yaml", ROOT / "README.md",
             *ROOT.glob("tracer/**/*.py"), *ROOT.glob("benchmarks/*.py")]  # fmt: skip
    cited = [f for f in files if "performance.md" in f.read_text()]
    assert len(cited) >= 5, "fewer files cite docs/performance.md than the profiles alone"
    bad = {f.relative_to(ROOT).as_posix(): unresolved(f.read_text(), sections) for f in cited}
    assert not {f: b for f, b in bad.items() if b}, bad
