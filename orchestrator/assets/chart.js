// The chart of a result (#chart), chosen by fixed rules (bar, line, a big number, or
// none) and drawn here as SVG.
//
// May import: dom.js, format.js.

import { $, el, svg, clear, show } from './dom.js';
import { cellText, columnKind, formatNumber, formatTick, truncateLabel } from './format.js';

/** The chart the rules give for a result: bar, line, number, or none. */
function chartFor(result) {
  if (!result || result.error) return { kind: 'none' };
  const columns = Array.isArray(result.columns) ? result.columns : [];
  const rows = Array.isArray(result.rows) ? result.rows : [];
  const kinds = columns.map((_, i) => columnKind((result.column_types || [])[i]));
  if (rows.length === 0) return { kind: 'none' };
  if (columns.length === 1 && rows.length === 1 && kinds[0] === 'number') return { kind: 'number', column: 0 };
  if (columns.length === 2) {
    const text = kinds.indexOf('text');
    const number = kinds.indexOf('number');
    if (text !== -1 && number !== -1) return { kind: 'bar', label: text, value: number };
  }
  const times = kinds.filter((k) => k === 'time').length;
  const numbers = kinds.filter((k) => k === 'number').length;
  if (times === 1 && numbers >= 1 && times + numbers === columns.length && rows.length >= 2) {
    const time = kinds.indexOf('time');
    const points = rows.map((row) => parseTime(row[time]));
    if (points.every(Number.isFinite)) {
      return { kind: 'line', time, series: kinds.map((k, i) => (k === 'number' ? i : -1)).filter((i) => i >= 0), points };
    }
  }
  return { kind: 'none' };
}

function parseTime(value) {
  if (value === null || value === undefined) return NaN;
  let text = String(value).trim();
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) text += 'T00:00:00Z';
  else if (/^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(text)) text = `${text.replace(' ', 'T')}Z`;
  return Date.parse(text);
}

function numeric(value) {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) return Number(value);
  return null;
}

export function renderChart(result) {
  const box = $('chart');
  clear(box);
  const chart = chartFor(result);
  box.dataset.kind = chart.kind;
  if (chart.kind === 'none') {
    show(box, false);
    return;
  }
  show(box, true);
  const width = Math.max(280, Math.floor(box.clientWidth || $('result-panel').clientWidth - 32 || 600));
  if (chart.kind === 'number') {
    const value = result.rows[0][0];
    const number = numeric(value);
    box.append(
      el(
        'div',
        { class: 'big-number', 'data-testid': 'big-number' },
        el('div', { class: 'value', text: number === null ? String(cellText(value) ?? 'NULL') : formatNumber(number) }),
        el('div', { class: 'label', text: String(result.columns[0]) }),
      ),
    );
  } else if (chart.kind === 'bar') {
    box.append(barChart(result, chart, width));
  } else {
    box.append(lineChart(result, chart, width));
  }
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) hi = lo + 1;
  const rough = (hi - lo) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / magnitude;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= Math.ceil(hi / step) * step + step / 2; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function barChart(result, chart, width) {
  const rows = result.rows;
  const labels = rows.map((row) => cellText(row[chart.label]) ?? 'NULL');
  const values = rows.map((row) => numeric(row[chart.value]));
  const finite = values.map((v) => (v === null ? 0 : v));
  const lo = Math.min(0, ...finite);
  const hi = Math.max(0, ...finite);
  const ticks = niceTicks(lo, hi, width < 500 ? 3 : 5);
  const domainLo = ticks[0];
  const domainHi = ticks[ticks.length - 1];
  const maxChars = Math.max(6, Math.floor((width * 0.32) / 7));
  const longest = Math.max(...labels.map((l) => Math.min(l.length, maxChars)));
  const labelWidth = Math.min(Math.max(48, longest * 7 + 10), width * 0.34);
  const valueRoom = 64;
  const barHeight = 20;
  const gap = 6;
  const top = 6;
  const axis = 22;
  const plot = Math.max(60, width - labelWidth - valueRoom - 8);
  const height = top + rows.length * (barHeight + gap) + axis;
  const x = (v) => labelWidth + 8 + ((v - domainLo) / (domainHi - domainLo)) * plot;
  const bottom = height - axis;

  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': `Bar chart of ${result.columns[chart.value]} by ${result.columns[chart.label]}`,
    'data-testid': 'bar-chart',
  });
  for (const tick of ticks) {
    root.append(svg('line', { class: 'grid', x1: x(tick), x2: x(tick), y1: top, y2: bottom }));
    root.append(svg('text', { x: x(tick), y: bottom + 15, 'text-anchor': 'middle' }, formatTick(tick)));
  }
  root.append(svg('line', { class: 'axis', x1: x(0), x2: x(0), y1: top, y2: bottom }));
  rows.forEach((_, i) => {
    const y = top + i * (barHeight + gap);
    const v = finite[i];
    const start = Math.min(x(0), x(v));
    const shown = values[i] === null ? 'NULL' : formatNumber(values[i]);
    root.append(
      svg(
        'rect',
        {
          class: v < 0 ? 'bar negative' : 'bar',
          x: start.toFixed(2),
          y,
          width: Math.abs(x(v) - x(0)).toFixed(2),
          height: barHeight,
          rx: 2,
          'data-label': labels[i],
          'data-value': values[i] === null ? 'null' : String(values[i]),
        },
        svg('title', null, `${labels[i]}: ${shown}`),
      ),
    );
    root.append(
      svg('text', { class: 'label', x: labelWidth, y: y + barHeight / 2 + 4, 'text-anchor': 'end' }, truncateLabel(labels[i], maxChars)),
    );
    root.append(svg('text', { class: 'value', x: Math.max(x(0), x(v)) + 5, y: y + barHeight / 2 + 4 }, shown));
  });
  return root;
}

