# Scenario smoke: the disk is visible with the expected geometry and a few direct writes read
# back intact.
#
# Results: size_sectors, size_bytes, mq_queues, ro, serial (empty when GET_ID fails), queue
# limits (logical_block_size, ...), and per write i: ddI_offset, ddI_bytes, ddI_written,
# ddI_read (sha256) and ddI=ok|FAIL. Arguments: none.
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

size_sectors=$(sysfs size)
result size_sectors "$size_sectors"
result size_bytes "$(disk_bytes)"
result mq_queues "$(mq_count)"
result ro "$(sysfs ro)"
result serial "$(sysfs serial)"
for attr in logical_block_size physical_block_size minimum_io_size optimal_io_size \
    max_hw_sectors_kb max_segments max_segment_size nr_requests discard_max_hw_bytes \
    discard_granularity write_zeroes_max_bytes write_cache rotational; do
    result "$attr" "$(sysfs "queue/$attr")"
done

bytes=$(disk_bytes)
# offset:length pairs; the last write ends exactly at the end of the disk.
writes="0:4096 1048576:65536 $((bytes / 2 - 4096)):1048576 $((bytes - 131072)):131072"
i=0
for w in $writes; do
    off=${w%:*}
    len=${w#*:}
    result "dd${i}_offset" "$off"
    result "dd${i}_bytes" "$len"
    if [ $((off + len)) -gt "$bytes" ] || [ "$off" -lt 0 ]; then
        fail "dd$i" "disk of $bytes bytes is too small for $len bytes at $off"
        i=$((i + 1))
        continue
    fi
    random_file "$WORK/pattern$i" "$len"
    written=$(sum_file "$WORK/pattern$i")
    result "dd${i}_written" "$written"
    if ! write_at "$WORK/pattern$i" "$off"; then
        fail "dd$i" "direct write of $len bytes at $off failed"
        rm -f "$WORK/pattern$i"
        i=$((i + 1))
        continue
    fi
    i=$((i + 1))
done

drop_caches
i=0
for w in $writes; do
    off=${w%:*}
    len=${w#*:}
    if [ -f "$WORK/pattern$i" ]; then
        got=$(read_sum "$off" "$len") || got=read-error
        result "dd${i}_read" "$got"
        expect_eq "dd$i" "$got" "$(sum_file "$WORK/pattern$i")"
    fi
    i=$((i + 1))
done

finish
