#!/usr/bin/env bash
# The shipped default lab, end to end, with the project's own `workbench train` (see docs/lab_log.md).
# Times on the 2-core development CPU, shared with other work: base ~30 min; distillation ~3 min per task;
# each 1,000-step post-training 6-25 min (mdlm < uniform < oput; spans ~2.5x choice).
# Usage: lab/recipe.sh [OUT]   (OUT defaults to lab/models, which git ignores). Set SEEDS to train fewer
# training seeds (default "2 3 4"); BASE=workbench/default_models/base starts from the shipped base instead
# of training it (what the shipped post-trainings did). Rerunning resumes: finished models are skipped, a
# killed run continues from its last checkpoint.
set -euo pipefail
OUT=${1:-lab/models}
SEEDS=${SEEDS:-"2 3 4"}
BASE=${BASE:-$OUT/base}
mkdir -p "$OUT"
train() {  # train OUT_FOLDER ARGS...: skip a model that is already there
    local out=$1; shift
    [ -f "$out/training.json" ] || workbench train "$@" --out "$out" --quiet
}

# Base model: masked-diffusion pretraining on running sums (learns digits, alignment, the answer format),
# then on the default task `choice` (many right answers; see workbench/tasks/choice.py).
if [ "$BASE" = "$OUT/base" ]; then
    train "$OUT/sum-a" --trainer mdlm --preset sum-scratch --eval-limit 0
    train "$OUT/sum-b" --trainer mdlm --preset sum-continue --init "$OUT/sum-a" --eval-limit 0
    train "$OUT/base"  --trainer mdlm --preset base --init "$OUT/sum-b"
fi

# Self-distillation (DMax): the base decodes 32,000 training prompts with threshold 0.95; the outputs the task
# checks as correct are the post-training data (2 epochs of the 1,000 x 64 post-training).
workbench distill --strategy threshold --tau 0.95 --model "$BASE" --task choice --count 32000 \
    --batch-size 512 --out "$OUT/choice-distill.jsonl" --quiet
# The same base post-trained three ways on the same data with the same budget, once per training seed.
mkdir -p "$OUT/choice"
ln -sfn "$(realpath "$BASE")" "$OUT/choice/base"  # the grid's base column
for seed in $SEEDS; do
    for trainer in mdlm uniform oput; do
        train "$OUT/choice/$trainer/seed$seed" --trainer "$trainer" --preset post --init "$BASE" \
            --data "$OUT/choice-distill.jsonl" --seed "$seed"
    done
done
# Lab variant (not DMax's, not shipped): the on-policy copy fed SPD's hybrid inputs (docs/lab_log.md run 20).
for seed in $SEEDS; do
    train "$OUT/choice-soft/oput/seed$seed" --trainer oput --preset post --init "$BASE" \
        --data "$OUT/choice-distill.jsonl" --seed "$seed" --set copy_inputs=soft
done
# Longer OPUT and mask ratio 0.5 on the same data (docs/lab_log.md runs 22-24; not shipped).
train "$OUT/choice-ratio05/oput/seed2" --trainer oput --preset post --init "$BASE" \
    --data "$OUT/choice-distill.jsonl" --seed 2 --set mask_ratio=0.5
for seed in 2 3; do
    train "$OUT/choice-long/oput/seed$seed" --trainer oput --preset post --steps 3000 --init "$BASE" \
        --data "$OUT/choice-distill.jsonl" --seed "$seed"
    train "$OUT/choice-long6k/oput/seed$seed" --trainer oput --preset post --steps 6000 --init "$BASE" \
        --data "$OUT/choice-distill.jsonl" --seed "$seed"
done
# The ablation "without self-distillation": the same post-training on the task's random right answers.
for trainer in mdlm uniform oput; do
    train "$OUT/choice-random/$trainer" --trainer "$trainer" --preset post --init "$BASE"
done

# Second task `spans` (block 32): the choice base continued on spans with mdlm, then the same recipe.
train "$OUT/spans/base" --trainer mdlm --preset spans-base --init "$BASE"
workbench distill --strategy threshold --tau 0.95 --model "$OUT/spans/base" --task spans --count 32000 \
    --batch-size 512 --out "$OUT/spans-distill.jsonl" --quiet
for seed in $SEEDS; do
    for trainer in mdlm uniform oput; do
        train "$OUT/spans/$trainer/seed$seed" --trainer "$trainer" --preset spans-post --init "$OUT/spans/base" \
            --data "$OUT/spans-distill.jsonl" --seed "$seed"
    done
done

# The grids (lab/README.md, lab/results): one command per task over the training-seed folders, plus the paper's
# non-contiguous `hard` variant; `workbench report --store ... --format pivot|markdown|json` prints them.
for task in choice spans; do
    workbench ablate --model-dir "$OUT/$task" --trainers base,mdlm,oput,uniform \
        --strategies spd,hard,threshold,hierarchical --tau 0.95,0.5,0 --limit 500 --store "$OUT/$task.db" --quiet
    workbench ablate --model-dir "$OUT/$task" --trainers base,mdlm,oput,uniform \
        --strategies hard --set contiguous=false --tau 0.95,0.5,0 --limit 500 --store "$OUT/$task.db" --quiet
done
# The refiners on oput over tau_dec (lab/README.md's sweeps), and the soft-copy variant against it.
workbench ablate --model-dir "$OUT/choice" --trainers base --strategies threshold --tau 0.95 --limit 500 \
    --store "$OUT/choice-sweep.db" --quiet
workbench ablate --model-dir "$OUT/choice" --trainers oput --strategies spd,hard --tau 0.95,0.9,0.8,0.7,0.6,0.5,0 \
    --limit 500 --store "$OUT/choice-sweep.db" --quiet
workbench ablate --model-dir "$OUT/choice-soft" --trainers oput --strategies spd,hard --tau 0.95,0.7,0.5,0 \
    --limit 500 --store "$OUT/choice-soft.db" --quiet
workbench ablate --model-dir "$OUT/spans" --trainers base --strategies threshold --tau 0.95 --limit 500 \
    --store "$OUT/spans-sweep.db" --quiet
workbench ablate --model-dir "$OUT/spans" --trainers oput,uniform --strategies spd,hard --tau 0.95,0.9,0.8,0.7,0.6,0.5 \
    --limit 500 --store "$OUT/spans-sweep.db" --quiet
for lab in choice-long choice-long6k choice-ratio05; do
    workbench ablate --model-dir "$OUT/$lab" --trainers oput --strategies spd,hard \
        --tau 0.95,0.9,0.85,0.8,0.7,0.5,0 --limit 500 --store "$OUT/$lab.db" --quiet
done
