// Validates rendered Kubernetes manifests offline and strictly:
//
//   node validate_manifests.mjs FILE.yaml...
//
// Every document must be a kind listed below. Each is checked twice against the
// types generated from the published Kubernetes OpenAPI schemas (and
// cert-manager's CRD schemas) by the kubernetes-models packages:
// - the TypeScript compiler type-checks it as an object literal of the kind's
//   interface: an unknown field anywhere (TypeScript's excess property check),
//   a wrong type, a missing required field or a wrong apiVersion fails;
// - the kind's JSON-schema validator (ajv, compiled from the same schemas)
//   checks what types cannot say: enums, formats, patterns.
// Exits 1 listing every problem, with the file and the object's kind and name.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);

// apiVersion/kind -> the module defining its interface and validator.
const KINDS = {
  "v1/ConfigMap": "kubernetes-models/v1/ConfigMap",
  "v1/Secret": "kubernetes-models/v1/Secret",
  "v1/Service": "kubernetes-models/v1/Service",
  "v1/ServiceAccount": "kubernetes-models/v1/ServiceAccount",
  "apps/v1/StatefulSet": "kubernetes-models/apps/v1/StatefulSet",
  "policy/v1/PodDisruptionBudget": "kubernetes-models/policy/v1/PodDisruptionBudget",
  "networking.k8s.io/v1/NetworkPolicy": "kubernetes-models/networking.k8s.io/v1/NetworkPolicy",
  "cert-manager.io/v1/Certificate": "@kubernetes-models/cert-manager/cert-manager.io/v1/Certificate",
  "cert-manager.io/v1/Issuer": "@kubernetes-models/cert-manager/cert-manager.io/v1/Issuer",
};

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: validate_manifests.mjs FILE.yaml...");
  process.exit(2);
}

const problems = [];
const docs = []; // {file, label, module, kind, object}
for (const file of files) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length > 0) {
      problems.push(`${file}: YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
      continue;
    }
    const object = doc.toJS();
    if (object === null || object === undefined) continue;
    const key = `${object.apiVersion}/${object.kind}`;
    const label = `${basename(file)}: ${object.kind} ${object.metadata?.name ?? "(no name)"}`;
    if (!(key in KINDS)) {
      problems.push(`${label}: ${key} is not a kind these manifests may use`);
      continue;
    }
    docs.push({ file, label, module: KINDS[key], kind: object.kind, object });
  }
}

// 1. JSON-schema validation (enums, formats, patterns, types).
for (const d of docs) {
  const mod = await import(d.module);
  try {
    new mod[d.kind](d.object).validate();
  } catch (e) {
    problems.push(`${d.label}: ${e.message}`);
  }
}

// 2. Type-checking: one object literal per line, so an error's line names it.
if (docs.length > 0) {
  const dir = mkdtempSync(join(tmpdir(), "nokv-manifests-"));
  try {
    const imports = docs.map(
      (d, i) => `import type { I${d.kind} as T${i} } from "${d.module}";`);
    const lines = docs.map((d, i) => `export const o${i}: T${i} = ${JSON.stringify(d.object)};`);
    writeFileSync(join(dir, "manifests.ts"), [...imports, ...lines].join("\n") + "\n");
    const nodeModules = join(dirname(require.resolve("yaml/package.json")), "..");
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({
      compilerOptions: {
        strict: true, noEmit: true, target: "es2022", module: "nodenext",
        moduleResolution: "nodenext", skipLibCheck: true, types: [],
        typeRoots: [], baseUrl: ".", paths: { "*": [join(nodeModules, "*")] },
      },
      files: ["manifests.ts"],
    }));
    const tsc = join(nodeModules, "typescript", "bin", "tsc");
    try {
      execFileSync(process.execPath, [tsc, "-p", dir, "--pretty", "false"], { encoding: "utf8" });
    } catch (e) {
      const out = `${e.stdout ?? ""}${e.stderr ?? ""}`;
      for (const line of out.split("\n").filter((l) => l.trim() !== "")) {
        const m = line.match(/^manifests\.ts\((\d+),\d+\): (.*)$/) ??
                  line.match(/manifests\.ts\((\d+),\d+\): (.*)$/);
        const index = m ? Number(m[1]) - 1 - docs.length : -1;
        if (m && index >= 0 && index < docs.length) {
          problems.push(`${docs[index].label}: ${m[2]}`);
        } else {
          problems.push(`type check: ${line}`);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (problems.length > 0) {
  for (const p of problems) console.log(p);
  console.log(`${problems.length} problem(s) in ${docs.length} object(s)`);
  process.exit(1);
}
console.log(`${docs.length} object(s) valid: ${docs.map((d) => `${d.kind} ${d.object.metadata?.name}`).join(", ")}`);
