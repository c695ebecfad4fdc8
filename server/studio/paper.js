// paper.js — the paper view (/paper): an evaluation job whose Table 1 and
// transfer matrix fill in while it runs (from the job document's partial
// tables), the per-layer Lipschitz bounds of a model as a chart, and the
// unit-analysis images of §3, a unit beside a random direction.
import {getJSON, postJSON, startJob, followJob, cancelJob, describe} from './api.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';
// The paper's three models, checked by default when they are resident.
const PAPER_MODELS = ['fc10-1e-4', 'fc100-100-10', 'cnn'];
// The job is read again at most this often while it runs (ms).
const READ_INTERVAL = 1000;

// An element with attributes and children (strings become text).
function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs))
        e.setAttribute(k, v);
    for (const c of children)
        e.append(c);
    return e;
}

function svg(tag, attrs = {}, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs))
        e.setAttribute(k, v);
    for (const c of children)
        e.append(c);
    return e;
}

function showError(id, err) {
    const p = $(id);
    if (err === null) {
        p.hidden = true;
        p.textContent = '';
        return;
    }
    p.textContent = typeof err === 'string' ? err : describe(err);
    p.hidden = false;
}

const percent = (v) => (v === null || v === undefined ? '—' : `${(v * 100).toFixed(1)}%`);
const fixed = (v, d) => (v === null || v === undefined ? '—' : Number(v).toFixed(d));

// A cell showing v formatted, the exact number in data-value.
function numberCell(v, text, attrs = {}) {
    const td = el('td', attrs, text);
    if (v !== null && v !== undefined)
        td.dataset.value = String(v);
    return td;
}

/* ---- the models ------------------------------------------------------------ */

let models = []; // GET /v1/models's list

function fillSelect(select, names, preferred) {
    select.replaceChildren(...names.map((n) => el('option', {value: n}, n)));
    const pick = preferred.find((n) => names.includes(n));
    if (pick)
        select.value = pick;
}

async function loadModels() {
    try {
        models = (await getJSON('/v1/models')).models;
    } catch (err) {
        $('model-list').replaceChildren(el('span', {class: 'note'}, 'No models.'));
        showError('page-error', err);
        return;
    }
    const names = models.map((m) => m.name);
    $('model-list').replaceChildren(...names.map((name) => {
        const box = el('input', {type: 'checkbox', name: 'model', value: name});
        box.checked = PAPER_MODELS.includes(name);
        return el('label', {class: 'check'}, box, ` ${name}`);
    }));
    if (!names.some((n) => PAPER_MODELS.includes(n)) && names.length) // none of the paper's
        $('model-list').querySelector('input').checked = true;
    fillSelect($('lip-model'), names, ['cnn', 'fc100-100-10']);
    fillSelect($('units-model'), names, ['fc100-100-10', 'cnn']);
    await loadLayers();
}

/* ---- the evaluation -------------------------------------------------------- */

let job = null; // {id, n, ended, lastRead, timer}

function setRunning(running) {
    $('eval-start').disabled = running;
    $('eval-cancel').disabled = !running;
}

function setStatus(text) {
    $('eval-status').textContent = text;
}

// Table 1 and the transfer matrix of doc (a result or a partial document);
// note says what the numbers cover.
function renderTables(doc, note) {
    const names = doc.models;
    $('table1-note').textContent = note;
    $('table1').tBodies[0].replaceChildren(...names.map((name) => {
        const r = doc.table1[name];
        return el('tr', {'data-model': name}, el('th', {scope: 'row'}, name),
            numberCell(r.train_error, percent(r.train_error), {'data-field': 'train_error'}),
            numberCell(r.test_error, percent(r.test_error), {'data-field': 'test_error'}),
            numberCell(r.slice_error, percent(r.slice_error), {'data-field': 'slice_error'}),
            numberCell(r.success_rate, `${percent(r.success_rate)} (${r.successes})`,
                {'data-field': 'success_rate'}),
            numberCell(r.mean_distortion, fixed(r.mean_distortion, 3),
                {'data-field': 'mean_distortion'}));
    }));

    const head = () => el('tr', {}, el('th', {scope: 'col'}, 'Examples for ↓ · judged by →'),
        ...names.map((n) => el('th', {scope: 'col'}, n)));
    $('transfer').tHead.replaceChildren(head());
    $('transfer').tBodies[0].replaceChildren(...names.map((row) => el('tr', {},
        el('th', {scope: 'row'}, row),
        ...names.map((col) => heatCell(doc.table2.error[row][col], {'data-row': row, 'data-col': col})))));
    const noise = doc.table2.noise || [];
    $('noise').tHead.replaceChildren(head());
    $('noise').tHead.rows[0].cells[0].textContent = 'Gaussian noise';
    $('noise').tBodies[0].replaceChildren(...noise.map((s) => el('tr', {},
        el('th', {scope: 'row'}, `σ ${s.stddev} (distortion ${fixed(s.distortion, 3)})`),
        ...names.map((col) => heatCell(s.error[col], {'data-noise': String(s.stddev), 'data-col': col})))));
}

