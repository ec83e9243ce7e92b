"""The Jupyter Book builds warning-free from the repo root, and a failing page fails the build."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

JB = str(Path(sys.executable).with_name("jupyter-book"))


def _build(source: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [JB, "build", str(source), "--path-output", str(out), "-W", "-n", "--keep-going"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_book_builds_without_warnings(tmp_path):
    proc = _build(Path("book"), tmp_path, REPO_ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    for page in (
        "intro",
        "diagnostic",
        "main_table",
        "schedule_sweep",
        "cross_model",
        "reduction_factorial",
        "position_premise",
        "beyond",
        "toy_world",
        "performance",
        "reproduce",
        "glossary",
    ):
        assert (html / f"{page}.html").exists(), page
    # Formulas load the bundled MathJax, never a CDN (they render offline).
    intro = (html / "intro.html").read_text()
    assert intro.count("_static/mathjax/tex-chtml-full.js") == 1, "MathJax must load once"
    assert "cdn.jsdelivr.net" not in intro
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    # Published numbers reach the page from data/published, not from the page source.
    assert "95.33" in (html / "main_table.html").read_text()
    assert "95.33" not in (REPO_ROOT / "book" / "main_table.md").read_text()
    # Every section page renders its committed results: a figure, a table, the paper's numbers.
    for page, least in PUBLISHED_ON_PAGE.items():
        text = (html / f"{page}.html").read_text()
        assert "<img" in text and "<table" in text, f"{page}: no figure or no table"
        shown = sum(text.count(number) for number in _published_numbers())
        assert shown >= least, f"{page}: {shown} published numbers shown, want >= {least}"
        assert "No results yet" not in text, f"{page}: its results are not committed"
    # The position-premise page: its phase diagram, its tables and a generated verdict.
    text = (html / "position_premise.html").read_text()
    assert "<img" in text and "<table" in text and "No results yet" not in text
    assert "By the reading stated before the runs" in text
    for page in ("main_table", "schedule_sweep", "reduction_factorial"):
        assert "(matched step)" in (html / f"{page}.html").read_text(), f"{page}: no control rows"
    _check_findings(html)
    _check_readable(html)


def _check_readable(html: Path) -> None:
    """Every page reads as a product: tables show "-" (never NaN/None) for a missing value and
    words (not snake_case keys) in their column headers; the table stylesheet that wraps and
    scrolls wide tables is loaded; the prose carries no development-log words."""
    for path in sorted(html.glob("*.html")):
        if path.name in ("genindex.html", "search.html", "index.html"):  # index: a redirect
            continue
        text = path.read_text()
        assert "_static/pwopsd.css" in text, f"{path.name}: the table stylesheet is not loaded"
        assert "IPython.core.display" not in text, f"{path.name}: an object's repr, not its view"
        for table in re.findall(r"<table.*?</table>", text, re.S):
            cells = [
                re.sub(r"<[^>]+>", "", c).strip()
                for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", table, re.S)
            ]
            missing = [c for c in cells if c in ("nan", "NaN", "None", "&lt;NA&gt;", "NaT")]
            assert not missing, f"{path.name}: a table shows {missing[0]!r} for a missing value"
            head = re.search(r"<thead>(.*?)</thead>", table, re.S)
            headers = re.findall(r"<th[^>]*>(.*?)</th>", head[1], re.S) if head else []
            snake = [
                h for h in headers if re.search(r"[a-z]{2,}_[a-z]{2,}", re.sub(r"<[^>]+>", "", h))
            ]
            assert not snake, f"{path.name}: snake_case column header {snake[0]!r}"
        words = re.search(r"issue [0-9]|toy world v[0-9]|status line", text, re.I)
        assert words is None, f"{path.name}: development-log words {words[0]!r}"


FINDING_STARTS = {
    "diagnostic": "The early-position score",
    "main_table": "Each method minus OPSD",
    "schedule_sweep": "By mean Avg",
    "cross_model": "PW-OPSD Moderate minus OPSD",
    "reduction_factorial": "The position weight moves",
    "position_premise": "PW-OPSD Moderate minus OPSD is",
}
"""How each results page's generated opening finding begins (beyond's may still be "No
results yet" while its runs train)."""


