// Validates Kubernetes objects offline against the API schemas shipped in
// the kubernetes-models package.
//
//   node validate.mjs [FILE...]     (no FILE, or "-": read standard input)
//
// Input is YAML (one or more documents, as `kubectl kustomize` prints) or
// JSON (an object, an array of objects, or a v1 List). Every object is
// validated by the model of its apiVersion and kind; an object whose kind
// has no model fails unless its apiVersion/kind is listed in ALLOWED_UNKNOWN.
// Prints one line per object and exits 1 if any object is invalid.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// Kinds that kubernetes-models has no schema for and that we knowingly ship.
// (None in the default kustomization today; CRD-based examples such as the
// KEDA ScaledObject in deploy/k8s/examples are not part of it.)
const ALLOWED_UNKNOWN = new Set([]);

function readInputs(args) {
  const files = args.length ? args : ["-"];
  return files.map((f) => ({
    name: f === "-" ? "<stdin>" : f,
    text: readFileSync(f === "-" ? 0 : f, "utf8"),
  }));
}

function parseObjects({ name, text }) {
  const trimmed = text.trimStart();
  let docs;
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    docs = [JSON.parse(text)];
  } else {
    docs = parseAllDocuments(text).map((d) => {
      if (d.errors.length) throw new Error(`${name}: ${d.errors[0].message}`);
      return d.toJS();
    });
  }
  const out = [];
  const push = (o) => {
    if (o === null || o === undefined) return;
    if (Array.isArray(o)) return o.forEach(push);
    if (o.kind === "List" && Array.isArray(o.items)) return o.items.forEach(push);
    out.push(o);
  };
  docs.forEach(push);
  return out;
}

// "apps/v1" -> "kubernetes-models/apps/v1"; "v1" -> "kubernetes-models/v1"
async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  if (!/^([a-z0-9.-]+\/)?v[0-9a-z]+$/.test(apiVersion) || !/^[A-Za-z0-9]+$/.test(kind)) return null;
  try {
    const mod = await import(`kubernetes-models/${apiVersion}/${kind}`);
    return mod[kind] ?? null;
  } catch (err) {
    if (err && (err.code === "ERR_MODULE_NOT_FOUND" || err.code === "ERR_PACKAGE_PATH_NOT_EXPORTED")) return null;
    throw err;
  }
}

// kustomize folds long base64 values of Secret.data / ConfigMap.binaryData
// over several lines; the API server's decoder (Go encoding/base64) skips
// line breaks, so the schema's "byte" format is checked without them.
function unfoldBase64(o) {
  const field = o.apiVersion === "v1" && o.kind === "Secret" ? "data"
    : o.apiVersion === "v1" && o.kind === "ConfigMap" ? "binaryData" : null;
  if (!field || !o[field] || typeof o[field] !== "object") return o;
  const copy = { ...o, [field]: { ...o[field] } };
  for (const [k, v] of Object.entries(copy[field])) {
    if (typeof v === "string") copy[field][k] = v.replace(/[\r\n]/g, "");
  }
  return copy;
}

function describe(o) {
  const ns = o?.metadata?.namespace ? `${o.metadata.namespace}/` : "";
  return `${o?.apiVersion}/${o?.kind} ${ns}${o?.metadata?.name ?? "<no name>"}`;
}

async function main() {
  let objects = [];
  for (const input of readInputs(process.argv.slice(2))) objects = objects.concat(parseObjects(input));
  if (objects.length === 0) {
    console.error("validate: no objects in input");
    process.exit(1);
  }
  let failed = 0;
  for (const o of objects) {
    const id = describe(o);
    if (!o.metadata || typeof o.metadata.name !== "string" || o.metadata.name === "") {
      console.log(`FAIL ${id}: metadata.name missing`);
      failed++;
      continue;
    }
    const Model = await modelFor(o.apiVersion, o.kind);
    if (!Model) {
      if (ALLOWED_UNKNOWN.has(`${o.apiVersion}/${o.kind}`)) {
        console.log(`SKIP ${id}: no schema (allowed)`);
      } else {
        console.log(`FAIL ${id}: unknown apiVersion/kind`);
        failed++;
      }
      continue;
    }
    try {
      new Model(unfoldBase64(o)).validate();
      console.log(`ok   ${id}`);
    } catch (err) {
      console.log(`FAIL ${id}: ${err.message}`);
      failed++;
    }
  }
  console.log(`${objects.length - failed} valid, ${failed} invalid`);
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(`validate: ${err.message}`);
  process.exit(2);
});
