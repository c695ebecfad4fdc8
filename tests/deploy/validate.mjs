// validate — the manifests of deploy/ checked offline against the
// Kubernetes API schemas of the npm package kubernetes-models (types,
// required fields, formats), plus what that package does not check: a field
// name the API does not have (a misspelt `replica:` passes its validate()
// but is dropped by the API server). Field names come from the package's
// own type declarations, walked from the resource's kind down. KServe's
// ServingRuntime and InferenceService are checked against the fields of
// KServe's CRDs transcribed in kserve-schema.json.
//
//   node tests/deploy/validate.mjs NODE_MODULES FILE.yaml...
// Exit 0 when every document of every file is valid; else one line per
// problem ("FILE: Kind/name: path: message") and exit 1.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
const here = path.dirname(new URL(import.meta.url).pathname);
const { parseAllDocuments } = await import(pathToFileURL(path.join(modules, "yaml/dist/index.js")));
const kserve = JSON.parse(fs.readFileSync(path.join(here, "kserve-schema.json"), "utf8"));
const problems = [];

// --- field names from kubernetes-models' declarations ------------------------
const interfaces = new Map(); // .d.ts path -> {fields: {name: type text}}

function dtsPath(from, spec) {
  if (spec.startsWith("."))
    return path.resolve(path.dirname(from), spec.replace(/\.js$/, "") + ".d.ts");
  return path.join(modules, spec + ".d.ts");
}

function parseInterface(file) {
  if (interfaces.has(file)) return interfaces.get(file);
  const text = fs.readFileSync(file, "utf8");
  const imports = {};
  for (const m of text.matchAll(/import \{ (\w+) \} from "([^"]+)";/g))
    imports[m[1]] = dtsPath(file, m[2]);
  const body = text.match(/export interface \w+(?: extends [\w, ]+)? \{\n([\s\S]*?)\n\}/);
  const fields = {};
  if (body) {
    const lines = body[1].split("\n");
    for (let i = 0; i < lines.length; i++) {
      const m = lines[i].match(/^    "([^"]+)"\??: (.*)$/);
      if (!m) continue;
      let type = m[2];
      if (type === "{") type = "map";
      fields[m[1]] = type.replace(/;$/, "");
    }
  }
  const info = { fields, imports };
  interfaces.set(file, info);
  return info;
}

// The declaration file of a type named in `info`, or null for a scalar,
// an alias (IntOrString, Quantity) or a map.
function typeFile(info, type) {
  const name = type.replace(/^Array<(.*)>$/, "$1");
  const file = info.imports[name];
  return file && fs.existsSync(file) ? file : null;
}

// Every key of obj must be a field of the interface in file, recursively.
function checkFields(obj, file, where) {
  if (obj === null || typeof obj !== "object") return;
  const info = parseInterface(file);
  if (!Object.keys(info.fields).length) return; // an alias, not an object
  for (const [key, value] of Object.entries(obj)) {
    const type = info.fields[key];
    if (type === undefined) {
      problems.push(`${where}: unknown field '${key}' (${path.basename(file, ".d.ts")} has: ` +
                    `${Object.keys(info.fields).join(", ")})`);
      continue;
    }
    const sub = typeFile(info, type);
    if (!sub) continue;
    if (Array.isArray(value)) value.forEach((v, i) => checkFields(v, sub, `${where}.${key}[${i}]`));
    else checkFields(value, sub, `${where}.${key}`);
  }
}

// A kubernetes-models type named "v1/Container", "apps/v1/DeploymentStrategy"
// or "@kubernetes-models/apimachinery/...".
function modelFile(ref) {
  return path.join(modules, ref.startsWith("@") ? "" : "kubernetes-models", ref + ".d.ts");
}

function k8sFile(apiVersion, kind) {
  const dir = apiVersion.includes("/") ? apiVersion : `v1`;
  return path.join(modules, "kubernetes-models", dir, `${kind}`);
}

// --- KServe: the transcribed CRD fields ----------------------------------------
// A node is {"fields": {name: node}, "required": [...], "inline": "v1/PodSpec"}
// (names of that kubernetes-models type are allowed too, checked as it says),
// {"items": node}, {"k8s": "v1/Container"}, {"enum": [...]}, or
// {"type": "string" | "integer" | "boolean" | "map" | "object"}.
function checkKserve(value, node, where) {
  if (node.k8s) return checkFields(value, modelFile(node.k8s), where);
  if (node.enum) {
    if (!node.enum.includes(value)) problems.push(`${where}: '${value}' is not one of ${node.enum.join(", ")}`);
    return;
  }
  if (node.items) {
    if (!Array.isArray(value)) return problems.push(`${where}: not a list`);
    return value.forEach((v, i) => checkKserve(v, node.items, `${where}[${i}]`));
  }
  if (node.type) {
    const ok = { string: typeof value === "string", integer: Number.isInteger(value),
                 boolean: typeof value === "boolean", map: value && typeof value === "object",
                 object: value && typeof value === "object" }[node.type];
    if (!ok) problems.push(`${where}: not a ${node.type}`);
    return;
  }
  if (!value || typeof value !== "object" || Array.isArray(value))
    return problems.push(`${where}: not an object`);
  for (const r of node.required || [])
    if (!(r in value)) problems.push(`${where}: required field '${r}' is missing`);
  const inline = node.inline ? modelFile(node.inline) : null;
  for (const [key, v] of Object.entries(value)) {
    if (node.fields && node.fields[key]) checkKserve(v, node.fields[key], `${where}.${key}`);
    else if (inline && parseInterface(inline).fields[key] !== undefined) checkFields({ [key]: v }, inline, where);
    else problems.push(`${where}: unknown field '${key}'`);
  }
}

// --- every document of every file ------------------------------------------------
for (const file of files) {
  const docs = parseAllDocuments(fs.readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) { problems.push(`${file}: YAML: ${doc.errors[0].message}`); continue; }
    const obj = doc.toJS();
    if (!obj) continue;
    const id = `${file}: ${obj.kind}/${obj.metadata?.name ?? "?"}`;
    if (obj.kind === "Kustomization") {
      for (const r of obj.resources || [])
        if (!fs.existsSync(path.join(path.dirname(file), r))) problems.push(`${id}: resource ${r} is missing`);
      checkKserve(obj, kserve.Kustomization, id);
      continue;
    }
    if (kserve[obj.kind]) {
      if (obj.apiVersion !== kserve[obj.kind].apiVersion)
        problems.push(`${id}: apiVersion ${obj.apiVersion}, KServe's is ${kserve[obj.kind].apiVersion}`);
      checkKserve(obj, kserve[obj.kind].schema, id);
      continue;
    }
    const base = k8sFile(obj.apiVersion || "", obj.kind || "");
    if (!fs.existsSync(base + ".js")) { problems.push(`${id}: no Kubernetes kind ${obj.apiVersion} ${obj.kind}`); continue; }
    const mod = await import(pathToFileURL(base + ".js"));
    try {
      new mod[obj.kind](obj).validate();
    } catch (e) {
      problems.push(`${id}: ${e.message.replace(/\s+/g, " ")}`);
    }
    checkFields(obj, base + ".d.ts", id);
  }
}
for (const p of problems) console.log(p);
process.exit(problems.length ? 1 : 0);
