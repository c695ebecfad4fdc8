// studio.js — the attack studio (/): pick a model, give an image (drawn,
// a file, or a dataset sample), watch the model's prediction, attack it as
// a job followed by server-sent events, and look at the result.
import {ApiError, accessToken, request, getJSON, postJSON, startJob, followJob, cancelJob, describe} from './api.js';

const $ = (id) => document.getElementById(id);

// Each method's parameters with their defaults (`blindspot attack --help`,
// docs/attacks.md); an array is a choice whose first entry is the default.
const METHODS = {
    lbfgs: {name: 'L-BFGS (the paper\'s)', params: {search_steps: 8, initial_c: 1, c_factor: 10, lanes: 1, warm_start: true,
        norm: ['l2', 'l1'], max_iterations: 150, history: 15, factr: 1e10, pgtol: 1e-5, optimizer: ['native', 'reference'],
        quantize: true, repair_steps: 40}},
    'adam-l1': {name: 'Adam L1', params: {lr: 0.001, steps: 3000, initial_c: 1, init: ['uniform', 'zeros'], c_search: false,
        search_steps: 5, c_factor: 10, seed: 1, quantize: true, repair_steps: 40}},
    fgsm: {name: 'FGSM', params: {eps_max: 1, search_steps: 10, quantize: true, repair_steps: 40}},
    pgd: {name: 'PGD', params: {eps_max: 1, pgd_steps: 40, pgd_norm: ['linf', 'l2'], search_steps: 8, quantize: true, repair_steps: 40}},
    'cw-l2': {name: 'Carlini-Wagner L2', params: {lr: 0.05, steps: 200, kappa: 0, initial_c: 1, c_factor: 10, search_steps: 6,
        quantize: true, repair_steps: 40}},
};

const PLAIN = {
    invalid_image: 'This file is not a PNG or JPEG image that can be read.',
    queue_full: 'The daemon is busy: every place in its queue is taken. Try again in a moment.',
    too_many_jobs: 'The daemon holds as many jobs as it may. Try again when some have finished.',
    unreachable: 'The daemon could not be reached. Is blindspotd still running?',
};

const state = {
    models: [],
    input: null,    // {kind: 'draw'|'file'|'dataset', image: the request's image field, invert?, preview: URL}
    job: null,      // the running job's id
    answer: null,   // the last attack's answer
    original: null, // model name -> {label, probability} on the attacked image
    shown: 0,       // index in answer.results
    body: null,     // the attack request's body, for "copy as curl"
};

function showError(err) {
    const box = $('error');
    if (!err) {
        box.hidden = true;
        box.textContent = '';
        return;
    }
    const code = err instanceof ApiError ? err.code : null;
    box.textContent = typeof err === 'string' ? err : PLAIN[code] || describe(err);
    box.hidden = false;
}

function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props);
    node.append(...children);
    return node;
}

const fmt = (x, digits = 4) => (typeof x === 'number' ? Number(x.toPrecision(digits)).toString() : '—');

// Bars of p (one per class), the largest highlighted.
function drawBars(list, probabilities) {
    const best = probabilities.indexOf(Math.max(...probabilities));
    list.replaceChildren(...probabilities.map((p, k) => {
        const fill = el('div', {className: 'fill'});
        fill.style.width = `${(100 * p).toFixed(1)}%`;
        return el('li', {className: k === best ? 'top' : ''}, el('span', {textContent: String(k)}),
            el('div', {className: 'track'}, fill), el('span', {textContent: `${(100 * p).toFixed(1)}%`}));
    }));
    list.dataset.label = String(best);
}

/* ---- models ---- */

function currentModel() {
    return $('model').value;
}

async function loadModels() {
    const doc = await getJSON('/v1/models');
    state.models = doc.models;
    const select = $('model');
    select.replaceChildren(...doc.models.map((m) => el('option', {value: m.name, textContent: m.name})));
    if (doc.models.some((m) => m.name === 'fc100-100-10'))
        select.value = 'fc100-100-10';
    describeModel();
    $('target').value = $('target').querySelector('option[value="3"]') ? '3' : 'all';
}

const percent = (x) => (typeof x === 'number' ? `${(100 * x).toFixed(2)}%` : 'not recorded');

