# The closing line of `make test`, from the log of
# `cargo test --workspace --no-fail-fast` (stdout and stderr together):
#
#   tests: N passed, N failed: NAMES
#
# A test that failed is named by its path. A test binary that ended without
# its "test result:" line (killed by a signal, or crashed) counts as one
# failure, named by what cargo says reruns it, with how it ended. Run with
# -v status=S, cargo's exit status: a non-zero status with nothing counted
# as failed (a build that failed, say) is said too, so the line never reads
# "0 failed" for a run that failed.

function flush() {
    if (pending != "") {
        f += 1
        names = names " [" pending ": no test result, " (why != "" ? why : "it did not finish") "]"
    }
    pending = ""
    why = ""
}

/^ +(Running|Doc-tests) / { flush(); had_result = 0 }
/^test result:/ { p += $4; f += $6; had_result = 1 }
/^test .* FAILED$/ { names = names " " $2 }
/^error: test failed, to rerun pass `/ {
    flush()
    if (!had_result) {
        pending = $0
        sub(/^error: test failed, to rerun pass `/, "", pending)
        sub(/`.*$/, "", pending)
    }
}
/process didn.t exit successfully: .*\((signal|exit status): / {
    if (pending != "") {
        why = $0
        sub(/.*\(/, "", why)
        sub(/\)$/, "", why)
    }
}

END {
    flush()
    line = "tests: " p + 0 " passed, " f + 0 " failed" (f ? ":" names : "")
    if (status != 0 && f == 0)
        line = line " (but cargo test exited with status " status ": see the log above)"
    print line
}
