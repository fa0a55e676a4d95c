"""Screening new crystals with a trained ensemble: read structure files, validate them, predict
the formation energy per atom with every member, and say which predictions to check with DFT.

Python API::

    from tracer.predict import Ensemble
    ens = Ensemble.load()                # the shipped gpu-profile ensemble
    ens = Ensemble.load("models/flla")   # or a trained one: member_*.pt (+ recalibration.json)
    out = ens.predict([structure, atoms])                 # pymatgen Structures or ASE Atoms
    out["mean"], out["sigma"], out["lower"], out["upper"]  # eV/atom arrays

Command line: ``tracer predict PATH... [--ensemble DIR] [--budget N] -o results.csv``.

The shipped ensemble (:data:`PRETRAINED_DIR`: five GemNet-T members of the ``gpu`` profile on
FLLA, weight matrices in float16, with ``recalibration.json``, ``MODEL_CARD.md`` and
``MANIFEST.json``) is checked against its manifest's sha256 sums whenever it is loaded.

Uncertainty: ``sigma`` is the members' spread (ddof 0); the 95% interval is
``mean ± 1.96 · sigma_scale · sigma`` with the σ-scaling factor fitted on the validation set by
the uncertainty stage (``recalibration.json`` beside the members, else ``metrics/uncertainty.json``
of the run that trained them; without one the factor is 1 and the output says so). A structure
is flagged "check with DFT" when the half-width of that interval exceeds ``threshold`` (eV/atom).
"""

from __future__ import annotations

import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracer.download import sha256_file

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
SUFFIXES = {".cif": "cif", ".vasp": "poscar", ".poscar": "poscar", ".xyz": "extxyz",
            ".extxyz": "extxyz", ".json": "json"}  # fmt: skip
POSCAR_NAMES = ("POSCAR", "CONTCAR")
PRETRAINED_DIR = Path(__file__).parent / "pretrained" / "flla_gemnet_t"
MANIFEST = "MANIFEST.json"
COLUMNS = ("source", "id", "formula", "e_form_ev_per_atom", "sigma_ev_per_atom",
           "lower95_ev_per_atom", "upper95_ev_per_atom", "check_with_dft")  # fmt: skip


