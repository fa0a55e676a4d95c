"""Shipping a trained ensemble: members in half precision, the manifest, the calibration and the
model card (``tracer release``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from tracer.analysis.domain_cv import search_of
from tracer.inference.applicability import SYMPREC
from tracer.inference.domain_study import MIN_DETECTION, accepts, min_detection_to_accept
from tracer.inference.predict import CALIBRATION, write_manifest
from tracer.pipeline.paths import Paths
from tracer.pipeline.record_stages import DERIVED_METRICS
from tracer.pipeline.speed_records import _compiled_note

CV_DOMAINS = tuple(Path(f"results/{run}/cv_domain.json")
                   for run in ("flla_cv5", "flla_cv5_seed7", "flla_cv5_seed11", "flla_cv5_seed13"))
"""The shipped recipe's domain measured out of fold (``tracer record-cv``), one record per fold
file; the card quotes the first whose search design and validation budget are the shipped
domain's (:func:`matching_cv_domain`)."""


def matching_cv_domain(domain: dict[str, Any] | None,
                       candidates: Sequence[str | Path] = CV_DOMAINS) -> Path | None:  # fmt: skip
    """The first of ``candidates`` (``cv_domain.json`` records) that exists and was fitted with
    the search design and validation budget of ``domain`` (an ``ood.json``); None if none was.
    Records written before either key existed mean ``tied`` and the default budget."""
    if not domain:
        return None
    for path in map(Path, candidates):
        if path.exists() and search_of(json.loads(path.read_text())) == search_of(domain):
            return path
    return None


def half_precision_member(src: str | Path, dst: str | Path) -> Path:
    """Copy a member file with its weight matrices (floating tensors of two or more dimensions)
    stored as float16; vectors (biases, norms, fitted scale factors) stay float32. Loading
    casts them back to the model's float32 parameters."""
    record = torch.load(Path(src), map_location="cpu", weights_only=False)
    record["state_dict"] = {
        k: (v.half() if v.is_floating_point() and v.dim() >= 2 else v)
        for k, v in record["state_dict"].items()
    }
    record["stored_dtype"] = "float16 matrices, float32 vectors"
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(record, dst)
    return dst


def release(
    folder: str | Path,
    results_dir: str | Path,
    params: dict[str, Any],
    *,
    derived_dir: str | Path = DERIVED_METRICS,
) -> Path:
    """``tracer release``: give a shipped folder whose half-precision members are
    ``results_dir``'s run (its ``half_precision_check.json`` names the folder) its calibration,
    model card and manifest (:func:`ship_pretrained`). Raises ``ValueError`` naming the reason
    when the folder is not that run's or the run's reliability records are not its own."""
    folder, results_dir = Path(folder), Path(results_dir)
    check = json.loads((results_dir / "half_precision_check.json").read_text())
    if not check.get("passed") or not check.get("shipped_to"):
        raise ValueError(f"{results_dir}: its members were not shipped (half-precision check)")
    if Path(check["shipped_to"]).resolve() != folder.resolve():
        raise ValueError(f"{folder} does not hold {results_dir}'s members "
                         f"(they were shipped to {check['shipped_to']})")  # fmt: skip
    return ship_pretrained(folder, results_dir, params, derived_dir=derived_dir)


def strain_tails(domain: dict[str, Any]) -> str:
    """How an ``ood.json``'s strain check (median bond deviation) was cut, for the model card:
    one tail for both sides (``tied``) or each side its own (``split-tails``, which also bounds
    the widest empty slab above only)."""
    sq, sl = domain["strain_quantile"], domain.get("strain_low_quantile")
    if sl is None:
        return f"{sq:.2%} for the median bond deviation"
    return (f"{sq:.2%} above and {sl:.2%} below for the median bond deviation; the widest "
            "empty slab bounded above only")


def acceptance_line(domain: dict[str, Any]) -> str:
    """Whether ``tracer fit-domain`` accepts the domain of record ``domain`` (``ood.json``),
    with its worst kind of shifted validation copies and the share an accepted fit needs."""
    val = {k: v["flagged_fraction_val"] for k, v in domain["shift_detection"].items()}
    kind = min(val, key=val.__getitem__)
    worst = val[kind]
    need = min_detection_to_accept(domain["n_val"])
    verdict = "Accepted" if accepts(domain) else "**Not accepted**"
    return (f"{verdict} by `tracer fit-domain`: its worst kind of shifted validation copies "
            f"({kind}, {worst:.1%} flagged) against the {need:.1%} an accepted fit needs (the "
            f"{MIN_DETECTION:.0%} goal plus two binomial standard errors over "
            f"{domain['n_val']} validation structures)")