// The model's description, its target labels, and the drawing pad: a
// digit drawn in white on black is an input for a one-channel model only,
// so for a colour model the pad gives way to a note.
function describeModel() {
    const m = state.models.find((x) => x.name === currentModel());
    if (!m)
        return;
    const [C, H, W] = m.input_shape;
    $('model-info').textContent = `${m.arch}, ${m.parameters.toLocaleString('en')} parameters, ` +
        `input ${C === 3 ? 'RGB' : 'gray'} ${W}x${H}, test error ${percent(m.test_error)} ` +
        `(train ${percent(m.train_error)})${m.dataset ? `, trained on ${m.dataset}` : ''}.`;
    const target = $('target').value;
    $('target').replaceChildren(el('option', {value: 'all', textContent: 'all labels'}),
        ...Array.from({length: m.classes}, (_, k) => el('option', {value: String(k), textContent: String(k)})));
    if (target && $('target').querySelector(`option[value="${target}"]`))
        $('target').value = target;
    const drawable = C === 1;
    $('pad-box').hidden = !drawable;
    $('pad-note').hidden = drawable;
    $('pad-note').textContent = drawable ? '' : `${m.name} takes colour images of ${W}x${H}: ` +
        'give it a PNG or JPEG file or a dataset image. The drawing pad is for gray (one-channel) models.';
    if (!drawable && state.input && state.input.kind === 'draw')
        forgetInput();
}

// Sizes an image (or canvas) of W x H pixels to fit a box of bw x bh CSS
// pixels at its own aspect ratio.
function fitTo(node, W, H, bw, bh) {
    const scale = Math.min(bw / W, bh / H);
    node.style.width = `${Math.round(W * scale)}px`;
    node.style.height = `${Math.round(H * scale)}px`;
}

/* ---- predictions, at most one request in flight ---- */

let pendingPredict = null;
let predicting = false;

function predict() {
    if (!state.input)
        return;
    pendingPredict = {model: currentModel(), input: state.input};
    if (!predicting)
        pumpPredict();
}

async function pumpPredict() {
    predicting = true;
    while (pendingPredict) {
        const {model, input} = pendingPredict;
        pendingPredict = null;
        const started = performance.now();
        try {
            const path = `/v1/models/${encodeURIComponent(model)}/predict`;
            let doc;
            if (input.file) {
                const form = new FormData();
                form.append('image', input.file);
                form.append('resize', input.resize);
                doc = await request('POST', path, form);
                delete input.file;
                input.image = {png: doc.input.data};
                input.invert = 'no';
            } else {
                doc = await postJSON(path, input.invert ? {image: input.image, invert: input.invert} : {image: input.image});
            }
            if (input === state.input) {
                drawBars($('pred'), doc.probabilities);
                $('seen').src = input.preview || `data:image/png;base64,${doc.input.data}`;
                fitTo($('seen'), doc.input.width, doc.input.height, 168, 84);
                $('seen').hidden = false;
                $('seen-caption').textContent = `${input.caption}: ${model} says ${doc.label}.`;
                showError(null);
            }
        } catch (err) {
            if (input === state.input) {
                if (input.kind === 'file')
                    forgetInput();
                showError(err);
            }
        }
        const wait = 100 - (performance.now() - started);
        if (pendingPredict && wait > 0)
            await new Promise((r) => setTimeout(r, wait));
    }
    predicting = false;
}

function setInput(input) {
    state.input = input;
    predict();
}

/* ---- the drawing pad ---- */

const pad = $('pad');
const ink = pad.getContext('2d', {willReadFrequently: true});
let drawing = null;

function clearPad() {
    ink.fillStyle = '#000';
    ink.fillRect(0, 0, pad.width, pad.height);
}

