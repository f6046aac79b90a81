#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by scripts/slurm/start.sh: slurmd, slurmctld, slurmdbd, mariadbd and
# munged, each by the pid file in $RFDM_SLURM_DIR (default /tmp/rfdm-slurm); the folder is kept (logs).
set -uo pipefail
DIR="${RFDM_SLURM_DIR:-/tmp/rfdm-slurm}"
[ -d "$DIR/run" ] || exit 0
export SLURM_CONF="$DIR/etc/slurm.conf"
if [ -f "$SLURM_CONF" ] && command -v scancel > /dev/null; then
    timeout 10 scancel --full --quiet --user=root 2>/dev/null || true
fi
for name in slurmd-"$(hostname -s)" slurmctld slurmdbd mariadbd munged; do
    pidfile="$DIR/run/$name.pid"
    [ -f "$pidfile" ] || continue
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
done
echo "[slurm] stopped ($DIR)" >&2
