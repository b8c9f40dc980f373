# Shared by the MPI test scripts (zoo, merge, neulig): sourced after common.sh.
#   test_setup NAME [BIN]   sets bin, tmp (removed on exit), the pass/fail counters, LIGAND_QUIET
#                           LIGAND_DIGESTS=FILE: on exit, append the sha256 of every fused file written under tmp
#                           (the zoo cache excluded) to FILE, to check a refactoring changes no result
#                           LIGAND_DATA_DIGESTS=FILE: the same for the files' data sections (tensors only, metadata left out)
#   ok MSG / fail MSG       count and print one check
#   run_np NP OUT ARGS...   ligand under mpirun with NP ranks, stdout+stderr to OUT, 300 s limit
#   tiny_recipe FILE        the tiny recipe the scripts build (a few thousand images, 1 epoch)
#   rank_output FILE        FILE without mpirun's help banners (one can land inside a rank's line: the line is whole again)
#   merge_on_ranks NAME SUITE METHOD FILE ROW ARGS...
#                           `ligand merge --method METHOD --suite SUITE ARGS` under -np 1, 2 and 4 into $tmp/NAME-NP: FILE is
#                           bitwise the same, ROW is in the table, and the tables agree (rank counts and timings aside)
#   expect_error NAME PATTERN NP ARGS...
#                           ligand ARGS under NP ranks must exit non-zero with exactly one line saying "error: ", PATTERN
#                           (extended regex) in its output, and nothing at $tmp/bad-NAME (where callers point --out)

test_setup() {
    local name="$1"
    bin="${2:-$(ligand_bin)}" || exit 1
    [[ "$bin" == /* ]] || bin="$LIGAND_ROOT/$bin"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/ligand-$name.XXXXXX")"
    trap test_cleanup EXIT
    passed=0; failed=0
    export LIGAND_QUIET=1
}

test_cleanup() {
    if [[ -n "${LIGAND_DIGESTS:-}" ]]; then
        (cd "$tmp" && find . -name '*.safetensors' -not -path './cache/*' -type f -print0 | sort -z | xargs -0 -r sha256sum) >>"$LIGAND_DIGESTS"
    fi
    if [[ -n "${LIGAND_DATA_DIGESTS:-}" ]]; then
        (cd "$tmp" && find . -name '*.safetensors' -not -path './cache/*' -type f -print0 | sort -z | xargs -0 -r python3 "$LIGAND_ROOT/launch/data-digest.py") >>"$LIGAND_DATA_DIGESTS"
    fi
    rm -rf "$tmp"
}

ok()   { echo "ok:   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

run_np() {
    local np="$1" out="$2"; shift 2
    local pass=()
    [[ -n "${LIGAND_ZOO_CACHE:-}" ]] && pass=(-x LIGAND_ZOO_CACHE)
    timeout --kill-after=5 300 bash -c 'source launch/common.sh; np="$1"; shift; ligand_mpirun -np "$np" "$@"' \
        _ "$np" "${pass[@]}" -- "$bin" "$@" >"$out" 2>&1 </dev/null
}

tiny_recipe() {
    cat >"$1" <<'YAML'
suites:
  tiny-seeds:
    kind: seeds
    seed: 3
    calibration: 500
    train_images: 3000
    architectures: [{kind: mlp, hidden: [16]}]
    models: 3
    epochs: 1
  tiny-tasks:
    kind: tasks
    calibration: 500
    train_images: 3000
    architectures: [{kind: mlp, hidden: [32]}]
    tasks: [rotate90, invert, coarse]
    pretrain: {images: 1000, epochs: 1}
    expert_images: 2000
    shots: 5
    epochs: 1
YAML
}

rank_output() {
    # OpenMPI frames every help message with lines of 70+ dashes; the ranks' stderr is forwarded around them.
    perl -0777 -pe 's/-{70,}\n.*?-{70,}\n//gs' "$1"
}

expect_error() {
    local name="$1" pattern="$2" np="$3"; shift 3
    run_np "$np" "$tmp/$name.out" "$@"
    local rc=$? clean n
    clean="$(rank_output "$tmp/$name.out")"
    n=$(grep -ci "error: " <<<"$clean")
    if (( rc != 0 )) && grep -qE -- "$pattern" <<<"$clean" && (( n == 1 )) && [[ ! -e "$tmp/bad-$name" ]]; then
        ok "$name: exit $rc: $(grep -im1 'error: ' <<<"$clean" | cut -c1-200)"
    else
        fail "$name: exit $rc, $n error line(s)$([[ -e "$tmp/bad-$name" ]] && echo ", $tmp/bad-$name was written")"
        sed 's/^/    | /' "$tmp/$name.out" | head -15
    fi
}

merge_on_ranks() {
    local name="$1" suite="$2" method="$3" file="$4" row="$5"; shift 5
    local np
    for np in 1 2 4; do
        run_np "$np" "$tmp/$name-$np.out" merge --method "$method" --suite "$suite" --out "$tmp/$name-$np" --quiet "$@" \
            || { fail "$method on $suite -np $np"; sed 's/^/    | /' "$tmp/$name-$np.out" | tail; return; }
    done
    local f1="$tmp/$name-1/$file"
    table() { grep -vE '^(report:|wall seconds|communication)' "$1" | grep -v 'rank(s)'; }
    if [[ -s "$f1" ]] && cmp -s "$f1" "$tmp/$name-2/$file" && cmp -s "$f1" "$tmp/$name-4/$file" \
            && grep -q "$row" "$tmp/$name-1.out" \
            && diff <(table "$tmp/$name-1.out") <(table "$tmp/$name-2.out") >/dev/null \
            && diff <(table "$tmp/$name-1.out") <(table "$tmp/$name-4.out") >/dev/null; then
        ok "$method on $suite: bitwise-identical $file and same table for -np 1, 2 and 4 ($(grep -m1 "$row" "$tmp/$name-1.out" | tr -s ' '))"
    else fail "$method on $suite: -np 1, 2 and 4 differ"; diff "$tmp/$name-1.out" "$tmp/$name-4.out" | head; fi
}
