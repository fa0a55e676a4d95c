"""Screening new crystals with a trained ensemble: read structure files, validate them, predict
the formation energy per atom with every member, and say which predictions to check with DFT.

Python API::

    from tracer.inference.predict import Ensemble
    ens = Ensemble.load()                # the shipped full-profile ensemble
    ens = Ensemble.load("models/flla")   # or a trained one: member_*.pt (+ recalibration.json)
    out = ens.predict([structure, atoms])                 # pymatgen Structures or ASE Atoms
    out["mean"], out["sigma"], out["lower"], out["upper"]  # eV/atom arrays

Command line: ``tracer predict PATH... [--ensemble DIR] [--budget N] -o results.csv``.

The shipped ensemble (:data:`PRETRAINED_DIR`: five GemNet-T members of the ``full`` profile on
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

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tracer import PRETRAINED_DIR
from tracer.data.download import sha256_file
from tracer.graphs.batched import graphs_batched
from tracer.graphs.cell_lists import graph_dataset
from tracer.graphs.dataset import batches_by_size, graphs_from_arrays, structure_tensors
from tracer.inference.applicability import Domain
from tracer.inference.ensemble import member_seed
from tracer.models.gemnet import GemNetT, check_atomic_numbers
from tracer.models.gemnet_chunked import chunk_triplets
from tracer.training.checkpoints import load_member
from tracer.training.steps import compiled
from tracer.training.trainer import pick_device

Z95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
MANIFEST = "MANIFEST.json"
CALIBRATION = "calibration.json"  # the shipped interval (docs/METRICS.md)
RECALIBRATION = "recalibration.json"  # a σ-scaling factor beside pipeline-trained members
APPLICABILITY = "applicability.pt"


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
    def load(cls, directory: str | Path | None = None, *, domain: bool = True) -> Ensemble:
        """Members of ``directory`` (default: the shipped :data:`PRETRAINED_DIR`), verified
        against its ``MANIFEST.json`` when there is one (a mismatch names the file), with the
        interval of its ``recalibration.json`` and the domain of its ``applicability.pt``
        (``domain=False``: without it, as when it is fitted afresh)."""

        directory = Path(directory) if directory is not None else PRETRAINED_DIR
        members = sorted(directory.glob("member_*.pt"), key=member_seed)
        if not members:
            raise FileNotFoundError(f"no member_*.pt in {directory}")
        if (directory / MANIFEST).exists():
            verify_manifest(directory)
        graph = torch.load(members[0], map_location="cpu", weights_only=False)["graph"]
        fitted = (Domain.load(directory / APPLICABILITY)
                  if domain and (directory / APPLICABILITY).exists() else None)  # fmt: skip
        return cls(members, float(graph["cutoff"]), graph["max_neighbors"],
                   Interval.read(directory), fitted)  # fmt: skip

    def predict(self, structures: Sequence[Any], ids: Sequence[str] | None = None, *,
                device: str = "auto", batch_size: int = 256) -> dict[str, np.ndarray]:  # fmt: skip
        """Mean, σ and the 95% interval (eV/atom) of pymatgen Structures or ASE Atoms
        (converted), plus each member's prediction (``members``, ``[S, M]``)."""
        from pymatgen.io.ase import AseAtomsAdaptor


        structs = [s if hasattr(s, "lattice") else AseAtomsAdaptor.get_structure(s)
                   for s in structures]  # fmt: skip
        ids = [str(i) for i in range(len(structs))] if ids is None else [str(i) for i in ids]
        arrays = [structure_tensors(s) for s in structs]
        return self.predict_arrays(ids, arrays, device=device, batch_size=batch_size)

    def graphs(self, ids: Sequence[str], arrays: Sequence[tuple[Any, Any, Any]], *,
               device: str = "auto", workers: int = 1) -> Any:  # fmt: skip
        """The members' graphs of ``(z, pos Å, cell Å)`` tensors: built in size-sorted chunks
        on a GPU (:func:`tracer.graphs.batched.graphs_batched`); on the CPU one by one, by the
        dense search for small cells and cell lists for large ones
        (:func:`tracer.graphs.cell_lists.graph_dataset`; ``workers`` > 1: the dense search in that
        many
        processes); identical either way."""

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
        if self._models and next(self._models[0][0].parameters()).device == dev:
            return
        self._models, self._compiled = [], {}
        for path in self.members:
            model, scaler, record = load_member(path, dev)
            if getattr(model.config, "variance_head", False):
                raise ValueError(f"{path}: a member with a variance head (a study's); "
                                 "screening ensembles are the paper's kind")  # fmt: skip
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
        ``torch.compile`` (:func:`tracer.training.steps.compiled`; the first call pays the
        compilation,
        later calls of this object reuse it; a batch of one structure runs uncompiled).
        ``embedding``: also the structures' final atom embeddings averaged over atoms and
        members (``embedding``, ``[S, emb_size_atom]``), for the applicability domain."""


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


