#!/usr/bin/env bash
# Fuzzes the readers of untrusted files with libFuzzer: safetensors (LigandFormats), model files
# with their metadata and `ligand import`'s layouts (LigandModels), IDX images/labels incl. gzip, .npz/.npy arrays and PNG images (LigandData) and zoo/run recipes
# (LigandZoo, LigandPipeline). Sources/ligand-fuzz is the harness; it is built instrumented
# (`swift build --sanitize fuzzer`) into .build/fuzz.
#   1. replays every regression input in Tests/fuzz/crashers/TARGET/ and Tests/fuzz/corpus/TARGET/
#      (one process per input, so each crash is reported),
#   2. fuzzes each target for SECONDS, starting from the harness's own valid seeds, the committed
#      corpus and the corpus kept from earlier runs (.build/fuzz-corpus/TARGET; recipe: recipes/ too).
# Fails if any input crashes, runs longer than 10 s or takes more than 1 GB (-timeout=10
# -rss_limit_mb=1024); an input over the time limit that replays within it was a stall of the shared machine
# and is only reported. A new crashing input is copied to Tests/fuzz/crashers/TARGET/ so it is
# replayed from then on; commit it with the fix.
#
#   bash launch/fuzz.sh [SECONDS] [TARGET...]    (default 60 s; targets: safetensors model import idx arrays png recipe)
#   bash launch/fuzz.sh 600                      the long run (10 minutes per target)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
cd "$LIGAND_ROOT" || exit 1

seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] || ligand_die "SECONDS must be a whole number, got '$seconds'"
shift $(( $# > 0 ? 1 : 0 ))
all_targets=(safetensors model import idx arrays png recipe)
targets=("${@:-${all_targets[@]}}")
for t in "${targets[@]}"; do
    [[ " ${all_targets[*]} " == *" $t "* ]] || ligand_die "unknown target '$t' (targets: ${all_targets[*]})"
done

timeout_s=10
limits=(-timeout=$timeout_s -rss_limit_mb=1024)
# libFuzzer supplies main(): the harness's Swift entry point is renamed out of its way.
build=(swift build -c release --sanitize fuzzer --build-path .build/fuzz --product ligand-fuzz
    -Xswiftc -Xfrontend -Xswiftc -entry-point-function-name -Xswiftc -Xfrontend -Xswiftc ligand_fuzz_swift_main)
echo "--- building the fuzz harness: ${build[*]}"
start=$SECONDS
mkdir -p .build
if ! "${build[@]}" >.build/fuzz-build.log 2>&1; then
    tail -30 .build/fuzz-build.log
    ligand_die "the fuzz build failed (full log: .build/fuzz-build.log)"
fi
echo "built in $((SECONDS - start)) s"
bin="$LIGAND_ROOT/.build/fuzz/release/ligand-fuzz"
[[ -x "$bin" ]] || ligand_die "no harness at $bin"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ligand-fuzz.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# A crash's backtrace names the failing line; only the replay of a crasher prints it.
export SWIFT_BACKTRACE=enable=no
failed=0
summary=()

# stack_top LOG: what a replayed crash died of and its first frames with a source line.
stack_top() {
    { grep -m1 -E 'runtime failure|Fatal error|Program crashed|libFuzzer: (deadly|out-of-memory|timeout)' "$1" | sed -E 's/^ *[0-9]+ .*(Swift runtime failure)/\1/'
      grep -E '^ *[0-9]+ .* at /' "$1" | grep -vE 'runtime failure|LibFuzzer.swift|Targets.swift|FuzzerLoop' | head -3 \
          | sed -E 's/^ *[0-9]+ +(\[[a-z]+\] +)*0x[0-9a-f]+ //; s/ in ligand-fuzz at / at /'
    } | cut -c1-220 | sed 's/^/      /'
}

# replay TARGET FILE: one regression input, in its own process; prints a verdict.
replay() {
    local target="$1" file="$2" log="$tmp/replay.log"
    # In a subshell whose own stderr is dropped: bash's "Illegal instruction" job notice is noise.
    if ( SWIFT_BACKTRACE=enable=yes,interactive=no LIGAND_FUZZ_TARGET="$target" "$bin" "${limits[@]}" "$file" >"$log" 2>&1; exit $? ) 2>/dev/null; then
        return 0
    fi
    echo "FAIL: $target: $file still crashes:"
    stack_top "$log"
    return 1
}

for target in "${targets[@]}"; do
    echo "--- $target"
    regress=0 bad=0
    for dir in "Tests/fuzz/crashers/$target" "Tests/fuzz/corpus/$target"; do
        [[ -d "$dir" ]] || continue
        for file in "$dir"/*; do
            [[ -f "$file" ]] || continue
            regress=$((regress + 1))
            replay "$target" "$file" || bad=$((bad + 1))
        done
    done
    echo "regression inputs: $regress replayed, $bad crashing"

    corpus=".build/fuzz-corpus/$target"
    mkdir -p "$corpus" "$tmp/seeds-$target" "$tmp/artifacts-$target"
    LIGAND_FUZZ_TARGET="$target" LIGAND_FUZZ_SEEDS="$tmp/seeds-$target" "$bin" >/dev/null 2>&1 \
        || ligand_die "$target: the harness could not write its seeds"
    seeds=("$tmp/seeds-$target")
    [[ -d "Tests/fuzz/corpus/$target" ]] && seeds+=("Tests/fuzz/corpus/$target")
    [[ "$target" == recipe ]] && seeds+=(recipes)
    # Fork mode: every input runs in a child, so a crash, hang or OOM is recorded and fuzzing goes on.
    LIGAND_FUZZ_TARGET="$target" /usr/bin/time -f '%M' -o "$tmp/rss-$target" \
        "$bin" "${limits[@]}" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$seconds" -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$tmp/artifacts-$target/" "$corpus" "${seeds[@]}" >"$tmp/fuzz-$target.log" 2>&1
    rc=$?
    execs=$(grep -oE '^#[0-9]+' "$tmp/fuzz-$target.log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$tmp/fuzz-$target.log" | tail -1)
    peak_kb=$(tail -1 "$tmp/rss-$target" 2>/dev/null)
    found=("$tmp/artifacts-$target"/*)
    [[ -e "${found[0]}" ]] || found=()
    line="$target: ${seconds}s, ${execs:-?} execs, ${cov:-cov: ?}, peak RSS $(( ${peak_kb:-0} / 1024 )) MB, ${#found[@]} crash/timeout/oom input(s), libFuzzer exit $rc"
    echo "$line"
    new=0
    if (( ${#found[@]} > 0 )); then
        mkdir -p "Tests/fuzz/crashers/$target"
        for file in "${found[@]}"; do
            kind=$(basename "$file" | cut -d- -f1)
            # Over the time limit once but within it on replay (same limits): the shared machine stalled, not the reader.
            if [[ "$kind" == slow || "$kind" == timeout ]] && replay "$target" "$file" >/dev/null; then
                echo "note: $target: a $kind input ($(wc -c <"$file") bytes) replays within the $timeout_s s limit: a stall of the machine, not kept"
                continue
            fi
            new=$((new + 1))
            kept="Tests/fuzz/crashers/$target/$(basename "$file")"
            cp "$file" "$kept"
            echo "FAIL: $target: new $(basename "$file" | cut -d- -f1) input kept as $kept ($(wc -c <"$file") bytes):"
            replay "$target" "$kept" >/dev/null || stack_top "$tmp/replay.log"
            # Left for the next run to replay, whatever this one found.
        done
    fi
    if (( bad > 0 || new > 0 )) || [[ -z "$execs" ]]; then
        failed=$((failed + 1))
        [[ -z "$execs" ]] && { echo "FAIL: $target: libFuzzer did not run:"; tail -5 "$tmp/fuzz-$target.log" | sed 's/^/    | /'; }
    fi
    summary+=("$line; regression inputs $regress ($bad crashing)")
done

echo "--- summary"
printf '%s\n' "${summary[@]}"
echo "fuzz: $(( ${#targets[@]} - failed )) target(s) clean, $failed failed"
(( failed == 0 ))
