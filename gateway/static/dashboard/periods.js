// The period and granularity the charts show: what the page offers, how it is kept in the
// address (?period=30&granularity=DAY or ?from=...&to=...&granularity=WEEK), and the buckets a
// range is cut into. Days are UTC calendar days, YYYY-MM-DD.

export const PRESETS = [7, 30, 90, 365];
export const DEFAULT_PRESET = 30;
export const GRANULARITIES = ["DAY", "WEEK", "MONTH"];
export const EARLIEST = "2000-01-01";

/**
 * The longest range each granularity is offered for. Each account's usage is one query, and
 * these keep the costliest of them (366 days per day, with every bucket's endpoints) well
 * under the gateway's default query cost limit; tests/test_dashboard_files.py prices them.
 */
export const MAX_DAYS = { DAY: 366, WEEK: 1096, MONTH: 3660 };

const DAY_MS = 86400000;

export function dayOf(date) {
  return date.toISOString().slice(0, 10);
}

export function parseDay(text) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return null;
  const date = new Date(`${text}T00:00:00Z`);
  return Number.isNaN(date.getTime()) || dayOf(date) !== text ? null : date;
}

export function addDays(day, n) {
  return dayOf(new Date(parseDay(day).getTime() + n * DAY_MS));
}

/** Days from `from` to `to`, both included. */
export function spanDays(from, to) {
  return Math.round((parseDay(to) - parseDay(from)) / DAY_MS) + 1;
}

/** The finest granularity offered for a range of `days`, at most `wanted`'s fineness. */
export function allowedGranularity(wanted, days) {
  const start = GRANULARITIES.indexOf(wanted);
  for (const granularity of GRANULARITIES.slice(Math.max(start, 0))) {
    if (days <= MAX_DAYS[granularity]) return granularity;
  }
  return null;
}

export function defaultGranularity(days) {
  return days > 120 ? "WEEK" : "DAY";
}

/** The state the address asks for (anything unreadable falls back to the default). */
export function fromAddress(search) {
  const params = new URLSearchParams(search);
  const granularity = GRANULARITIES.includes(params.get("granularity"))
    ? params.get("granularity")
    : null;
  if (params.has("from") || params.has("to")) {
    return { preset: "custom", from: params.get("from") ?? "", to: params.get("to") ?? "", granularity };
  }
  const preset = Number(params.get("period"));
  return { preset: PRESETS.includes(preset) ? preset : DEFAULT_PRESET, granularity };
}

export function toAddress(state) {
  const params = new URLSearchParams();
  if (state.preset === "custom") {
    params.set("from", state.from);
    params.set("to", state.to);
  } else {
    params.set("period", String(state.preset));
  }
  if (state.granularity) params.set("granularity", state.granularity);
  return `?${params}`;
}

/**
 * The range to show: `{from, to, days, granularity, note}`, or `{error}` saying what is wrong
 * with a custom range. `today` is the current UTC day.
 */
export function resolve(state, today) {
  let from;
  let to;
  if (state.preset === "custom") {
    if (!parseDay(state.from) || !parseDay(state.to)) {
      return { error: "Enter both days of the range (YYYY-MM-DD)." };
    }
    ({ from, to } = state);
    if (from < EARLIEST) return { error: `The range cannot start before ${EARLIEST}.` };
    if (to > today) return { error: `The range cannot end after today (${today}, UTC).` };
    if (from > to) return { error: "The range starts after it ends." };
  } else {
    to = today;
    from = addDays(today, 1 - state.preset);
  }
  const days = spanDays(from, to);
  if (days > MAX_DAYS.MONTH) {
    return { error: `A range can be at most ${MAX_DAYS.MONTH.toLocaleString("en-US")} days; this one has ${days.toLocaleString("en-US")}.` };
  }
  const wanted = state.granularity ?? defaultGranularity(days);
  const granularity = allowedGranularity(wanted, days);
  const note =
    granularity === wanted
      ? ""
      : `${days.toLocaleString("en-US")} days are shown per ${granularity.toLowerCase()}: per ${wanted.toLowerCase()} is offered up to ${MAX_DAYS[wanted].toLocaleString("en-US")} days.`;
  return { from, to, days, granularity, note };
}

/** The first day of every bucket of the range: weeks start on Monday, months on the 1st. */
export function bucketStarts(from, to, granularity) {
  const starts = [];
  let day = from;
  if (granularity === "WEEK") {
    const weekday = (parseDay(from).getUTCDay() + 6) % 7; // Monday 0
    day = addDays(from, -weekday);
  } else if (granularity === "MONTH") {
    day = `${from.slice(0, 7)}-01`;
  }
  while (day <= to) {
    starts.push(day);
    if (granularity === "DAY") day = addDays(day, 1);
    else if (granularity === "WEEK") day = addDays(day, 7);
    else {
      const date = parseDay(day);
      date.setUTCMonth(date.getUTCMonth() + 1);
      day = dayOf(date);
    }
  }
  return starts;
}

/** The days of the range that fall in the bucket starting at `start`. */
export function bucketDays(start, granularity, from, to) {
  let end;
  if (granularity === "DAY") end = start;
  else if (granularity === "WEEK") end = addDays(start, 6);
  else {
    const date = parseDay(start);
    date.setUTCMonth(date.getUTCMonth() + 1);
    end = addDays(dayOf(date), -1);
  }
  const first = start < from ? from : start;
  const last = end > to ? to : end;
  return first > last ? 0 : spanDays(first, last);
}
