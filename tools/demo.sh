#!/usr/bin/env bash
# The demo incident, end to end, on the built-in sandbox. Run through `make demo`
# (which puts the venv's kfm-runbook first on PATH). Every command shown is one an
# operator would type.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
sandbox=".kfm/demo/sandbox-$stamp"

run kfm-runbook sandbox create "$sandbox" || exit 1
cat "$sandbox/SANDBOX.md"

say kfm-runbook incident new --title "Demo: asset checksum mismatch in the sandbox catalog" --severity Sev1 --commander demo-ic
incident=$(kfm-runbook incident new --title "Demo: asset checksum mismatch in the sandbox catalog" \
  --severity Sev1 --commander demo-ic) || exit 1
echo "$incident"
workspace=$(kfm-runbook incident show "$incident" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')

# 1. Triage, read-only: finds the seeded faults, so verification fails (exit 1).
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$incident" --target "$sandbox/target.yaml"
code=$?
[ "$code" -eq 1 ] || { echo "expected exit 1 (verification failed) from the read-only run, got $code"; exit 1; }

# 2. Containment + recovery with --apply: quarantine, remove dangling links, re-verify (exit 0).
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$incident" --target "$sandbox/target.yaml" --apply || exit 1

# 3. The same runbook on KFM's own catalog-health fixtures (real data, read-only):
#    digest mismatch and path escape FAIL, the remote asset is HOLD while the network is denied.
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$incident" \
  --target tests/kfm_sample/catalog_health.target.yaml
[ $? -eq 1 ] || { echo "expected exit 1 on KFM's fixtures"; exit 1; }

# 4. Prove the evidence intact, with our verifier and with plain coreutils.
head=$(kfm-runbook incident show "$incident" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ledger_head"])')
run kfm-runbook verify "$incident" --expect-head "$head" || exit 1
say "(cd $workspace/10_evidence && sha256sum -c hashes.sha256)"
(cd "$workspace/10_evidence" && sha256sum -c hashes.sha256) || exit 1

run kfm-runbook incident show "$incident"
cat <<MSG

Where everything is:
  workspace     $workspace
  timeline      $workspace/00_meta/timeline.md
  notebooks     $workspace/10_evidence/runs/
  ledger        $workspace/10_evidence/ledger.jsonl   (head $head)
  actions       $workspace/20_actions/commands.md, rollback.md
  checks        $workspace/30_verification/checks.md
  sandbox       $sandbox (quarantined items in catalog/quarantine/)
Undo a containment step: kfm-runbook rollback $incident ACT-… --apply (ids in rollback.md)
MSG
