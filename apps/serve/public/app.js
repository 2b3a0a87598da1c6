// The page talks to the server's JSON API: /v1/patch for the live patching figure, /v1/generate
// with server-sent events for streaming generation (patch starts marked).
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const res = await fetch(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error((await res.json()).error?.message ?? res.statusText);
  return res;
}

function drawPlot(entropies, threshold) {
  const svg = $('plot');
  const w = 900, h = 180, n = Math.max(entropies.length, 1);
  const max = Math.max(threshold ?? 0, ...entropies, 1) * 1.1;
  const x = (i) => (i + 0.5) * (w / n);
  const y = (v) => h - (v / max) * h;
  const pts = entropies.map((e, i) => `${x(i).toFixed(1)},${y(e).toFixed(1)}`).join(' ');
  svg.innerHTML =
    `<polyline points="${pts}" fill="none" stroke="#1f77b4" stroke-width="2"/>` +
    entropies.map((e, i) => `<circle cx="${x(i).toFixed(1)}" cy="${y(e).toFixed(1)}" r="2.5" fill="${threshold != null && e > threshold ? '#d62728' : '#1f77b4'}"/>`).join('') +
    (threshold != null ? `<line x1="0" x2="${w}" y1="${y(threshold)}" y2="${y(threshold)}" stroke="#d62728" stroke-dasharray="6 4"/>` : '');
}

let pending = 0;
async function updatePatches() {
  const ticket = ++pending;
  const text = $('text').value;
  if (!text) return;
  try {
    const r = await (await api('/v1/patch', { text })).json();
    if (ticket !== pending) return;
    $('patches').replaceChildren(
      ...r.patches.map((p, i) => {
        const s = document.createElement('span');
        s.className = `p${i % 2}`;
        s.textContent = p.text;
        return s;
      }),
    );
    drawPlot(r.entropies, r.threshold);
    $('patchinfo').textContent = `${r.patches.length} patches over ${r.bytes} bytes (mean ${r.meanPatchSize} bytes), threshold ${r.threshold?.toFixed(3)} nats`;
  } catch (e) {
    $('patchinfo').textContent = `error: ${e.message}`;
  }
}

async function generate() {
  const out = $('generated');
  out.replaceChildren();
  $('geninfo').textContent = 'generating…';
  const res = await api('/v1/generate', {
    prompt: $('prompt').value,
    maxBytes: Number($('maxBytes').value),
    temperature: Number($('temperature').value),
    seed: 1,
    stream: true,
  });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null');
      if (event === 'message') {
        const span = document.createElement('span');
        if (data.patchStart) span.className = 'start';
        span.textContent = data.text;
        out.append(span);
      } else if (event === 'done') {
        $('geninfo').textContent = `${data.bytes} bytes, ${data.patches} patches, ${data.bytesPerSecond} bytes/s (${data.finishReason})`;
      } else if (event === 'error') {
        $('geninfo').textContent = `error: ${data.error.message}`;
      }
    }
  }
}

$('text').addEventListener('input', () => updatePatches());
$('generate').addEventListener('click', () => generate().catch((e) => ($('geninfo').textContent = `error: ${e.message}`)));
fetch('/health')
  .then((r) => r.json())
  .then((h) => ($('status').textContent = `Model runs on the server (backend ${h.backend}).`));
updatePatches();
