#!/usr/bin/env bash
# Drives the interactive chat in tmux as a person would (send keys, read the screen):
# two turns with the KV cache kept between them, /no_think as message text, Ctrl-C during an answer, /quit.
# usage: repl_tmux.sh INFER_BIN MODEL_DIR
set -euo pipefail
BIN=$1
MODEL=$2
S1=infer_repl_a_$$
S2=infer_repl_b_$$
S3=infer_repl_c_$$
cleanup() {
  for s in "$S1" "$S2" "$S3"; do tmux kill-session -t "$s" 2>/dev/null || true; done
}
trap cleanup EXIT

screen() { tmux capture-pane -p -J -S - -t "$1"; }
wait_for() {  # session, pattern, count
  local n=${3:-1}
  for _ in $(seq 1 600); do
    if [ "$(screen "$1" | grep -c -- "$2" || true)" -ge "$n" ]; then return 0; fi
    sleep 0.1
  done
  echo "FAIL: timed out waiting for '$2' (x$n) in $1; screen:"; screen "$1"; exit 1
}

# --- two turns, /no_think, prefix reuse
tmux new-session -d -s "$S1" -x 220 -y 50 "$BIN -m $MODEL -n 16 --temp 0 --ignore-eos -t 1; sleep 30"
wait_for "$S1" "chat with qwen3"
tmux send-keys -t "$S1" "hello there" Enter
wait_for "$S1" "generation: 16 tokens" 1
tmux send-keys -t "$S1" "/no_think and once more" Enter
wait_for "$S1" "generation: 16 tokens" 2
p=($(screen "$S1" | sed -n 's/.*\[prompt: \([0-9]*\) tokens.*/\1/p'))
echo "prompt tokens per turn: ${p[*]}"
[ "${#p[@]}" -eq 2 ] || { echo "FAIL: expected two timing lines"; exit 1; }
# Turn 2 prefills only what changed: fewer tokens than turn 1's prompt plus its 16-token answer.
[ "${p[1]}" -lt $(( p[0] + 16 )) ] || { echo "FAIL: turn 2 re-prefilled the history (${p[1]} tokens)"; exit 1; }
tmux send-keys -t "$S1" "/quit" Enter
for _ in $(seq 1 50); do screen "$S1" | grep -q "^> /quit" && break; sleep 0.1; done

# --- Ctrl-C stops the answer, the chat goes on
tmux new-session -d -s "$S2" -x 220 -y 50 "$BIN -m $MODEL -n 3000 -c 8192 --temp 0 --ignore-eos -t 1; echo EXITED \$?; sleep 30"
wait_for "$S2" "chat with qwen3"
tmux send-keys -t "$S2" "write forever" Enter
sleep 1.5
tmux send-keys -t "$S2" C-c
wait_for "$S2" "(stopped)"
wait_for "$S2" "cancelled"
tmux send-keys -t "$S2" "still here?" Enter
wait_for "$S2" "generation:" 2
tmux send-keys -t "$S2" "/quit" Enter
wait_for "$S2" "EXITED 0"

# --- a full context: a clear message, no crash; /clear recovers
tmux new-session -d -s "$S3" -x 220 -y 50 "$BIN -m $MODEL -n 100 -c 40 --temp 0 --ignore-eos -t 1; echo EXITED \$?; sleep 30"
wait_for "$S3" "chat with qwen3"
tmux send-keys -t "$S3" "fill it up" Enter
wait_for "$S3" "the context is full"
tmux send-keys -t "$S3" "one more" Enter
wait_for "$S3" "no longer fits in the context"
tmux send-keys -t "$S3" "/clear" Enter
wait_for "$S3" "history cleared"
tmux send-keys -t "$S3" "fresh start" Enter
wait_for "$S3" "generation:" 2
tmux send-keys -t "$S3" "/quit" Enter
wait_for "$S3" "EXITED 0"
echo "PASS"
