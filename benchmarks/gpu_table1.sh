#!/usr/bin/env bash
# Table 1 on a 4-GPU host (full profile, FLLA seed-42 split), every run on its own H100:
#   GPU 0: ALIGNN, installed TrainingConfig defaults      GPU 1: ALIGNN, the paper's recipe
#   GPU 2: SchNet then CGCNN (params baselines)           GPU 3: one GemNet-T member alone
# (its wall time to ALIGNN's best validation MAE is then read off the same kind of card).
# Every command resumes when run again with the same arguments (10-minute device calls).
# Then, here: tracer record-run --run-dir RUN (after the ensemble's train-ensemble run
# has put its files into RUN too).
set -u
S=${STRUCTURES:-flla_structures.pt}; SP=${SPLIT:-data/splits/flla.json}
P=${PARAMS:-profiles/full.yaml}; R=${RUN:-/tmp/table1}; W=${WORKERS:-8}
mkdir -p "$R"
t() { python3 -m tracer.cli "$@"; }
CUDA_VISIBLE_DEVICES=0 t train-alignn --structures "$S" --split "$SP" --recipe defaults \
    --out "$R" --workers "$W" > "$R/alignn_defaults.log" 2>&1 &
CUDA_VISIBLE_DEVICES=1 t train-alignn --structures "$S" --split "$SP" --recipe paper \
    --out "$R" --workers "$W" > "$R/alignn_paper.log" 2>&1 &
(CUDA_VISIBLE_DEVICES=2 t train-baseline --model schnet --structures "$S" --split "$SP" \
    --params "$P" --out "$R" --workers "$W" > "$R/schnet.log" 2>&1
 CUDA_VISIBLE_DEVICES=2 t train-baseline --model cgcnn --structures "$S" --split "$SP" \
    --params "$P" --out "$R" --workers "$W" > "$R/cgcnn.log" 2>&1) &
[ -f "$R/alone/training.json" ] || CUDA_VISIBLE_DEVICES=3 t train-ensemble --structures "$S" --split "$SP" --params "$P" \
    --out "$R/alone" --seeds 0 --workers "$W" > "$R/gemnet_alone.log" 2>&1 &
wait
