# Sourced by the scripts that start build/blindspotd on port 0 (the
# benchmark, the soak test). daemon_port LOG PID prints the port the
# daemon bound (read from its log) once /v2/health/ready answers 200, and
# fails when the process exits or 20 s pass first.
daemon_port() {
    local log=$1 pid=$2 port="" ready=""
    for _ in $(seq 100); do
        port=${port:-$(sed -n 's/.*(port \([0-9]*\)).*/\1/p' "$log" | head -1)}
        if [ -n "$port" ]; then
            ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/health/ready" || true)
            [ "$ready" = 200 ] && { echo "$port"; return 0; }
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}
