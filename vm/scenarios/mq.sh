# Scenario mq: the guest creates one blk-mq hardware queue per virtqueue (up to one per vCPU)
# and every queue carries I/O: fio verify with jobs spread over all CPUs, and each virtqueue's
# interrupt count (the device's completions on that queue) must grow.
#
# Results: mq_queues, cpus, mqN_cpus (CPU list of hardware queue N), fio_jobs, fio_verify,
# mqN_irqs (interrupts of virtqueue N during fio), all_queues_used, and mq_queues_expected
# (ok|FAIL, only with the `queues` argument).
# Arguments: queues (expected number of queues), size_mib (per job, default 8).
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

queues=$(mq_count)
cpus=$(nproc)
result mq_queues "$queues"
result cpus "$cpus"
expected=$(arg queues "")
[ -z "$expected" ] || expect_eq mq_queues_expected "$queues" "$expected"
for q in "$SYS"/mq/*; do
    result "mq${q##*/}_cpus" "$(cat "$q/cpu_list")"
done

# irqs N: interrupts so far on virtqueue N of this disk's virtio device (MSI-X vector
# "virtioD-req.N" in /proc/interrupts, summed over CPUs).
vdev=$(basename "$(readlink "$SYS/device")")
irqs() {
    awk -v name="$vdev-req.$1" -v cpus="$cpus" \
        '$NF == name { s = 0; for (i = 2; i <= cpus + 1; i++) s += $i; print s; found = 1 }
         END { if (!found) print -1 }' /proc/interrupts
}
q=0
while [ "$q" -lt "$queues" ]; do
    eval "start_$q=$(irqs "$q")"
    q=$((q + 1))
done

jobs=$((cpus * 2))
size_mib=$(arg size_mib 8)
disk_mib=$(($(disk_bytes) / 1048576))
[ $((jobs * size_mib)) -le "$disk_mib" ] || size_mib=$((disk_mib / jobs))
result fio_jobs "$jobs"
if [ "$size_mib" -ge 1 ] && $FIO --name=mq --filename="$DEV" --ioengine=libaio --direct=1 \
    --rw=randwrite --bsrange=4k-64k --iodepth=8 --numjobs="$jobs" --size="${size_mib}M" \
    --offset_increment="${size_mib}M" --cpus_allowed="0-$((cpus - 1))" \
    --cpus_allowed_policy=split --verify=crc32c --verify_fatal=1 --group_reporting; then
    pass fio_verify
else
    fail fio_verify "fio failed (size per job ${size_mib} MiB)"
fi

all=ok
q=0
while [ "$q" -lt "$queues" ]; do
    now=$(irqs "$q")
    start=-1
    eval "start=\$start_$q"
    if [ "$now" -lt 0 ] || [ "$start" -lt 0 ]; then
        result "mq${q}_irqs" none
        all=FAIL
    else
        result "mq${q}_irqs" $((now - start))
        [ $((now - start)) -gt 0 ] || all=FAIL
    fi
    q=$((q + 1))
done
if [ "$all" = ok ]; then
    pass all_queues_used
else
    fail all_queues_used "a virtqueue had no completions ($(grep "$vdev" /proc/interrupts | tr -s ' '))"
fi

finish