// Light blue (0) to dark blue (1), as the legend's ramp in paper.css.
function heatColour(v) {
    const from = [239, 246, 255], to = [8, 48, 107];
    const c = from.map((f, i) => Math.round(f + (to[i] - f) * Math.min(Math.max(v, 0), 1)));
    return `rgb(${c.join(',')})`;
}

function heatCell(v, attrs) {
    const td = numberCell(v, percent(v), attrs);
    td.style.backgroundColor = heatColour(v);
    td.style.color = v > 0.5 ? '#fff' : '#111';
    return td;
}

// Reads the running job and shows its partial tables, at most once every
// READ_INTERVAL ms (a read asked for sooner is made when the time comes).
function readSoon() {
    const j = job;
    if (!j || j.ended || j.timer)
        return;
    const wait = Math.max(0, j.lastRead + READ_INTERVAL - Date.now());
    j.timer = setTimeout(async () => {
        j.lastRead = Date.now();
        try {
            const doc = await getJSON(`/v1/jobs/${encodeURIComponent(j.id)}`);
            if (!j.ended && job === j && doc.partial)
                renderTables(doc.partial, `So far: ${doc.partial.images} of ${j.n} images measured.`);
        } catch (err) {
            if (!j.ended)
                showError('eval-error', err);
        }
        j.timer = null;
    }, wait);
}

function onProgress(j, p) {
    if (j.ended)
        return;
    $('eval-progress').max = p.total || 1;
    $('eval-progress').value = p.done;
    setStatus(p.state === 'queued' ? 'Waiting for a worker…'
        : `Running: ${p.done} of ${p.total} attacks done.`);
    if (p.state === 'running')
        readSoon();
}

function finish(j, doc) {
    j.ended = true;
    clearTimeout(j.timer);
    setRunning(false);
    $('evaluation').dataset.state = doc.state;
    if (doc.state === 'done') {
        $('eval-progress').value = $('eval-progress').max;
        renderTables(doc.result, `All ${doc.result.n} images (seed ${doc.result.seed}).`);
        setStatus(`Done: ${doc.progress.total} attacks on ${doc.result.n} images.`);
        return;
    }
    if (doc.partial)
        renderTables(doc.partial, `${doc.partial.images} of ${j.n} images were measured before it stopped.`);
    if (doc.state === 'cancelled') {
        setStatus(`Cancelled after ${doc.progress.done} of ${doc.progress.total} attacks.`);
    } else {
        setStatus('The evaluation failed.');
        showError('eval-error', doc.error ? doc.error.message : 'The evaluation failed.');
    }
}

async function startEvaluation(ev) {
    ev.preventDefault();
    showError('eval-error', null);
    const chosen = [...document.querySelectorAll('#model-list input:checked')].map((b) => b.value);
    if (!chosen.length) {
        showError('eval-error', 'Choose at least one model.');
        return;
    }
    const n = Number($('eval-n').value), seed = Number($('eval-seed').value);
    setRunning(true);
    setStatus('Starting…');
    let id;
    try {
        id = await startJob('/v1/evaluations', {models: chosen, n, seed});
    } catch (err) {
        setRunning(false);
        setStatus('Not started.');
        showError('eval-error', err);
        return;
    }
    const j = {id, n, ended: false, lastRead: 0, timer: null};
    job = j;
    $('evaluation').dataset.job = id;
    $('evaluation').dataset.state = 'running';
    $('eval-progress').value = 0;
    $('table1').tBodies[0].replaceChildren();
    $('transfer').tBodies[0].replaceChildren();
    $('noise').tBodies[0].replaceChildren();
    $('table1-note').textContent = `Waiting for the first of ${n} images…`;
    try {
        finish(j, await followJob(id, (p) => onProgress(j, p)));
    } catch (err) {
        j.ended = true;
        setRunning(false);
        setStatus('Lost the evaluation.');
        showError('eval-error', err);
    }
}

async function cancelEvaluation() {
    if (!job || job.ended)
        return;
    $('eval-cancel').disabled = true;
    setStatus('Cancelling…');
    try {
        await cancelJob(job.id);
    } catch (err) {
        showError('eval-error', err);
    }
}

/* ---- Lipschitz bounds ------------------------------------------------------ */

