#!/usr/bin/env bash
# The demo incident, end to end, on the built-in sandbox: declare -> triage -> comms ->
# contain -> verify -> postmortem -> report -> resolve -> bundle. Run through `make demo`
# (which puts the venv's kfm-runbook first on PATH). Every command shown is one an
# operator would type.
set -uo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

stamp=$(date -u +%Y%m%dT%H%M%SZ)
sandbox=".kfm/demo/sandbox-$stamp"

run kfm-runbook sandbox create "$sandbox" || exit 1
cat "$sandbox/SANDBOX.md"

say kfm-runbook incident new --title "Demo: asset checksum mismatch in the sandbox catalog" --severity Sev1 --commander demo-ic
incident=$(kfm-runbook incident new --title "Demo: asset checksum mismatch in the sandbox catalog" \
  --severity Sev1 --commander demo-ic) || exit 1
echo "$incident"
workspace=$(kfm-runbook incident show "$incident" --json | json '["path"]')
run kfm-runbook incident assign "$incident" Ops demo-ops || exit 1
run kfm-runbook incident assign "$incident" Scribe demo-scribe || exit 1

# 1. Triage, read-only: finds the seeded faults, so verification fails (exit 1).
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$incident" --target "$sandbox/target.yaml"
code=$?
[ "$code" -eq 1 ] || { echo "expected exit 1 (verification failed) from the read-only run, got $code"; exit 1; }
run kfm-runbook incident status "$incident" Identified --note "1 asset changed after publication, 1 missing, 1 dangling link" || exit 1
run kfm-runbook incident note "$incident" --impact "downloads of 2 sandbox items are wrong or fail" \
  --hypothesis "assets rewritten in place without regenerating their items" || exit 1
run kfm-runbook update "$incident" || exit 1
run kfm-runbook update "$incident" --audience public || exit 1

# 2. Containment + recovery with --apply: quarantine, remove dangling links, re-verify (exit 0).
run kfm-runbook incident status "$incident" Mitigating --note "quarantining affected items" || exit 1
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$incident" --target "$sandbox/target.yaml" --apply || exit 1
run kfm-runbook incident status "$incident" Monitoring --note "catalog verified clean" || exit 1

# 3. The same runbook on KFM's own catalog-health fixtures (real data, read-only):
#    digest mismatch and path escape FAIL, the remote asset is HOLD while the network is denied.
#    (Run in a separate incident: a HOLD flags integrity as unproven until it passes.)
kfm_incident=$(kfm-runbook incident new --title "Demo: KFM catalog-health fixtures" --severity Sev3) || exit 1
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$kfm_incident" \
  --target tests/kfm_sample/catalog_health.target.yaml
[ $? -eq 1 ] || { echo "expected exit 1 on KFM's fixtures"; exit 1; }

# 3b. A health sweep: every catalog and graph runbook, read-only, two at a time, each sealed
#     as a normal run (in its own incident: a sweep's FAILs are findings to work through).
sweep_incident=$(kfm-runbook incident new --title "Demo: health sweep of the sandbox" --severity Sev3) || exit 1
run kfm-runbook sweep --incident "$sweep_incident" --target "$sandbox/target.yaml" \
  --domain catalog --domain graph --jobs 2
[ $? -eq 1 ] || { echo "expected exit 1: the faulty sandbox fails its sweep"; exit 1; }
run kfm-runbook verify "$sweep_incident" || exit 1

# 4. Close: root cause, postmortem (required: Sev1), report, proof of integrity, resolve.
run kfm-runbook incident note "$incident" --root-cause "asset files rewritten by a re-run without new checksums" || exit 1
run kfm-runbook postmortem "$incident" || exit 1
# The people write the postmortem: every section, and an owner + due date per action item
# (the resolve gate refuses a draft left with its _(…)_ placeholders).
say "\$EDITOR $workspace/90_postmortem/postmortem.md $workspace/90_postmortem/action_items.md"
python3 - "$workspace/90_postmortem" <<'PY' || exit 1
import re, sys
from pathlib import Path
folder = Path(sys.argv[1])
filled = "Demo: written by the incident team at the review (see the timeline for the facts)."
draft = folder / "postmortem.md"
draft.write_text(re.sub(r"_\([^)]*\)_", filled, draft.read_text()))
items = folder / "action_items.md"
text = re.sub(r"_\([^)]*\)_", "Alert when an asset's sha256 stops matching its item", items.read_text())
items.write_text(text.replace("_owner_", "demo-ops").replace("_due_", "in 14 days"))
PY
head=$(kfm-runbook incident show "$incident" --json | json '["ledger_head"]')
run kfm-runbook verify "$incident" --expect-head "$head" || exit 1
say "(cd $workspace/10_evidence && sha256sum -c hashes.sha256)"
(cd "$workspace/10_evidence" && sha256sum --quiet -c hashes.sha256) && echo "all OK" || exit 1
run kfm-runbook report "$incident" || exit 1
run kfm-runbook incident resolve "$incident" --note "contained, verified, postmortem drafted" || exit 1
say kfm-runbook bundle "$incident"
bundle=$(kfm-runbook bundle "$incident") || exit 1
echo "$bundle"
run kfm-runbook verify --bundle "$bundle" || exit 1

