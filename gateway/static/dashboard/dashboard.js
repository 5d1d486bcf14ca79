// The dashboard: every account's source state, quotas (with forecasts) and usage over a
// period, and the alerts, all read from the public GraphQL API. One account failing, or one
// query failing, shows where it happened; the rest of the page renders regardless.

import {
  RequestFailed,
  Unauthenticated,
  describe,
  download,
  errorsAt,
  forgetToken,
  run,
  storeToken,
  storedToken,
  tokenRequired,
} from "./api.js";
import { h, replace } from "./dom.js";
import * as format from "./format.js";
import * as periods from "./periods.js";
import { drawUsage, legend, usageModel } from "./usage-chart.js";

const CONCURRENT_USAGE = 4;
const REFRESH_EVERY_MS = 5 * 60 * 1000;
const TICK_MS = 30 * 1000;
const WARN_AT = 0.8;

const STATE_WORDS = {
  FRESH: "Fresh",
  STALE: "Stale",
  RATE_LIMITED: "Rate limited",
  AUTH_FAILED: "Credentials rejected",
  UNAVAILABLE: "Unavailable",
};
const WINDOW_WORDS = {
  MINUTE: "per minute",
  HOUR: "per hour",
  DAY: "per day",
  MONTH: "per month",
  FIXED_TERM: "for the term",
};
const KIND_WORDS = {
  OVER_THRESHOLD: "Over threshold",
  RUNS_OUT_BEFORE_RESET: "Runs out before reset",
};

const $ = (id) => document.getElementById(id);

const page = {
  state: periods.fromAddress(location.search),
  accounts: [],
  cards: new Map(),
  usageRun: null,
  loading: null,
};

function today() {
  return periods.dayOf(new Date());
}

// ---------------------------------------------------------------------------------------------
// Small pieces

function relativeTime(iso, { prefix = "" } = {}) {
  return h(
    "time",
    { datetime: iso, title: format.utcDateTime(iso), dataset: { relative: prefix } },
    `${prefix}${format.relative(iso)}`,
  );
}

function tickTimes() {
  for (const element of document.querySelectorAll("time[data-relative]")) {
    element.textContent = `${element.dataset.relative}${format.relative(element.dateTime)}`;
  }
}

function badge(status) {
  return h(
    "span",
    { class: `badge state-${status.state.toLowerCase()}`, dataset: { state: status.state } },
    STATE_WORDS[status.state] ?? status.state,
  );
}

/** What a non-fresh status says, as a banner: the vendor's words, the cause, when to retry. */
function statusBanner(what, status, { kind = "source", sameAs = null } = {}) {
  if (status.state === "FRESH") return null;
  const severe = status.state === "AUTH_FAILED" || status.state === "UNAVAILABLE";
  const attributes = {
    class: `banner ${kind}-banner ${severe ? "banner-error" : "banner-warning"}`,
    role: severe ? "alert" : "status",
    dataset: { sourceState: status.state },
  };
  if (sameAs && sameAs.state === status.state && sameAs.message === status.message) {
    return h("div", attributes, `${what}: ${STATE_WORDS[status.state] ?? status.state}, for the same reason.`);
  }
  return h(
    "div",
    attributes,
    h("strong", {}, `${what}: ${STATE_WORDS[status.state] ?? status.state}. `),
    status.message ? h("span", { class: "source-message" }, status.message) : null,
    status.cause ? h("span", { class: "cause" }, ` (cause ${status.cause})`) : null,
    status.retryAt ? h("span", {}, " Next try ", relativeTime(status.retryAt, { prefix: "" }), ".") : null,
    status.state === "STALE" && status.fetchedAt
      ? h("span", {}, " Showing data read ", relativeTime(status.fetchedAt), ".")
      : null,
  );
}

function errorBox(messages, { role = "alert" } = {}) {
  return h(
    "div",
    { class: "banner banner-error", role },
    messages.length === 1 ? messages[0] : h("ul", {}, messages.map((m) => h("li", {}, m))),
  );
}

/** Charts drawn inside `element` let go of their canvas (before it is replaced). */
function destroyCharts(element) {
  for (const canvas of element.querySelectorAll("canvas")) window.Chart?.getChart(canvas)?.destroy();
}

function showBanner(message) {
  $("banners").append(errorBox([message]));
}

// ---------------------------------------------------------------------------------------------
// The gateway token (when the gateway asks for one)

