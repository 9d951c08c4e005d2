#!/usr/bin/env bash
# A real single-node SLURM on this machine, for the `slurm` tests (CI) and for trying
# profiles/slurm on a workstation: Debian's slurm-wlm and munge, one node with this
# machine's cores and memory, two partitions on it (`debug`, the default, and `gpu`, a
# second one with no GPUs, where the tests send jobs with --set-resources RULE:slurm_partition=gpu),
# no accounting daemon (so job states come from squeue; MinJobAge keeps finished jobs
# there long enough).
# Run as root. Idempotent: installs what is missing, (re)starts what is not running,
# then waits until the node is idle.
# Usage: bash scripts/slurm-local.sh [start|stop|status]
set -euo pipefail
action=${1:-start}

if [ "$(id -u)" != 0 ]; then
  echo "scripts/slurm-local.sh: run as root (it installs packages and starts daemons)" >&2
  exit 1
fi

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
}

case $action in
  stop) stop; exit 0 ;;
  status) sinfo; squeue; exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
# Leave 1 GiB to the system; SLURM refuses a node whose RealMemory exceeds what it finds.
mem_mb=$(( $(awk '/^MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
marker="# Written by scripts/slurm-local.sh"
if [ -s /etc/slurm/slurm.conf ] && ! grep -q "^$marker" /etc/slurm/slurm.conf; then
  echo "scripts/slurm-local.sh: /etc/slurm/slurm.conf exists and was not written by this script; left alone" >&2
  exit 1
fi
# Jobs only see the configuration at /etc/slurm/slurm.conf (not a SLURM_CONF elsewhere).
old_conf=$(cat /etc/slurm/slurm.conf 2>/dev/null || true)
cat > /etc/slurm/slurm.conf <<EOF
$marker: single-node SLURM for tests.
ClusterName=coemu-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue for an hour: the executor plugin reads states there,
# and the tests read every job of a whole default run after it ends (at 10 minutes a run
# slowed by a busy machine lost its first jobs' records before the test looked).
MinJobAge=3600
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host Default=NO MaxTime=INFINITE State=UP
EOF

# munge: a key, its directories owned by the munge user, the daemon run as that user.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null

if pgrep -x slurmctld >/dev/null; then
  # running already: a changed configuration (a new partition) is read again
  [ "$old_conf" = "$(cat /etc/slurm/slurm.conf)" ] || scontrol reconfigure
else
  slurmctld
fi
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  case $state in
    idle*|mixed*|allocated*) echo "SLURM ready: node $host ($cpus CPUs, $mem_mb MB), partitions debug (default) and gpu"; exit 0 ;;
    down*|drain*) scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "scripts/slurm-local.sh: node $host not idle after 60 s (state: ${state:-unknown})" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
