#!/usr/bin/env bash
# Capture the real outputs that tests/fixtures/nvidia/ imitates, on a machine with an NVIDIA GPU:
#   bench/capture_nvidia.sh OUTDIR
set -u
out=${1:?usage: capture_nvidia.sh OUTDIR}
mkdir -p "$out"
q=index,name,uuid,compute_cap,memory.total,memory.free,driver_version
nvidia-smi --query-gpu=$q --format=csv,noheader,nounits >"$out/smi_query.csv" 2>&1; echo "exit $?" >"$out/smi_query.exit"
nvidia-smi --query-gpu=${q/compute_cap,/} --format=csv,noheader,nounits >"$out/smi_query_nocc.csv" 2>&1
nvidia-smi >"$out/smi_plain.txt" 2>&1
nvidia-smi -q >"$out/smi_q.txt" 2>&1
cat /proc/driver/nvidia/version >"$out/proc_version.txt" 2>&1
cat /sys/module/nvidia/version >"$out/sys_module_version.txt" 2>&1
i=0
for f in /proc/driver/nvidia/gpus/*/information; do cat "$f" >"$out/proc_gpu_information_$i.txt"; i=$((i+1)); done
ls -l "$out"