/** Shows the token form (with `problem`, why the last token did not do) and nothing else. */
function askForToken(problem = null) {
  page.usageRun?.abort();
  forgetToken();
  $("forget-token").hidden = true;
  $("token-problem").textContent = problem ?? "";
  $("token-problem").hidden = !problem;
  $("token-form").hidden = false;
  replace($("alerts"), h("p", { class: "muted" }, "Not loaded: the gateway needs a token."));
  replace($("summary"), h("p", { class: "muted" }, "Not loaded: the gateway needs a token."));
  destroyCharts($("accounts"));
  replace($("accounts"));
  page.cards.clear();
  document.body.dataset.state = "token";
  $("token").focus();
}

function bindToken() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    storeToken(token);
    $("token").value = "";
    $("token-form").hidden = true;
    loadEverything();
  });
  $("forget-token").addEventListener("click", () => askForToken());
}

// ---------------------------------------------------------------------------------------------
// Controls

function syncControls() {
  const { state } = page;
  $("period").value = String(state.preset);
  const custom = state.preset === "custom";
  for (const id of ["custom-range", "custom-range-to", "custom-apply"]) $(id).hidden = !custom;
  if (custom) {
    $("from").value = state.from;
    $("to").value = state.to;
  }
  $("from").max = $("to").max = today();
  const range = periods.resolve(state, today());
  for (const input of document.querySelectorAll("#granularity input")) {
    const offered = range.error || range.days <= periods.MAX_DAYS[input.value];
    input.disabled = !offered;
    input.checked = !range.error && input.value === range.granularity;
  }
  return range;
}

function changeState(changes) {
  page.state = { ...page.state, ...changes };
  history.replaceState(null, "", periods.toAddress(page.state));
  loadAllUsage();
}

function bindControls() {
  $("period").addEventListener("change", (event) => {
    const value = event.target.value;
    if (value === "custom") {
      const range = periods.resolve(page.state, today());
      const from = range.error ? periods.addDays(today(), -29) : range.from;
      const to = range.error ? today() : range.to;
      changeState({ preset: "custom", from, to, granularity: null });
    } else {
      changeState({ preset: Number(value), granularity: null });
    }
  });
  $("controls").addEventListener("submit", (event) => {
    event.preventDefault();
    changeState({ from: $("from").value, to: $("to").value });
  });
  for (const input of document.querySelectorAll("#granularity input")) {
    // On a custom range, the days typed so far apply with the new granularity.
    input.addEventListener("change", () =>
      changeState(
        page.state.preset === "custom"
          ? { granularity: input.value, from: $("from").value, to: $("to").value }
          : { granularity: input.value },
      ),
    );
  }
  $("refresh").addEventListener("click", () => loadEverything());
}

// ---------------------------------------------------------------------------------------------
// Alerts and the summary table

function renderAlerts(alerts, errors) {
  const box = $("alerts");
  const problems = errorsAt(errors, "alerts").map(describe);
  if (alerts === null || alerts === undefined) {
    replace(box, errorBox(problems.length ? problems : ["Alerts could not be read."]));
    return;
  }
  const list = h(
    "ul",
    { class: "alerts" },
    alerts.map((alert) =>
      h(
        "li",
        { class: `alert alert-${alert.kind.toLowerCase()}`, dataset: { quotaId: alert.quota.id } },
        h("span", { class: "badge badge-kind" }, KIND_WORDS[alert.kind] ?? alert.kind),
        h(
          "span",
          { class: "alert-text" },
          h("a", { href: `#${cardId(alert.quota.accountId)}` }, alert.message),
          alert.forecast ? h("span", { class: "muted" }, runsOut(alert.forecast, " · ")) : null,
        ),
      ),
    ),
  );
  replace(
    box,
    problems.length ? errorBox(problems) : null,
    alerts.length ? list : h("p", { class: "muted" }, "No quota needs attention."),
  );
}

function highestQuota(account) {
  let best = null;
  for (const quota of account.quotas) {
    if (quota.utilization !== null && (best === null || quota.utilization > best.utilization)) best = quota;
  }
  return best;
}

