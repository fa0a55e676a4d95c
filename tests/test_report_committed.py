"""The committed HTML report (``docs/report``): opened in headless Chromium it loads offline, every
link and image resolves to a file in the checkout, the audit table has one row per audited claim,
and no file holds an absolute path of the machine that wrote it."""

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from conftest import REPO, browser

REPORT = REPO / "docs" / "report"


def test_report_is_committed_and_free_of_machine_paths():
    index = REPORT / "index.html"
    assert index.is_file(), "docs/report is written by the report stage (dvc repro report)"
    # an absolute path starts a path: not a folder named "work" inside a relative one
    absolute = re.compile(r"(?<![\w.~-])(/work/|/tmp/|/home/\w+/|/root/)")
    assert absolute.search('saved to "/work/main/models"') and absolute.search(" /tmp/x")
    assert not absolute.search("models/domain/single/work/last.pt")
    for path in REPORT.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".txt"}:
            hit = absolute.search(path.read_text(errors="replace"))
            assert hit is None, f"{path.relative_to(REPO)}: {hit.group(0)}"


def test_report_index_loads_offline_with_every_claim():
    driver = browser()
    try:
        driver.get((REPORT / "index.html").as_uri())
        links = driver.execute_script(
            "return Array.from(document.querySelectorAll('a')).map(a => a.href)"
        )
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])"
        )
        items = driver.execute_script(
            "return Array.from(document.querySelectorAll('#audit ~ table tr'))"
            ".slice(1).map(r => r.cells[1].innerText)"
        )
    finally:
        driver.quit()
    assert images and all(ok for _, ok in images), [s for s, ok in images if not ok]
    for href in links:
        url = urlparse(href)
        if url.scheme == "file":
            assert Path(unquote(url.path)).exists(), href
        else:
            assert url.scheme == "" or href.startswith("#"), href  # nothing from the network
    claims = json.loads((REPO / "paper_figures" / "CHECKLIST.json").read_text())
    assert items == [r["item"] for r in claims]
