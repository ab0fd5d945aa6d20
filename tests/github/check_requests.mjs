// Checks requests a client made against GitHub's published REST description
// (@octokit/openapi's api.github.com.json): each must be an operation that exists (method and
// path template) with path parameters that fit their schemas, use only query parameters the
// operation declares, each with a value that fits its schema (type, enum, minimum and maximum,
// or the "(max N)" the parameter's description states where its schema gives no maximum), and
// send a body with every required field and each field of the type the description gives.
//
//   node check_requests.mjs REQUESTS.json
//
// REQUESTS.json: [{"method": "POST", "target": "/repos/o/r/statuses/<sha>?x=1", "body": "..."}].
// Prints one line per problem and exits 1 if there is any; prints what it checked otherwise.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const spec = JSON.parse(readFileSync(
  join(here, "node_modules/@octokit/openapi/generated/api.github.com.json"), "utf8"));
const requests = JSON.parse(readFileSync(process.argv[2], "utf8"));

const resolve = (schema) => {
  let s = schema;
  for (let i = 0; s && s.$ref && i < 20; ++i) {
    s = s.$ref.replace(/^#\//, "").split("/").reduce((o, k) => o && o[k], spec);
  }
  return s || {};
};

// Path templates as regular expressions, the most literal first ("/repos/{owner}/{repo}/pulls"
// before a template with more parameters that also matches).
// Each "{name}" captures its segment, in the order of `names`.
const templates = Object.keys(spec.paths).map((t) => ({
  template: t,
  params: (t.match(/\{/g) || []).length,
  names: (t.match(/\{[^}]+\}/g) || []).map((m) => m.slice(1, -1)),
  re: new RegExp("^" + t.replace(/[.*+?^$()|[\]\\]/g, "\\$&").replace(/\\?\{[^}]+\\?\}|\{[^}]+\}/g, "([^/]+)") + "$"),
})).sort((a, b) => a.params - b.params);

function typeOk(value, schema) {
  const s = resolve(schema);
  if (value === null) return s.nullable === true || (Array.isArray(s.type) && s.type.includes("null"));
  for (const key of ["oneOf", "anyOf"])
    if (Array.isArray(s[key])) return s[key].some((alt) => typeOk(value, alt));
  if (Array.isArray(s.allOf)) return s.allOf.every((alt) => typeOk(value, alt));
  if (s.enum && !s.enum.includes(value)) return false;
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  if (!types.length) return true;
  const inRange = (v) => (s.minimum === undefined || v >= s.minimum) &&
    (s.maximum === undefined || v <= s.maximum) &&
    (typeof s.exclusiveMinimum !== "number" || v > s.exclusiveMinimum) &&
    (typeof s.exclusiveMaximum !== "number" || v < s.exclusiveMaximum);
  return types.some((t) => {
    switch (t) {
      case "string": return typeof value === "string";
      case "integer": return Number.isInteger(value) && inRange(value);
      case "number": return typeof value === "number" && Number.isFinite(value) && inRange(value);
      case "boolean": return typeof value === "boolean";
      case "array": return Array.isArray(value) &&
        (!s.items || value.every((v) => typeOk(v, s.items)));
      case "object": return typeof value === "object" && !Array.isArray(value);
      case "null": return value === null;
      default: return true;
    }
  });
}

// Problems with `body` against an object schema, each naming the field path.
function checkObject(body, schema, where, out) {
  const s = resolve(schema);
  if (Array.isArray(s.oneOf) || Array.isArray(s.anyOf)) {
    const alts = s.oneOf || s.anyOf;
    const all = alts.map((alt) => { const o = []; checkObject(body, alt, where, o); return o; });
    if (!all.some((o) => o.length === 0)) out.push(...all[0]);
    return;
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    if (!typeOk(body, s)) out.push(`${where}: ${JSON.stringify(body)} is not of type ${s.type}`);
    return;
  }
  for (const field of s.required || [])
    if (!(field in body)) out.push(`${where}: required field "${field}" is missing`);
  const props = s.properties || {};
  for (const [field, value] of Object.entries(body)) {
    if (!(field in props)) {
      if (s.additionalProperties === false) out.push(`${where}: unknown field "${field}"`);
      continue;
    }
    const p = resolve(props[field]);
    if (p.type === "object" && value && typeof value === "object" && !Array.isArray(value))
      checkObject(value, p, `${where}.${field}`, out);
    else if (!typeOk(value, p))
      out.push(`${where}.${field}: ${JSON.stringify(value).slice(0, 60)} does not fit ` +
               JSON.stringify({type: p.type, enum: p.enum}).slice(0, 120));
  }
}

