"""An offline HTML site of the run: every executed notebook rendered (code hidden, outputs and
text kept), the paper figures, and an index page whose audit table links each claim of the paper
to the page that holds its evidence — every claim and its evidence two clicks from the index.

Nothing is loaded from the network: notebooks are rendered with nbconvert's ``basic`` template
(no scripts, no CDN) inside a small page of our own, images are copied beside the pages.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
img { max-width: 100%; }
.PASS { background: #e3f4e3; } .FAIL { background: #fbe3e3; } .NOT { background: #eee; }
.INCONCLUSIVE { background: #fdf3d8; }
.thumbs img { width: 260px; margin: 0.3em; border: 1px solid #ddd; }
nav a { margin-right: 1em; }
"""

EVIDENCE_BY_CLAIM = {
    **dict.fromkeys(("single_vs_alignn_mae", "gap_vs_alignn_size", "single_vs_alignn_rmse",
                     "ensemble_vs_alignn_mae", "single_vs_schnet_mae", "single_vs_cgcnn_mae",
                     "trains_faster", "run_to_run"), "30_run_of_record"),
    **dict.fromkeys(("sigma_rank", "sigma_flags_worst", "sigma_three_members", "coverage_raw",
                     "coverage_conformal", "calibration_improves", "nll"), "21_uncertainty"),
    **dict.fromkeys(("elemental_worst", "large_cells_worst", "positive_energy_worst",
                     "low_energy_small", "named_worst"), "22_failures"),
    "triage": "23_triage",
    "flags_negative": "24_flags",
    **dict.fromkeys(("domain_no_gain", "domain_gain_pooled"), "26_domain"),
    **dict.fromkeys(("transfer_pretraining_helps", "zero_shot_is_dummy", "matbench_fine_tuned"),
                    "25_transfer"),
}  # fmt: skip
"""The executed notebook showing a claim's evidence (others: the audit notebook)."""


def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def render_notebook(path: Path, out_dir: Path) -> Path:
    """One executed notebook as a standalone offline page (code cells hidden)."""
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)  # fmt: skip
    body, _ = exporter.from_notebook_node(nbformat.read(path, as_version=4))
    nav = "<nav><a href='../index.html'>← index</a></nav>"
    out = out_dir / f"{path.stem}.html"
    out.write_text(_page(path.stem, nav + body))
    return out


def build_site(root: str | Path = ".", out_dir: str | Path = "site") -> Path:
    """Render the run under ``root`` into ``out_dir`` (replaced); returns the index page."""
    root, out = Path(root), Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    (out / "notebooks").mkdir(parents=True)
    (out / "figures").mkdir()
    (out / "files").mkdir()
    notebooks = sorted((root / "notebooks" / "executed").glob("*.ipynb"))
    pages = [render_notebook(nb, out / "notebooks") for nb in notebooks]
    for name in ("params.yaml", "dvc.lock"):
        if (root / name).exists():
            shutil.copy2(root / name, out / "files" / f"{name}.txt")
    figures = sorted((root / "paper_figures").glob("*/*.png"))  # one folder per stage
    for fig in figures:
        shutil.copy2(fig, out / "figures" / f"{fig.parent.name}_{fig.name}")

    parts = ["<h1>TRACER — the run, its figures and the audit</h1>",
             "<nav><a href='#audit'>audit</a><a href='#notebooks'>notebooks</a>"
             "<a href='#figures'>figures</a></nav>"]  # fmt: skip
    checklist = root / "paper_figures" / "CHECKLIST.json"
    parts.append("<h2 id='audit'>Audit: the paper's claims and its checklist</h2>")
    if checklist.exists():
        rows = json.loads(checklist.read_text())
        runs = list(rows[0]["runs"]) if rows else []
        parts.append("<p>Verdicts computed by <code>tracer.audit</code> from the committed "
                     "records under rules declared in <code>tracer/audit/claims.yaml</code>; "
                     "one column per run; the last column links the page with the "
                     "evidence.</p>")  # fmt: skip
        parts.append("<table><tr><th>section</th><th>item</th><th>paper</th><th>rule</th>"
                     + "".join(f"<th>{html.escape(r)}</th>" for r in runs)
                     + "<th>evidence</th></tr>")  # fmt: skip
        for r in rows:
            page = f"notebooks/{EVIDENCE_BY_CLAIM.get(r['id'], '40_checklist')}.html"
            page = page if page is not None and (out / page).exists() else None
            link = f"<a href='{page}'>{html.escape(Path(page).stem)}</a>" if page else "—"
            cells = "".join(
                f"<td class='{c['verdict'].split(':')[0].split()[0]}'>"
                f"{html.escape(c['verdict'])}{' (smoke)' if c['smoke'] else ''}"
                f"<br>{html.escape(c['our_value'])}</td>"
                for c in (r["runs"][n] for n in runs)
            )
            parts.append(
                f"<tr><td>{html.escape(r['section'])}</td><td>{html.escape(r['item'])}</td>"
                f"<td>{html.escape(r['paper_value'])}</td><td>{html.escape(r['rule'])}</td>"
                f"{cells}<td>{link}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>NOT RUN: paper_figures/CHECKLIST.json is missing (checklist stage)</p>")
    parts.append("<h2 id='notebooks'>Executed notebooks (one per stage)</h2><ul>")
    parts += [f"<li><a href='notebooks/{p.name}'>{p.stem}</a></li>" for p in pages]
    parts.append("</ul><h2 id='figures'>Figures</h2><div class='thumbs'>")
    for fig in figures:
        name = f"{fig.parent.name}_{fig.name}"
        parts.append(f"<a href='figures/{name}'><img src='figures/{name}' "
                     f"alt='{fig.parent.name}: {fig.stem}' "
                     f"title='{fig.parent.name}: {fig.stem}'></a>")  # fmt: skip
    parts.append("</div>")
    index = out / "index.html"
    index.write_text(_page("TRACER", "\n".join(parts)))
    return index
