# Shell helpers shared by the benchmark scripts (sourced, not run).

free_port() { # a port nothing listens on
  while :; do
    local p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

wait_port() { # PORT: wait up to 30 s until something listens on it; $W names the logs
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1; logs in $W" >&2; exit 1
}
