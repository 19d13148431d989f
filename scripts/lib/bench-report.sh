# shellcheck shell=bash
# Results of scripts/bench.sh: every figure, the machine, and the markdown
# table / CSV / README section made from them. Source this file.
#
# A row is one metric of one workload ("WORKLOAD|METRIC"); each system has
# a value in it: a number, FAILED (a step failed or its output did not
# verify: never a number), "n/a (reason)" or nothing (not measured).

ROWS=()                 # "WORKLOAD|METRIC", in table order
declare -A ROW_UNIT=()  # s, MiB/s, IOPS, MiB, ...
declare -A ROW_BETTER=() # lower | higher
declare -A ROW_NOTE=()
declare -A VAL=()       # "WORKLOAD|METRIC|SYSTEM" -> value
FAILURES=()             # one line per failed step
NOTES=()                # remarks printed under the table
TARGETS=()              # "target|value|verdict" lines

# Declares a row: res_row WORKLOAD METRIC UNIT lower|higher [NOTE]
res_row() {
    local key="$1|$2"
    if [[ -z "${ROW_UNIT[$key]:-}" ]]; then
        ROWS+=("$key")
    fi
    ROW_UNIT[$key]=$3
    ROW_BETTER[$key]=$4
    ROW_NOTE[$key]=${5:-}
}

# res_set WORKLOAD METRIC SYSTEM VALUE
res_set() {
    VAL["$1|$2|$3"]=$4
}

res_get() {
    printf '%s' "${VAL["$1|$2|$3"]:-}"
}

# Marks every given metric of WORKLOAD as FAILED for SYSTEM and remembers why:
# res_fail WORKLOAD SYSTEM REASON METRIC...
res_fail() {
    local wl=$1 sys=$2 why=$3 metric
    shift 3
    for metric in "$@"; do
        res_set "$wl" "$metric" "$sys" FAILED
    done
    FAILURES+=("$sys: $wl: $why")
    say "[$sys] $wl: FAILED ($why)"
}

# True if VALUE is a number.
is_number() {
    [[ "$1" =~ ^-?[0-9]+(\.[0-9]+)?$ ]]
}

# SecureVault's value divided by SYSTEM's, 2 decimals, or empty.
res_ratio() {
    local key=$1 anchor=$2 a b
    a=$(res_get "${key%%|*}" "${key#*|}" securevault)
    b=$(res_get "${key%%|*}" "${key#*|}" "$anchor")
    is_number "$a" && is_number "$b" || return 0
    awk -v a="$a" -v b="$b" 'BEGIN { if (b == 0) exit; printf "%.2f", a / b }'
}

# Number formatting: 3 significant digits for small values, integers above 1000.
fmt_num() {
    local v=$1
    if ! is_number "$v" || [[ "$v" =~ ^-?[0-9]+$ ]]; then
        printf '%s' "$v"
        return
    fi
    awk -v v="$v" 'BEGIN {
        a = v < 0 ? -v : v
        if (a >= 1000) printf "%d", v + 0.5
        else if (a >= 100) printf "%.0f", v
        else if (a >= 10) printf "%.1f", v
        else if (a >= 1) printf "%.2f", v
        else printf "%.3f", v }'
}