function renderSummary(accounts) {
  if (!accounts.length) {
    replace($("summary"), h("p", { class: "muted" }, "No accounts are configured."));
    return;
  }
  const rows = accounts.map((account) => {
    const top = highestQuota(account);
    return h(
      "tr",
      { dataset: { accountId: account.id } },
      h("th", { scope: "row" }, h("a", { href: `#${cardId(account.id)}` }, account.name)),
      h("td", {}, account.providerName),
      h("td", {}, badge(account.source)),
      h("td", {}, account.source.fetchedAt ? relativeTime(account.source.fetchedAt) : "no data"),
      h(
        "td",
        { class: "num" },
        top ? h("span", { class: utilizationClass(top.utilization) }, format.percent(top.utilization)) : "—",
        top ? h("span", { class: "muted small" }, ` ${top.name}`) : null,
      ),
    );
  });
  replace(
    $("summary"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "summary" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, "Account"),
            h("th", { scope: "col" }, "Vendor"),
            h("th", { scope: "col" }, "Source"),
            h("th", { scope: "col" }, "Data age"),
            h("th", { scope: "col", class: "num" }, "Highest quota use"),
          ),
        ),
        h("tbody", {}, rows),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Quotas

function utilizationClass(utilization) {
  if (utilization === null) return "level-unknown";
  if (utilization >= 1) return "level-over";
  if (utilization >= WARN_AT) return "level-warn";
  return "level-ok";
}

function amount(value, unit) {
  return unit === "BYTES" && value !== null ? format.bytes(value) : null;
}

function runsOut(forecast, lead = "") {
  const { runsOutEarliest: early, runsOutLatest: late } = forecast;
  if (!early && !late) return h("span", {}, `${lead}not expected to run out before the reset`);
  if (early && late && early !== late) {
    return h("span", {}, `${lead}runs out between ${format.utcDateTime(early)} and ${format.utcDateTime(late)}`);
  }
  return h("span", {}, `${lead}runs out around ${format.utcDateTime(early ?? late)}`);
}

function quotaItem(quota) {
  const { utilization, limit, used, unit } = quota;
  const unitWord = unit === "BYTES" ? "bytes" : "requests";
  const level = utilizationClass(utilization);

  const meter = h("div", {
    class: "meter",
    role: "meter",
    "aria-valuemin": "0",
    "aria-valuemax": String(Math.max(100, Math.ceil((utilization ?? 0) * 100))),
    "aria-valuenow": utilization === null ? null : String(Math.round(utilization * 1000) / 10),
    "aria-valuetext": utilization === null ? "unknown" : `${format.percent(utilization)} used`,
    "aria-label": `${quota.name} used`,
  });
  // The bar spans the limit, or more when the use or its projection goes past it: then a
  // tick marks where the limit is.
  const forecast = quota.forecast;
  if (utilization !== null && limit !== null && Number(limit) > 0) {
    const cap = Number(limit);
    const span = Math.max(cap, Number(used ?? 0), forecast ? Number(forecast.usedAtResetHigh) : 0);
    const fill = h("div", { class: "meter-fill" });
    fill.style.width = `${(Number(used ?? 0) / span) * 100}%`;
    meter.append(fill);
    if (forecast) {
      const low = Number(forecast.usedAtResetLow) / span;
      const high = Number(forecast.usedAtResetHigh) / span;
      const band = h("div", { class: "meter-forecast", title: "Projected use at the window's end" });
      band.style.left = `${low * 100}%`;
      band.style.width = `${Math.max(high - low, 0.008) * 100}%`;
      meter.append(band);
    }
    if (span > cap) {
      const tick = h("div", { class: "meter-limit", title: "The limit" });
      tick.style.left = `${(cap / span) * 100}%`;
      meter.append(tick);
    }
  } else if (utilization !== null) {
    const fill = h("div", { class: "meter-fill" });
    fill.style.width = `${Math.min(utilization, 1) * 100}%`;
    meter.append(fill);
  }

  const usedHint = amount(used, unit);
  const limitHint = amount(limit, unit);
  const numbers = h(
    "p",
    { class: "quota-numbers" },
    h("span", { class: "used" }, format.count(used)),
    limit !== null ? [" / ", h("span", { class: "limit" }, format.count(limit))] : " used, no known limit",
    ` ${unitWord}`,
    usedHint ? h("span", { class: "muted" }, ` (${usedHint}${limitHint ? ` of ${limitHint}` : ""})`) : null,
  );

  let timing;
  if (quota.resetsAt) {
    timing = h(
      "p",
      { class: "quota-reset" },
      "Resets ",
      relativeTime(quota.resetsAt),
      h("span", { class: "muted" }, ` · ${format.utcDateTime(quota.resetsAt)}`),
    );
  } else if (quota.endsOn) {
    timing = h(
      "p",
      { class: "quota-reset" },
      `Term ${quota.startsOn ?? "…"} – ${quota.endsOn} (UTC), `,
      relativeTime(`${quota.endsOn}T23:59:59Z`, { prefix: "ends " }),
    );
  } else {
    timing = h("p", { class: "quota-reset" }, "A fixed allowance: it does not reset.");
  }

  let projection = null;
  if (forecast) {
    const low = forecast.usedAtResetLow;
    const high = forecast.usedAtResetHigh;
    const over = limit !== null && Number(high) > Number(limit);
    projection = h(
      "p",
      { class: `quota-forecast${over ? " forecast-over" : ""}` },
      h("span", { class: "forecast-mark", "aria-hidden": "true" }),
      quota.resetsAt ? "Projected at reset: " : "Projected at the term's end: ",
      h("span", { class: "forecast-range" }, low === high ? format.count(low) : `${format.count(low)} – ${format.count(high)}`),
      ` ${unitWord}; `,
      runsOut(forecast),
      ".",
    );
  }

  return h(
    "li",
    { class: `quota quota-${level}`, dataset: { quotaId: quota.id } },
    h(
      "div",
      { class: "quota-head" },
      h("span", { class: "quota-name" }, quota.name),
      h(
        "span",
        { class: "quota-pct" },
        quota.exceeded ? h("span", { class: "badge badge-over" }, "Exceeded") : null,
        ` ${format.percent(utilization)}`,
      ),
    ),
    h("p", { class: "quota-window muted small" }, WINDOW_WORDS[quota.window] ?? quota.window),
    meter,
    numbers,
    timing,
    projection,
  );
}

