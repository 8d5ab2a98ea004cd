// The JSON API, as the console calls it: the session cookie goes along by itself; calls
// that change something carry the session's CSRF token; errors are problem+json.

let csrf = null;

/** Remembers the CSRF token of the session (from sign-in or `GET /v1/me`). */
export function setCsrf(token) {
  csrf = token ?? null;
}

/** An answer that is not a success: its status and the problem's `detail`. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem ?? {};
  }
}

/** Calls the API; answers the parsed JSON (or text), or throws an ApiError. */
export async function call(method, path, body, { accept } = {}) {
  const headers = { Accept: accept ?? "application/json" };
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, { detail: `Trail cannot be reached (${e.message})` });
  }
  const type = resp.headers.get("Content-Type") ?? "";
  if (!resp.ok) {
    let problem = null;
    if (type.includes("json")) problem = await resp.json().catch(() => null);
    throw new ApiError(resp.status, problem);
  }
  if (resp.status === 204) return null;
  if (type.includes("json")) return resp.json();
  return resp.text();
}

export const get = (path, opts) => call("GET", path, undefined, opts);
export const post = (path, body) => call("POST", path, body);
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

/** A path segment, escaped. */
export const seg = (s) => encodeURIComponent(s);

/** `/v1/orgs/<org>` */
export const orgPath = (org) => `/v1/orgs/${seg(org)}`;

/** One page of the SIEM export in a line format: its text, the cursor and `more` from its
 *  headers, and how many records it holds. */
export async function exportPage(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { Accept: "*/*" }, credentials: "same-origin" });
  } catch (e) {
    throw new ApiError(0, { detail: `Trail cannot be reached (${e.message})` });
  }
  if (!resp.ok) {
    const problem = await resp.json().catch(() => null);
    throw new ApiError(resp.status, problem);
  }
  const cursor = resp.headers.get("Trail-Cursor");
  if (!cursor) throw new ApiError(resp.status, { detail: "the answer is not a page of the export" });
  const text = await resp.text();
  const records = Number(resp.headers.get("Trail-Records") ?? "0");
  return { text, cursor, more: resp.headers.get("Trail-More") === "true", records };
}
