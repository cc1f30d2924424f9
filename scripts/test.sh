#!/usr/bin/env bash
# The whole test suite: unit specs and end-to-end suites against real nginx
# volumes and real SQLite files. Ends with the line `N passed, N failed`.
#   npm test -- <jest args>     e.g. npm test -- --selectProjects unit
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

results=$(mktemp)
npx jest --maxWorkers=2 --json --outputFile="$results" "$@"
status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
  console.log(`${r.numPassedTests} passed, ${failed} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
' "$results" 2>/dev/null || echo "0 passed, 1 failed"
rm -f "$results"
exit $status
