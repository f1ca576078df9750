// The admin API as the console uses it. The token lives in sessionStorage (this tab only)
// and travels in the Authorization header, never in a URL.
const KEY = "dccgate.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

// A path with its query: parameters that are empty or null are left out.
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

// One call: the decoded JSON answer, or an ApiError with the API's own message.
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const secret = token();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `the admin API did not answer (${err.message})`);
  }
  let doc = null;
  try {
    doc = await response.json();
  } catch {
    doc = null;
  }
  if (!response.ok) {
    const message = doc && typeof doc.error === "string" ? doc.error : `HTTP ${response.status}`;
    const err = new ApiError(response.status, message);
    err.doc = doc;
    throw err;
  }
  return doc;
}

// A non-JSON answer (e.g. a CSV report) as a Blob, with the token in the Authorization
// header; an ApiError with the API's own message when refused.
export async function fetchBlob(path, accept) {
  const headers = { Accept: accept };
  const secret = token();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  let response;
  try {
    response = await fetch(path, { method: "GET", headers, credentials: "omit", cache: "no-store", redirect: "error" });
  } catch (err) {
    throw new ApiError(0, `the admin API did not answer (${err.message})`);
  }
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const doc = await response.json();
      if (doc && typeof doc.error === "string") message = doc.error;
    } catch {
      // not JSON: keep the status
    }
    throw new ApiError(response.status, message);
  }
  return response.blob();
}

// The path segment of a RequestID (its colons kept, everything else encoded).
export function segment(value) {
  return encodeURIComponent(value).replaceAll("%3A", ":");
}