function padPoint(ev) {
    const box = pad.getBoundingClientRect();
    return [(ev.clientX - box.left) * pad.width / box.width, (ev.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener('pointerdown', (ev) => {
    ev.preventDefault();
    pad.setPointerCapture(ev.pointerId);
    drawing = padPoint(ev);
    stroke(drawing, drawing);
});
pad.addEventListener('pointermove', (ev) => {
    if (!drawing)
        return;
    const p = padPoint(ev);
    stroke(drawing, p);
    drawing = p;
});
for (const name of ['pointerup', 'pointercancel'])
    pad.addEventListener(name, () => {
        drawing = null;
    });

function stroke(a, b) {
    ink.strokeStyle = '#fff';
    ink.lineWidth = pad.width / 14;
    ink.lineCap = 'round';
    ink.lineJoin = 'round';
    ink.beginPath();
    ink.moveTo(a[0], a[1]);
    ink.lineTo(b[0], b[1]);
    ink.stroke();
    const data = mnistDigit();
    if (data)
        setInput({kind: 'draw', caption: 'Drawn digit', image: {data, shape: [1, 28, 28]}, preview: previewOf(data)});
}

// The drawing made into an MNIST digit: its bounding box fitted into 20x20
// keeping the aspect (area-averaged by the canvas' high-quality scaling),
// then placed in 28x28 so that its centre of mass is the centre; white on
// black, values in [0,1] rounded to 3 decimals (the request stays short).
function mnistDigit() {
    const {width: w, height: h} = pad;
    const px = ink.getImageData(0, 0, w, h).data;
    let x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
            if (px[4 * (y * w + x)] > 0) {
                x0 = Math.min(x0, x); x1 = Math.max(x1, x);
                y0 = Math.min(y0, y); y1 = Math.max(y1, y);
            }
    if (x1 < 0)
        return null;
    const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
    const scale = 20 / Math.max(bw, bh);
    const sw = Math.max(1, Math.round(bw * scale)), sh = Math.max(1, Math.round(bh * scale));
    const small = new OffscreenCanvas(sw, sh).getContext('2d', {willReadFrequently: true});
    small.imageSmoothingEnabled = true;
    small.imageSmoothingQuality = 'high';
    small.drawImage(pad, x0, y0, bw, bh, 0, 0, sw, sh);
    const sp = small.getImageData(0, 0, sw, sh).data;
    let mass = 0, mx = 0, my = 0;
    for (let y = 0; y < sh; y++)
        for (let x = 0; x < sw; x++) {
            const v = sp[4 * (y * sw + x)] / 255;
            mass += v; mx += v * x; my += v * y;
        }
    const ox = Math.round(14 - (mass ? mx / mass : sw / 2) - 0.5);
    const oy = Math.round(14 - (mass ? my / mass : sh / 2) - 0.5);
    const out = new Array(784).fill(0);
    for (let y = 0; y < sh; y++)
        for (let x = 0; x < sw; x++) {
            const tx = x + ox, ty = y + oy;
            if (tx >= 0 && tx < 28 && ty >= 0 && ty < 28)
                out[ty * 28 + tx] = Math.round(sp[4 * (y * sw + x)] / 255 * 1000) / 1000;
        }
    return out;
}

// A PNG data URL of 28x28 values in [0,1].
function previewOf(data) {
    const c = document.createElement('canvas');
    c.width = c.height = 28;
    const ctx = c.getContext('2d');
    const img = ctx.createImageData(28, 28);
    data.forEach((v, i) => {
        const g = Math.round(v * 255);
        img.data.set([g, g, g, 255], 4 * i);
    });
    ctx.putImageData(img, 0, 0);
    return c.toDataURL('image/png');
}

/* ---- files and dataset samples ---- */

function useFile(file) {
    if (!file)
        return;
    setInput({kind: 'file', caption: file.name, file, resize: $('resize').value});
}

$('file').addEventListener('change', (ev) => useFile(ev.target.files[0]));
const drop = $('input');
drop.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    $('drop').classList.add('over');
});
drop.addEventListener('dragleave', () => $('drop').classList.remove('over'));
drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    $('drop').classList.remove('over');
    useFile(ev.dataTransfer.files[0]);
});

let datasets = [];

async function loadDatasets() {
    const doc = await getJSON('/v1/datasets');
    datasets = doc.datasets.flatMap((d) => d.splits.map((s) => ({dataset: d.name, split: s.name, size: s.size})));
    $('dataset').replaceChildren(...datasets.map((d, i) =>
        el('option', {value: String(i), textContent: `${d.dataset} ${d.split} (${d.size})`})));
    const test = datasets.findIndex((d) => d.dataset === 'mnist' && d.split === 'test');
    if (test >= 0)
        $('dataset').value = String(test);
    syncIndexRange();
}

function syncIndexRange() {
    const d = datasets[Number($('dataset').value)];
    if (d)
        $('index').max = String(d.size - 1);
}

function loadSample() {
    const d = datasets[Number($('dataset').value)];
    const index = Number($('index').value);
    if (!d || !Number.isInteger(index) || index < 0 || index >= d.size) {
        showError(`The index must be a whole number from 0 to ${d ? d.size - 1 : 0}.`);
        return;
    }
    const url = `/v1/datasets/${encodeURIComponent(d.dataset)}/${encodeURIComponent(d.split)}/${index}`;
    setInput({kind: 'dataset', caption: `${d.dataset} ${d.split} #${index}`, preview: url,
        image: {dataset: d.dataset, split: d.split, index}});
}

