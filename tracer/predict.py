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
FLLA, weight matrices in float16, with ``calibration.json``, ``applicability.pt``, ``ood.json``,
``MODEL_CARD.md`` and ``MANIFEST.json``) is checked against its manifest's sha256 sums whenever
it is loaded.

Uncertainty: ``sigma`` is the members' spread (ddof 0). The 95% interval is ``mean ± q · σ``
with ``q`` the split-conformal quantile of the normalised validation residuals ``|y - mean| / σ``
(``scale_or_quantile`` in ``calibration.json``; its coverage on the held-out test split is
measured and stated there and in the model card). A file with only a σ-scaling factor ``s``
gives ``mean ± 1.96 · s · σ``; without a file the interval is ``mean ± 1.96 · σ`` and the output
says so. The CSV names the method in ``interval_method``. A structure is flagged "check with DFT"
when the half-width exceeds ``threshold`` (eV/atom) or it is out of the training domain
(:mod:`tracer.inference.applicability`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracer.download import sha256_file

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
PRETRAINED_DIR = Path(__file__).parent / "pretrained" / "flla_gemnet_t"
MANIFEST = "MANIFEST.json"
CALIBRATION = "calibration.json"  # the shipped interval (docs/METRICS.md)
RECALIBRATION = "recalibration.json"  # a σ-scaling factor beside pipeline-trained members
APPLICABILITY = "applicability.pt"
COLUMNS = ("source", "id", "formula", "n_atoms", "e_form_ev_per_atom", "sigma_ev_per_atom",
           "lower95_ev_per_atom", "upper95_ev_per_atom", "interval_method", "out_of_domain",
           "domain_reasons", "check_with_dft", "notes")  # fmt: skip
ERROR_COLUMNS = ("source", "id", "reason")
SKIPPED_COLUMNS = ("source", "reason")


@dataclass(frozen=True)
class Interval:
    """How the 95% interval is made: ``mean ± factor · σ`` (eV/atom), with the method's name and
    the file it was read from (``None``: no recalibration found)."""

    factor: float
    method: str
    source: str | None = None
    sigma_scale: float | None = None

    @classmethod
    def read(cls, directory: Path) -> Interval:
        """From ``calibration.json`` (the shipped split-conformal quantile) or
        ``recalibration.json`` beside the members, else ``metrics/uncertainty.json`` of the run
        that trained them: the conformal quantile when there is one, else σ-scaling."""
        for cand in (directory / CALIBRATION, directory / RECALIBRATION,
                     Path("metrics") / "uncertainty.json"):  # fmt: skip
            if cand.exists():
                rec = json.loads(cand.read_text())
                scale = rec.get("sigma_scale")
                q = rec.get("conformal_quantile", rec.get("scale_or_quantile"))
                if q is not None:
                    return cls(float(q), "split-conformal 95% (σ-normalised residuals, "
                               "validation)", str(cand), scale)  # fmt: skip
                if scale is not None:
                    return cls(Z95 * float(scale), "σ-scaling (validation), Gaussian 95%",
                               str(cand), float(scale))  # fmt: skip
        return cls(Z95, "raw σ, Gaussian 95% (no recalibration found)")


@dataclass
class Ensemble:
    """Trained members (``member_*.pt``) with their graph settings, interval and (when shipped)
    the applicability domain fitted on their training set."""

    members: list[Path]
    cutoff: float
    max_neighbors: int | None
    interval: Interval
    domain: Any = None
    _models: list[tuple[Any, Any]] = field(default_factory=list, repr=False)
    _precision: str = field(default="fp32", repr=False)
    _compiled: dict[int, Any] = field(default_factory=dict, repr=False)

    @property
    def sigma_scale(self) -> float | None:
        """The σ-scaling factor of the recalibration file (reported beside the interval)."""
        return self.interval.sigma_scale

    @property
    def recalibration_source(self) -> str | None:
        return self.interval.source

    @classmethod
    def load(cls, directory: str | Path | None = None) -> Ensemble:
        """Members of ``directory`` (default: the shipped :data:`PRETRAINED_DIR`), verified
        against its ``MANIFEST.json`` when there is one (a mismatch names the file), with the
        interval of its ``recalibration.json`` and the domain of its ``applicability.pt``."""
        import torch

        from tracer.ensemble import member_seed
        from tracer.inference.applicability import Domain

        directory = Path(directory) if directory is not None else PRETRAINED_DIR
        members = sorted(directory.glob("member_*.pt"), key=member_seed)
        if not members:
            raise FileNotFoundError(f"no member_*.pt in {directory}")
        if (directory / MANIFEST).exists():
            verify_manifest(directory)
        graph = torch.load(members[0], map_location="cpu", weights_only=False)["graph"]
        domain = Domain.load(directory / APPLICABILITY) if (directory / APPLICABILITY).exists() \
            else None  # fmt: skip
        return cls(members, float(graph["cutoff"]), graph["max_neighbors"],
                   Interval.read(directory), domain)  # fmt: skip

    def predict(self, structures: Sequence[Any], ids: Sequence[str] | None = None, *,
                device: str = "auto", batch_size: int = 256) -> dict[str, np.ndarray]:  # fmt: skip
        """Mean, σ and the 95% interval (eV/atom) of pymatgen Structures or ASE Atoms
        (converted), plus each member's prediction (``members``, ``[S, M]``)."""
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
        on a GPU (:func:`tracer.batched_graphs.graphs_batched`); on the CPU one by one, by the
        dense search for small cells and cell lists for large ones
        (:func:`tracer.neighbors.graph_dataset`; ``workers`` > 1: the dense search in that many
        processes); identical either way."""
        from tracer.batched_graphs import graphs_batched
        from tracer.dataset import graphs_from_arrays
        from tracer.neighbors import graph_dataset
        from tracer.train import pick_device

        dev = pick_device(device)
        if dev.type == "cuda":
            return graphs_batched(ids, arrays, None, cutoff=self.cutoff,
                                  max_neighbors=self.max_neighbors, device=dev)  # fmt: skip
        if workers > 1:
            return graphs_from_arrays(ids, arrays, None, cutoff=self.cutoff,
                                      max_neighbors=self.max_neighbors,
                                      workers=workers)  # fmt: skip
        return graph_dataset(ids, arrays, cutoff=self.cutoff, max_neighbors=self.max_neighbors)

    def _load_models(self, dev: Any) -> None:
        from tracer.models.gemnet import GemNetT
        from tracer.models.gemnet_chunked import chunk_triplets
        from tracer.train import load_member

        if self._models and next(self._models[0][0].parameters()).device == dev:
            return
        self._models, self._compiled = [], {}
        for path in self.members:
            model, scaler, record = load_member(path, dev)
            if isinstance(model, GemNetT):  # large cells in bounded memory (same numbers)
                chunk_triplets(model)
            self._models.append((model, scaler))
            self._precision = record.get("train_config", {}).get("precision", "fp32")

    def predict_arrays(self, ids: Sequence[str], arrays: Sequence[tuple[Any, Any, Any]], *,
                       device: str = "auto", batch_size: int = 256, workers: int = 1,
                       compile: bool = False, max_edges: int = 400_000,
                       embedding: bool = False,
                       data: Any = None) -> dict[str, np.ndarray]:  # fmt: skip
        """:meth:`predict` from ``(z, pos Å, cell Å)`` tensors (no pymatgen): graphs built once
        (:meth:`graphs`, or ``data`` when given) and moved to the device, then every member
        (loaded once and kept) in inference mode over batches of at most ``batch_size``
        structures and ``max_edges`` edges. ``compile``: the members run through
        ``torch.compile`` (:func:`tracer.steps.compiled`; the first call pays the compilation,
        later calls of this object reuse it; a batch of one structure runs uncompiled).
        ``embedding``: also the structures' final atom embeddings averaged over atoms and
        members (``embedding``, ``[S, emb_size_atom]``), for the applicability domain."""
        import torch

        from tracer.dataset import batches_by_size
        from tracer.models.gemnet import check_atomic_numbers
        from tracer.train import pick_device

        dev = pick_device(device)
        if data is None:
            data = self.graphs(ids, arrays, device=device, workers=workers)
        self._load_models(dev)
        for model, _ in self._models:
            check_atomic_numbers(data.z, model.config.num_elements)
        data_dev = data.to(dev)
        order = batches_by_size(np.arange(len(data)), data.num_edges().numpy(),
                                batch_size=batch_size, max_edges=max_edges,
                                shuffle=False)  # fmt: skip
        preds = np.zeros((len(data), len(self._models)))
        emb: list[Any] = []
        hooks = []
        if embedding:
            for model, _ in self._models:
                hooks.append(model.int_blocks[-1].register_forward_hook(
                    lambda _m, _i, out: emb.append(out[0].detach())))  # fmt: skip
        embeds = np.zeros((len(data), self._models[0][0].config.emb_size_atom)) if embedding \
            else None  # fmt: skip
        runs = [self._runner(k) if compile else model for k, (model, _) in enumerate(self._models)]
        # matmuls in the precision the members were trained and scored in (TF32 on the gpu
        # profile, measured harmless: docs/performance.md); the process's switch is restored
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
                    if embeds is not None:
                        per_atom = torch.stack(emb).double().mean(0)
                        embeds[b] = batch.structure_mean(per_atom).cpu().numpy()
                        emb.clear()
            for m, (_, scaler) in enumerate(self._models):
                preds[:, m] = scaler.inverse(preds[:, m])
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
            for h in hooks:
                h.remove()
        mean, sigma = preds.mean(axis=1), preds.std(axis=1, ddof=0)
        half = self.interval.factor * sigma
        out_dict = {"mean": mean, "sigma": sigma, "lower": mean - half, "upper": mean + half,
                    "members": preds}  # fmt: skip
        if embeds is not None:
            out_dict["embedding"] = embeds
        return out_dict

    def _runner(self, k: int) -> Any:
        """Member ``k`` compiled (once per loaded member)."""
        from tracer.steps import compiled

        if k not in self._compiled:
            self._compiled[k] = compiled(self._models[k][0])
        return self._compiled[k]


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


class _Table:
    """A CSV written row by row as the run goes (header first, flushed after every write)."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = path
        self._fh = path.open("w", newline="")
        self._writer = csv.writer(self._fh)
        self._writer.writerow(columns)
        self.rows = 0

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        self._writer.writerows(rows)
        self._fh.flush()
        self.rows += len(rows)

    def close(self) -> None:
        self._fh.close()


@dataclass
class _Pending:
    """Structures read and validated, waiting for the next prediction chunk."""

    sources: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    formulas: list[str] = field(default_factory=list)
    arrays: list[tuple[Any, Any, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def screen(
    paths: Sequence[str | Path],
    output: str | Path,
    *,
    ensemble: str | Path | None = None,
    budget: int | None = None,
    threshold: float = 0.1,
    device: str = "auto",
    force: bool = False,
    chunk: int = 256,
    progress: bool = False,
) -> dict[str, Any]:
    """``tracer predict``: every file under ``paths`` ends in exactly one place. Predictions go
    to ``output`` (CSV, :data:`COLUMNS`), structures that cannot be read, fail validation or fail
    inside the model to ``<output>.errors.csv`` (source, id, reason), files that hold no
    structure format to ``<output>.skipped.csv`` (source, reason); with ``budget``, the
    ``budget`` structures with the widest intervals to ``<output>.budget.csv``. Structures are
    read, predicted and written ``chunk`` at a time (memory bounded by a chunk, outputs written
    as the run goes); a failure inside one structure is written as its error and the run goes
    on. Existing outputs are kept unless ``force``."""
    from tqdm.auto import tqdm

    from tracer.inference.reading import describe_error, discover, read_file

    out = Path(output)
    paths_out = {k: out.with_name(f"{out.stem}.{k}.csv") for k in ("errors", "skipped", "budget")}
    written = [out, paths_out["errors"], paths_out["skipped"]] + (
        [paths_out["budget"]] if budget else [])  # fmt: skip
    existing = [str(p) for p in written if p.exists()]
    if existing and not force:
        raise FileExistsError(f"would overwrite {', '.join(existing)} (use --force)")
    ens = Ensemble.load(ensemble)
    found = discover(paths)
    out.parent.mkdir(parents=True, exist_ok=True)
    preds = _Table(out, COLUMNS)
    errors = _Table(paths_out["errors"], ERROR_COLUMNS)
    skipped = _Table(paths_out["skipped"], SKIPPED_COLUMNS)
    skipped.write(found.skipped)
    errors.write([(src, "", why) for src, why in found.missing])
    accounted = {src for src, _ in found.skipped}
    ranking: list[tuple[float, list[Any]]] = []
    pending = _Pending()
    seen: set[str] = set()
    try:
        for path, fmt in tqdm(found.files, desc="screening", unit="file", disable=not progress):
            try:
                items = read_file(path, fmt)
            except Exception as err:
                errors.write([(str(path), path.stem, describe_error(err))])
                accounted.add(str(path))
                continue
            for sid, item, notes in items:
                if sid in seen:
                    sid = f"{sid}@{path.parent.name or path.parent}"
                seen.add(sid)
                problem = _problem(item, ens.cutoff)
                if problem:
                    errors.write([(str(path), sid, problem)])
                    accounted.add(str(path))
                    continue
                _queue(pending, str(path), sid, item, notes)
            if len(pending) >= chunk:
                accounted |= _flush(ens, pending, preds, errors, ranking, threshold, device)
                pending = _Pending()
        accounted |= _flush(ens, pending, preds, errors, ranking, threshold, device)
    finally:
        for table in (preds, errors, skipped):
            table.close()
    lost = sorted({str(p) for p, _ in found.files} - accounted)
    if lost:  # every file must be in one of the outputs; anything else is a bug here
        raise RuntimeError(f"files neither predicted, nor in errors, nor skipped: {lost[:5]}")
    if budget:
        top = sorted(ranking, key=lambda r: -r[0])[:budget]
        with paths_out["budget"].open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            w.writerows(row for _, row in top)
    return {
        "files": len(found.files) + len(found.skipped),
        "predicted": preds.rows,
        "errors": errors.rows,
        "skipped": skipped.rows,
        "flagged": sum(1 for _, row in ranking if row[COLUMNS.index("check_with_dft")]),
        "out_of_domain": sum(1 for _, row in ranking if row[COLUMNS.index("out_of_domain")]),
        "interval_method": ens.interval.method,
        "sigma_scale": ens.sigma_scale,
        "recalibration": ens.recalibration_source or "none found: interval from raw σ",
        "outputs": [str(p) for p in written],
    }


def _problem(item: Any, cutoff: float) -> str:
    """Why a read structure cannot be predicted ('' when it can)."""
    from tracer.inference.reading import describe_error, disorder_hint
    from tracer.validation import ValidationConfig, structure_problems

    if isinstance(item, Exception):
        return describe_error(item)
    try:
        problems = structure_problems(item, ValidationConfig(graph_cutoff_angstrom=cutoff))
    except Exception as err:
        return f"structure check failed: {type(err).__name__}: {err}"
    if any(p.startswith("disordered") for p in problems):
        problems = [f"{p}: {disorder_hint()}" if p.startswith("disordered") else p
                    for p in problems]  # fmt: skip
    return "; ".join(problems)


def _queue(pending: _Pending, source: str, sid: str, structure: Any, notes: list[str]) -> None:
    from tracer.dataset import structure_tensors

    pending.sources.append(source)
    pending.ids.append(sid)
    pending.formulas.append(structure.composition.reduced_formula)
    pending.arrays.append(structure_tensors(structure))
    pending.notes.append("; ".join(notes))


def _flush(ens: Ensemble, pending: _Pending, preds: _Table, errors: _Table,
           ranking: list[tuple[float, list[Any]]], threshold: float,
           device: str) -> set[str]:  # fmt: skip
    """Predict a chunk and write its rows; a chunk that fails is retried one structure at a
    time, so that the failing structure is named and the others predicted. Returns the
    sources written."""
    if not len(pending):
        return set()
    try:
        rows = _predict_rows(ens, pending, range(len(pending)), threshold, device)
    except Exception:
        rows = []
        for k in range(len(pending)):
            try:
                rows += _predict_rows(ens, pending, [k], threshold, device)
            except Exception as err:  # e.g. out of memory inside one structure
                errors.write([(pending.sources[k], pending.ids[k],
                               f"prediction failed: {type(err).__name__}: {err}")])  # fmt: skip
    preds.write(rows)
    sigma_col = COLUMNS.index("sigma_ev_per_atom")
    ranking += [(float(r[sigma_col]), r) for r in rows]
    return set(pending.sources)


def _predict_rows(ens: Ensemble, pending: _Pending, which: Sequence[int], threshold: float,
                  device: str) -> list[list[Any]]:  # fmt: skip
    from tracer.inference.applicability import geometry_of

    which = list(which)
    ids = [pending.ids[k] for k in which]
    arrays = [pending.arrays[k] for k in which]
    data = ens.graphs(ids, arrays, device="cpu")
    out = ens.predict_arrays(ids, arrays, device=device, data=data,
                             embedding=ens.domain is not None)  # fmt: skip
    if ens.domain is not None:
        reasons = ens.domain.check(geometry_of(data), out["embedding"])
    else:
        reasons = [["no applicability domain shipped with these members"]] * len(ids)
    rows = []
    for j, k in enumerate(which):
        ood = bool(ens.domain is not None and reasons[j])
        half = float(out["upper"][j] - out["mean"][j])
        rows.append([pending.sources[k], pending.ids[k], pending.formulas[k],
                     len(pending.arrays[k][0]), float(out["mean"][j]), float(out["sigma"][j]),
                     float(out["lower"][j]), float(out["upper"][j]), ens.interval.method, ood,
                     "; ".join(reasons[j]), bool(half > threshold or ood),
                     pending.notes[k]])  # fmt: skip
    return rows