def _check_findings(html: Path) -> None:
    """The intro opens with the findings summary (a table with verdicts and the difference
    figure) above the method; each results page opens with its finding and shows or links the
    threats to validity; the glossary defines its terms."""
    intro = (html / "intro.html").read_text()
    summary = intro[intro.index('id="findings-first"') : intro.index('id="the-method"')]
    assert "<table" in summary and "<img" in summary, "intro: no summary table or no figure"
    assert "Claim (paper)" in summary and "Toy scale" in summary
    assert "<strong>agree</strong>" in summary and "<strong>disagree</strong>" in summary
    assert 'href="main_table.html"' in summary, "intro: the summary's page links do not resolve"
    assert "fig-intro-differences" in summary and "percentage points" in summary
    assert "nan" not in re.sub(r"<[^>]+>", " ", summary).lower().split()
    assert "4× H100" in intro and "has not been run" in intro
    for page in (*FINDING_STARTS, "beyond"):
        text = (html / f"{page}.html").read_text()
        body = text[text.index("<article") :]
        # beyond's finding: "No results yet", "<n> comparisons so far" (one seed), or "Of <n>".
        start = re.escape(FINDING_STARTS[page]) if page in FINDING_STARTS else (
            r"No results yet|\d+ comparisons so far|Of "
        )  # fmt: skip
        assert re.search(f"<strong>({start})", body[:4000]), f"{page}: no opening finding"
        assert 'href="toy_world.html#threats-to-validity"' in text, f"{page}: no threats link"
    threats = (html / "toy_world.html").read_text()
    assert 'id="threats-to-validity"' in threats and "training seeds.</strong>" in threats
    glossary = (html / "glossary.html").read_text()
    for term in ("w(u)", "w_min", "Clipped forward KL", "Branch viability", "AUROC", "Reduction"):
        assert term in glossary, f"glossary: no {term}"


PUBLISHED_ON_PAGE = {
    "main_table": 20,  # five Qwen3-4B rows x four benchmarks (plus the all-rows table)
    "schedule_sweep": 12,  # OPSD, Moderate and Aggressive x four benchmarks
    "cross_model": 16,  # Qwen3-4B and the Llama-8B: OPSD and Moderate x four; Olmo-3 means
    "reduction_factorial": 8,  # the two corner cells x four benchmarks
    "diagnostic": 1,  # the headline AUROC
}


def _published_numbers() -> list[str]:
    """Every published score as the pages print it ("mean ± sd", two decimals)."""
    import json

    doc = json.loads((REPO_ROOT / "data" / "published" / "main_table.json").read_text())
    out = []
    for row in doc["rows"]:
        for s in (row["scores"] or {}).values():
            out.append(f"{s['mean']:.2f} ± {s['sd']:.2f}")
    diag = json.loads((REPO_ROOT / "data" / "published" / "diagnostic.json").read_text())
    out.append(f"{diag['headline']['auroc']:.2f}")
    return sorted(set(out))


@pytest.fixture()
def broken_book(tmp_path) -> Path:
    root = tmp_path / "proj"
    (root / "book").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "_config.yml", root / "_config.yml")
    (root / "book" / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: broken\n"
    )
    (root / "book" / "intro.md").write_text("# Intro\n\nA page.\n")
    header = (REPO_ROOT / "book" / "main_table.md").read_text().split("---\n")[1]
    (root / "book" / "broken.md").write_text(
        f"---\n{header}---\n# Broken\n\n```{{code-cell}} ipython3\nraise RuntimeError('deliberate')\n```\n"
    )
    return root


def test_failing_notebook_fails_the_build(broken_book, tmp_path):
    proc = _build(Path("book"), tmp_path / "out", broken_book)
    assert proc.returncode != 0
    assert "broken" in proc.stdout + proc.stderr


def test_mathjax_is_served_from_the_book_not_a_cdn():
    """Sphinx's ``mathjax_path`` is a file the book bundles (scripts/fetch_mathjax.sh), with the
    fonts CommonHTML loads from beside it, so formulas render with no network; and it is not
    under book/_static, whose every .js Jupyter Book 1 adds as a second, eager <script>."""
    import yaml

    config = yaml.safe_load((REPO_ROOT / "_config.yml").read_text())["sphinx"]["config"]
    path = config["mathjax_path"]
    assert "//" not in path and not path.startswith("/"), f"mathjax_path {path!r} is not local"
    static = [REPO_ROOT / "book" / d for d in config.get("html_static_path", [])]
    script = next((d / path for d in static if (d / path).is_file()), None)
    assert script is not None, f"{path} is in no html_static_path: run scripts/fetch_mathjax.sh"
    text = script.read_text()
    assert "[tex]/ams" in text and "output/chtml" in text  # TeX extensions preloaded, CHTML output
    fonts = script.parent / "output" / "chtml" / "fonts" / "woff-v2"
    assert len(list(fonts.glob("MathJax_*.woff"))) >= 20, f"{fonts}: CommonHTML fonts missing"
    assert (script.parent / "LICENSE").is_file()
    # Jupyter Book 1 scans every static folder for .js once book/_static exists
    assert not (REPO_ROOT / "book" / "_static").is_dir(), (
        "book/_static exists: Jupyter Book 1 would add the MathJax bundle as a second <script>"
    )