def release_texts(
    folder: str | Path,
    results_dir: str | Path,
    params: dict[str, Any],
    *,
    derived_dir: str | Path = DERIVED_METRICS,
    cv_domain: str | Path | Literal["matching"] | None = "matching",
) -> dict[str, str]:
    """What :func:`ship_pretrained` writes besides the manifest, by file name, as text:
    ``calibration.json`` and ``MODEL_CARD.md``, every number read from the run's records
    (``results_dir``), the run_of_record stage's analyses of them (``derived_dir``) and, where
    it exists, the domain measured out of fold (``cv_domain``: a record, None for none, or
    ``"matching"``: the one of :func:`matching_cv_domain`)."""
    folder, results_dir, derived_dir = Path(folder), Path(results_dir), Path(derived_dir)
    stale = stale_records(results_dir, derived_dir)
    if stale is not None:
        raise ValueError(f"{stale}: run `dvc repro run_of_record` first")

    def read(name: str) -> dict[str, Any]:
        here = derived_dir / name if (derived_dir / name).exists() else results_dir / name
        return json.loads(here.read_text())

    names = ("uncertainty", "failures", "accuracy", "training", "half_precision_check")
    unc, fail, acc, train, half = (read(f"{n}.json") for n in names)
    calibration = {"method": "split-conformal, σ-normalised residuals |y - mean| / σ",
                   "scale_or_quantile": unc["conformal_quantile"],
                   "interval": "mean ± scale_or_quantile · σ (eV/atom)",
                   "test_coverage95": unc["conformal_coverage95"],
                   "n_test": unc["n_test"],
                   "mean_halfwidth_test_ev_per_atom": unc["conformal_mean_halfwidth"],
                   "fitted_on": f"validation set ({unc['n_val']} structures)",
                   "sigma_scale": unc["sigma_scale"],
                   "test_coverage95_sigma_scaled": unc["coverage95_recal"],
                   "source": str(derived_dir / "uncertainty.json")}  # fmt: skip
    transfer = read("transfer.json") if (results_dir / "transfer.json").exists() else None
    domain = json.loads((folder / "ood.json").read_text()) if (folder / "ood.json").exists() \
        else None  # fmt: skip
    if cv_domain == "matching":
        cv_domain = matching_cv_domain(domain)
    cv_domain = Path(cv_domain) if cv_domain is not None else None
    out_of_fold = json.loads(cv_domain.read_text()) if cv_domain and cv_domain.exists() else None
    card = model_card(acc, train, unc, fail, half, params, transfer=transfer, domain=domain,
                      out_of_fold=out_of_fold, out_of_fold_path=cv_domain)  # fmt: skip
    return {CALIBRATION: json.dumps(calibration, indent=1) + "\n", "MODEL_CARD.md": card}


def ship_pretrained(
    folder: str | Path,
    results_dir: str | Path,
    params: dict[str, Any],
    *,
    derived_dir: str | Path = DERIVED_METRICS,
) -> Path:
    """Finish a shipped ensemble folder (half-precision ``member_*.pt`` already there):
    ``calibration.json`` (the split-conformal quantile the run's uncertainty analysis fitted on
    its validation set, with its measured test coverage, and the σ-scaling factor beside it),
    ``MODEL_CARD.md`` (data, split, model, metrics, intended use, known failure regions) and
    ``MANIFEST.json`` (sha256 of every file, checked by
    :meth:`tracer.inference.predict.Ensemble.load`); see :func:`release_texts`."""
    folder = Path(folder)
    for name, text in release_texts(folder, results_dir, params, derived_dir=derived_dir).items():
        (folder / name).write_text(text)
    (folder / "recalibration.json").unlink(missing_ok=True)  # the σ-scaling file it replaces
    write_manifest(folder)
    return folder


def release_status(
    folder: str | Path,
    results_dir: str | Path,
    params: dict[str, Any],
    *,
    derived_dir: str | Path = DERIVED_METRICS,
) -> str | None:
    """Why the shipped folder is not what ``tracer release`` would write from the committed
    records now (a file differs, or the records are stale), or None when it is."""
    try:
        texts = release_texts(folder, results_dir, params, derived_dir=derived_dir)
    except ValueError as err:
        return str(err)
    differ = [n for n, text in texts.items()
              if not (Path(folder) / n).exists() or (Path(folder) / n).read_text() != text]
    return f"{', '.join(differ)} differ: run `tracer release`" if differ else None


