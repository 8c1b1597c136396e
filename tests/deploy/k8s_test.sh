#!/usr/bin/env bash
# Renders every kustomization under deploy/k8s and validates the result offline
# and strictly (validate_manifests.mjs: TypeScript's excess-property and type
# checks plus the JSON-schema validators, both generated from the published
# Kubernetes and cert-manager schemas). Then proves the check has teeth: each
# deliberately broken variant of a rendered manifest must fail, naming the
# mistake. Finally the server flags each overlay's ConfigMap carries must parse.
set -euo pipefail
runfiles="${TEST_SRCDIR}/${TEST_WORKSPACE}"
ext="${TEST_SRCDIR}/nokv_npm"
node="$ext/bin/node"
kubectl="$ext/bin/kubectl"
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/k8s.XXXXXX")
# A copy with the files themselves (kustomize refuses files reached through
# links that leave the kustomization's root; runfiles are links).
cp -rL "$runfiles/deploy/k8s" "$tmp/k8s"
mkdir "$tmp/validate"
cp "$runfiles/tests/deploy/validate_manifests.mjs" "$tmp/validate/"
ln -s "$(readlink -f "$ext/node_modules")" "$tmp/validate/node_modules"
validate() { "$node" "$tmp/validate/validate_manifests.mjs" "$@"; }

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

overlays=(base overlays/dev overlays/tls overlays/cluster)
for o in "${overlays[@]}"; do
  out="$tmp/$(echo "$o" | tr / -).yaml"
  if ! "$kubectl" kustomize "$tmp/k8s/$o" >"$out" 2>"$out.err"; then
    fail "kubectl kustomize deploy/k8s/$o: $(cat "$out.err")"
    continue
  fi
  echo "== deploy/k8s/$o"
  validate "$out" || fail "deploy/k8s/$o does not validate"
done

# Every overlay found is one this test renders.
found=$(cd "$tmp/k8s" && find . -name kustomization.yaml -printf '%h\n' | sed 's|^\./||' | sort)
want=$(printf '%s\n' "${overlays[@]}" | sort)
[ "$found" = "$want" ] || fail "kustomizations under deploy/k8s: $found; rendered: $want"

# The broken variants: sed expression on a rendered overlay | what the error must say.
broken() {
  local name=$1 from=$2 expr=$3 expect=$4
  local f="$tmp/broken-$name.yaml"
  sed -E "$expr" "$tmp/$from.yaml" >"$f"
  if cmp -s "$f" "$tmp/$from.yaml"; then
    fail "broken variant $name changed nothing"
    return
  fi
  local out
  if out=$(validate "$f" 2>&1); then
    fail "broken variant $name passed validation"
  elif ! grep -qF -- "$expect" <<<"$out"; then
    fail "broken variant $name failed without naming '$expect': $out"
  else
    echo "broken variant $name refused: $(grep -F -- "$expect" <<<"$out" | head -1 | cut -c1-200)"
  fi
}
broken unknown-field base 's/imagePullPolicy: IfNotPresent/imagePullPolicyy: IfNotPresent/' \
  "\"imagePullPolicyy\"' does not exist in type 'IContainer'"
broken unknown-nested-field base 's/runAsNonRoot: true/runAsNonroot: true/' "\"runAsNonroot\"' does not exist in type 'IPodSecurityContext'"
broken wrong-type base 's/replicas: 1$/replicas: "1"/' "not assignable to type 'number'"
broken probe-port-by-name base 's/^(            )port: 50051$/\1port: grpc/' \
  "not assignable to type 'number'"
broken bad-enum base 's/podManagementPolicy: OrderedReady/podManagementPolicy: Sometimes/' \
  "must be equal to one of the allowed values"
broken missing-container-name base 's/^(        )name: nokv$/\1nam: nokv/' "must have required property name"
broken wrong-api-version base 's|^apiVersion: policy/v1$|apiVersion: policy/v1beta2|' \
  "policy/v1beta2/PodDisruptionBudget is not a kind"
broken certificate-field overlays-tls 's/^  dnsNames:/  dnsName:/' "\"dnsName\"' does not exist in type 'ICertificateSpec'"
broken bad-quantity base 's/storage: 20Gi/storage: twenty/' "must match"

# The cluster overlay: 3 pods started together, a majority kept through
# disruptions, and a peer list naming exactly those pods at the Raft port the
# pods expose.
c="$tmp/overlays-cluster.yaml"
grep -q '^  replicas: 3$' "$c" || fail "cluster overlay: not 3 replicas"
grep -q '^  podManagementPolicy: Parallel$' "$c" || fail "cluster overlay: pods not started together"
grep -q '^  minAvailable: 2$' "$c" || fail "cluster overlay: the disruption budget does not keep 2"
grep -q 'maxUnavailable' "$c" && fail "cluster overlay: the budget keeps base's maxUnavailable too"
grep -q -- '--peers=1=nokv-0.nokv-headless:7001,2=nokv-1.nokv-headless:7001,3=nokv-2.nokv-headless:7001$' "$c" ||
  fail "cluster overlay: --peers does not name nokv-0..2 at port 7001"
grep -q -- '- --raft_listen=$(POD_NAME).nokv-headless:7001' "$c" || fail "cluster overlay: no --raft_listen by pod name"
grep -B1 -A2 'containerPort: 7001' "$c" | grep -q 'protocol: TCP' ||
  fail "cluster overlay: the pods do not expose the Raft port"
grep -B3 'targetPort: raft$' "$c" | grep -q 'port: 7001' ||
  fail "cluster overlay: the headless Service lost the Raft port"
grep -B2 -A2 'containerPort: 7001' "$c" | grep -q 'protocol: UDP' ||
  fail "cluster overlay: the pods do not expose the Raft port over UDP (read lease probes)"
[ "$failures" -eq 0 ] && echo "cluster overlay: 3 pods in parallel, minAvailable 2, peers nokv-0..2:7001"

# The server accepts the flags each overlay gives it (absl parses every
# --flagfile before --helpfull prints; an unknown flag or a bad value is an ERROR).
for o in "${overlays[@]}"; do
  rendered="$tmp/$(echo "$o" | tr / -).yaml"
  dir="$tmp/flags-$(echo "$o" | tr / -)"
  mkdir -p "$dir"
  "$node" --input-type=module -e '
    import { readFileSync, writeFileSync } from "node:fs";
    import { parseAllDocuments } from "'"$tmp/validate/node_modules/yaml/dist/index.js"'";
    for (const d of parseAllDocuments(readFileSync(process.argv[1], "utf8"))) {
      const o = d.toJS();
      if (o?.kind === "ConfigMap") {
        for (const [k, v] of Object.entries(o.data ?? {})) writeFileSync(process.argv[2] + "/" + k, v);
      }
    }' "$rendered" "$dir"
  args=()
  for f in "$dir"/*.flags; do args+=("--flagfile=$f"); done
  [ ${#args[@]} -gt 0 ] || { fail "$o: no flag file in its ConfigMap"; continue; }
  err=$("$runfiles/service/nokv_server" "${args[@]}" --helpfull 2>&1 >/dev/null || true)
  if grep -q "ERROR" <<<"$err"; then
    fail "$o: nokv_server refuses its flags: $err"
  else
    echo "$o: nokv_server accepts ${args[*]##*/}"
  fi
done

rm -rf "$tmp"
if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "every overlay valid; every broken variant refused"
