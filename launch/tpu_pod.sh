#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: create it (or reuse it), copy this checkout to every
# worker, install it, and start the same command on all workers, one log per worker.
#
#   launch/tpu_pod.sh NAME ZONE ACCELERATOR BUCKET -- --config=configs/linear.py:standard --workdir=runs/linear
#
#   NAME         TPU VM name, e.g. icl-v4-32 (reused if it exists)
#   ZONE         e.g. us-central2-b
#   ACCELERATOR  e.g. v4-32 (used only when creating)
#   BUCKET       gs://bucket: mounted on every worker at /mnt/icl_jax with Cloud Storage FUSE;
#                ~/icl_jax/runs links to /mnt/icl_jax/runs, so --workdir=runs/X lives in the
#                bucket and checkpoints survive the VM
#
# Environment: TPU_RUNTIME (default tpu-ubuntu2204-base), TPU_SPOT=1 for spot capacity,
# PROJECT (default: gcloud's configured project). Needs gcloud with TPU access.
# Logs: logs/NAME/worker_<i>.log here. Rerunning the script resumes the run; a preempted
# spot slice gets SIGTERM, the run saves, and rerunning after recreation continues.
set -euo pipefail

usage() { sed -n '2,17p' "$0" >&2; exit 2; }
[[ $# -ge 5 && "$5" == "--" ]] || usage
name=$1 zone=$2 accelerator=$3 bucket=$4; shift 5
[[ "$bucket" == gs://* ]] || { echo "error: BUCKET must look like gs://name, got '$bucket'" >&2; exit 2; }
project_flag=${PROJECT:+--project=$PROJECT}
tpu() { gcloud compute tpus tpu-vm "$@" --zone="$zone" $project_flag; }

if ! tpu describe "$name" >/dev/null 2>&1; then
  tpu create "$name" --accelerator-type="$accelerator" --version="${TPU_RUNTIME:-tpu-ubuntu2204-base}" \
    ${TPU_SPOT:+--spot}
fi
num_workers=$(tpu describe "$name" --format='value(networkEndpoints.len())')

# Copy the checkout (tracked files) to every worker and install it there with TPU JAX.
root=$(git rev-parse --show-toplevel)
archive=$(mktemp --suffix=.tar.gz)
git -C "$root" archive --format=tar.gz -o "$archive" HEAD
tpu scp "$archive" "$name":icl_jax.tar.gz --worker=all
rm -f "$archive"
mount_point=/mnt/icl_jax
tpu ssh "$name" --worker=all --command="set -e
  mkdir -p ~/icl_jax && tar -xzf ~/icl_jax.tar.gz -C ~/icl_jax
  python3 -m pip install -q -U pip && python3 -m pip install -q -e ~/icl_jax 'jax[tpu]'
  if ! mountpoint -q $mount_point; then
    command -v gcsfuse >/dev/null || { export GCSFUSE_REPO=gcsfuse-\$(lsb_release -c -s);
      echo \"deb https://packages.cloud.google.com/apt \$GCSFUSE_REPO main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list;
      curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -;
      sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; }
    sudo mkdir -p $mount_point && sudo chown \$USER $mount_point
    gcsfuse --implicit-dirs ${bucket#gs://} $mount_point
  fi
  mkdir -p $mount_point/runs && ln -sfn $mount_point/runs ~/icl_jax/runs"

# The same command on every worker; JAX finds the pod's coordinator itself (--multihost).
mkdir -p "logs/$name"
quoted=$(printf ' %q' "$@")
pids=()
for ((i = 0; i < num_workers; i++)); do
  tpu ssh "$name" --worker="$i" --command="cd ~/icl_jax && python3 -m icl_jax.train --multihost$quoted" \
    > "logs/$name/worker_$i.log" 2>&1 &
  pids+=($!)
done
echo "started $num_workers workers; logs in logs/$name/"
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
