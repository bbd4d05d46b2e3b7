#!/bin/sh
# Perplexity by KV cache type, tern against llama.cpp on the same text and context
# (docs/RUNTIME.md, "KV cache types"). Usage: scripts/kv/perplexity-by-kv-type.sh [TERN]
# Needs the fetched models (.cache/models) and the reference llama.cpp build.
set -eu
TERN=${1:-target/release/tern}
LLAMA=${LLAMA_PERPLEXITY:-/root/.cache/llama.cpp-reference/build/bin/llama-perplexity}
TEXT=scripts/goldens/texts/jargon-file-4.4.7-intro.txt
for model in smollm2-135m-instruct-q4_1 gemma-3-270m-q4_k_m; do
  for kv in f16 q8_0 q4_0; do
    printf '%s %s tern:  ' "$model" "$kv"
    "$TERN" perplexity ".cache/models/$model.gguf" -f "$TEXT" -c 512 --chunks 8 \
      --kv-type "$kv" -q | tail -n 1
    printf '%s %s llama: ' "$model" "$kv"
    "$LLAMA" -m ".cache/models/$model.gguf" -f "$TEXT" -c 512 --chunks 8 -t 1 \
      -ctk "$kv" -ctv "$kv" 2>&1 | grep 'Final estimate'
  done
done
