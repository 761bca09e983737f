#!/usr/bin/env bash
# Train on one node with N processes (GPUs, or CPU processes with gloo):
#   bash tools/dist_train.sh EXPERIMENT NUM_GPUS [hydra overrides...]
#   bash tools/dist_train.sh k400_videomae_base 8 data.root=/data/k400 pretrained=/w/videomae_b_pt.pth
# Several nodes: run this on every node with NNODES, NODE_RANK, MASTER_ADDR (and MASTER_PORT) set, e.g.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 bash tools/dist_train.sh k400_videomae_base 8 ...   # on node0
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0 bash tools/dist_train.sh k400_videomae_base 8 ...   # on node1
# or use the DeepSpeed launcher with a hostfile:
#   deepspeed --hostfile hostfile tools/train.py experiment=k400_videomae_base ...
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 EXPERIMENT NUM_GPUS [overrides...]" >&2
    exit 2
fi
EXPERIMENT=$1
NUM_GPUS=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=tools/_python.sh
source "$ROOT/tools/_python.sh"
# one run folder for every rank, decided here, not by each process
RUN_DIR=${RUN_DIR:-outputs/${EXPERIMENT}}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --nproc_per_node="$NUM_GPUS" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${MASTER_PORT:-29500}" \
    "$ROOT/tools/train.py" experiment="$EXPERIMENT" output_dir="$RUN_DIR" "$@"
