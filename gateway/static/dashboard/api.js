// The gateway's public GraphQL API, as any client would call it: POST /graphql with one of the
// operations of queries.graphql. Answers are parsed so that integers past 2^53 stay exact.

const ENDPOINT = new URL("/graphql", document.baseURI);
// The page names the queries' versioned URL (the static files are cached for a year).
const DOCUMENT = new URL(
  document.querySelector('meta[name="dashboard-queries"]')?.content ?? "queries.graphql",
  import.meta.url,
);

/** The request did not get a GraphQL answer: network failure, or a reply that is not one. */
export class RequestFailed extends Error {}

/** The gateway wants a (valid) token: HTTP 401. */
export class Unauthenticated extends RequestFailed {}

// The gateway token, when the gateway asks for one: kept in this tab's session storage (gone
// when the tab closes, never sent anywhere but this gateway) and sent with every request.
const TOKEN_KEY = "usage-gateway.token";

/** Whether the gateway says it needs a token (the page's body carries data-auth="token"). */
export function tokenRequired() {
  return document.body.dataset.auth === "token";
}

export function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null;
  }
}

export function storeToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Headers that carry the token, if there is one. */
function authorization() {
  const token = storedToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function refused() {
  return new Unauthenticated(
    storedToken()
      ? "The gateway refused the token (HTTP 401): it may have been mistyped or withdrawn."
      : "The gateway needs a token (HTTP 401).",
  );
}

/**
 * Downloads `url` (this gateway's) as a file named by its Content-Disposition, sending the
 * token. Rejects with Unauthenticated on a 401, RequestFailed on any other failure.
 */
export async function download(url, fallbackName) {
  let response;
  try {
    response = await fetch(url, { headers: authorization() });
  } catch (error) {
    throw new RequestFailed(`The gateway could not be reached (${error.message}).`);
  }
  if (response.status === 401) throw refused();
  if (!response.ok) throw new RequestFailed(`The download failed (HTTP ${response.status}).`);
  const disposition = response.headers.get("Content-Disposition") ?? "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] ?? fallbackName;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

let documentText = null;

async function operations() {
  if (documentText === null) {
    let response;
    try {
      response = await fetch(DOCUMENT);
    } catch (error) {
      throw new RequestFailed(`The dashboard's queries could not be loaded (${error.message}).`);
    }
    if (!response.ok) {
      throw new RequestFailed(`The dashboard's queries could not be loaded (HTTP ${response.status}).`);
    }
    documentText = await response.text();
  }
  return documentText;
}

/**
 * JSON with every integer kept exact: BigInt values are JSON numbers, and a JS number holds
 * integers exactly only up to 2^53, so larger ones become BigInt (read from their source text).
 */
export function parseExact(text) {
  return JSON.parse(text, (key, value, context) => {
    if (
      typeof value === "number" &&
      !Number.isSafeInteger(value) &&
      context !== undefined &&
      /^-?\d+$/.test(context.source)
    ) {
      return BigInt(context.source);
    }
    return value;
  });
}

/**
 * Runs one operation. Resolves to `{data, errors}` as the gateway answered (GraphQL errors
 * are data here: the caller shows them); rejects with RequestFailed when there is no answer.
 */
export async function run(operationName, variables = {}, { signal } = {}) {
  const query = await operations();
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", ...authorization() },
      body: JSON.stringify({ query, operationName, variables }),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new RequestFailed(`The gateway could not be reached (${error.message}).`);
  }
  if (response.status === 401) throw refused();
  const text = await response.text();
  let body;
  try {
    body = parseExact(text);
  } catch {
    throw new RequestFailed(`The gateway answered HTTP ${response.status} with something that is not JSON.`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new RequestFailed(`The gateway answered HTTP ${response.status} with no GraphQL result.`);
  }
  const errors = Array.isArray(body.errors) ? body.errors : [];
  if (!response.ok && errors.length === 0) {
    throw new RequestFailed(`The gateway answered HTTP ${response.status}.`);
  }
  return { data: body.data ?? null, errors };
}

/** An error's words for people: its message, and what to do about the ones we know. */
export function describe(error) {
  const code = error.extensions?.code;
  const message = String(error.message ?? "Unknown error");
  if (code === "QUERY_TOO_COSTLY") {
    return `${message} Pick a shorter period or a coarser granularity.`;
  }
  return message;
}

/** The errors whose path starts with `prefix` (an array of keys and indexes). */
export function errorsAt(errors, ...prefix) {
  return errors.filter(
    (error) =>
      Array.isArray(error.path) &&
      prefix.every((key, index) => error.path[index] === key),
  );
}
