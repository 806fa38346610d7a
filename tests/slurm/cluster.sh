#!/usr/bin/env bash
# A real single-node SLURM on localhost from Debian's packages (munge, slurmctld, slurmd), with
# one fake GPU declared as a generic resource and memory limits enforced, for the workflow's
# SLURM tests.
#   cluster.sh up      install if needed, write the config, start the daemons, wait until idle
#   cluster.sh down    cancel jobs, stop the daemons by PID file
#   cluster.sh status  sinfo and squeue
set -euo pipefail

CONF_DIR=/etc/slurm
RUN_DIR=/run/slurm
STATE_DIR=/var/spool/slurm
HOST=$(hostname -s)

log() { echo "[slurm] $*" >&2; }

install() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        log "installing slurm-wlm and munge from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
}

# How jobs are held to their --mem: as sites do, by the kernel in a memory cgroup (v1's
# controller, where this host lets root create one; SLURM then reports a job over its limit
# OUT_OF_MEMORY), else by slurmd sampling each step's memory every second and killing it
# ("exceeded memory limit"). UNETSEG_SLURM_MEMORY=sampling forces the second.
memory_plugins() {
    local probe=/sys/fs/cgroup/memory/unetseg-probe
    if [[ ${UNETSEG_SLURM_MEMORY:-cgroup} == cgroup ]] && mkdir "$probe" 2>/dev/null; then
        rmdir "$probe"
        # (processes tracked as before, by their tree: signals reach a job step's processes
        # as the preemption test expects)
        printf '%s\n' ProctrackType=proctrack/linuxproc TaskPlugin=task/cgroup \
            JobAcctGatherType=jobacct_gather/none
    else
        printf '%s\n' ProctrackType=proctrack/linuxproc TaskPlugin=task/none \
            JobAcctGatherType=jobacct_gather/linux JobAcctGatherFrequency=task=1 \
            JobAcctGatherParams=OverMemoryKill
    fi
}

write_config() {
    local memory_mb=$(( $(free -m | awk '/^Mem:/ {print $2}') - 1024 ))
    mkdir -p "$CONF_DIR" "$RUN_DIR" "$STATE_DIR/ctld" "$STATE_DIR/d" /var/log/slurm
    chown -R slurm:slurm "$RUN_DIR" "$STATE_DIR" /var/log/slurm
    cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=unetseg
SlurmctldHost=$HOST
SlurmUser=slurm
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$(memory_plugins)
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
MinJobAge=300
ReturnToService=2
AccountingStorageType=accounting_storage/none
GresTypes=gpu
NodeName=$HOST CPUs=$(nproc) RealMemory=$memory_mb Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    # Read only with proctrack/cgroup and task/cgroup.
    cat > "$CONF_DIR/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
CONF
    cat > "$CONF_DIR/gres.conf" <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu File=/dev/null Count=1
CONF
}

start_if_down() {  # name pid-file command...
    local name=$1 pid_file=$2
    shift 2
    if [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        return
    fi
    "$@"
    log "started $name"
}

wait_for() {  # description seconds command...
    local description=$1 seconds=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    log "timed out waiting for $description"
    return 1
}

node_idle() { [[ $(sinfo -h -n "$HOST" -o %T) == idle* ]]; }

up() {
    install
    write_config
    mkdir -p /run/munge && chown munge:munge /run/munge
    start_if_down munged /run/munge/munged.pid runuser -u munge -- munged
    wait_for munge 10 bash -c "munge -n | unmunge"
    start_if_down slurmctld "$RUN_DIR/slurmctld.pid" slurmctld
    wait_for slurmctld 20 scontrol ping
    start_if_down slurmd "$RUN_DIR/slurmd.pid" slurmd
    if ! wait_for "node $HOST idle" 30 node_idle; then
        sinfo -R >&2
        exit 1
    fi
    log "node $HOST idle with one gpu"
}

stop_by_pid_file() {  # pid-file process-name
    local pid_file=$1 name=$2
    [[ -f $pid_file ]] || return 0
    local pid
    pid=$(cat "$pid_file")
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]]; then
        kill -TERM "$pid"
        for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
}

down() {
    scancel --user=root 2>/dev/null || true
    stop_by_pid_file "$RUN_DIR/slurmd.pid" slurmd
    stop_by_pid_file "$RUN_DIR/slurmctld.pid" slurmctld
    stop_by_pid_file /run/munge/munged.pid munged
    log "stopped"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) sinfo; squeue ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
