# TRACER — one command for the pipeline, one for the tests (see README.md).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: all install fetch repro test lint mutation clean-venv

all: repro                       ## the main job: fetch data, run the whole pipeline

$(STAMP): pyproject.toml requirements.txt requirements-lock.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -c requirements-lock.txt -r requirements.txt
	$(BIN)/pip install -q -c constraints.txt --no-deps -e .
	$(BIN)/pip freeze --exclude-editable > $(VENV)/installed-versions.txt
	@echo "installed versions recorded in $(VENV)/installed-versions.txt"
	touch $@

install: $(STAMP)                ## make the environment (torch held at 2.13.0)

fetch: install                   ## download + sha256-verify the active dataset into data/raw
	$(BIN)/tracer fetch

# the training stages, longest first, side by side, one per slot (docs/performance.md § The main job on two cores)
TRAINING_STAGES ?= baseline@cgcnn train baseline@schnet domain
# auto: one slot per GPU, else one CPU slot per core
SLOTS ?= auto

repro: fetch                     ## run every DVC stage that is out of date (training stages two at a time), then say whether it reproduced
	$(BIN)/tracer train-parallel --upstream $(TRAINING_STAGES) --devices $(SLOTS)
	$(BIN)/dvc repro
	$(BIN)/tracer reproduce --out reproduction.md

test: install                    ## the test suite on two processes, each test file on one (fetches FLLA for the data tests)
	$(BIN)/tracer fetch flla
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

lint: install
	$(BIN)/ruff check tracer tests benchmarks notebooks

clean-venv:
	rm -rf $(VENV)

# the mutants scored: pyproject's [tool.mutmut] files, of the model only the basis, triplet and
# interaction code; `make mutation MUTATION_SCOPE=... MUTATION_PREVIOUS=docs/mutation.json` re-runs
# a part and keeps the other modules' figures from the earlier record
MUTATION_SCOPE ?= 'tracer.analysis.*' 'tracer.data.splits.*' 'tracer.audit.rules.*' \
	'tracer.models.gemnet.x*PolynomialEnvelope*' 'tracer.models.gemnet.x*RadialBasis*' \
	'tracer.models.gemnet.x_spherical_harmonics_m0*' 'tracer.models.gemnet.x*EfficientDownProjection*' \
	'tracer.models.gemnet.x*EfficientBilinear*' 'tracer.models.gemnet.x*TripletInteraction*' \
	'tracer.models.gemnet.x*InteractionBlock*' 'tracer.graphs.periodic.x_triplet*' \
	'tracer.graphs.periodic.x_max_triplets_per_edge*' 'tracer.graphs.periodic.x_edge_vectors*'
MUTATION_PREVIOUS ?=

mutation: install                ## mutation score of the analysis modules and GemNet-T's angle path (mutmut; not in CI, hours on 2 cores)
	$(BIN)/pip install -q -c constraints.txt "mutmut==3.8.1"
	$(BIN)/tracer fetch flla
	OMP_NUM_THREADS=1 TRACER_TEST_CACHE=$(abspath .pytest_cache/tracer) $(BIN)/mutmut run --max-children 2 $(MUTATION_SCOPE)
	$(BIN)/python tests/mutation_record.py --out docs/mutation.json --scope $(MUTATION_SCOPE) \
		$(if $(MUTATION_PREVIOUS),--previous $(MUTATION_PREVIOUS))
