#!/usr/bin/env bash
# Issue 9 on one host with two GPUs (full profile, FLLA seed-42 split); times only:
#   1. one member with DDP (`tracer train-ddp` under torchrun) on one GPU, then on two, at the same
#      effective batch (B structures per step: B/2 per GPU on two), for each B in BATCHES, steps
#      replayed from CUDA graphs as the profile says (DDP_GRAPHS=0: eager), the forward pass
#      compiled as the profile says (DDP_COMPILE=0 or 1: off or on);
#   2. two ensemble members one after the other (two commands, as `dvc repro` runs the member
#      stages), then the same two commands at once, one per GPU (as `tracer train-parallel` runs
#      the stages' commands), then both from one process pool (`train-ensemble --parallel 2`);
#      wall times of whole commands in walls.json.
# Shortened schedules (EPOCHS, DDP_EPOCHS) keep it within one device call; DDP=0, MEMBERS=0 or
# POOL=0 skip part 1, part 2, or the pool of part 2 (with DDP=0 the graphs are built once here).
# WARM=1 first trains one untimed 1-epoch member, so that no timed command of part 2 pays for a
# cold compilation cache (torch.compile's kernels are cached on disk and shared by later commands).
# Then, here: python benchmarks/scaleout_record.py --run-dir RUN --device CARD (RUN without *.pt).
set -u
S=${STRUCTURES:-flla_structures.pt}; SP=${SPLIT:-data/splits/flla.json}; R=${RUN:-/tmp/scaleout}
P=${PARAMS:-profiles/full.yaml}; EPOCHS=${EPOCHS:-30}; DDP_EPOCHS=${DDP_EPOCHS:-8}
BATCHES=${BATCHES:-128 256}; W=${WORKERS:-8}; GRAPHS=${DDP_GRAPHS:-1}; COMPILE=${DDP_COMPILE:--1}
mkdir -p "$R"
python3 - "$P" "$R" "$EPOCHS" "$DDP_EPOCHS" "$GRAPHS" "$COMPILE" $BATCHES <<'PY'
import sys, yaml
src, run = sys.argv[1], sys.argv[2]
epochs, ddp_epochs, graphs, compile_, *batches = map(int, sys.argv[3:])
params = yaml.safe_load(open(src))
members = {**params, "train": {**params["train"], "max_epochs": epochs}}
yaml.safe_dump(members, open(f"{run}/members.yaml", "w"))
warm = {**params, "train": {**params["train"], "max_epochs": 1}}
yaml.safe_dump(warm, open(f"{run}/warm.yaml", "w"))
for b in batches:
    train = {**params["train"], "max_epochs": ddp_epochs, "batch_size": b}
    train["cuda_graphs"] = bool(graphs) and train["cuda_graphs"]
    if compile_ >= 0:
        train["compile"] = bool(compile_)
    yaml.safe_dump({**params, "train": train}, open(f"{run}/ddp_b{b}.yaml", "w"))
PY
t() { python3 -m tracer.cli "$@"; }
if [ "${DDP:-1}" = 0 ]; then BATCHES=""; mkdir -p "$R/graphs"
  python3 -c "import sys, yaml; from tracer.pipeline.launch import build_graphs; from tracer.models.gemnet import GemNetTConfig
p = yaml.safe_load(open(sys.argv[1]))
build_graphs(sys.argv[2], GemNetTConfig.from_params(p['gemnet'], p['graph']), workers=int(sys.argv[3])).save(sys.argv[4])" \
    "$P" "$S" "$W" "$R/graphs/graphs.pt"
fi
for b in $BATCHES; do  # the first run builds the graphs into the shared cache
  for n in 1 2; do
    python3 -m torch.distributed.run --standalone --nproc_per_node $n -m tracer.cli train-ddp \
        --structures "$S" --split "$SP" --params "$R/ddp_b$b.yaml" --out "$R/ddp${n}_b$b" \
        --seed 0 --graphs-cache "$R/graphs" --workers "$W" > "$R/ddp${n}_b$b.log" 2>&1
  done
done
[ "${MEMBERS:-1}" = 0 ] && exit 0
for d in seq0 seq1 cmd0 cmd1 par; do mkdir -p "$R/$d"; cp "$R"/graphs/*.pt "$R/$d/graphs.pt"; done
now() { date +%s.%N; }
if [ "${WARM:-0}" = 1 ]; then mkdir -p "$R/warm"; cp "$R"/graphs/*.pt "$R/warm/graphs.pt"
  t train-ensemble --structures "$S" --split "$SP" --params "$R/warm.yaml" --out "$R/warm" \
      --seeds 0 --parallel 1 > "$R/warm.log" 2>&1
fi
t0=$(now)
for s in 0 1; do  # one after the other: one command per member, as `dvc repro` runs them
  t train-ensemble --structures "$S" --split "$SP" --params "$R/members.yaml" --out "$R/seq$s" \
      --seeds $s --parallel 1 > "$R/seq$s.log" 2>&1
done
t1=$(now)
for s in 0 1; do  # at once: the same commands, one per GPU, as `tracer train-parallel` runs them
  # (with half the cores' threads each, as train-parallel's child_env gives them)
  CUDA_VISIBLE_DEVICES=$s OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / 2 ))} t train-ensemble --structures "$S" --split "$SP" \
      --params "$R/members.yaml" --out "$R/cmd$s" --seeds $s --parallel 1 > "$R/cmd$s.log" 2>&1 &
done
wait
t2=$(now)
[ "${POOL:-1}" = 0 ] || t train-ensemble --structures "$S" --split "$SP" --params "$R/members.yaml" \
    --out "$R/par" --seeds 0 1 --parallel 2 > "$R/par.log" 2>&1   # at once from one process pool
[ "${POOL:-1}" = 0 ] && t3=$t2 || t3=$(now)
python3 - "$t0" "$t1" "$t2" "$t3" "$R/walls.json" <<'PY'
import json, sys
t0, t1, t2, t3 = map(float, sys.argv[1:5])
walls = {"sequential_s": t1 - t0, "concurrent_commands_s": t2 - t1,
         "pool_s": (t3 - t2) if t3 > t2 else None}  # None: POOL=0
json.dump(walls, open(sys.argv[5], "w"))
print(walls)
PY
for f in "$R"/*.log; do echo "== $f"; tr '\r' '\n' < "$f" | grep -v '^\s*$' | tail -2 | cut -c1-300; done
