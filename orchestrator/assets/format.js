// Formatting for display: numbers, byte sizes, durations, relative times, a cell's text, a
// column's kind from its SQL type name, and label truncation. Pure functions, no DOM.
//
// May import nothing of ours (a leaf).

const integerFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const numberFormat = new Intl.NumberFormat('en-US', { maximumFractionDigits: 4 });
const compactFormat = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });

export function formatNumber(value) {
  if (typeof value !== 'number' || !Number.isFinite(value)) return String(value);
  return Number.isInteger(value) ? integerFormat.format(value) : numberFormat.format(value);
}

export function formatTick(value) {
  return Math.abs(value) >= 10000 ? compactFormat.format(value) : numberFormat.format(value);
}

export function plural(n, one, many) {
  return `${formatNumber(n)} ${n === 1 ? one : many}`;
}

/** A size in bytes as B, KB, MB or GB (powers of 1024). */
export function formatBytes(bytes) {
  if (typeof bytes !== 'number' || !Number.isFinite(bytes)) return '';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatMs(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return null;
  return ms < 10 ? `${ms.toFixed(1)} ms` : ms < 10000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function relativeTime(text) {
  const when = Date.parse(text);
  if (!Number.isFinite(when)) return text || '';
  const seconds = Math.round((Date.now() - when) / 1000);
  if (seconds < 60) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(when).toISOString().slice(0, 10);
}

/** A cell's text: null for SQL NULL, JSON for nested values, else as sent. */
export function cellText(value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// Column kinds from SQL (and Arrow) type names.
export function columnKind(type) {
  const t = String(type || '').trim().toUpperCase();
  if (/^(DATE|TIMESTAMP)/.test(t)) return 'time';
  if (/^(TINYINT|SMALLINT|INTEGER|INT|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|U?INT\d+|FLOAT\d*|DOUBLE|REAL|DECIMAL|NUMERIC)\b/.test(t)) {
    return 'number';
  }
  if (/^(U?INT|FLOAT|DECIMAL)\d/.test(t)) return 'number';
  if (/^(VARCHAR|CHAR|TEXT|STRING|UTF8|LARGEUTF8|UTF8VIEW|BOOLEAN|BOOL)/.test(t)) return 'text';
  return 'other';
}

export function truncateLabel(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
