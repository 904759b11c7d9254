// Checks manifests against the schemas a cluster enforces: Istio's CRDs
// (@kubernetes-models/istio, generated from Istio 1.29's crd-all.gen.yaml)
// and Kubernetes' OpenAPI (kubernetes-models).
//
// Input on stdin: a JSON array of {"source": "...", "manifest": {...}}.
// Output: one line per problem, naming the source, kind/name and field;
// exit 1 if there is any, 2 if the input itself is unusable.
//
// The generated validators ignore fields the schema does not name, while
// `kubectl apply` (strict field validation) refuses them. So each field is
// also probed: it is replaced by a value no schema type accepts, and a field
// the validator then does not complain about is one the schema lacks.

import { readFileSync } from "node:fs";

// Subtrees whose schema is free-form (protobuf Struct), so any key is valid.
const FREE_FORM = [
  /^\/spec\/pluginConfig\//,
  /^\/spec\/configPatches\/\d+\/patch\/value\//,
];

const PROBE = Symbol("probe");

async function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const module = group.endsWith("istio.io")
    ? `@kubernetes-models/istio/${group}/${version}/${kind}`
    : `kubernetes-models/${group ? `${group}/` : ""}${version}/${kind}`;
  try {
    return (await import(module))[kind];
  } catch {
    return undefined;
  }
}

function errorsOf(Model, manifest) {
  try {
    new Model(manifest).validate();
    return [];
  } catch (e) {
    if (!Array.isArray(e.errors)) throw e;
    return e.errors;
  }
}

const escape = (key) => String(key).replaceAll("~", "~0").replaceAll("/", "~1");

// Every field of the manifest as [pointer, parent, key], outside FREE_FORM.
function* fields(value, pointer = "") {
  if (value === null || typeof value !== "object") return;
  for (const key of Object.keys(value)) {
    const child = `${pointer}/${escape(key)}`;
    yield [child, value, key];
    if (!FREE_FORM.some((re) => re.test(`${child}/`))) yield* fields(value[key], child);
  }
}

function unknownFields(Model, manifest) {
  const unknown = [];
  for (const [pointer, parent, key] of fields(manifest)) {
    if (pointer === "/apiVersion" || pointer === "/kind") continue;
    const kept = parent[key];
    parent[key] = PROBE;
    const errors = errorsOf(Model, manifest);
    parent[key] = kept;
    if (!errors.some((e) => e.instancePath === pointer)) unknown.push(pointer);
  }
  return unknown;
}

async function check({ source, manifest }) {
  const what = `${manifest?.kind ?? "?"} ${manifest?.metadata?.name ?? "?"}`;
  if (typeof manifest?.apiVersion !== "string" || typeof manifest?.kind !== "string") {
    return [`${source} (${what}): apiVersion and kind are required`];
  }
  const Model = await modelFor(manifest.apiVersion, manifest.kind);
  if (!Model) {
    return [`${source} (${what}): no published schema for ${manifest.apiVersion} ${manifest.kind}`];
  }
  const problems = errorsOf(Model, manifest).map(
    (e) => `${source} (${what}): ${e.instancePath || "/"} ${e.message}`,
  );
  for (const pointer of unknownFields(Model, manifest)) {
    problems.push(`${source} (${what}): ${pointer} is not a field of ${manifest.apiVersion} ${manifest.kind}`);
  }
  return problems;
}

let input;
try {
  input = JSON.parse(readFileSync(0, "utf8"));
  if (!Array.isArray(input)) throw new Error("expected a JSON array of {source, manifest}");
} catch (e) {
  console.error(`validate.mjs: bad input: ${e.message}`);
  process.exit(2);
}
let failed = 0;
for (const entry of input) {
  for (const problem of await check(entry)) {
    console.log(problem);
    failed++;
  }
}
console.error(`validate.mjs: ${input.length} manifests, ${failed} problems`);
process.exit(failed ? 1 : 0);
