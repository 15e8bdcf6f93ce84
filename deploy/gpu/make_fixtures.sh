#!/usr/bin/env bash
# Regenerates tests/fixtures/{neox,tokenizer} on the GPU host (which has
# PyTorch, transformers and tokenizers). Run from the repo root there, with
# the decompressed corpus parts in .carry/corpus (see the comment below):
#
#   here:   mkdir -p .carry/corpus
#           zstd -dc "$CORPUS"/val.jsonl.zst > .carry/corpus/val.jsonl
#           zstd -dc "$CORPUS"/train/00.jsonl.zst | head -c 6000000 \
#             | head -n -1 > .carry/corpus/train00-part.jsonl
#   device: bash deploy/gpu/make_fixtures.sh   (carry .carry)
#   here:   tar -C tests/fixtures -xf <files_at>/fixtures.tar
#           rm tests/fixtures/neox/*/generation_config.json
#           zstd -19 --rm tests/fixtures/tokenizer/expected.jsonl
set -euo pipefail
python3 tests/fixtures/make_fixtures.py /tmp/fx .carry/corpus
tar -C /tmp/fx -cf "${OUT:-/tmp}/fixtures.tar" .
