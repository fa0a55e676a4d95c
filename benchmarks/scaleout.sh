#!/usr/bin/env bash
# Issue 9 on one host with two GPUs (gpu profile, FLLA seed-42 split):
#   1. two ensemble members one after the other, then two at once (one per GPU), same settings;
#   2. one member with DDP (tracer train-ddp under torchrun) on one GPU, then on two, at the same
#      effective batch (BATCH structures per step: BATCH/2 per GPU on two).
# Shortened schedules (EPOCHS, DDP_EPOCHS) keep it within one device call; times only.
# Then, here: python benchmarks/scaleout_record.py --run-dir RUN (RUN brought back without *.pt).
set -u
S=${STRUCTURES:-flla_structures.pt}; SP=${SPLIT:-data/splits/flla.json}; R=${RUN:-/tmp/scaleout}
P=${PARAMS:-profiles/gpu.yaml}; EPOCHS=${EPOCHS:-30}; DDP_EPOCHS=${DDP_EPOCHS:-6}
BATCH=${BATCH:-128}; W=${WORKERS:-8}
mkdir -p "$R"
python3 - "$P" "$R" "$EPOCHS" "$DDP_EPOCHS" "$BATCH" <<'PY'
import sys, yaml
src, run, epochs, ddp_epochs, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
params = yaml.safe_load(open(src))
members = {**params, "train": {**params["train"], "max_epochs": epochs}}
ddp = {**params, "train": {**params["train"], "max_epochs": ddp_epochs, "batch_size": batch}}
yaml.safe_dump(members, open(f"{run}/members.yaml", "w"))
yaml.safe_dump(ddp, open(f"{run}/ddp.yaml", "w"))
PY
t() { python3 -m tracer.cli "$@"; }
mkdir -p "$R/seq" "$R/par"
t train-ensemble --structures "$S" --split "$SP" --params "$R/members.yaml" --out "$R/seq" \
    --seeds 0 1 --parallel 1 --workers "$W" > "$R/seq.log" 2>&1
cp "$R/seq/graphs.pt" "$R/par/graphs.pt"   # the same graphs: both time training only
t train-ensemble --structures "$S" --split "$SP" --params "$R/members.yaml" --out "$R/par" \
    --seeds 0 1 --parallel 2 --workers "$W" > "$R/par.log" 2>&1
for n in 1 2; do
  python3 -m torch.distributed.run --standalone --nproc_per_node $n -m tracer.cli train-ddp \
      --structures "$S" --split "$SP" --params "$R/ddp.yaml" --out "$R/ddp$n" --seed 0 \
      --workers "$W" > "$R/ddp$n.log" 2>&1
done
for f in "$R"/*.log; do echo "== $f"; tail -3 "$f"; done