// A parameter's value as it is in a URL (a string) turned into what its schema describes, for
// typeOk: integers and numbers as numbers, booleans as booleans, arrays split at commas. A
// value that is not written as its type stays a string, which typeOk then refuses.
function fromUrl(text, schema) {
  const s = resolve(schema);
  const types = Array.isArray(s.type) ? s.type : s.type ? [s.type] : [];
  if (types.includes("array")) return text.split(",").map((v) => fromUrl(v, s.items || {}));
  if ((types.includes("integer") || types.includes("number")) &&
      /^-?(\d+(\.\d+)?|\.\d+)([eE][-+]?\d+)?$/.test(text)) return Number(text);
  if (types.includes("boolean") && (text === "true" || text === "false")) return text === "true";
  return text;
}

// The schema of a parameter, with the "(max N)" of its description as the maximum where the
// schema states none (GitHub's per_page: "The number of results per page (max 100)").
function paramSchema(p) {
  const s = resolve(p.schema);
  const max = /\(max (\d+)\)/.exec(p.description || "");
  return max && s.maximum === undefined ? { ...s, maximum: Number(max[1]) } : s;
}

// Problems with `text`, the value of parameter `p` (path or query) as sent.
function checkParam(text, p, what, out) {
  let decoded = text;
  try { decoded = decodeURIComponent(text.replace(/\+/g, p.in === "query" ? " " : "+")); } catch {
    out.push(`${what}: ${p.in} parameter "${p.name}": ${JSON.stringify(text)} is not URL-encoded`);
    return;
  }
  const s = paramSchema(p);
  if (!typeOk(fromUrl(decoded, s), s))
    out.push(`${what}: ${p.in} parameter "${p.name}": ${JSON.stringify(decoded).slice(0, 60)} ` +
             `does not fit ` + JSON.stringify({type: s.type, enum: s.enum, minimum: s.minimum,
                                               maximum: s.maximum}).slice(0, 120));
}

const problems = [];
const operations = new Set();
for (const r of requests) {
  const [path, query = ""] = r.target.split("?");
  const method = r.method.toLowerCase();
  const what = `${r.method} ${r.target}`;
  const paramsOf = (t) => [...(spec.paths[t.template].parameters || []),
                           ...(spec.paths[t.template][method].parameters || [])].map(resolve);
  // The operations whose template matches, each with the problems of its path parameters; the
  // first whose parameters fit is the one, else the first (its problems are reported).
  const matches = templates.filter((t) => t.re.test(path) && spec.paths[t.template][method])
    .map((t) => {
      const params = paramsOf(t), found = [];
      t.re.exec(path).slice(1).forEach((value, i) => {
        const p = params.find((q) => q.in === "path" && q.name === t.names[i]);
        if (!p) found.push(`${what}: path parameter "${t.names[i]}" is not described`);
        else checkParam(value, p, what, found);
      });
      return { t, params, found };
    });
  if (!matches.length) {
    problems.push(`${what}: no such operation in GitHub's REST description`);
    continue;
  }
  const { t: match, params, found } = matches.find((m) => m.found.length === 0) || matches[0];
  problems.push(...found);
  const op = spec.paths[match.template][method];
  operations.add(`${r.method} ${match.template}`);
  const allowed = new Map(params.filter((p) => p.in === "query").map((p) => [p.name, p]));
  for (const kv of query.split("&").filter(Boolean)) {
    const at = kv.indexOf("=");
    const name = decodeURIComponent(at < 0 ? kv : kv.slice(0, at));
    if (!allowed.has(name)) problems.push(`${what}: unknown query parameter "${name}"`);
    else checkParam(at < 0 ? "" : kv.slice(at + 1), allowed.get(name), what, problems);
  }
  const schema = op.requestBody?.content?.["application/json"]?.schema;
  if (r.body) {
    let body;
    try { body = JSON.parse(r.body); } catch { problems.push(`${what}: the body is not JSON`); continue; }
    if (!schema) { problems.push(`${what}: the operation takes no JSON body`); continue; }
    checkObject(body, schema, what, problems);
  } else if (schema && op.requestBody.required) {
    const s = resolve(schema);
    if ((s.required || []).length) problems.push(`${what}: the required body is missing`);
  }
}
if (problems.length) {
  console.error([...new Set(problems)].join("\n"));
  process.exit(1);
}
console.log(`check_requests: ${requests.length} requests fit ${operations.size} operations: ` +
            [...operations].sort().join(", "));
