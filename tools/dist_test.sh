#!/usr/bin/env bash
# Multi-view test of a trained run on one node with N processes:
#   bash tools/dist_test.sh EXPERIMENT CHECKPOINT NUM_GPUS [hydra overrides...]
#   bash tools/dist_test.sh k400_videomae_base outputs/k400_videomae_base/adapter.pth 8 data.root=/data/k400 \
#        pretrained=/w/videomae_b_pt.pth
# CHECKPOINT is an adapter-only file (with `pretrained=` for the backbone) or a full state dict.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 EXPERIMENT CHECKPOINT NUM_GPUS [overrides...]" >&2
    exit 2
fi
EXPERIMENT=$1
CHECKPOINT=$2
NUM_GPUS=$3
shift 3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/_python.sh
source "$ROOT/tools/_python.sh"
RUN_DIR=${RUN_DIR:-outputs/${EXPERIMENT}/test}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$NUM_GPUS" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29501}" \
    "$ROOT/tools/test.py" experiment="$EXPERIMENT" checkpoint="$CHECKPOINT" output_dir="$RUN_DIR" "$@"