$('dataset').addEventListener('change', syncIndexRange);
$('dataset-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadSample();
});
$('random').addEventListener('click', () => {
    const d = datasets[Number($('dataset').value)];
    if (!d)
        return;
    $('index').value = String(Math.floor(Math.random() * d.size));
    loadSample();
});
$('clear').addEventListener('click', () => {
    clearPad();
    if (state.input && state.input.kind === 'draw')
        forgetInput();
});

function forgetInput() {
    state.input = null;
    $('pred').replaceChildren();
    delete $('pred').dataset.label;
    $('seen').hidden = true;
    $('seen-caption').textContent = 'No input yet.';
}
$('model').addEventListener('change', () => {
    describeModel();
    predict();
});

/* ---- the attack's parameters ---- */

function showParams() {
    const {params} = METHODS[$('method').value];
    $('params').replaceChildren(...Object.entries(params).map(([key, def]) => {
        let input;
        if (Array.isArray(def)) {
            input = el('select', {}, ...def.map((v) => el('option', {value: v, textContent: v})));
            input.dataset.default = def[0];
        } else if (typeof def === 'boolean') {
            input = el('input', {type: 'checkbox', checked: def});
            input.dataset.default = String(def);
        } else {
            input = el('input', {type: 'number', step: 'any', value: String(def)});
            input.dataset.default = String(def);
        }
        input.name = key;
        input.id = `param-${key}`;
        const text = `${key} (default ${Array.isArray(def) ? def[0] : def})`;
        return el('label', {htmlFor: input.id}, text, input);
    }));
}

// The parameters that differ from their defaults.
function changedParams() {
    const out = {};
    for (const input of $('params').querySelectorAll('input, select')) {
        if (input.type === 'checkbox') {
            if (String(input.checked) !== input.dataset.default)
                out[input.name] = input.checked;
        } else if (input.value !== '' && input.value !== input.dataset.default) {
            out[input.name] = input.tagName === 'SELECT' ? input.value : Number(input.value);
        }
    }
    return out;
}

/* ---- running the attack ---- */

function attackBody() {
    const body = {model: currentModel(), image: state.input.image};
    const target = $('target').value;
    body.target = target === 'all' ? 'all' : Number(target);
    if ($('method').value !== 'lbfgs')
        body.method = $('method').value;
    const params = changedParams();
    if (Object.keys(params).length)
        body.params = params;
    if (state.input.invert)
        body.invert = state.input.invert;
    const timeout = Number($('timeout').value);
    if ($('timeout').value !== '' && timeout > 0)
        body.timeout = timeout;
    return body;
}

function setRunning(id) {
    state.job = id;
    $('run').disabled = Boolean(id);
    $('cancel').disabled = !id;
}

async function runAttack() {
    showError(null);
    if (!state.input || !state.input.image) {
        showError('Give an image first: draw a digit, choose a file or load a dataset image.');
        return;
    }
    const body = attackBody();
    const progress = $('progress');
    progress.hidden = false;
    progress.value = 0;
    $('status').textContent = 'Starting the attack…';
    setRunning('starting');
    let doc;
    try {
        const id = await startJob('/v1/attacks?async=true', body);
        setRunning(id);
        $('status').replaceChildren('Running job ', el('code', {textContent: id}), '…');
        $('status').dataset.job = id;
        doc = await followJob(id, (p) => {
            if (p.total) {
                progress.max = p.total;
                progress.value = p.done;
            }
        });
    } catch (err) {
        setRunning(null);
        progress.hidden = true;
        $('status').textContent = 'The attack did not run.';
        showError(err);
        return;
    }
    setRunning(null);
    if (doc.state === 'cancelled') {
        progress.hidden = true;
        $('status').textContent = 'cancelled';
        return;
    }
    progress.value = progress.max;
    if (doc.state === 'failed') {
        const error = doc.error || {};
        showError(new ApiError(500, error.code, error.code === 'deadline_exceeded'
            ? 'The attack ran out of time; below are the best results it had found.' : error.message, doc));
    }
    if (!doc.result) {
        $('status').textContent = 'The attack failed.';
        return;
    }
    $('status').textContent = doc.state === 'done' ? 'Done.' : 'Stopped by its time budget: the best results so far.';
    state.body = body;
    showAnswer(doc.result);
}

