"""Checks of the CPU default run's split, model files and ``dvc.lock`` (each a list of
:class:`Row` with a PASS/FAIL/NOT RUN verdict computed from the records), which
:mod:`tracer.audit.checks` turns into audit findings; and the index of which stage wrote which
figure (``paper_figures/INDEX.md``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

PASS, FAIL = "PASS", "FAIL"


@dataclass
class Row:
    """One audited item."""

    section: str  # "claim", "checklist" or "audit note"
    item: str
    paper_value: str
    our_value: str
    source: str  # the files (and run) our value was computed from
    verdict: str  # PASS, FAIL or "NOT RUN: reason"


class MissingRecordError(Exception):
    """A record a check needs is not there (the row becomes NOT RUN)."""


class Records:
    """Read access to one run's records under ``root`` (a missing file raises
    :class:`MissingRecordError`)."""

    def __init__(self, root: str | Path, dataset: str) -> None:
        self.root, self.dataset = Path(root), dataset

    def path(self, rel: str) -> Path:
        p = self.root / rel
        if not p.exists():
            raise MissingRecordError(f"{rel} is missing")
        return p

    def json(self, rel: str) -> Any:
        return json.loads(self.path(rel).read_text())

    def parquet(self, rel: str) -> pd.DataFrame:
        return pd.read_parquet(self.path(rel))

    def split(self) -> dict[str, Any]:
        return self.json(f"data/splits/{self.dataset}.json")

    def members(self) -> list[dict[str, Any]]:
        files = sorted((self.root / "models" / self.dataset).glob("member_*.pt"))
        if not files:
            raise MissingRecordError(f"models/{self.dataset}/member_*.pt are missing")
        return [torch.load(f, map_location="cpu", weights_only=False) for f in files]

    def lock(self) -> dict[str, Any]:
        """``dvc.lock``'s stages that the pipeline still defines (a lock keeps the entries of
        stages that a profile dropped, e.g. ensemble seeds of another profile)."""
        from dvc.repo import Repo

        stages = yaml.safe_load(self.path("dvc.lock").read_text())["stages"]
        with Repo(str(self.root)) as repo:
            current = {stage.addressing for stage in repo.index.stages}
        return {name: entry for name, entry in stages.items() if name in current}


def verdict(ok: bool) -> str:
    return PASS if ok else FAIL


# --------------------------------------------------------------------------------------------
# the authors' reproducibility checklist
# --------------------------------------------------------------------------------------------
PAPER_SPLIT = {"train": 28_823, "val": 3_602, "test": 3_604}


def check_split(r: Records) -> list[Row]:
    s = r.split()
    sets = {k: set(s[k]) for k in ("train", "val", "test")}
    disjoint = all(not (sets[a] & sets[b]) for a, b in (("train", "val"), ("train", "test"),
                                                         ("val", "test")))  # fmt: skip
    data = r.json("metrics/data.json")
    src = f"data/splits/{r.dataset}.json"
    rows = [
        Row("checklist", "fixed seed 42 for the split", "42", str(s["seed"]), src,
            verdict(s["seed"] == 42)),
        Row("checklist", "split ids saved (every record)", "released split file: 32/32/81 ids",
            f"{sum(map(len, sets.values()))} ids of {data['n_clean']} valid records", src,
            verdict(sum(map(len, sets.values())) == data["n_clean"])),
        Row("checklist", "test set never used for training or tuning",
            "asserted", f"sets disjoint: {disjoint}; structure-level leak check: "
            f"{s['leak_check']['leak_free']}", src, verdict(disjoint
                                                           and s["leak_check"]["leak_free"])),
    ]  # fmt: skip
    if r.dataset.startswith("jarvis"):
        sizes = {k: len(v) for k, v in sets.items()}
        close = all(abs(sizes[k] - PAPER_SPLIT[k]) <= 10 for k in PAPER_SPLIT)
        rows.append(
            Row(
                "checklist",
                "identical split sizes",
                "28,823 / 3,602 / 3,604",
                " / ".join(f"{sizes[k]:,}" for k in PAPER_SPLIT),
                src,
                verdict(close),
            )
        )
    else:
        rows.append(Row("checklist", "identical split sizes", "28,823 / 3,602 / 3,604",
                        "—", src, f"NOT RUN: this run's dataset is {r.dataset}, not the paper's "
                        "JARVIS release (the paper profile)"))  # fmt: skip
    return rows


# stages that only read the run (their own lock entries are rewritten after they ran)
AUDIT_STAGES = ("checklist", "report")


def check_same_split_everywhere(r: Records) -> list[Row]:
    lock = r.lock()
    target = f"data/splits/{r.dataset}.json"
    md5s = {name: dep["md5"] for name, stage in lock.items() if name not in AUDIT_STAGES
            for dep in stage.get("deps", []) if dep["path"] == target}  # fmt: skip
    trained = [n for n in md5s if n.startswith(("train@", "baseline@"))]
    if not trained:
        raise MissingRecordError("dvc.lock has no training stage that reads the split")
    same = len(set(md5s.values())) == 1
    return [Row("checklist", "same training data and split for every model", "asserted",
                f"{len(md5s)} stages read {target}, {len(set(md5s.values()))} distinct md5",
                "dvc.lock", verdict(same))]  # fmt: skip


def check_normalisation(r: Records) -> list[Row]:
    s = r.split()
    table = r.parquet(f"data/processed/{r.dataset}.parquet").set_index("id")
    y = table.loc[s["train"], "target"].to_numpy(dtype=float)
    ok = []
    for m in r.members():
        sc = m["scaler"]
        ok.append(sc["n_train"] == len(y) and abs(sc["mean"] - float(y.mean())) < 1e-9)
    return [Row("checklist", "normalisation statistics from the training set only", "asserted",
                f"{sum(ok)} of {len(ok)} members: scaler fitted on exactly the training "
                f"targets (n = {len(y)}, mean {y.mean():.4f} eV/atom)",
                f"models/{r.dataset}/member_*.pt, data/processed/{r.dataset}.parquet",
                verdict(all(ok)))]  # fmt: skip


def check_selection_on_validation(r: Records) -> list[Row]:
    ok = []
    for m in r.members():
        val = [h["val_mae"] for h in m["history"]]
        ok.append(int(np.argmin(val)) == m["summary"]["best_epoch"])
    return [Row("checklist", "early stopping and best model chosen on validation only",
                "asserted", f"{sum(ok)} of {len(ok)} members: best epoch = lowest validation MAE",
                f"models/{r.dataset}/member_*.pt (histories)", verdict(all(ok)))]  # fmt: skip


def check_same_test_set(r: Records) -> list[Row]:
    test = list(r.split()["test"])
    acc = r.json("metrics/accuracy.json")
    names = {m.removesuffix("_ensemble").removesuffix("_single") for m in acc["models"]}
    same = []
    for name in sorted(names):
        frame = r.parquet(f"results/{r.dataset}/{name}.parquet")
        same.append(list(frame.loc[frame["set"] == "test", "id"]) == test)
    units = {m["target_unit"] for m in r.members()}
    return [
        Row("checklist", "same test set for every model", "asserted",
            f"{sum(same)} of {len(same)} prediction files hold exactly the split's test ids",
            f"results/{r.dataset}/*.parquet", verdict(all(same))),
        Row("checklist", "same target unit for every model", "eV/atom",
            ", ".join(sorted(units)), f"models/{r.dataset}/member_*.pt",
            verdict(units == {"eV/atom"})),
        Row("checklist",
            "identical metric code for every model (tracer.analysis.accuracy.evaluate)",
            "asserted", f"{len(acc['models'])} rows, n_test {acc['n_test']}",
            "metrics/accuracy.json", verdict(all(m.get("n", acc["n_test"]) == acc["n_test"]
                                                 for m in acc["models"].values()))),
        Row("checklist", "single-model headline metrics reported beside the ensemble",
            "single model only", "gemnet_t_single (mean ± std over members) and the ensemble",
            "metrics/accuracy.json", verdict("gemnet_t_single" in acc["models"])),
    ]  # fmt: skip


def check_checkpoints(r: Records) -> list[Row]:
    lock = r.lock()
    outs = [o for name, st in lock.items() if name.startswith("train@") for o in st["outs"]
            if o["path"].endswith(".pt")]  # fmt: skip
    members = sorted((r.root / "models" / r.dataset).glob("member_*.pt"))
    return [Row("checklist", "checkpoints documented (and released)", "models not released",
                f"{len(outs)} member files with md5 in dvc.lock ({len(members)} present)",
                "dvc.lock", verdict(len(outs) == len(members) > 0))]  # fmt: skip


# --------------------------------------------------------------------------------------------
# audit notes: where the authors' repository contradicts the paper
# --------------------------------------------------------------------------------------------
def audit_model_has_angles(r: Records) -> list[Row]:
    kinds = {(m["kind"], m["model_config"].get("emb_size_trip", 0)) for m in r.members()}
    ok = all(kind == "gemnet_t" and trip > 0 for kind, trip in kinds)
    return [Row("audit note", "the model carries bond angles (GemNet-T triplets)",
                "their code trains a distance-only (SchNet-like) network",
                f"members: {sorted(kinds)} (kind, triplet embedding size)",
                f"models/{r.dataset}/member_*.pt", verdict(ok))]  # fmt: skip


def audit_alignn_epochs(r: Records) -> list[Row]:
    files = sorted((r.root / "results/flla_full/runs/histories").glob("alignn_*.json"))
    if not files:
        raise MissingRecordError("results/flla_full/runs/histories/alignn_*.json are missing")
    epochs = {f.stem: len(json.loads(f.read_text())) for f in files}
    return [Row("audit note", "ALIGNN trained to its own default length (300 epochs)",
                "their ALIGNN: 50 epochs, batch 16, lr 5e-4", json.dumps(epochs),
                "results/flla_full/runs/histories/",
                verdict(min(epochs.values()) >= 300))]  # fmt: skip


def audit_no_made_up_targets(r: Records) -> list[Row]:
    table = r.parquet(f"data/processed/{r.dataset}.parquet")
    data = r.json("metrics/data.json")
    finite = bool(np.isfinite(table["target"].to_numpy(dtype=float)).all())
    return [Row("audit note", "no made-up targets or image-free edges (bad records quarantined)",
                "their loaders fall back to a target of 0.0 and to edges without periodic images",
                f"{data['n_quarantined']} records quarantined with reasons; all targets finite: "
                f"{finite}", f"data/processed/{r.dataset}.parquet, metrics/data.json",
                verdict(finite and data["n_clean"] == len(table)))]  # fmt: skip


# --------------------------------------------------------------------------------------------
# which stage wrote which file
# --------------------------------------------------------------------------------------------
OWN_FILES = ("paper_figures/CHECKLIST.json", "paper_figures/CHECKLIST.md", "paper_figures/INDEX.md")


def figure_index(
    root: str | Path = ".", prefixes: Sequence[str] = ("paper_figures/", "metrics/")
) -> pd.DataFrame:
    """Every output under ``prefixes`` with the DVC stage (and its notebook) that wrote it, read
    from ``dvc.lock``; the checklist stage's own files are added (its lock entry is written only
    after it ran)."""
    lock = yaml.safe_load((Path(root) / "dvc.lock").read_text())
    rows = []
    for stage, entry in lock.get("stages", {}).items():
        notebook = next((w for w in entry.get("cmd", "").split() if w.endswith(".ipynb")), "")
        for out in entry.get("outs", []):
            if out["path"].startswith(tuple(prefixes)) and out["path"] not in OWN_FILES:
                rows.append({"file": out["path"], "stage": stage, "notebook": notebook})
    rows += [{"file": f, "stage": "checklist", "notebook": "notebooks/40_checklist.ipynb"}
             for f in OWN_FILES]  # fmt: skip
    return pd.DataFrame(rows).sort_values("file", kind="stable").reset_index(drop=True)


def write_index(root: str | Path = ".", out_dir: str | Path = "paper_figures") -> Path:
    """``INDEX.md``: each regenerated figure, table and committed gpu result with its stage."""
    table = figure_index(root)
    text = "\n".join([
        "# Which stage wrote which file",
        "",
        "Read from `dvc.lock` by `tracer.audit.default_run.figure_index`; `dvc repro <stage>` "
        "rewrites a "
        "file, and `notebooks/executed/<notebook>` shows how.",
        "",
        table.to_markdown(index=False),
        "",
    ])  # fmt: skip
    path = Path(out_dir) / "INDEX.md"
    path.write_text(text)
    return path