function renderQuotas(account) {
  const failed = account.quotasSource.state !== "FRESH" && account.quotasSource.state !== "STALE";
  if (!account.quotas.length) {
    return h(
      "p",
      { class: "muted" },
      failed ? "No quota data: the vendor could not be read (see above)." : "The vendor reports no quotas for this account.",
    );
  }
  return h(
    "ul",
    { class: "quotas" },
    account.quotas.map((quota) => {
      try {
        return quotaItem(quota);
      } catch (error) {
        console.warn(error);
        return h("li", { class: "quota" }, errorBox([`This quota could not be shown: ${error.message}`]));
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Account cards

function cardId(accountId) {
  return `account-${encodeURIComponent(accountId)}`;
}

function renderAccount(account, index, errors) {
  const own = errors
    .filter((error) => Array.isArray(error.path) && error.path[0] === "accounts" && error.path[1] === index)
    .map((error) => ({ ...error, path: error.path.slice(2) }));
  const isForecast = (error) => error.path[0] === "quotas" && error.path[2] === "forecast";
  const otherErrors = own.filter((error) => !isForecast(error));
  // A forecast error (the history store) is the same for every quota: said once.
  const forecastErrors = [...new Set(own.filter(isForecast).map(describe))];
  const usage = h("div", { class: "usage-body" }, h("p", { class: "muted" }, "Loading usage…"));
  const card = h(
    "article",
    { class: "account", id: cardId(account.id), "aria-labelledby": `${cardId(account.id)}-title`, dataset: { accountId: account.id, usageState: "loading" } },
    h(
      "header",
      { class: "account-head" },
      h(
        "div",
        {},
        h("h3", { id: `${cardId(account.id)}-title` }, account.name),
        h(
          "p",
          { class: "meta" },
          h("code", {}, account.id),
          ` · ${account.providerName} · ${account.scope.replace("_", " ").toLowerCase()}`,
          account.plan ? ` · ${account.plan} plan` : null,
        ),
      ),
      h(
        "div",
        { class: "source" },
        badge(account.source),
        h(
          "span",
          { class: "age" },
          account.source.fetchedAt ? ["Data from ", relativeTime(account.source.fetchedAt)] : "No data yet",
        ),
      ),
    ),
    statusBanner("Quotas", account.quotasSource),
    otherErrors.length ? errorBox(otherErrors.map(describe)) : null,
    forecastErrors.length
      ? h("div", { class: "banner banner-warning forecast-banner", role: "status" }, `No forecasts: ${forecastErrors.join(" ")}`)
      : null,
    h(
      "div",
      { class: "account-body" },
      h("section", { class: "quotas-panel", "aria-label": `Quotas of ${account.name}` }, h("h4", {}, "Quotas"), renderQuotas(account)),
      h("section", { class: "usage-panel", "aria-label": `Usage of ${account.name}` }, h("h4", {}, "Usage"), usage),
    ),
  );
  page.cards.set(account.id, { card, usage, account });
  return card;
}

function renderAccounts(accounts, errors) {
  page.cards.clear();
  destroyCharts($("accounts"));
  const cards = accounts.map((account, index) => {
    try {
      return renderAccount(account, index, errors);
    } catch (error) {
      console.warn(error);
      return h(
        "article",
        { class: "account", dataset: { accountId: account?.id ?? "" } },
        h("h3", {}, account?.name ?? "An account"),
        errorBox([`This account could not be shown: ${error.message}`]),
      );
    }
  });
  replace($("accounts"), cards);
}

// ---------------------------------------------------------------------------------------------
// Usage

function dayRuns(days) {
  const runs = [];
  for (const day of days) {
    const last = runs[runs.length - 1];
    if (last && periods.addDays(last[1], 1) === day) last[1] = day;
    else runs.push([day, day]);
  }
  return runs;
}

function missingNote(usage) {
  if (!usage.missingDays.length) return null;
  const runs = dayRuns(usage.missingDays);
  const shown = runs.slice(0, 4).map(([a, b]) => (a === b ? a : `${a} – ${b}`));
  if (runs.length > shown.length) shown.push(`and ${runs.length - shown.length} more`);
  const n = usage.missingDays.length;
  return h(
    "p",
    { class: "missing-note" },
    h("strong", {}, `${format.count(n)} ${n === 1 ? "day" : "days"} unknown`),
    ` (no data from the vendor or the history store; not counted as zero): ${shown.join(", ")}.`,
  );
}

function exportLink(accountId, range) {
  const params = new URLSearchParams({
    account: accountId,
    from: range.from,
    to: range.to,
    granularity: range.granularity,
    format: "csv",
  });
  const href = `/export/usage?${params}`;
  // A link cannot send a header: with a token, the file is fetched with it and saved from here.
  const save = (event) => {
    if (!storedToken()) return;
    event.preventDefault();
    download(href, `usage-${accountId}.csv`).catch((error) => {
      if (error instanceof Unauthenticated) askForToken(error.message);
      else showBanner(error.message);
    });
  };
  return h("a", { class: "button button-quiet download", href, download: "", onclick: save }, "Download CSV");
}

function endpointTable(usage) {
  if (!usage.endpoints.length) return null;
  return h(
    "details",
    { class: "endpoints" },
    h("summary", {}, `Endpoints over the range (${usage.endpoints.length})`),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Endpoint"), h("th", { scope: "col", class: "num" }, "Requests"), h("th", { scope: "col" }, "Spends quota"))),
        h(
          "tbody",
          {},
          usage.endpoints.map((e) =>
            h("tr", {}, h("td", {}, h("code", {}, e.endpoint)), h("td", { class: "num" }, format.count(e.requests)), h("td", {}, e.consumesQuota ? "yes" : "no")),
          ),
        ),
      ),
    ),
  );
}

function bucketTable(model, granularity) {
  return h(
    "details",
    { class: "buckets" },
    h("summary", {}, `The chart's numbers (${model.buckets.length} ${granularity.toLowerCase()}s)`),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Starts (UTC)"), h("th", { scope: "col", class: "num" }, "Requests"), h("th", { scope: "col", class: "num" }, "Unknown days"))),
        h(
          "tbody",
          {},
          model.buckets.map((b) =>
            h(
              "tr",
              { class: b.point ? null : "gap-row" },
              h("td", {}, b.start),
              h("td", { class: "num" }, b.point ? format.count(b.point.requests) : "no data"),
              h("td", { class: "num" }, b.unknown ? `${b.unknown} of ${b.days}` : "—"),
            ),
          ),
        ),
      ),
    ),
  );
}

function renderUsage(entry, usage, range) {
  const { usage: box, account } = entry;
  const model = usageModel(usage, range.granularity);
  const canvas = h("canvas", {
    role: "img",
    "aria-label": `Requests of ${account.name} per ${range.granularity.toLowerCase()} from ${range.from} to ${range.to} (UTC), stacked by endpoint; ${model.buckets.filter((b) => !b.point).length} of ${model.buckets.length} without data.`,
  });
  const known = model.buckets.some((bucket) => bucket.point !== null);
  const totals = h(
    "p",
    { class: "usage-totals" },
    known ? h("span", { class: "big" }, format.count(usage.requests)) : h("span", { class: "big muted" }, "No data"),
    known ? (usage.missingDays.length ? " requests on the known days" : " requests") : " for this range",
    known ? h("span", { class: "muted" }, ` · ${format.count(usage.quotaRequests)} spend quota`) : null,
    known && usage.bytes !== null ? h("span", { class: "muted" }, ` · ${format.count(usage.bytes)} bytes (${format.bytes(usage.bytes)})`) : null,
    h("span", { class: "muted" }, ` · ${range.from} – ${range.to} UTC`),
  );
  const chartBox = h("div", { class: "chart" }, canvas);
  destroyCharts(box);
  replace(
    box,
    h("div", { class: "usage-head" }, totals, exportLink(account.id, range)),
    statusBanner("Usage", usage.source, { kind: "usage", sameAs: account.quotasSource }),
    chartBox,
  );
  if (typeof window.Chart !== "function") {
    replace(chartBox, errorBox(["The chart library did not load; the numbers are in the table below."]));
  } else {
    const chart = drawUsage(canvas, model, range.granularity);
    box.append(legend(chart, model));
  }
  const unsplit =
    !model.split && usage.endpoints.length
      ? h("p", { class: "muted small split-note" }, "This vendor splits requests by endpoint only over the whole range: see \u201cEndpoints over the range\u201d below.")
      : null;
  box.append(
    ...[unsplit, missingNote(usage), endpointTable(usage), bucketTable(model, range.granularity)].filter(Boolean),
  );
}

async function loadUsage(entry, range, signal) {
  const { card, usage: box, account } = entry;
  card.dataset.usageState = "loading";
  try {
    const { data, errors } = await run(
      "Usage",
      { id: account.id, from: range.from, to: range.to, granularity: range.granularity },
      { signal },
    );
    if (signal.aborted) return;
    const usage = data?.account?.usage;
    if (!usage) {
      destroyCharts(box);
      const messages = errors.length ? errors.map(describe) : ["The gateway returned no usage for this account."];
      replace(box, errorBox(messages));
      card.dataset.usageState = "error";
      return;
    }
    renderUsage(entry, usage, range);
    if (errors.length) box.prepend(errorBox(errors.map(describe)));
    card.dataset.usageState = "ready";
  } catch (error) {
    if (error.name === "AbortError") return;
    if (error instanceof Unauthenticated) {
      askForToken(error.message);
      return;
    }
    console.warn(error);
    destroyCharts(box);
    replace(box, errorBox([error instanceof RequestFailed ? error.message : `Usage could not be shown: ${error.message}`]));
    card.dataset.usageState = "error";
  }
}

async function loadAllUsage() {
  page.usageRun?.abort();
  const controller = new AbortController();
  page.usageRun = controller;
  const range = syncControls();
  if (document.body.dataset.state === "token") return; // nothing to read until there is one
  $("range-note").textContent = range.error ?? range.note ?? "";
  $("range-note").classList.toggle("range-error", Boolean(range.error));
  if (range.error) {
    document.body.dataset.state = "ready";
    return;
  }
  document.body.dataset.state = "loading";
  Object.assign(document.body.dataset, { from: range.from, to: range.to, granularity: range.granularity });
  const queue = [...page.cards.values()];
  for (const entry of queue) {
    entry.card.dataset.usageState = "loading";
    entry.usage.setAttribute("aria-busy", "true");
  }
  const worker = async () => {
    while (queue.length && !controller.signal.aborted) {
      const entry = queue.shift();
      await loadUsage(entry, range, controller.signal);
      entry.usage.removeAttribute("aria-busy");
    }
  };
  await Promise.all(Array.from({ length: CONCURRENT_USAGE }, worker));
  if (!controller.signal.aborted) document.body.dataset.state = "ready";
}

// ---------------------------------------------------------------------------------------------
// The overview, in pages of accounts where the gateway's cost limit asks for it

function tooCostly(answer) {
  return answer.data === null && answer.errors.some((e) => e.extensions?.code === "QUERY_TOO_COSTLY");
}

/** The service's order of alerts: highest utilization first, then by account and name. */
function alertOrder(a, b) {
  const ua = a.quota.utilization;
  const ub = b.quota.utilization;
  if ((ua === null) !== (ub === null)) return ua === null ? 1 : -1;
  if (ua !== ub) return ub - ua;
  if (a.quota.accountId !== b.quota.accountId) return a.quota.accountId < b.quota.accountId ? -1 : 1;
  return a.quota.name < b.quota.name ? -1 : a.quota.name > b.quota.name ? 1 : 0;
}

/**
 * Every account's overview as one answer `{data, errors}`. One request where the gateway's
 * cost limit allows it; else the account ids first, then pages of them (halved until a page
 * is accepted), their accounts, alerts and errors put together as one answer would hold them
 * (each error's account index counted over all pages).
 */
async function loadOverview() {
  const whole = await run("Overview");
  if (!tooCostly(whole)) return whole;
  const listed = await run("AccountIds");
  if (!listed.data) return tooCostly(listed) ? whole : listed;
  const ids = listed.data.accounts.map((account) => account.id);
  const accounts = [];
  let alerts = [];
  const errors = [...listed.errors];
  const seen = new Set();
  let size = Math.ceil(ids.length / 2);
  while (accounts.length < ids.length) {
    const chunk = ids.slice(accounts.length, accounts.length + size);
    const answer = await run("Overview", { ids: chunk });
    if (tooCostly(answer)) {
      if (size === 1) return answer;
      size = Math.ceil(size / 2);
      continue;
    }
    if (!answer.data) return answer;
    const offset = accounts.length;
    for (const error of answer.errors) {
      if (Array.isArray(error.path) && error.path[0] === "accounts" && typeof error.path[1] === "number") {
        errors.push({ ...error, path: ["accounts", error.path[1] + offset, ...error.path.slice(2)] });
      } else if (!seen.has(JSON.stringify([error.message, error.path]))) {
        seen.add(JSON.stringify([error.message, error.path])); // each page's alerts meet it
        errors.push(error);
      }
    }
    accounts.push(...answer.data.accounts);
    alerts = alerts === null || answer.data.alerts === null ? null : alerts.concat(answer.data.alerts);
    if (answer.data.accounts.length < chunk.length) break; // ids gone since: never loop on them
  }
  return { data: { accounts, alerts: alerts === null ? null : alerts.sort(alertOrder) }, errors };
}

// ---------------------------------------------------------------------------------------------
// The whole page

async function loadEverything() {
  document.body.dataset.state = "loading";
  $("refresh").disabled = true;
  replace($("banners"));
  try {
    let answer;
    try {
      answer = await loadOverview();
    } catch (error) {
      if (error instanceof Unauthenticated) {
        askForToken(error.message);
        return;
      }
      showBanner(error instanceof RequestFailed ? error.message : `The dashboard failed: ${error.message}`);
      replace($("alerts"), h("p", { class: "muted" }, "Not loaded."));
      replace($("summary"), h("p", { class: "muted" }, "Not loaded."));
      document.body.dataset.state = "error";
      return;
    }
    const { data, errors } = answer;
    for (const error of errors.filter((e) => !Array.isArray(e.path) || e.path.length === 0)) {
      showBanner(describe(error));
    }
    if (!data) {
      replace($("alerts"), h("p", { class: "muted" }, "Not loaded."));
      replace($("summary"), h("p", { class: "muted" }, "Not loaded."));
      document.body.dataset.state = "error";
      return;
    }
    page.accounts = data.accounts ?? [];
    for (const section of [
      () => renderAlerts(data.alerts, errors),
      () => renderSummary(page.accounts),
      () => renderAccounts(page.accounts, errors),
    ]) {
      try {
        section();
      } catch (error) {
        console.warn(error);
        showBanner(`Part of the page could not be shown: ${error.message}`);
      }
    }
    $("forget-token").hidden = !storedToken();
    $("updated").textContent = `Updated ${format.utcTime(new Date())}`;
    await loadAllUsage();
  } finally {
    $("refresh").disabled = false;
  }
}

bindControls();
bindToken();
syncControls();
if (tokenRequired() && !storedToken()) askForToken();
else loadEverything();
setInterval(tickTimes, TICK_MS);
setInterval(() => {
  const state = document.body.dataset.state;
  if (document.visibilityState === "visible" && state !== "loading" && state !== "token") loadEverything();
}, REFRESH_EVERY_MS);