$('attack-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!state.job)
        runAttack();
});
$('cancel').addEventListener('click', async () => {
    const id = state.job;
    if (!id || id === 'starting')
        return;
    $('status').textContent = 'Cancelling…';
    try {
        await cancelJob(id);
    } catch (err) {
        showError(err);
    }
});

/* ---- the result ---- */

// The image's pixels in [0,1], its channels (1, or 3: R, G, B) together.
async function pixelsOf(image) {
    const img = new Image();
    img.src = `data:image/${image.format};base64,${image.data}`;
    await img.decode();
    const c = new OffscreenCanvas(image.width, image.height).getContext('2d', {willReadFrequently: true});
    c.drawImage(img, 0, 0);
    const px = c.getImageData(0, 0, image.width, image.height).data;
    const C = image.channels === 3 ? 3 : 1;
    const out = new Float32Array(image.width * image.height * C);
    for (let i = 0; i < out.length; i++)
        out[i] = px[4 * Math.floor(i / C) + (i % C)] / 255;
    return out;
}

// Every reported model's prediction on the attacked image (the answer's
// input), for the transfer table's original column.
async function originalPredictions(answer) {
    const names = new Set();
    for (const r of answer.results)
        for (const p of r.predictions || [])
            names.add(p.model);
    const out = {};
    await Promise.all([...names].map(async (name) => {
        try {
            const doc = await postJSON(`/v1/models/${encodeURIComponent(name)}/predict`,
                {image: {png: answer.input.data}, invert: 'no'});
            out[name] = {label: doc.label, probability: doc.probabilities[doc.label]};
        } catch (err) {
            out[name] = null;
        }
    }));
    return out;
}

async function showAnswer(answer) {
    state.answer = answer;
    state.shown = 0;
    $('result').hidden = false;
    $('targets').replaceChildren(...answer.results.map((r, i) => {
        const b = el('button', {type: 'button', textContent: `target ${r.target}`});
        b.setAttribute('aria-pressed', String(i === 0));
        b.addEventListener('click', () => showTarget(i));
        return b;
    }));
    $('targets').hidden = answer.results.length < 2;
    $('orig').src = `data:image/png;base64,${answer.input.data}`;
    for (const id of ['orig', 'adv', 'heat'])
        fitTo($(id), answer.input.width, answer.input.height, 224, 224);
    $('orig-caption').textContent = `Original: ${answer.model} says ${answer.original.label}`;
    state.original = {};
    await showTarget(0);
    state.original = await originalPredictions(answer);
    if (state.answer === answer)
        showTransfer(answer.results[state.shown]);
}

async function showTarget(i) {
    const answer = state.answer;
    const r = answer.results[i];
    state.shown = i;
    for (const [k, b] of [...$('targets').children].entries())
        b.setAttribute('aria-pressed', String(k === i));
    const url = `data:image/${r.image.format};base64,${r.image.data}`;
    $('adv').src = url;
    $('adv').dataset.target = String(r.target);
    $('adv-caption').textContent = `Adversarial (target ${r.target}): ${answer.model} says ${r.label}` +
        (r.status === 'already_target' ? ' (already the target)' : r.success ? '' : ' (target not reached)');
    const link = $('download');
    link.href = url;
    link.download = `adversarial-${answer.model}-target${r.target}.${r.image.format === 'jpeg' ? 'jpg' : 'png'}`;
    const n = r.norms || {};
    const items = [['status', r.status], ['success', r.success ? 'yes' : 'no'], ['L0', n.l0], ['L1', fmt(n.l1)],
        ['L2', fmt(n.l2)], ['Linf', fmt(n.linf)], ['distortion', fmt(n.distortion)], ['c', fmt(r.c)],
        ['iterations', r.iterations], ['evaluations', r.evaluations], ['time', `${fmt(r.seconds, 3)} s`]];
    $('norms').replaceChildren(...items.map(([k, v]) =>
        el('div', {}, el('dt', {textContent: k}), el('dd', {textContent: v === undefined ? '—' : String(v)}))));
    showTransfer(r);
    const [orig, adv] = await Promise.all([pixelsOf(answer.input), pixelsOf(r.image)]);
    if (state.answer === answer && state.shown === i)
        drawHeat(orig, adv, r.image.width, r.image.height, r.image.channels === 3 ? 3 : 1);
}

