// Parses Terraform files with @cdktf/hcl2json (HashiCorp's HCL parser built
// to WebAssembly) and prints {"<path>": <parsed body>, ...} as JSON.
// Exits 1 if any file does not parse.
//
//   node hcl2json.mjs FILE...
import { readFileSync } from "node:fs";
import { parse } from "@cdktf/hcl2json";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node hcl2json.mjs FILE...");
  process.exit(2);
}
const out = {};
let failed = false;
for (const f of files) {
  try {
    out[f] = await parse(f, readFileSync(f, "utf8"));
  } catch (err) {
    console.error(`${f}: ${err.message ?? err}`);
    failed = true;
  }
}
process.stdout.write(JSON.stringify(out));
process.exit(failed ? 1 : 0);
