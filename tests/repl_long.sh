#!/usr/bin/env bash
# A 50-turn interactive chat driven through tmux (as repl_tmux.sh does): every turn must answer, and the resident
# memory of the process may grow only by what the conversation adds to the KV cache (plus a small allowance for
# the chat history it keeps), measured from /proc/PID/status between turn 5 and turn 50.
# usage: repl_long.sh INFER_BIN MODEL_DIR [TURNS]
set -euo pipefail
BIN=$1
MODEL=$2
TURNS=${3:-50}
S=infer_repl_long_$$
cleanup() { tmux kill-session -t "$S" 2>/dev/null || true; }
trap cleanup EXIT

screen() { tmux capture-pane -p -J -S - -t "$S"; }
wait_for() {  # pattern, count
  for _ in $(seq 1 900); do
    if [ "$(screen | grep -c -- "$1" || true)" -ge "$2" ]; then return 0; fi
    sleep 0.1
  done
  echo "FAIL: timed out waiting for '$1' (x$2); screen:"; screen | tail -40; exit 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }

N=8  # tokens per answer
# The tmux server runs the command with its own environment: pass the sanitizer options on explicitly.
tmux new-session -d -s "$S" -x 200 -y 50 \
  "env ASAN_OPTIONS='${ASAN_OPTIONS:-}' $BIN -m $MODEL -n $N -c 4096 --temp 0 --ignore-eos -t 1; echo EXITED \$?; sleep 30"
wait_for "chat with qwen3" 1
PID=$(pgrep -P "$(tmux display -p -t "$S" '#{pane_pid}')" -f "$(basename "$BIN")" | head -1)
[ -n "$PID" ] || { echo "FAIL: cannot find the infer process"; exit 1; }
rss5=0
for i in $(seq 1 "$TURNS"); do
  tmux send-keys -t "$S" "turn $i: tell me something about the number $i" Enter
  wait_for "generation: $N tokens" "$i"
  if [ "$i" -eq 5 ]; then rss5=$(rss_kb); fi
done
rss_end=$(rss_kb)
screen | grep -q "error:" && { echo "FAIL: an error during the session"; screen | grep "error:"; exit 1; }
p=($(screen | sed -n 's/.*\[prompt: \([0-9]*\) tokens.*/\1/p'))
[ "${#p[@]}" -eq "$TURNS" ] || { echo "FAIL: expected $TURNS timing lines, got ${#p[@]}"; exit 1; }
# KV cache bytes for the tokens of turns 6..TURNS (the demo model: 2 layers × K,V × 2 heads × 8 dims × 4 bytes).
kv_per_token=$(( 2 * 2 * 2 * 8 * 4 ))
tokens=0
for ((k = 5; k < TURNS; ++k)); do tokens=$(( tokens + p[k] + N )); done
allow_kb=$(( tokens * kv_per_token / 1024 + 2048 ))
growth=$(( rss_end - rss5 ))
echo "turns: $TURNS; RSS after turn 5: ${rss5} kB, after turn $TURNS: ${rss_end} kB (growth ${growth} kB); tokens added: $tokens (KV ${kv_per_token} B/token); allowed growth: ${allow_kb} kB"
[ "$growth" -le "$allow_kb" ] || { echo "FAIL: memory grew by ${growth} kB, more than the ${allow_kb} kB allowed"; exit 1; }
tmux send-keys -t "$S" "/quit" Enter
wait_for "EXITED 0" 1
echo "PASS"
