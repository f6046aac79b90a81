#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (for tests/test_slurm.py and .ci/run).
#
# Installs Debian's packages if missing (slurm-wlm, munge, and slurmdbd + mariadb-server for accounting:
# submitit reads job states with `sacct`, so a cancelled or killed job is only seen as finished when accounting
# works), then starts, all as root and all state under $RFDM_SLURM_DIR (default /tmp/rfdm-slurm):
#   munged (default socket; a running one is reused), mariadbd (TCP 127.0.0.1, own datadir), slurmdbd, slurmctld, slurmd,
# with a generated slurm.conf: one node (this machine's CPUs and memory, as `slurmd -C` reports them), one
# partition `debug` (default, no time limit), no cgroups (proctrack/linuxproc, task/none) so that it works in
# a container. Non-default ports (16817-16819, 13306) keep it apart from a system cluster.
# Waits until `sinfo` shows the node idle. Clients need SLURM_CONF=$RFDM_SLURM_DIR/etc/slurm.conf; the script
# prints that line last. Stop everything with scripts/slurm/stop.sh. Idempotent: a running cluster is reused.
set -euo pipefail

DIR="${RFDM_SLURM_DIR:-/tmp/rfdm-slurm}"
CONF="$DIR/etc/slurm.conf"
export SLURM_CONF="$CONF"
say() { echo "[slurm] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and runs the daemons as root)."

if [ -f "$DIR/etc/slurm.conf" ] && timeout 10 sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
    say "already running ($DIR)"
    echo "export SLURM_CONF=$CONF"
    exit 0
fi

# -- packages ------------------------------------------------------------------------------------------------
need=()
for pair in slurmctld:slurmctld slurmd:slurmd sinfo:slurm-client munged:munge slurmdbd:slurmdbd \
            mariadbd:mariadb-server; do
    command -v "${pair%%:*}" > /dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq > "${TMPDIR:-/tmp}/rfdm-slurm-apt.log" 2>&1 \
        || die "apt-get update failed (no network?); see ${TMPDIR:-/tmp}/rfdm-slurm-apt.log"
    timeout 600 apt-get install -y -qq slurm-wlm munge slurmdbd mariadb-server \
        >> "${TMPDIR:-/tmp}/rfdm-slurm-apt.log" 2>&1 \
        || die "apt-get install slurm-wlm munge slurmdbd mariadb-server failed; see ${TMPDIR:-/tmp}/rfdm-slurm-apt.log"
fi
PATH="$PATH:/usr/sbin:/sbin"

# -- a clean state folder (stop what a previous start left) --------------------------------------------------
"$(dirname "$0")/stop.sh" > /dev/null 2>&1 || true
rm -rf "$DIR"
mkdir -p "$DIR"/{etc,log,run,munge,state,spool,mysql}
chmod 700 "$DIR/munge"
HOST="$(hostname -s)"
# the node line as slurmd detects it (sockets/cores/threads must match the hardware), memory minus a margin
NODE="$(slurmd -C | head -1)"
MEM="$(echo "$NODE" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
MEM=$(( MEM * 9 / 10 ))
NODE="$(echo "$NODE" | sed "s/RealMemory=[0-9]*/RealMemory=$MEM/") NodeAddr=127.0.0.1 State=UNKNOWN"

# -- munge -----------------------------------------------------------------------------------------------------
# The default socket (/run/munge/munge.socket.2): every Slurm client finds it without configuration.
# A munged already answering there (a system one) is reused; otherwise one starts with a key of its own.
if ! (munge -n 2>/dev/null | unmunge > /dev/null 2>&1); then
    mkdir -p /run/munge
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --pid-file="$DIR/run/munged.pid" \
           --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed" \
        || die "munged did not start; see $DIR/log/munged.log"
    (munge -n | unmunge > /dev/null) || die "munge does not work; see $DIR/log/munged.log"
fi

# -- mariadb (for slurmdbd) -------------------------------------------------------------------------------------
mariadb-install-db --user=root --datadir="$DIR/mysql" --auth-root-authentication-method=socket \
    > "$DIR/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $DIR/log/mariadb-install.log"
mariadbd --user=root --datadir="$DIR/mysql" --socket="$DIR/run/mysqld.sock" --port=13306 \
         --bind-address=127.0.0.1 --pid-file="$DIR/run/mariadbd.pid" --log-error="$DIR/log/mariadbd.log" \
         --innodb-buffer-pool-size=64M > /dev/null 2>&1 &
for _ in $(seq 60); do
    mariadb -S "$DIR/run/mysqld.sock" -e 'select 1' > /dev/null 2>&1 && break
    sleep 0.5
done
mariadb -S "$DIR/run/mysqld.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;" \
    || die "mariadb did not start; see $DIR/log/mariadbd.log"

# -- configuration ------------------------------------------------------------------------------------------------
cat > "$DIR/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=16819
SlurmUser=root
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=13306
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
chmod 600 "$DIR/etc/slurmdbd.conf"

cat > "$CONF" <<CONF
# generated by scripts/slurm/start.sh: a one-node test cluster, state under $DIR
ClusterName=rfdm
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=16819
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
$NODE
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# -- daemons ------------------------------------------------------------------------------------------------------
slurmdbd || die "slurmdbd did not start; see $DIR/log/slurmdbd.log"
for _ in $(seq 60); do
    timeout 5 sacctmgr -n list cluster > /dev/null 2>&1 && break
    sleep 0.5
done
timeout 10 sacctmgr -i add cluster rfdm > /dev/null 2>&1 || true
timeout 10 sacctmgr -n list cluster format=cluster 2>/dev/null | grep -qw rfdm \
    || die "slurmdbd does not answer; see $DIR/log/slurmdbd.log"
slurmctld || die "slurmctld did not start; see $DIR/log/slurmctld.log"
slurmd || die "slurmd did not start; see $DIR/log/slurmd.log"
for _ in $(seq 120); do
    state="$(timeout 10 sinfo -h -o '%T' 2>/dev/null | head -1 || true)"
    [ "$state" = idle ] && break
    sleep 0.5
done
[ "${state:-}" = idle ] || die "the node is not idle after 60 s (sinfo: '${state:-no answer}'); see $DIR/log/"
say "one-node cluster up: $(sinfo -h -o '%P %D %c cpus %m MB %T')"
echo "export SLURM_CONF=$CONF"