@dataclass
class ReadResult:
    """Structures read from files (``source`` file, ``id``, pymatgen ``Structure``) and the
    items that could not be read or failed validation (``source``, ``id``, ``reason``)."""

    items: list[tuple[str, str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)


def expand_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str, str]]]:
    """Files named, found in folders (recursively, known suffixes and POSCAR/CONTCAR) or matched
    by globs, in order without repeats; a path that matches nothing is an error."""
    files: list[Path] = []
    errors: list[tuple[str, str, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _kind(f) is not None)
        elif p.is_file():
            found = [p]
        else:
            found = sorted(
                Path(m) for m in glob.glob(str(raw), recursive=True) if Path(m).is_file()
            )
        if not found:
            errors.append((str(raw), "", "no such file, or no structure file in it"))
        files += [f for f in found if f not in files]
    return files, errors


def _kind(path: Path) -> str | None:
    if path.name.split(".")[0] in POSCAR_NAMES:
        return "poscar"
    return SUFFIXES.get(path.suffix.lower())


def _read_file(path: Path) -> list[tuple[str, Any]]:
    """``(id, Structure)`` of every structure in one file (ids: the file stem, ``stem-k`` when
    a file holds several)."""
    import warnings

    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.io.cif import CifParser
    from pymatgen.io.vasp import Poscar

    kind = _kind(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "cif":
            structures = CifParser(str(path)).parse_structures(primitive=False)
        elif kind == "poscar":
            structures = [Poscar.from_file(str(path)).structure]
        elif kind == "extxyz":
            from ase.io import read

            structures = [AseAtomsAdaptor.get_structure(a) for a in read(str(path), index=":")]
        elif kind == "json":
            payload = json.loads(path.read_text())
            dicts = payload if isinstance(payload, list) else [payload]
            structures = [Structure.from_dict(d) for d in dicts]
        else:
            raise ValueError(f"unknown structure file type {path.suffix!r}")
    if not structures:
        raise ValueError("no structure in the file")
    if len(structures) == 1:
        return [(path.stem, structures[0])]
    return [(f"{path.stem}-{k}", s) for k, s in enumerate(structures)]


def read_structures(paths: Sequence[str | Path], *, cutoff: float, min_distance: float = 0.5,
                    max_atomic_number: int = 100) -> ReadResult:  # fmt: skip
    """Read every structure of ``paths`` and validate it as the pipeline validates its data
    (:func:`tracer.validation.structure_problems`); unreadable files and invalid structures go
    to ``errors`` with the reason, and reading goes on."""
    from tracer.validation import ValidationConfig, structure_problems

    config = ValidationConfig(min_distance_angstrom=min_distance, graph_cutoff_angstrom=cutoff,
                              max_atomic_number=max_atomic_number)  # fmt: skip
    files, errors = expand_paths(paths)
    result = ReadResult(errors=errors)
    seen: set[str] = set()
    for path in files:
        try:
            found = _read_file(path)
        except Exception as err:
            result.errors.append((str(path), path.stem, f"unreadable: {type(err).__name__}: {err}"))
            continue
        for sid, structure in found:
            if sid in seen:
                sid = f"{sid}@{path.parent.name or path.parent}"
            problems = structure_problems(structure, config)
            if problems:
                result.errors.append((str(path), sid, "; ".join(problems)))
                continue
            seen.add(sid)
            result.items.append((str(path), sid, structure))
    return result


@dataclass
class Ensemble:
    """Trained members (``member_*.pt``) with their graph settings and σ-scaling factor."""

    members: list[Path]
    cutoff: float
    max_neighbors: int | None
    sigma_scale: float | None
    recalibration_source: str | None
    _models: list[tuple[Any, Any]] = field(default_factory=list, repr=False)
    _precision: str = field(default="fp32", repr=False)
    _compiled: dict[int, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, directory: str | Path | None = None) -> Ensemble:
        """Members of ``directory`` (default: the shipped :data:`PRETRAINED_DIR`), verified
        against its ``MANIFEST.json`` when there is one (a mismatch names the file)."""
        import torch

        from tracer.ensemble import member_seed

        directory = Path(directory) if directory is not None else PRETRAINED_DIR
        members = sorted(directory.glob("member_*.pt"), key=member_seed)
        if not members:
            raise FileNotFoundError(f"no member_*.pt in {directory}")
        if (directory / MANIFEST).exists():
            verify_manifest(directory)
        graph = torch.load(members[0], map_location="cpu", weights_only=False)["graph"]
        scale, source = None, None
        for cand in (directory / "recalibration.json", Path("metrics") / "uncertainty.json"):
            if cand.exists():
                scale, source = float(json.loads(cand.read_text())["sigma_scale"]), str(cand)
                break
        return cls(members, float(graph["cutoff"]), graph["max_neighbors"], scale, source)

    def predict(self, structures: Sequence[Any], ids: Sequence[str] | None = None, *,
                device: str = "auto", batch_size: int = 256) -> dict[str, np.ndarray]:  # fmt: skip
        """Mean, σ and the recalibrated 95% interval (eV/atom) of pymatgen Structures or ASE
        Atoms (converted), plus each member's prediction (``members``, ``[S, M]``)."""
        from pymatgen.io.ase import AseAtomsAdaptor

        from tracer.dataset import structure_tensors

        structs = [s if hasattr(s, "lattice") else AseAtomsAdaptor.get_structure(s)
                   for s in structures]  # fmt: skip
        ids = [str(i) for i in range(len(structs))] if ids is None else [str(i) for i in ids]
        arrays = [structure_tensors(s) for s in structs]
        return self.predict_arrays(ids, arrays, device=device, batch_size=batch_size)

    def graphs(self, ids: Sequence[str], arrays: Sequence[tuple[Any, Any, Any]], *,
               device: str = "auto", workers: int = 1) -> Any:  # fmt: skip
        """The members' graphs of ``(z, pos Å, cell Å)`` tensors: built in size-sorted chunks
        on a GPU (:func:`tracer.batched_graphs.graphs_batched`), one by one on the CPU
        (in ``workers`` processes), identical either way."""
        from tracer.batched_graphs import graphs_batched
        from tracer.dataset import graphs_from_arrays
        from tracer.train import pick_device

        dev = pick_device(device)
        if dev.type == "cuda":
            return graphs_batched(ids, arrays, None, cutoff=self.cutoff,
                                  max_neighbors=self.max_neighbors, device=dev)  # fmt: skip
        return graphs_from_arrays(ids, arrays, None, cutoff=self.cutoff,
                                  max_neighbors=self.max_neighbors, workers=workers)  # fmt: skip

    def predict_arrays(self, ids: Sequence[str], arrays: Sequence[tuple[Any, Any, Any]], *,
                       device: str = "auto", batch_size: int = 256, workers: int = 1,
                       compile: bool = False) -> dict[str, np.ndarray]:  # fmt: skip
        """:meth:`predict` from ``(z, pos Å, cell Å)`` tensors (no pymatgen): graphs built once
        (:meth:`graphs`) and moved to the device, then every member (loaded once and kept) in
        inference mode over batches of at most ``batch_size`` structures. ``compile``: the
        members run through ``torch.compile`` (:func:`tracer.steps.compiled`; the first call
        pays the compilation, later calls of this object reuse it; a batch of one structure
        runs uncompiled)."""
        import torch

        from tracer.dataset import batches_by_size
        from tracer.models.gemnet import check_atomic_numbers
        from tracer.train import load_member, pick_device

        dev = pick_device(device)
        data = self.graphs(ids, arrays, device=device, workers=workers)
        if not self._models or next(self._models[0][0].parameters()).device != dev:
            self._models, self._compiled = [], {}
            for path in self.members:
                model, scaler, record = load_member(path, dev)
                self._models.append((model, scaler))
                self._precision = record.get("train_config", {}).get("precision", "fp32")
        for model, _ in self._models:
            check_atomic_numbers(data.z, model.config.num_elements)
        data_dev = data.to(dev)
        order = batches_by_size(np.arange(len(data)), data.num_edges().numpy(),
                                batch_size=batch_size, shuffle=False)  # fmt: skip
        preds = np.zeros((len(data), len(self._models)))
        runs = [self._runner(k) if compile else model for k, (model, _) in enumerate(self._models)]
        # matmuls in the precision the members were trained and scored in (TF32 on the gpu
        # profile: NOTES.md 12 measured it harmless); the process's switch is restored after
        tf32 = self._precision == "tf32" and dev.type == "cuda"
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32 or before
        try:
            with torch.inference_mode():
                for b in order:  # each batch (and its triplets) cut once for every member
                    batch = data_dev.collate(b)
                    # torch specialises a size of 1 and compiles again; one-structure
                    # batches run uncompiled (torch 2.13's CPU code generation fails on them)
                    use = runs if len(b) > 1 else [model for model, _ in self._models]
                    out = torch.stack([run(batch).double() for run in use], 1)
                    preds[b] = out.cpu().numpy()
            for m, (_, scaler) in enumerate(self._models):
                preds[:, m] = scaler.inverse(preds[:, m])
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
        mean, sigma = preds.mean(axis=1), preds.std(axis=1, ddof=0)
        half = Z95 * (self.sigma_scale or 1.0) * sigma
        return {"mean": mean, "sigma": sigma, "lower": mean - half, "upper": mean + half,
                "members": preds}  # fmt: skip

    def _runner(self, k: int) -> Any:
        """Member ``k`` compiled (once per loaded member)."""
        from tracer.steps import compiled

        if k not in self._compiled:
            self._compiled[k] = compiled(self._models[k][0])
        return self._compiled[k]


def screen(
    paths: Sequence[str | Path],
    output: str | Path,
    *,
    ensemble: str | Path | None = None,
    budget: int | None = None,
    threshold: float = 0.1,
    device: str = "auto",
    force: bool = False,
) -> dict[str, Any]:
    """``tracer predict``: predictions for every good structure into ``output`` (CSV), the bad
    ones into ``<output>.errors.csv``, and with ``budget`` the ``budget`` structures with the
    widest intervals into ``<output>.budget.csv``. Existing outputs are kept unless ``force``."""
    out = Path(output)
    errors_path = out.with_name(out.stem + ".errors.csv")
    budget_path = out.with_name(out.stem + ".budget.csv")
    written = [out, errors_path] + ([budget_path] if budget else [])
    existing = [str(p) for p in written if p.exists()]
    if existing and not force:
        raise FileExistsError(f"would overwrite {', '.join(existing)} (use --force)")
    ens = Ensemble.load(ensemble)
    read = read_structures(paths, cutoff=ens.cutoff)
    rows = pd.DataFrame(columns=list(COLUMNS))
    if read.items:
        sources, ids, structures = zip(*read.items, strict=True)
        pred = ens.predict(structures, ids, device=device)
        formulas = [s.composition.reduced_formula for s in structures]
        values = (sources, ids, formulas, pred["mean"], pred["sigma"], pred["lower"],
                  pred["upper"], (pred["upper"] - pred["mean"]) > threshold)  # fmt: skip
        rows = pd.DataFrame(dict(zip(COLUMNS, values, strict=True)))
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(out, index=False)
    pd.DataFrame(read.errors, columns=["source", "id", "reason"]).to_csv(errors_path, index=False)
    if budget:
        top = rows.sort_values("sigma_ev_per_atom", ascending=False, kind="stable").head(budget)
        top.to_csv(budget_path, index=False)
    return {
        "predicted": len(rows),
        "errors": len(read.errors),
        "flagged": int(rows["check_with_dft"].sum()) if len(rows) else 0,
        "sigma_scale": ens.sigma_scale,
        "recalibration": ens.recalibration_source or "none found: interval from raw σ",
        "files": [str(p) for p in written],
    }


def write_manifest(folder: str | Path) -> Path:
    """``MANIFEST.json``: the sha256 and size of every other file of ``folder``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in files}
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def verify_manifest(folder: str | Path) -> None:
    """Raise ``ValueError`` naming every file of ``folder``'s manifest that is missing or whose
    sha256 differs, and every member file the manifest does not list."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    bad = [
        f"{name} ({'missing' if not (folder / name).exists() else 'sha256 differs'})"
        for name, entry in manifest.items()
        if not (folder / name).exists() or sha256_file(folder / name) != entry["sha256"]
    ]
    bad += [f"{p.name} (not in the manifest)" for p in folder.glob("member_*.pt")
            if p.name not in manifest]  # fmt: skip
    if bad:
        raise ValueError(f"{folder}: ensemble files fail their checksums: {', '.join(bad)}")
