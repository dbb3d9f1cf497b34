#!/usr/bin/env bash
# Download the wheels an offline GPU machine lacks for benchmarks/train_gpu.py into .whl/
# (CPython 3.12, manylinux x86_64; bitsandbytes ships manylinux_2_24 wheels). The machine already has torch, transformers, accelerate,
# peft, pyarrow and fsspec; these are the rest of meddata[train] plus the GPU extras.
# Versions are the ones this repository is tested with (datasets 5.2 needs dill<0.4.2 and
# multiprocess<0.70.20; pydantic 2.14.4 pins pydantic-core 2.50.5).
#
#   bash benchmarks/gpu_wheels.sh          # then carry .whl/ to the GPU machine and run
#   pip install --no-deps --no-index .whl/*.whl && python benchmarks/train_gpu.py
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-python3 -m pip}"
DEST=.whl
mkdir -p "$DEST"
PACKAGES=(
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  ftfy==6.3.1 wcwidth==0.9.4 pypdf==7.1.1 openai==3.60.0
  liger-kernel==0.8.5 bitsandbytes==0.50.2
  # not on the list of missing packages, but pydantic 2.14 needs typing-extensions>=4.16, newer
  # than many images carry; a newer typing-extensions is backward compatible (45 KB).
  typing-extensions==4.16.0
)
for spec in "${PACKAGES[@]}"; do
  $PIP download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "$spec"
done
# rouge-score publishes only a source archive; it is pure Python, so build the wheel here.
$PIP wheel --quiet --no-deps -w "$DEST" rouge-score==0.1.2
# meddata itself, from this working tree: the GPU machine then needs no build step.
rm -f "$DEST"/meddata-*.whl
$PIP wheel --quiet --no-deps -w "$DEST" .
ls -l "$DEST"/*.whl | awk '{printf "%9.1f KB  %s\n", $5/1024, $NF; total += $5} END {printf "%9.1f MB  total\n", total/1048576}'
