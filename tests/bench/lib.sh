# What the distributed benchmarks share (bench_distributed.sh, bench_gateway.sh):
# processes by PID and ports on 127.0.0.1. Sourced, not run.
# shellcheck shell=bash

# alive PID: the process exists and is no zombie
alive() {
    local line
    [[ $1 -gt 0 ]] && kill -0 "$1" 2>/dev/null || return 1
    read -r line 2>/dev/null <"/proc/$1/stat" || return 1
    line=${line##*) }
    [[ "${line%% *}" != Z ]]
}

# stop_pid PID SIGNAL SECONDS: signal, wait, then SIGKILL
stop_pid() {
    local pid=$1 sig=$2 secs=$3 i
    alive "$pid" || return 0
    kill "-$sig" "$pid" 2>/dev/null || return 0
    for ((i = 0; i < secs * 10; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        echo "${0##*/}: PID $pid did not stop on SIG$sig: killed" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# free_port: a port of 127.0.0.1 nobody listens on now, below the kernel's ephemeral ports
# where it can (a client's connection in TIME_WAIT on a port keeps a server from binding it:
# wrk's 128 connections leave as many)
free_port() {
    local p i lo=32768 span
    read -r lo _ 2>/dev/null </proc/sys/net/ipv4/ip_local_port_range || true
    span=$((lo > 21000 ? lo - 20000 : 40000))
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % span))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_port PID PORT SECONDS: PID listens on 127.0.0.1:PORT (1: it exited or never did)
wait_port() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        alive "$1" || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

now() { echo "$EPOCHREALTIME"; }
