// One account's usage as a stacked bar chart (Chart.js, loaded by the page as a global).
//
// Every bucket of the range gets a slot. A bucket the series leaves out (no known day) is null
// in every dataset, so Chart.js draws nothing there, and a grey band marks it: a gap, never a
// zero. A bucket with some unknown days is drawn hatched.

import { h } from "./dom.js";
import { bucketDays, bucketStarts } from "./periods.js";
import { bucketLabel, count, shortCount } from "./format.js";

/** Endpoints drawn on their own; the rest are summed as one "Other endpoints" dataset. */
export const TOP_ENDPOINTS = 8;
export const OTHER = "Other endpoints";
export const UNSPLIT = "Not split by endpoint";
export const ALL = "All endpoints";

const PALETTE = ["#3b6fb6", "#e8853d", "#4f9d58", "#d4504f", "#6bb3ad", "#c9a43a", "#9a6fb0", "#e58fa3"];
const OTHER_COLOR = "#8d8f93";
const UNSPLIT_COLOR = "#b4aca3";
const GAP_COLOR = "#9aa0a6";
const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';

/** An endpoint's dataset name: the vendor's path, marked when its requests spend no quota. */
export function endpointKey(endpoint) {
  return endpoint.consumesQuota ? endpoint.endpoint : `${endpoint.endpoint} (no quota)`;
}

/**
 * What the chart shows: `{labels, buckets, series}` where `labels` are bucket starts
 * (YYYY-MM-DD), `buckets[i]` is `{start, point, days, unknown}` and each series is
 * `{label, color, data}` with null where the bucket has no known day.
 */
export function usageModel(usage, granularity) {
  const starts = bucketStarts(usage.from, usage.to, granularity);
  const points = new Map(usage.series.map((point) => [point.start.slice(0, 10), point]));
  const buckets = starts.map((start) => {
    const point = points.get(start) ?? null;
    const days = bucketDays(start, granularity, usage.from, usage.to);
    return { start, point, days, unknown: point ? point.missingDays : days };
  });

  // Endpoints drawn in the order of the range's totals (requests descending), and only those
  // with requests in some bucket: vendors that split only whole ranges have none per bucket.
  const inBuckets = new Set();
  for (const { point } of buckets) {
    for (const endpoint of point?.endpoints ?? []) {
      if (Number(endpoint.requests) > 0) inBuckets.add(endpointKey(endpoint));
    }
  }
  const ranked = [];
  for (const key of [...usage.endpoints.map(endpointKey), ...inBuckets]) {
    if (inBuckets.has(key) && !ranked.includes(key)) ranked.push(key);
  }
  const shown = ranked.length > TOP_ENDPOINTS + 1 ? ranked.slice(0, TOP_ENDPOINTS) : ranked;
  const series = shown.map((label, index) => ({ label, color: PALETTE[index], data: [] }));
  const other = {
    label: `${OTHER} (${ranked.length - shown.length})`,
    color: OTHER_COLOR,
    data: [],
  };
  const unsplit = ranked.length
    ? { label: UNSPLIT, color: UNSPLIT_COLOR, data: [] }
    : { label: ALL, color: PALETTE[0], data: [] };

  for (const { point } of buckets) {
    if (point === null) {
      for (const each of [...series, other, unsplit]) each.data.push(null);
      continue;
    }
    const values = new Map();
    let split = 0;
    for (const endpoint of point.endpoints) {
      const key = endpointKey(endpoint);
      const requests = Number(endpoint.requests);
      values.set(key, (values.get(key) ?? 0) + requests);
      split += requests;
    }
    let shownSum = 0;
    for (const each of series) {
      const value = values.get(each.label) ?? 0;
      each.data.push(value);
      shownSum += value;
    }
    other.data.push(split - shownSum);
    unsplit.data.push(Math.max(0, Number(point.requests) - split));
  }
  if (ranked.length > shown.length) series.push(other);
  // The requests no endpoint accounts for; all of them where no bucket is split.
  if (!ranked.length || unsplit.data.some((value) => value > 0)) series.push(unsplit);
  return {
    labels: starts,
    buckets,
    series,
    split: ranked.length > 0,
  };
}

const patterns = new Map();

/** A diagonal hatch in `color`: the fill of partly known buckets (and, in grey, of gaps). */
export function hatch(color, alpha = 0.35) {
  const key = `${color}/${alpha}`;
  if (!patterns.has(key)) {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 8;
    const ctx = tile.getContext("2d");
    ctx.globalAlpha = alpha;
    ctx.fillStyle = color;
    ctx.fillRect(0, 0, 8, 8);
    ctx.globalAlpha = 1;
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (const offset of [-8, 0, 8]) {
      ctx.moveTo(offset, 8);
      ctx.lineTo(offset + 8, 0);
    }
    ctx.stroke();
    patterns.set(key, ctx.createPattern(tile, "repeat"));
  }
  return patterns.get(key);
}