csv_field() {
    local v=$1
    if [[ "$v" == *[,\"]* ]]; then
        v=${v//\"/\"\"}
        v="\"$v\""
    fi
    printf '%s' "$v"
}

# The CSV: one line per row, every system's raw value and the two ratios.
res_write_csv() {
    local out=$1 key wl metric sys line
    {
        echo "workload,metric,unit,better,securevault,gocryptfs,rclone,juicefs,plain,ratio_vs_gocryptfs,ratio_vs_juicefs,note"
        for key in "${ROWS[@]}"; do
            wl=${key%%|*}
            metric=${key#*|}
            line="$(csv_field "$wl"),$(csv_field "$metric"),${ROW_UNIT[$key]},${ROW_BETTER[$key]}"
            for sys in "${BENCH_ALL_SYSTEMS[@]}"; do
                line+=",$(csv_field "$(res_cell "$wl" "$metric" "$sys")")"
            done
            line+=",$(res_ratio "$key" gocryptfs),$(res_ratio "$key" juicefs),$(csv_field "${ROW_NOTE[$key]}")"
            printf '%s\n' "$line"
        done
    } >"$out"
}

# The value shown for SYSTEM: its figure, or why it has none.
res_cell() {
    local wl=$1 metric=$2 sys=$3 v
    v=$(res_get "$wl" "$metric" "$sys")
    if [[ -z "$v" && -n "${NA[$sys]:-}" ]]; then
        v="n/a (${NA[$sys]})"
    elif [[ -z "$v" && " ${SYSTEMS[*]} " != *" $sys "* ]]; then
        v="not run"
    fi
    printf '%s' "$v"
}

# The markdown table of every row; a row's note is a numbered footnote.
res_table_md() {
    local key wl metric sys line v n=0
    local -a notes=()
    echo "| workload | metric | unit | better | SecureVault | gocryptfs | rclone crypt | JuiceFS | plain dir | SV / gocryptfs | SV / JuiceFS |"
    echo "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for key in "${ROWS[@]}"; do
        wl=${key%%|*}
        metric=${key#*|}
        line="| $wl | $metric"
        if [[ -n "${ROW_NOTE[$key]}" ]]; then
            n=$((n + 1))
            notes+=("$n. $wl, $metric: ${ROW_NOTE[$key]}")
            line+=" [$n]"
        fi
        line+=" | ${ROW_UNIT[$key]} | ${ROW_BETTER[$key]}"
        for sys in "${BENCH_ALL_SYSTEMS[@]}"; do
            v=$(res_cell "$wl" "$metric" "$sys")
            [[ -z "$v" ]] && v="–"
            line+=" | $(fmt_num "$v")"
        done
        v=$(res_ratio "$key" gocryptfs)
        line+=" | ${v:-–}"
        v=$(res_ratio "$key" juicefs)
        line+=" | ${v:-–} |"
        printf '%s\n' "$line"
    done
    if ((${#notes[@]})); then
        echo
        printf '%s\n' "${notes[@]}"
    fi
}

res_targets_md() {
    ((${#TARGETS[@]})) || return 0
    echo "| target | measured | verdict |"
    echo "| --- | --- | --- |"
    local t
    for t in "${TARGETS[@]}"; do
        IFS='|' read -r a b c <<<"$t"
        printf '| %s | %s | %s |\n' "$a" "$b" "$c"
    done
}

# The machine, one item a line (markdown list).
machine_md() {
    local cpu mem disk dev rota os
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    dev=$(findmnt -n -o SOURCE -T "$BENCH_WORK" 2>/dev/null || echo '?')
    rota=$(cat "/sys/block/$(basename "$dev")/queue/rotational" 2>/dev/null || echo '?')
    disk="$dev ($(findmnt -n -o FSTYPE -T "$BENCH_WORK" 2>/dev/null || echo '?'), $(df -h --output=size "$BENCH_WORK" | tail -n 1 | tr -d ' '), rotational=$rota)"
    os=$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}")
    echo "- CPU: ${cpu:-?}, $(nproc) cores"
    echo "- RAM: $mem"
    echo "- OS / kernel: $os / $(uname -r)"
    echo "- disk of the work dir (all systems, the servers and the plain dir): $disk"
    echo "- load average at the start: $BENCH_LOADAVG (other work on the machine makes figures noisy)"
}

# Versions of every tool in the run.
versions_md() {
    local sys
    for sys in "${BENCH_ALL_SYSTEMS[@]}"; do
        if [[ -n "${VERSIONS[$sys]:-}" ]]; then
            echo "- ${SYS_TITLE[$sys]}: ${VERSIONS[$sys]}"
        fi
    done
    echo "- vault-server: $("$BENCH_BIN/vault-server" --version 2>/dev/null | head -n 1), commit $BENCH_COMMIT"
    echo "- MariaDB: $(mariadb --version 2>/dev/null | sed -n 's/.*Distrib \([^,]*\),.*/\1/p')"
    echo "- fio: $(fio --version 2>/dev/null), restic: $(restic version 2>/dev/null | awk '{ print $2; exit }'), rsync: $(rsync --version | awk 'NR == 1 { print $3 }'), tar: $(tar --version | awk 'NR == 1 { print $NF }')"
}

# The whole markdown report.
res_write_md() {
    local out=$1
    {
        echo "# SecureVault benchmark: $BENCH_STAMP${BENCH_QUICK:+ (quick)}${BENCH_MERGED:+ (merged from several runs)}${BENCH_PARTIAL:+ (incomplete: the figures up to the last finished step)}"
        echo
        if [[ -n "${BENCH_MERGED:-}" ]]; then
            echo "\`scripts/bench.sh $BENCH_ARGS\`, commit $BENCH_COMMIT."
        else
            echo "\`scripts/bench.sh${BENCH_ARGS:+ $BENCH_ARGS}\`, commit $BENCH_COMMIT; $((BENCH_ELAPSED / 60)) min $((BENCH_ELAPSED % 60)) s from start to results, the build excluded."
        fi
        echo
        echo "## Machine"
        echo
        machine_md
        echo
        echo "## Versions"
        echo
        versions_md
        echo
        echo "## Results"
        echo
        echo "Times are wall-clock seconds. \"returned\": until the command returned;"
        echo "\"durable\": until the data was also on the system's server/remote/disk"
        echo "(returned + settle, see bench/README.md). Ratios are SecureVault's figure"
        echo "divided by the anchor's: below 1 is better for SecureVault where lower is"
        echo "better (times, memory), above 1 where higher is better (throughput, IOPS)."
        echo "FAILED: the step failed or its output did not verify."
        echo
        res_table_md
        echo
        if ((${#TARGETS[@]})); then
            echo "## Targets (issue 6)"
            echo
            if [[ -n "$BENCH_QUICK" ]]; then
                echo "A quick run's sizes are small: these verdicts only show the direction."
                echo
            fi
            res_targets_md
            echo
        fi
        if ((${#NOTES[@]})); then
            echo "## Notes"
            echo
            printf -- '- %s\n' "${NOTES[@]}"
            echo
        fi
        if ((${#FAILURES[@]})); then
            echo "## Failures"
            echo
            printf -- '- %s\n' "${FAILURES[@]}"
            echo
        fi
    } >"$out"
}

# Replaces what is between the bench markers in README.md with this run's
# machine, table and targets.
res_update_readme() {
    local readme="$ROOT/README.md" section
    grep -q '^<!-- bench:begin -->$' "$readme" && grep -q '^<!-- bench:end -->$' "$readme" ||
        sv_die "README.md has no <!-- bench:begin --> / <!-- bench:end --> markers" || return 1
    section=$(mktemp "${TMPDIR:-/tmp}/bench-readme.XXXXXX") || return 1
    {
        if [[ -n "${BENCH_MERGED:-}" ]]; then
            echo "Latest full set, from runs that each did a part, merged with \`--merge\`"
        else
            echo "Latest full run"
        fi
        echo "($BENCH_STAMP, commit $BENCH_COMMIT; all of it in"
        echo "[bench/results/latest.md](bench/results/latest.md), the CSV beside it):"
        echo
        machine_md
        echo
        res_table_md
        if ((${#TARGETS[@]})); then
            echo
            res_targets_md
        fi
    } >"$section"
    awk -v f="$section" '
        /^<!-- bench:begin -->$/ { print; while ((getline l < f) > 0) print l; skip = 1; next }
        /^<!-- bench:end -->$/ { skip = 0 }
        !skip { print }' "$readme" >"$readme.tmp" && mv -f -- "$readme.tmp" "$readme"
    local rc=$?
    rm -f -- "$section"
    return "$rc"
}

# The figures so far, after every step, into bench/work/ (not committed):
# what an interrupted run leaves.
res_checkpoint() {
    local base="$ROOT/bench/work/partial-$BENCH_STAMP${BENCH_QUICK:+-quick}"
    mkdir -p "$ROOT/bench/work" || return 0
    BENCH_ELAPSED=$((SECONDS - BENCH_START))
    BENCH_PARTIAL=1 res_write_md "$base.md" 2>/dev/null || true
    res_write_csv "$base.csv" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# Targets of issue 6
# ---------------------------------------------------------------------------

# Target verdicts (issue 6) from the figures.
# target_faster NAME WORKLOAD METRIC: SV at least 2x JuiceFS (time <= half)
# and within 1.5x gocryptfs (time <= 1.5 x).
target_faster() {
    local name=$1 wl=$2 metric=$3 key="$2|$3" rj rg verdict
    rj=$(res_ratio "$key" juicefs)
    rg=$(res_ratio "$key" gocryptfs)
    if [[ -z "$rj" || -z "$rg" ]]; then
        verdict="not measured"
    elif awk -v j="$rj" -v g="$rg" 'BEGIN { exit !(j <= 0.5 && g <= 1.5) }'; then
        verdict=met
    else
        verdict=MISSED
    fi
    TARGETS+=("$name, $metric: >= 2x JuiceFS and within 1.5x gocryptfs|time SV/JuiceFS ${rj:-?}, SV/gocryptfs ${rg:-?}|$verdict")
}

# target_at_least NAME WORKLOAD METRIC ANCHOR: SV's figure (higher is better)
# at least the anchor's.
target_at_least() {
    local name=$1 key="$2|$3" anchor=$4 r verdict
    r=$(res_ratio "$key" "$anchor")
    if [[ -z "$r" ]]; then
        verdict="not measured"
    elif awk -v r="$r" 'BEGIN { exit !(r >= 1) }'; then
        verdict=met
    else
        verdict=MISSED
    fi
    TARGETS+=("$name >= $anchor|SV/$anchor ${r:-?} (${ROW_UNIT[$key]})|$verdict")
}

compute_targets() {
    local big=("${TARGETS[@]}")
    TARGETS=()
    if [[ -n "${WL_SEQW:-}" ]]; then
        target_at_least "seq write $SEQ_LABEL until durable" "$WL_SEQW" "durable throughput" gocryptfs
        target_at_least "cold seq read $SEQ_LABEL" "$WL_SEQR" throughput gocryptfs
    fi
    if [[ -n "${WL_SMALL:-}" ]]; then
        target_faster "small-file create ($SMALL_LABEL)" "$WL_SMALL" "create, returned"
        target_faster "small-file create ($SMALL_LABEL)" "$WL_SMALL" "create, durable"
    fi
    if [[ -n "${WL_UNTAR:-}" ]]; then
        target_faster untar "$WL_UNTAR" returned
        target_faster untar "$WL_UNTAR" durable
        target_faster "rsync -a" "$WL_RSYNC" returned
        target_faster "rsync -a" "$WL_RSYNC" durable
    fi
    local v="" verdict
    [[ -z "${WL_LSL:-}" ]] || v=$(res_get "$WL_LSL" time securevault)
    if is_number "$v"; then
        verdict=$(awk -v v="$v" 'BEGIN { print (v < 0.5 ? "met" : "MISSED") }')
        ((SMALL_FILES == 10000)) || verdict+=" (quick run: $SMALL_LABEL entries, not 10k)"
    else
        verdict="not measured"
    fi
    TARGETS+=("ls -l of a 10k-entry dir, cold, < 0.5 s|${v:-–} s|$verdict")
    TARGETS+=("${big[@]}")
}

# ---------------------------------------------------------------------------
# Merging runs: one report from the CSVs of runs that each did a part
# ---------------------------------------------------------------------------

# Loads every figure of the CSV files (later files win) into the rows, then
# finds the workloads the targets need by their names.
res_merge_csvs() {
    local csv wl metric unit better note v i key s1 s2 s3 s4 s5
    local -a vals
    local sep=$'\x1f'
    for csv in "$@"; do
        [[ -f "$csv" ]] || sv_die "$csv does not exist" || return 1
        while IFS="$sep" read -r wl metric unit better s1 s2 s3 s4 s5 _ _ note; do
            vals=("$s1" "$s2" "$s3" "$s4" "$s5")
            key="$wl|$metric"
            [[ -n "$note" ]] || note=${ROW_NOTE[$key]:-}
            res_row "$wl" "$metric" "$unit" "$better" "$note"
            for i in 0 1 2 3 4; do
                v=${vals[i]}
                if is_number "$v" || [[ "$v" == FAILED || "$v" == "not built" ]]; then
                    res_set "$wl" "$metric" "${BENCH_ALL_SYSTEMS[i]}" "$v"
                elif [[ "$v" == "not run" && -z "$(res_get "$wl" "$metric" "${BENCH_ALL_SYSTEMS[i]}")" ]]; then
                    res_set "$wl" "$metric" "${BENCH_ALL_SYSTEMS[i]}" "not run"
                fi
            done
        done < <(sv_syspython - "$csv" <<'PY'
import csv, sys
rows = csv.reader(open(sys.argv[1], newline=""))
next(rows)
for row in rows:
    print("\x1f".join(f.replace("\n", " ") for f in row))
PY
        )
    done
    for key in "${ROWS[@]}"; do
        wl=${key%%|*}
        case "$wl" in
            "seq write "*) WL_SEQW=$wl SEQ_LABEL=${wl#seq write } ;;
            "seq read "*) WL_SEQR=$wl ;;
            *" files of 4 KiB in one dir")
                WL_SMALL=$wl SMALL_LABEL=${wl%% *}
                SMALL_FILES=${SMALL_LABEL/k/000}
                ;;
            "ls -l of one dir of "*) WL_LSL=$wl ;;
            "untar, "*) WL_UNTAR=$wl ;;
            "rsync -a, "*) WL_RSYNC=$wl ;;
            "write "*" GiB (SecureVault)") WL_BIG=$wl ;;
        esac
    done
    # The memory target, from the figure.
    if [[ -n "${WL_BIG:-}" ]]; then
        v=$(res_get "$WL_BIG" "daemon peak RSS, writing" securevault)
        if is_number "$v"; then
            local limit=$((64 + BENCH_SV_MEMORY_CACHE_MIB))
            local size=${WL_BIG#write }
            TARGETS+=("daemon peak RSS writing a ${size% (SecureVault)} file <= 64 MiB + memory cache ($limit MiB)|$v MiB|$(awk -v v="$v" -v l="$limit" 'BEGIN { print (v <= l ? "met" : "MISSED") }')")
        fi
    fi
}
