"""Where each stage reads and writes: one file layout per dataset name (:class:`Paths`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: the committed run of record (the ``full`` profile on FLLA, trained on a GPU machine)
RUN_OF_RECORD = "results/flla_full"
#: where the ``run_of_record`` stage draws that run's figures
RUN_OF_RECORD_FIGURES = "paper_figures/run_of_record"
#: the committed record of the four-database pooled domain study (``tracer record-pooled``)
POOLED_RECORD = "results/pooled/domains.json"


@dataclass(frozen=True)
class Paths:
    """File layout of one dataset's pipeline, relative to the repository root."""

    dataset: str
    root: Path = Path(".")

    @property
    def table(self) -> Path:
        return self.root / "data" / "processed" / f"{self.dataset}.parquet"

    @property
    def quarantine(self) -> Path:
        return self.root / "data" / "quarantine" / f"{self.dataset}.csv"

    @property
    def split(self) -> Path:
        return self.root / "data" / "splits" / f"{self.dataset}.json"

    @property
    def results(self) -> Path:
        return self.root / "results" / self.dataset

    def predictions(self, model: str) -> Path:
        return self.results / f"{model}.parquet"

    @property
    def graphs(self) -> Path:
        return self.root / "data" / "graphs" / f"{self.dataset}.pt"

    @property
    def models(self) -> Path:
        return self.root / "models" / self.dataset

    def member(self, seed: int) -> Path:
        return self.models / f"member_{seed}.pt"

    def member_work(self, seed: int) -> Path:
        """Resume scratch of a member (``last.pt``): kept between runs, not a DVC output."""
        return self.root / "checkpoints" / self.dataset / f"member_{seed}"

    def live(self, seed: int) -> Path:
        return self.root / "dvclive" / self.dataset / f"member_{seed}"

    def baseline(self, kind: str) -> Path:
        """Model file of a Table 1 baseline (outside ``models/<dataset>``, the ensemble's)."""
        return self.root / "models" / "baselines" / self.dataset / f"{kind}.pt"

    def baseline_work(self, kind: str) -> Path:
        return self.root / "checkpoints" / self.dataset / f"baseline_{kind}"

    def baseline_live(self, kind: str) -> Path:
        return self.root / "dvclive" / self.dataset / f"baseline_{kind}"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def figures(self) -> Path:
        return self.root / "paper_figures"

    def figures_of(self, stage: str) -> Path:
        """The folder of one stage's figures and tables (one DVC output per stage)."""
        return self.figures / stage