// The perturbation r = adv - orig per pixel. Gray: r on a blue-white-red
// scale symmetric around 0, scaled to max|r|. Colour: the pixel's L2 norm
// over its channels, sqrt(r_R^2 + r_G^2 + r_B^2), on white-red from 0 to
// its maximum: a signed mean over the channels would show a change of hue
// that keeps the brightness (+r in red, -r in green) as no change at all.
function drawHeat(orig, adv, w, h, C) {
    const heat = $('heat');
    heat.width = w;
    heat.height = h;
    const ctx = heat.getContext('2d');
    const img = ctx.createImageData(w, h);
    const value = new Float32Array(w * h);
    for (let p = 0; p < value.length; p++) {
        if (C === 1) {
            value[p] = adv[p] - orig[p];
            continue;
        }
        let s = 0;
        for (let c = 0; c < C; c++)
            s += (adv[p * C + c] - orig[p * C + c]) ** 2;
        value[p] = Math.sqrt(s);
    }
    let max = 0;
    for (const v of value)
        max = Math.max(max, Math.abs(v));
    value.forEach((v, p) => img.data.set([...diverging(max ? v / max : 0), 255], 4 * p));
    ctx.putImageData(img, 0, 0);
    const legend = $('legend').getContext('2d');
    const lw = $('legend').width;
    for (let x = 0; x < lw; x++) {
        const t = C === 1 ? 2 * x / (lw - 1) - 1 : x / (lw - 1);
        const [r, g, b] = diverging(t);
        legend.fillStyle = `rgb(${r},${g},${b})`;
        legend.fillRect(x, 0, 1, $('legend').height);
    }
    $('heat-title').textContent = C === 1 ? 'Perturbation r = adv − orig'
        : 'Perturbation per pixel: |r| over R, G and B, r = adv − orig';
    $('leg-min').textContent = C === 1 ? `−${fmt(max, 3)}` : '0';
    $('leg-mid').textContent = C === 1 ? '0' : '';
    $('leg-max').textContent = `+${fmt(max, 3)}`;
}

function diverging(t) {
    const a = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? [255, a, a] : [a, a, 255];
}

function probabilityCell(label, probability, fooled) {
    const fill = el('div', {className: 'fill'});
    fill.style.width = `${(100 * (probability || 0)).toFixed(1)}%`;
    const text = probability === undefined ? `${label}` : `${label} (${(100 * probability).toFixed(1)}%)`;
    return el('td', {className: fooled ? 'fooled' : ''}, text, el('div', {className: 'track'}, fill));
}

function showTransfer(r) {
    const rows = (r.predictions || []).map((p) => {
        const o = state.original[p.model];
        return el('tr', {}, el('th', {scope: 'row', textContent: p.model}),
            probabilityCell(o ? o.label : p.original_label, o ? o.probability : undefined, false),
            probabilityCell(p.fooled ? `${p.label}, fooled` : p.label, p.probability, p.fooled));
    });
    $('transfer').tBodies[0].replaceChildren(...rows);
}

/* ---- copy as curl ---- */

// With a token the command names it by variable, so that the copied text
// does not carry the secret.
function curlCommand(body) {
    const json = JSON.stringify(body).replace(/'/g, '\'\\\'\'');
    const auth = accessToken() ? '-H "Authorization: Bearer $BLINDSPOT_TOKEN" ' : '';
    return `curl -s ${auth}-H 'Content-Type: application/json' -d '${json}' ${location.origin}/v1/attacks`;
}

$('copy').addEventListener('click', async () => {
    if (!state.body)
        return;
    const command = curlCommand(state.body);
    $('curl').value = command;
    try {
        await navigator.clipboard.writeText(command);
        $('copy-note').textContent = 'Copied the curl command.';
        $('curl-box').hidden = true;
    } catch (err) {
        $('copy-note').textContent = 'The clipboard is not available here: copy the command from the box below.';
        $('curl-box').hidden = false;
        $('curl').select();
    }
});

/* ---- start ---- */

$('method').replaceChildren(...Object.entries(METHODS).map(([key, m]) =>
    el('option', {value: key, textContent: `${key}: ${m.name}`})));
$('method').addEventListener('change', showParams);
showParams();
clearPad();
Promise.all([loadModels(), loadDatasets()]).catch(showError);