// Bars on a log scale, one per layer and one for the network's product.
function lipschitzChart(doc) {
    const values = doc.layers.map((l) => l.bound).concat([doc.product]);
    const min = Math.min(...values);
    let lo = 10 ** Math.floor(Math.log10(min));
    if (lo >= min) // a bound on the axis's floor would have no bar
        lo /= 10;
    let hi = 10 ** Math.ceil(Math.log10(Math.max(...values)));
    if (hi <= lo)
        hi = lo * 10;
    const W = 64, left = 48, top = 20, H = 200, bottom = 56;
    const width = left + W * values.length + 8;
    const y = (v) => top + H - (H * (Math.log10(v) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo));
    const chart = svg('svg', {viewBox: `0 0 ${width} ${top + H + bottom}`, role: 'img',
        'aria-label': `Upper Lipschitz bound of each layer of ${doc.model}, log scale`});
    for (let d = lo; d <= hi * 1.0001; d *= 10) {
        chart.append(svg('line', {x1: left, x2: width - 4, y1: y(d), y2: y(d), class: 'grid'}));
        chart.append(svg('text', {x: left - 6, y: y(d) + 4, class: 'axis'}, String(+d.toPrecision(3))));
    }
    values.forEach((v, i) => {
        const product = i === doc.layers.length;
        const x = left + i * W + 8, top_ = y(v);
        const layer = doc.layers[i];
        const name = product ? 'network' : `${layer.index} ${layer.type}`;
        chart.append(svg('rect', {x, y: top_, width: W - 16, height: Math.max(y(lo) - top_, 1),
            class: product ? 'product-bar' : 'layer-bar', 'data-value': String(v)},
        svg('title', {}, `${name}: ${v}`)));
        chart.append(svg('text', {x: x + (W - 16) / 2, y: top_ - 4, class: 'value'}, fixed(v, v < 10 ? 2 : 1)));
        chart.append(svg('text', {x: x + (W - 16) / 2, y: top + H + 16, class: 'label'},
            product ? 'product' : String(layer.index)));
        chart.append(svg('text', {x: x + (W - 16) / 2, y: top + H + 30, class: 'label'},
            product ? '' : layer.type));
    });
    return chart;
}

async function showLipschitz() {
    const name = $('lip-model').value;
    showError('lip-error', null);
    $('lip-show').disabled = true;
    try {
        const doc = await getJSON(`/v1/models/${encodeURIComponent(name)}/lipschitz`);
        $('lip-chart').replaceChildren(lipschitzChart(doc));
        $('lip-caption').textContent = `${doc.model}: ${doc.layers.length} layers; the network's ` +
            `bound, their product, is ${fixed(doc.product, 2)}.`;
        $('lip-figure').hidden = false;
    } catch (err) {
        showError('lip-error', err);
    } finally {
        $('lip-show').disabled = false;
    }
}

/* ---- units (§3) ------------------------------------------------------------ */

async function loadLayers() {
    const name = $('units-model').value;
    if (!name)
        return;
    try {
        const doc = await getJSON(`/v1/models/${encodeURIComponent(name)}`);
        const size = (l) => l.output_shape.reduce((a, b) => a * b, 1);
        $('units-layer').replaceChildren(...doc.layers.map((l) => {
            const o = el('option', {value: String(l.index)}, `${l.index} ${l.type} (${size(l)})`);
            o.dataset.dim = String(size(l));
            return o;
        }));
        const hidden = doc.layers.find((l) => l.index > 0 && l.index < doc.layers.length - 1 &&
            !['flatten', 'linear', 'conv2d'].includes(l.type));
        if (hidden)
            $('units-layer').value = String(hidden.index);
        layerChanged();
    } catch (err) {
        showError('units-error', err);
    }
}

function layerChanged() {
    const o = $('units-layer').selectedOptions[0];
    if (o)
        $('units-unit').max = String(Number(o.dataset.dim) - 1);
}

function unitFigure(title, doc) {
    const g = doc.grid;
    const img = el('img', {src: `data:image/png;base64,${g.data}`, class: 'pixelated', width: String(g.width * 2),
        height: String(g.height * 2), alt: `${doc.k} test images, labels ${doc.labels.join(' ')}`});
    return el('figure', {class: 'unit'}, el('h3', {}, title),
        el('div', {class: 'scroll'}, img),
        el('figcaption', {}, `Labels: ${doc.labels.join(' ')}. Purity ${percent(doc.purity)} ` +
            `(majority ${doc.majority}).`));
}

async function showUnits(ev) {
    ev.preventDefault();
    showError('units-error', null);
    const name = $('units-model').value, layer = Number($('units-layer').value);
    const unit = Number($('units-unit').value), seed = Number($('units-seed').value);
    const k = Number($('units-k').value);
    const path = `/v1/models/${encodeURIComponent(name)}/units`;
    $('units-show').disabled = true;
    try {
        const [u, r] = await Promise.all([postJSON(path, {layer, direction: unit, k}),
            postJSON(path, {layer, direction: 'random', seed, k})]);
        $('units-grids').replaceChildren(unitFigure(`Unit ${unit} of layer ${layer}`, u),
            unitFigure(`Random direction (seed ${seed})`, r));
    } catch (err) {
        showError('units-error', err);
    } finally {
        $('units-show').disabled = false;
    }
}

$('eval-form').addEventListener('submit', startEvaluation);
$('eval-cancel').addEventListener('click', cancelEvaluation);
$('lip-show').addEventListener('click', showLipschitz);
$('units-form').addEventListener('submit', showUnits);
$('units-model').addEventListener('change', loadLayers);
$('units-layer').addEventListener('change', layerChanged);
loadModels();