run kfm-runbook incident show "$incident"

# 5. A live-service incident: the sandbox's API and PostgreSQL on loopback, a bad feature
#    flag rolled out (5xx burst), found, contained through the admin API, verified.
trap 'kfm-runbook sandbox down --dir "$sandbox" >/dev/null 2>&1' EXIT
run kfm-runbook sandbox up --dir "$sandbox" || exit 1
run kfm-runbook sandbox fault 5xx-burst --on --dir "$sandbox" || exit 1
live_incident=$(kfm-runbook incident new --title "Demo: API 5xx spike" --severity Sev2 --commander demo-ic) || exit 1
run kfm-runbook run RBK-api-5xx-spike --incident "$live_incident" --target "$sandbox/target.yaml"
[ $? -eq 1 ] || { echo "expected exit 1 while the 5xx burst is on"; exit 1; }
run kfm-runbook run RBK-api-5xx-spike --incident "$live_incident" --target "$sandbox/target.yaml" --apply || exit 1
run kfm-runbook verify "$live_incident" || exit 1
run kfm-runbook sandbox down --dir "$sandbox" || exit 1
trap - EXIT

# 6. A PR-first fix on the GitOps sandbox (`sandbox create --git`: a repository with a bare
#    origin beside it). A commit listed a catalog item whose file was never added; the
#    runbook's repair becomes a branch + commit + patch, pushed for review; a reviewer
#    merges it; the runbook verifies after the merge; the incident resolves.
gitops=".kfm/demo/gitops-$stamp"
run kfm-runbook sandbox create "$gitops" --clean --git || exit 1
say "# a developer commits a collection link to an item that was never added"
python3 - "$gitops/catalog/hydrology/collection.json" <<'PY' || exit 1
import json, sys
path = sys.argv[1]
doc = json.load(open(path))
doc["links"].append({"rel": "item", "href": "./items/kfm-sbx-hydro-springs.json",
                     "type": "application/geo+json"})
open(path, "w").write(json.dumps(doc, indent=2) + "\n")
PY
run git -C "$gitops" -c user.name=demo-dev -c user.email=dev@kfm.invalid commit --quiet -am \
  "hydrology: list the springs item" || exit 1
pr_incident=$(kfm-runbook incident new --title "Demo: dangling catalog link (GitOps)" \
  --severity Sev3 --commander demo-ic) || exit 1
pr_workspace=$(kfm-runbook incident show "$pr_incident" --json | json '["path"]')
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$pr_incident" --target "$gitops/target.yaml"
[ $? -eq 1 ] || { echo "expected exit 1: the dangling link"; exit 1; }
run kfm-runbook incident status "$pr_incident" Identified --note "a collection links a missing item" || exit 1
run kfm-runbook incident status "$pr_incident" Mitigating --note "fix proposed as a PR" || exit 1
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$pr_incident" \
  --target "$gitops/target.yaml" --apply --push origin
[ $? -eq 1 ] || { echo "expected exit 1: the fix waits for review, the checkout is untouched"; exit 1; }
run kfm-runbook incident fixes "$pr_incident" || exit 1
run ls "$pr_workspace/20_actions/diffs/" || exit 1
branch=$(kfm-runbook incident fixes "$pr_incident" --json | json '[0]["branch"]') || exit 1
say "# a reviewer approves the PR and merges it"
run git -C "$gitops" -c user.name=demo-reviewer -c user.email=reviewer@kfm.invalid merge \
  --quiet --no-ff -m "Merge $branch" "$branch" || exit 1
run kfm-runbook incident fixes "$pr_incident" || exit 1
run kfm-runbook run RBK-catalog-checksum-mismatch --incident "$pr_incident" --target "$gitops/target.yaml" || exit 1
run kfm-runbook incident status "$pr_incident" Monitoring --note "merged fix verified" || exit 1
run kfm-runbook incident note "$pr_incident" --root-cause "a collection link was committed without its item" || exit 1
run kfm-runbook incident resolve "$pr_incident" --note "PR merged and verified" || exit 1

cat <<MSG

Where everything is:
  workspace     $workspace
  timeline      $workspace/00_meta/timeline.md   (updates in 00_meta/updates/)
  notebooks     $workspace/10_evidence/runs/
  ledger        $workspace/10_evidence/ledger.jsonl
  actions       $workspace/20_actions/commands.md, rollback.md
  checks        $workspace/30_verification/checks.md
  postmortem    $workspace/90_postmortem/ (postmortem.md, action_items.md, report-*.html)
  bundle        $bundle
  sandbox       $sandbox (quarantined items in catalog/quarantine/)
  live incident $live_incident (RBK-api-5xx-spike: flag switched off through the admin API)
  PR-first      $pr_incident (fix branch merged in $gitops; patch in 20_actions/diffs/)
Step through a runbook in JupyterLab: kfm-runbook open RBK-catalog-checksum-mismatch --incident $incident
MSG
