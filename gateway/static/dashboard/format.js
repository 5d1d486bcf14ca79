// Numbers and times for people. Counts are exact (BigInt past 2^53) and grouped; times are UTC
// and say so.

const integers = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const percents = new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1 });
const decimals = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

/** An exact count with grouping: 28,532,073,280. */
export function count(value) {
  if (value === null || value === undefined) return "—";
  return integers.format(value);
}

/** A short count for chart axes: 1.2M. */
export function shortCount(value) {
  return compact.format(value);
}

/** A fraction as a percentage: 0.0578 -> 5.8%. */
export function percent(fraction) {
  if (fraction === null || fraction === undefined) return "—";
  return percents.format(fraction);
}

const BYTE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];

/** Bytes in decimal units, as vendors bill them: 45.9 GB. */
export function bytes(value) {
  if (value === null || value === undefined) return "—";
  let amount = Number(value);
  let unit = 0;
  while (amount >= 1000 && unit < BYTE_UNITS.length - 1) {
    amount /= 1000;
    unit += 1;
  }
  return `${decimals.format(amount)} ${BYTE_UNITS[unit]}`;
}

const pad = (n) => String(n).padStart(2, "0");

/** 2026-12-03 00:00 UTC */
export function utcDateTime(iso) {
  const t = new Date(iso);
  return (
    `${t.getUTCFullYear()}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())} ` +
    `${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())} UTC`
  );
}

/** 00:41:42 UTC */
export function utcTime(date) {
  return `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} UTC`;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** A bucket's start (YYYY-MM-DD) as an axis label: "Nov 2" for days and weeks, "Nov 2026" for months. */
export function bucketLabel(day, granularity) {
  const [year, month, date] = day.split("-").map(Number);
  if (granularity === "MONTH") return `${MONTHS[month - 1]} ${year}`;
  return `${MONTHS[month - 1]} ${date}`;
}

/** A span of time in words: "3 d 4 h", "5 h 12 min", "42 min", "less than a minute". */
export function duration(milliseconds) {
  const minutes = Math.floor(Math.abs(milliseconds) / 60000);
  if (minutes < 1) return "less than a minute";
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const rest = minutes % 60;
  if (days > 0) return hours > 0 ? `${days} d ${hours} h` : `${days} d`;
  if (hours > 0) return rest > 0 ? `${hours} h ${rest} min` : `${hours} h`;
  return `${rest} min`;
}

/** How long ago (or until) a moment is, from `now`: "5 min ago", "in 3 h". */
export function relative(iso, now = Date.now()) {
  const delta = new Date(iso).getTime() - now;
  if (Math.abs(delta) < 60000) return delta < 0 ? "just now" : "in less than a minute";
  return delta < 0 ? `${duration(delta)} ago` : `in ${duration(delta)}`;
}
