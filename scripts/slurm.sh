#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the fleet's Slurm test (tests/test_fleet.py): Debian's packages,
# munge, slurmctld and slurmd started by hand (no systemd), the node described as `slurmd -C` reads it (its real
# CPUs and memory), every daemon on the loopback address. Run as root. Idempotent: when sinfo answers, it only
# says so. Not for a real cluster: no accounting database, jobs run as the user who submits them.
set -euo pipefail
# The daemons outlive this script: they must not inherit the caller's open files (a `flock LOCK scripts/slurm.sh`
# would otherwise leave LOCK held by slurmd for as long as it runs).
for fd in /proc/$$/fd/*; do
  n=${fd##*/}
  [ "$n" -gt 2 ] && eval "exec $n>&-" 2>/dev/null || true
done
if command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; then
  echo "slurm: up ($(sinfo -h -N -o '%N %T %c CPUs %m MB' | head -1))"
  exit 0
fi
need=()
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# munge: the key every daemon and client shares, and its daemon as its own user
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 20); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
fi

# slurm.conf for this host: the controller and the node on 127.0.0.1
host=$(hostname -s)
node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
install -d -m 0755 /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf <<EOF
# written by xeonft's scripts/slurm.sh: a one-node cluster on this machine
ClusterName=xeonft
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
KillWait=5  # a cancelled job is killed 5 s after its SIGTERM (the tests cancel one), not 30
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do
  state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
  if [ "$state" = idle ]; then
    echo "slurm: up ($(sinfo -h -N -o '%N %T %c CPUs %m MB' | head -1))"
    exit 0
  fi
  sleep 1
done
echo "slurm: the node did not come up (state '${state:-none}'); see /var/log/slurm/" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