function formatTime(ms, spanMs) {
  const iso = new Date(ms).toISOString();
  return spanMs < 2 * 86400000 ? iso.slice(0, 16).replace('T', ' ') : iso.slice(0, 10);
}

function lineChart(result, chart, width) {
  const order = chart.points.map((t, i) => [t, i]).sort((a, b) => a[0] - b[0]);
  const times = order.map(([t]) => t);
  const series = chart.series.map((column) => ({
    name: String(result.columns[column]),
    values: order.map(([, i]) => numeric(result.rows[i][column])),
  }));
  const all = series.flatMap((s) => s.values).filter((v) => v !== null);
  const lo = Math.min(0, ...all);
  const hi = Math.max(0, ...all);
  const ticks = niceTicks(lo, hi, 4);
  const domainLo = ticks[0];
  const domainHi = ticks[ticks.length - 1];
  const left = 56;
  const right = 16;
  const legend = 22;
  const top = legend + 8;
  const plotHeight = 200;
  const bottom = top + plotHeight;
  const height = bottom + 26;
  const t0 = times[0];
  const t1 = times[times.length - 1];
  const span = Math.max(1, t1 - t0);
  const x = (t) => left + ((t - t0) / span) * (width - left - right);
  const y = (v) => bottom - ((v - domainLo) / (domainHi - domainLo)) * plotHeight;

  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: 'img',
    'aria-label': `Line chart of ${series.map((s) => s.name).join(', ')} over ${result.columns[chart.time]}`,
    'data-testid': 'line-chart',
  });
  for (const tick of ticks) {
    root.append(svg('line', { class: 'grid', x1: left, x2: width - right, y1: y(tick), y2: y(tick) }));
    root.append(svg('text', { x: left - 6, y: y(tick) + 4, 'text-anchor': 'end' }, formatTick(tick)));
  }
  const xTicks = Math.min(times.length, width < 500 ? 3 : 6);
  for (let i = 0; i < xTicks; i++) {
    const t = xTicks === 1 ? t0 : t0 + (span * i) / (xTicks - 1);
    const anchor = i === 0 ? 'start' : i === xTicks - 1 ? 'end' : 'middle';
    root.append(svg('text', { x: x(t), y: bottom + 16, 'text-anchor': anchor }, formatTime(t, span)));
  }
  root.append(svg('line', { class: 'axis', x1: left, x2: width - right, y1: bottom, y2: bottom }));
  series.forEach((s, index) => {
    const color = `series-${index % 6}`;
    let d = '';
    let pen = 'M';
    s.values.forEach((v, i) => {
      if (v === null) {
        pen = 'M';
        return;
      }
      d += `${pen}${x(times[i]).toFixed(1)},${y(v).toFixed(1)} `;
      pen = 'L';
    });
    root.append(svg('path', { class: `series ${color}`, d: d.trim() || 'M0,0', 'data-series': s.name }));
    if (times.length <= 60) {
      s.values.forEach((v, i) => {
        if (v === null) return;
        root.append(
          svg('circle', { class: `point ${color}`, cx: x(times[i]).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }, svg('title', null, `${s.name} ${formatTime(times[i], span)}: ${formatNumber(v)}`)),
        );
      });
    }
    const legendX = left + index * Math.max(110, Math.floor((width - left) / Math.max(1, series.length)));
    root.append(svg('circle', { class: `point ${color}`, cx: legendX + 5, cy: 10, r: 5 }));
    root.append(svg('text', { class: 'label', x: legendX + 14, y: 14 }, truncateLabel(s.name, 24)));
  });
  return root;
}