/** Draws a grey band over every bucket with no known day, before the bars. */
function gapBands(buckets) {
  return {
    id: "gapBands",
    beforeDatasetsDraw(chart) {
      const { ctx, chartArea, scales } = chart;
      const x = scales.x;
      const width = (chartArea.right - chartArea.left) / Math.max(buckets.length, 1);
      ctx.save();
      ctx.fillStyle = hatch(GAP_COLOR, 0.12);
      ctx.font = `12px ${FONT}`;
      ctx.textAlign = "center";
      buckets.forEach((bucket, index) => {
        if (bucket.point !== null) return;
        const center = x.getPixelForValue(index);
        ctx.fillRect(center - width / 2, chartArea.top, width, chartArea.bottom - chartArea.top);
      });
      // One "no data" label per run of gaps wide enough to hold it.
      let runStart = null;
      buckets.forEach((bucket, index) => {
        const gap = bucket.point === null;
        if (gap && runStart === null) runStart = index;
        if ((!gap || index === buckets.length - 1) && runStart !== null) {
          const runEnd = gap ? index : index - 1;
          const left = x.getPixelForValue(runStart) - width / 2;
          const right = x.getPixelForValue(runEnd) + width / 2;
          if (right - left >= 64) {
            const middle = (left + right) / 2;
            ctx.fillStyle = "rgba(255, 255, 255, 0.92)";
            ctx.fillRect(middle - 28, chartArea.top + 6, 56, 20);
            ctx.fillStyle = "#3c4043";
            ctx.fillText("no data", middle, chartArea.top + 20);
          }
          runStart = null;
        }
      });
      ctx.restore();
    },
  };
}

function bucketTitle(start, granularity) {
  if (granularity === "DAY") return `${start} (UTC)`;
  if (granularity === "WEEK") return `Week of ${start} (UTC)`;
  return `${bucketLabel(start, "MONTH")} (UTC)`;
}

/** Draws the model on a new `canvas`; returns the chart. */
export function drawUsage(canvas, model, granularity) {
  const { buckets } = model;
  return new window.Chart(canvas, {
    type: "bar",
    data: {
      labels: model.labels,
      datasets: model.series.map((each) => ({
        label: each.label,
        data: each.data,
        backgroundColor: buckets.map((bucket) =>
          bucket.point !== null && bucket.unknown > 0 ? hatch(each.color, 0.45) : each.color,
        ),
        borderWidth: 0,
        categoryPercentage: 0.86,
        barPercentage: 1,
      })),
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      font: { family: FONT },
      scales: {
        x: {
          stacked: true,
          grid: { display: false },
          ticks: {
            maxRotation: 0,
            autoSkipPadding: 14,
            font: { family: FONT },
            color: "#5f6368",
            callback(value) {
              return bucketLabel(this.getLabelForValue(value), granularity);
            },
          },
        },
        y: {
          display: buckets.some((bucket) => bucket.point !== null),
          stacked: true,
          beginAtZero: true,
          grid: { color: "#eceef1" },
          border: { display: false },
          ticks: { font: { family: FONT }, color: "#5f6368", callback: (value) => shortCount(value) },
        },
      },
      plugins: {
        legend: { display: false },
        tooltip: {
          filter: (item) => item.raw !== null && item.raw > 0,
          itemSort: (a, b) => b.raw - a.raw,
          callbacks: {
            title: (items) => (items.length ? bucketTitle(model.labels[items[0].dataIndex], granularity) : ""),
            label: (item) => ` ${item.dataset.label}: ${count(item.raw)}`,
            footer: (items) => {
              if (!items.length) return "";
              const bucket = buckets[items[0].dataIndex];
              const lines = [`Total: ${count(bucket.point.requests)} requests`];
              if (bucket.unknown > 0) lines.push(`${bucket.unknown} of ${bucket.days} days unknown`);
              return lines;
            },
          },
        },
      },
    },
    plugins: [gapBands(buckets)],
  });
}

/** A keyboard-usable legend: one toggle button per dataset, and what the fills mean. */
export function legend(chart, model) {
  const items = model.series.map((each, index) => {
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.setProperty("--swatch", each.color);
    const button = h("button", { type: "button", class: "legend-item", "aria-pressed": "true" }, swatch, each.label);
    button.addEventListener("click", () => {
      const visible = !chart.isDatasetVisible(index);
      chart.setDatasetVisibility(index, visible);
      button.setAttribute("aria-pressed", String(visible));
      chart.update();
    });
    return h("li", {}, button);
  });
  const keys = [];
  if (model.buckets.some((bucket) => bucket.point === null)) {
    keys.push(h("li", { class: "legend-key" }, h("span", { class: "swatch swatch-gap", "aria-hidden": "true" }), "no data (unknown, not zero)"));
  }
  if (model.buckets.some((bucket) => bucket.point !== null && bucket.unknown > 0)) {
    keys.push(h("li", { class: "legend-key" }, h("span", { class: "swatch swatch-partial", "aria-hidden": "true" }), "some days unknown"));
  }
  return h("ul", { class: "legend", "aria-label": "Endpoints (toggle to hide or show)" }, items, keys);
}
