# Scenario fio-verify: fio random writes of mixed sizes, then reads everything back and checks
# each block's crc32c (fio verify).
#
# libaio, O_DIRECT, block sizes 4k-64k, iodepth 16, `jobs` jobs on disjoint regions of
# `size_mib` MiB each (clamped to the disk; 2 x 32 MiB take about 6 s under TCG).
# Results: fio_jobs, fio_size_mib (per job), fio_verify=ok|FAIL.
# Arguments: jobs (default 2), size_mib (default 32), iodepth (default 16).
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

jobs=$(arg jobs 2)
size_mib=$(arg size_mib 32)
iodepth=$(arg iodepth 16)
disk_mib=$(($(disk_bytes) / 1048576))
[ $((jobs * size_mib)) -le "$disk_mib" ] || size_mib=$((disk_mib / jobs))
result fio_jobs "$jobs"
result fio_size_mib "$size_mib"

if [ "$size_mib" -lt 1 ]; then
    fail fio_verify "the disk ($disk_mib MiB) is too small for $jobs jobs"
    finish
fi

if $FIO --name=verify --filename="$DEV" --ioengine=libaio --direct=1 --rw=randwrite \
    --bsrange=4k-64k --iodepth="$iodepth" --numjobs="$jobs" --size="${size_mib}M" \
    --offset_increment="${size_mib}M" --verify=crc32c --verify_fatal=1 --group_reporting; then
    pass fio_verify
else
    fail fio_verify "fio exited with $?"
fi

finish
