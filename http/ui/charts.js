// Charts drawn as SVG by hand: horizontal bars (long Russian labels stay readable on a phone)
// and donuts. Each figure can be saved as CSV (its numbers) or PNG (its picture).
import { h, download, csvText, fmtNum } from './dom.js';
import { t } from './i18n.js';

export const PALETTE = ['#1d4ed8', '#059669', '#d97706', '#dc2626', '#7c3aed', '#0891b2', '#be185d', '#4d7c0f', '#6b7280', '#92400e'];
const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

// Statistics come as arrays of objects or as {label: number} maps; both become [{label, value}].
export function series(data) {
  if (!data) return [];
  if (Array.isArray(data)) {
    return data.map((d) => {
      if (typeof d !== 'object' || d === null) return { label: String(d), value: 0 };
      const label = ['label', 'name', 'channel', 'product', 'outcome', 'success_type', 'status', 'key', 'cluster']
        .map((k) => d[k]).find((v) => typeof v === 'string' && v !== '') ?? Object.values(d).find((v) => typeof v === 'string') ?? '';
      const value = ['value', 'count', 'requests', 'total', 'n', 'sold'].map((k) => d[k]).find((v) => typeof v === 'number')
        ?? Object.values(d).find((v) => typeof v === 'number') ?? 0;
      return { label, value };
    });
  }
  if (typeof data === 'object') return Object.entries(data).filter(([, v]) => typeof v === 'number').map(([label, value]) => ({ label, value }));
  return [];
}

const svgText = (x, y, text, attrs = {}) => h('svg:text', { x, y, 'font-family': FONT, 'font-size': 13, fill: '#1f2937', ...attrs }, text);

export function barChart(title, data, { translate = false } = {}) {
  const rows = data.map((d) => ({ ...d, label: translate ? t(d.label) : d.label }));
  const width = 560, labelW = 170, rowH = 30, top = 8;
  const max = Math.max(1, ...rows.map((d) => d.value));
  const height = top * 2 + Math.max(1, rows.length) * rowH;
  const svg = h('svg:svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, width: '100%' },
    h('svg:rect', { x: 0, y: 0, width, height, fill: '#ffffff' }),
    rows.map((d, i) => {
      const y = top + i * rowH;
      const w = Math.max(d.value ? 2 : 0, ((width - labelW - 60) * d.value) / max);
      return h('svg:g', {},
        h('svg:title', {}, `${d.label}: ${d.value}`),
        svgText(labelW - 8, y + 19, d.label.length > 24 ? `${d.label.slice(0, 23)}…` : d.label, { 'text-anchor': 'end' }),
        h('svg:rect', { x: labelW, y: y + 5, width: w, height: rowH - 10, rx: 3, fill: PALETTE[i % PALETTE.length] }),
        svgText(labelW + w + 6, y + 19, fmtNum(d.value), { 'font-weight': 600 }));
    }),
    rows.length ? null : svgText(width / 2, 24, '—', { 'text-anchor': 'middle' }));
  return figure(title, svg, [['label', 'value'], ...rows.map((d) => [d.label, d.value])]);
}

export function donutChart(title, data, { translate = false } = {}) {
  const rows = data.filter((d) => d.value > 0).map((d) => ({ ...d, label: translate ? t(d.label) : d.label }));
  const total = rows.reduce((s, d) => s + d.value, 0);
  const size = 200, r = 80, stroke = 34, c = 2 * Math.PI * r;
  let offset = 0;
  const rings = rows.map((d, i) => {
    const len = (d.value / total) * c;
    const ring = h('svg:circle', { cx: size / 2, cy: size / 2, r, fill: 'none', stroke: PALETTE[i % PALETTE.length], 'stroke-width': stroke,
      'stroke-dasharray': `${len} ${c - len}`, 'stroke-dashoffset': -offset, transform: `rotate(-90 ${size / 2} ${size / 2})` },
    h('svg:title', {}, `${d.label}: ${d.value}`));
    offset += len;
    return ring;
  });
  const legendW = 220;
  const height = Math.max(size, rows.length * 24 + 16);
  const svg = h('svg:svg', { viewBox: `0 0 ${size + legendW} ${height}`, role: 'img', 'aria-label': title, width: '100%' },
    h('svg:rect', { x: 0, y: 0, width: size + legendW, height, fill: '#ffffff' }),
    total ? rings : h('svg:circle', { cx: size / 2, cy: size / 2, r, fill: 'none', stroke: '#e5e7eb', 'stroke-width': stroke }),
    svgText(size / 2, size / 2 + 7, fmtNum(total), { 'text-anchor': 'middle', 'font-size': 22, 'font-weight': 700 }),
    rows.map((d, i) => h('svg:g', {},
      h('svg:rect', { x: size + 10, y: 12 + i * 24, width: 14, height: 14, rx: 2, fill: PALETTE[i % PALETTE.length] }),
      svgText(size + 30, 24 + i * 24, `${d.label.length > 18 ? `${d.label.slice(0, 17)}…` : d.label} — ${fmtNum(d.value)} (${Math.round((d.value / total) * 100)}%)`))));
  return figure(title, svg, [['label', 'value'], ...rows.map((d) => [d.label, d.value])]);
}

function figure(title, svg, rows) {
  const slug = title.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, '-');
  return h('figure', { class: 'card chart' },
    h('figcaption', {}, h('h3', {}, title),
      h('span', { class: 'row' },
        h('button', { type: 'button', class: 'small', onclick: () => download(`${slug}.csv`, new Blob([csvText(rows)], { type: 'text/csv' })) }, 'CSV'),
        h('button', { type: 'button', class: 'small', onclick: () => savePng(svg, `${slug}.png`) }, 'PNG'))),
    svg);
}

export function savePng(svg, name) {
  const [, , w, hgt] = svg.getAttribute('viewBox').split(' ').map(Number);
  const text = new XMLSerializer().serializeToString(svg);
  const url = URL.createObjectURL(new Blob([text], { type: 'image/svg+xml' }));
  const img = new Image();
  img.onload = () => {
    const canvas = document.createElement('canvas');
    canvas.width = w * 2;
    canvas.height = hgt * 2;
    const ctx = canvas.getContext('2d');
    ctx.scale(2, 2);
    ctx.drawImage(img, 0, 0, w, hgt);
    URL.revokeObjectURL(url);
    canvas.toBlob((b) => b && download(name, b), 'image/png');
  };
  img.src = url;
}

// A rate with its interval as a small bar and whisker, for the conversion table.
export function intervalBar(rate, low, high) {
  const x = (v) => 4 + Math.max(0, Math.min(1, v ?? 0)) * 112;
  return h('svg:svg', { viewBox: '0 0 120 16', width: 120, height: 16, role: 'img', 'aria-label': `${fmtNum((rate ?? 0) * 100, 1)}% [${fmtNum((low ?? 0) * 100, 1)}–${fmtNum((high ?? 0) * 100, 1)}]` },
    h('svg:rect', { x: 4, y: 6, width: 112, height: 4, fill: '#e5e7eb', rx: 2 }),
    h('svg:line', { x1: x(low), x2: x(high), y1: 8, y2: 8, stroke: '#1d4ed8', 'stroke-width': 2 }),
    h('svg:line', { x1: x(low), x2: x(low), y1: 3, y2: 13, stroke: '#1d4ed8', 'stroke-width': 2 }),
    h('svg:line', { x1: x(high), x2: x(high), y1: 3, y2: 13, stroke: '#1d4ed8', 'stroke-width': 2 }),
    h('svg:circle', { cx: x(rate), cy: 8, r: 4, fill: '#059669' }));
}
