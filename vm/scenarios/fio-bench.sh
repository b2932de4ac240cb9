# Scenario fio-bench: measures rather than checks. One fio job over the whole disk (libaio,
# O_DIRECT), `rw` of `bs` at `iodepth`, for `runtime` seconds after a 2 s ramp: what a guest sees
# of the backend's speed (under TCG the guest itself is the bottleneck, so this mostly shows how
# well notifications are handled). `npm run bench` runs it against each backend.
# Results: fio_iops (integer), fio_bench=ok|FAIL.
# Arguments: rw (default randread), bs (default 4k), iodepth (default 32), runtime (default 10).
# shellcheck shell=dash source=SCRIPTDIR/../scenario-lib.sh
. /lib/vub/scenario-lib.sh

rw=$(arg rw randread)
bs=$(arg bs 4k)
iodepth=$(arg iodepth 32)
runtime=$(arg runtime 10)
out=$WORK/fio-bench.terse

if $FIO --name=bench --filename="$DEV" --ioengine=libaio --direct=1 --rw="$rw" --bs="$bs" \
    --iodepth="$iodepth" --time_based --runtime="$runtime" --ramp_time=2 \
    --output-format=terse --terse-version=3 >"$out"; then
    # Terse version 3: field 8 is the read IOPS, field 49 the write IOPS.
    result fio_iops "$(awk -F';' '{ print ($8 > 0 ? $8 : $49) }' "$out")"
    pass fio_bench
else
    fail fio_bench "fio exited with $?"
fi

finish
