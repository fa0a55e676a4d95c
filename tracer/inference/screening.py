"""Screening a folder of structure files with a shipped ensemble: every file predicted, in the
errors file with its reason, or listed as skipped; written as it goes (:func:`screen`)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tracer.data.validation import ValidationConfig, structure_problems
from tracer.graphs.dataset import structure_tensors
from tracer.inference.applicability import geometry_of
from tracer.inference.predict import Ensemble
from tracer.inference.reading import describe_error, discover, disorder_hint, read_file

COLUMNS = ("source", "id", "formula", "n_atoms", "e_form_ev_per_atom", "sigma_ev_per_atom",
           "lower95_ev_per_atom", "upper95_ev_per_atom", "interval_method", "out_of_domain",
           "domain_reasons", "check_with_dft", "notes")  # fmt: skip


ERROR_COLUMNS = ("source", "id", "reason")


SKIPPED_COLUMNS = ("source", "reason")


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