def model_card(
    acc: dict,
    train: dict,
    unc: dict,
    fail: dict,
    half: dict,
    params: dict,
    *,
    transfer: dict | None = None,
    domain: dict | None = None,
    out_of_fold: dict | None = None,
    out_of_fold_path: str | Path | None = None,
) -> str:
    """The shipped ensemble's model card (Markdown), every number read from the run's records
    (``transfer``: the run's ``transfer.json``, for the zero-shot error on perovskites;
    ``domain``: its ``applicability.json``, the measured out-of-domain flags; ``out_of_fold``:
    the same domain's ``cv_domain.json``, read from ``out_of_fold_path``)."""
    m, s = acc["models"]["gemnet_t_ensemble"], acc["models"]["gemnet_t_single"]
    members = train["members"]
    first = next(iter(members.values()))
    prov = acc["provenance"]
    split = json.loads(Path(Paths(acc["dataset"]).split).read_text())
    noise = params["train"].get("position_noise_angstrom", 0.0)
    noise_note = f"; atoms displaced by Gaussian noise of σ = {noise} Å at each training step"
    noise_note = noise_note if noise else ""

    def groups(key: str) -> list[str]:
        rows = [(k, v) for k, v in fail[key].items() if v["n"] and v["mae"] > 1.5 * fail["mae"]]
        return [f"- {key.removeprefix('by_')} {k}: MAE {v['mae']:.3f} eV/atom over {v['n']} test "
                f"structures (mean σ {v['mean_sigma']:.3f})" for k, v in rows]  # fmt: skip

    worst = ", ".join(f"{w['formula']} ({w['abs_error']:.2f})" for w in fail["worst"][:5])
    shift = []
    if transfer and isinstance(transfer.get("zero_shot"), dict):
        z = transfer["zero_shot"]
        # the transfer study may have run with members of other settings than these
        same = transfer["provenance"]["params_sha256"] == prov["params_sha256"]
        whose = "" if same else " of the previous members (other model settings)"
        shift = [f"- Other reference energies: on {transfer['dataset']} perovskites the zero-shot "
                 f"MAE{whose} is {z['mae_ev_per_atom']:.2f} eV/atom ({z['n']} test cells; their "
                 "elemental references differ from the Materials Project's); fine-tune before "
                 "use on such data."]  # fmt: skip
    ood = []
    if domain:
        rates = ", ".join(f"{k} {v['flagged_fraction']:.0%}"
                          for k, v in domain["shift_detection"].items())  # fmt: skip
        ood = [
            "",
            "## Out of domain (`out_of_domain` column)",
            f"- Flags {domain['flagged_fraction_test']:.1%} of the test split "
            f"({domain['n_flagged_test']} of {domain['n_test']}); their MAE "
            f"{domain['mae_flagged']:.3f} vs {domain['mae_unflagged']:.3f} eV/atom for "
            f"the others (`ood.json`); {domain['flagged_fraction_val']:.1%} of the validation "
            "split, on which the thresholds were chosen",
            f"- Made-up shifted copies of the test structures flagged: {rates}",
            f"- {acceptance_line(domain)}",
            "- Checks: elements never or rarely (< "
            f"{domain['min_element_count']} structures) in training; shortest bond, bond lengths "
            "against those a bond-length model fitted on the training atoms expects (median: "
            "strain; smallest: squeezed or rattled atoms), coordination, volume per atom "
            "and widest empty slab outside the training range (tails of "
            f"{domain['range_quantile']:.2%} cut; {strain_tails(domain)}; chosen on "
            "validation); no symmetry (space "
            f"group P1 within {SYMPREC:g} Å) when that is rare in training; distance to the "
            f"{domain['representation_k']} nearest training structures "
            "in the model's representation above its validation "
            f"{domain['representation_quantile']:.1%} quantile",
        ]
        if out_of_fold:
            share = out_of_fold["flagged"]
            worst_kind = [p["worst_detection"] for p in out_of_fold["per_fold"]]
            oof_rates = ", ".join(f"{k} {v['fraction']:.0%}"
                                  for k, v in out_of_fold["shift_detection"].items())  # fmt: skip
            ood.insert(4, (
                f"- Refitted on each of {out_of_fold['n_folds']} folds with that fold's own "
                f"members ({out_of_fold['n']:,} structures out of fold, "
                f"`{Path(out_of_fold_path or '').as_posix()}`):"
                f" flags {share['fraction']:.1%} [{share['ci95'][0]:.1%}, "
                f"{share['ci95'][1]:.1%}]; shifted copies flagged: {oof_rates}. The worst "
                f"kind per fold ranges {min(worst_kind):.0%}–{max(worst_kind):.0%}: thresholds "
                "chosen on a small validation part can be weak (`tracer fit-domain` refuses a fit "
                "whose validation copies show it)"))  # fmt: skip
    lines = [
        "# Model card: TRACER GemNet-T ensemble, FLLA formation energy (full profile)",
        "",
        "Written by `tracer release` (`tracer.pipeline.release.ship_pretrained`) from the "
        "committed records in `results/flla_full/` and the run_of_record stage's analyses of "
        "them (`metrics/run_of_record/`); do not edit by hand.",
        "",
        "## What it predicts",
        "DFT formation energy per atom (eV/atom, Materials Project references as in FLLA) of an "
        "inorganic crystal, with the spread of five members (σ) and a 95% interval "
        f"mean ± {unc['conformal_quantile']:.2f} σ (split-conformal quantile of the normalised "
        "residuals |y − mean| / σ, fitted on the validation set): on the held-out test split it "
        f"covers {unc['conformal_coverage95']:.3f} of {unc['n_test']} structures (mean half-width "
        f"{unc['conformal_mean_halfwidth']:.3f} eV/atom). Each prediction also says whether the "
        "structure lies outside the training domain (`applicability.pt`, fitted on the training "
        "structures; its measured behaviour in `applicability.json` of the run).",
        "",
        "## Training data and split",
        f"- Dataset: {acc['dataset']} (Faber et al. 2015; 3,938 Materials Project crystals), "
        f"sha256 {prov.get('dataset_sha256')}",
        f"- Split: seeded random, seed {split.get('seed')}, "
        f"{len(split['train'])}/{len(split['val'])}/{len(split['test'])} train/val/test; "
        "target scaling from training data only",
        "",
        "## Model",
        f"- GemNet-T (triplet interactions with angles), {first['num_params']:,} parameters per "
        f"member, {len(members)} members (seeds {', '.join(members)}); graph cutoff "
        f"{params['graph']['cutoff_angstrom']} Å, at most {params['graph']['max_neighbors']} "
        "neighbours",
        f"- Trained on {first['device']} (profile `full`), best epoch on validation MAE; "
        f"forward pass compiled: {_compiled_note(members)}{noise_note}",
        f"- Stored weights: {half['stored_dtype']}; largest change of a member's test "
        f"prediction against float32: {half['max_abs_diff_ev_per_atom']:.1e} eV/atom "
        f"(tolerance {half['tolerance_ev_per_atom']:.0e})",
        "",
        "## Test metrics (eV/atom, 95% bootstrap intervals)",
        f"- Ensemble: MAE {m['mae']:.4f} [{m['mae_ci95'][0]:.4f}, {m['mae_ci95'][1]:.4f}], "
        f"RMSE {m['rmse']:.4f}, R² {m['r2']:.3f} on {m['n']} structures",
        f"- One member: MAE {s['mae']:.4f} ± {s.get('mae_std', float('nan')):.4f} "
        "(mean ± std over members)",
        f"- Uncertainty: Spearman(σ, |error|) {unc['spearman']:.2f}, AUROC of σ for the worst "
        f"10% {unc['auroc_top10']:.2f}; 95% interval coverage {unc['coverage95']:.2f} from raw σ, "
        f"{unc['coverage95_recal']:.2f} after σ-scaling (× {unc['sigma_scale']:.2f}), "
        f"{unc['conformal_coverage95']:.3f} with the shipped split-conformal interval",
        "",
        "## Intended use",
        "Screening candidate crystals from the chemistries of the Materials Project: rank by "
        "predicted formation energy, and send the structures flagged `check_with_dft` (wide "
        "interval) or the `--budget` most uncertain to DFT. Not a substitute for DFT on "
        "structures far from the training data.",
        "",
        "## Known failure regions (from the test set's failure analysis)",
        *groups("by_natoms"),
        *groups("by_nelements"),
        *groups("by_energy"),
        *groups("by_chemistry"),
        f"- Worst test predictions (absolute error, eV/atom): {worst}",
        *shift,
        f"- {len(split['train']):,} training structures: elements or structure types rare in "
        "FLLA get wide intervals or, worse, confident errors; σ ranks errors but does not "
        "bound them.",
        *ood,
        "",
    ]
    return "\n".join(lines)


def stale_records(results_dir: str | Path, derived_dir: str | Path | None = None) -> str | None:
    """Why ``failures.json`` and ``uncertainty.json`` (written by the run_of_record stage into
    ``derived_dir``, default ``results_dir``) do not belong to the ensemble of ``accuracy.json``
    (written by ``record-run`` into ``results_dir``), or None when they do: their test MAE and
    test-set size must be those of the recorded ensemble."""
    results_dir = Path(results_dir)
    derived = results_dir if derived_dir is None else Path(derived_dir)
    try:
        acc = json.loads((results_dir / "accuracy.json").read_text())
        fail, unc = (json.loads((derived / f"{n}.json").read_text())
                     for n in ("failures", "uncertainty"))  # fmt: skip
    except FileNotFoundError as err:
        return f"{err.filename} is missing"
    mae = acc["models"]["gemnet_t_ensemble"]["mae"]
    if abs(fail["mae"] - mae) > 1e-9 or unc["n_test"] != acc["n_test"]:
        return (f"{derived}/failures.json and uncertainty.json are of another ensemble "
                f"(test MAE {fail['mae']:.5f}, accuracy.json: {mae:.5f})")  # fmt: skip
    return None
