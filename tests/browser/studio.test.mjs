// studio.test.mjs — the attack studio at /: drawing, files, dataset images,
// an attack run as a job and its result, cancelling, the keyboard alone, a
// phone's width, and a colour model of a non-square input.
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {deflateSync} from 'node:zlib';

// A safetensors file of softmax regression (flatten, linear) on (C,H,W)
// inputs with random weights (a fixed LCG): a model the daemon loads.
function regressionModel(C, H, W, classes) {
    const n = C * H * W;
    const weights = new Float32Array(classes * n + classes);
    let seed = 12345;
    for (let i = 0; i < classes * n; i++) {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        weights[i] = (seed / 2147483648 - 0.5) * 0.2;
    }
    const header = JSON.stringify({
        '1.bias': {dtype: 'F32', shape: [classes], data_offsets: [4 * classes * n, 4 * weights.length]},
        '1.weight': {dtype: 'F32', shape: [classes, n], data_offsets: [0, 4 * classes * n]},
        __metadata__: {'blindspot.arch': JSON.stringify([{type: 'flatten'}, {out_features: classes, type: 'linear'}]),
            'blindspot.input_shape': `[${C},${H},${W}]`, 'blindspot.classes': String(classes)},
    });
    const head = Buffer.from(header.padEnd(8 * Math.ceil(header.length / 8), ' '));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(head.length));
    return Buffer.concat([len, head, Buffer.from(weights.buffer)]);
}

// An 8-bit RGB PNG (colour type 2) of w x h whose pixel (x,y) is rgb(x,y).
function rgbPng(w, h, rgb) {
    const crcTable = Array.from({length: 256}, (_, n) => {
        let c = n;
        for (let k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        return c >>> 0;
    });
    const crc = (buf) => {
        let c = 0xffffffff;
        for (const b of buf)
            c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
        return (c ^ 0xffffffff) >>> 0;
    };
    const chunk = (type, data) => {
        const out = Buffer.alloc(12 + data.length);
        out.writeUInt32BE(data.length, 0);
        out.write(type, 4, 'ascii');
        data.copy(out, 8);
        out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
        return out;
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr.set([8, 2, 0, 0, 0], 8);
    const raw = Buffer.alloc(h * (1 + 3 * w));
    for (let y = 0; y < h; y++)
        for (let x = 0; x < w; x++)
            raw.set(rgb(x, y), y * (1 + 3 * w) + 1 + 3 * x);
    return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
        chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

// The PNG of a data: URL: its width, height and colour type from IHDR.
function pngHeader(dataUrl) {
    const png = Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
    return {png, width: png.readUInt32BE(16), height: png.readUInt32BE(20), colourType: png[25]};
}

// Opens / and waits until the models and datasets are listed.
async function openStudio(t) {
    await t.page.goto(t.base + '/');
    await t.page.locator('#model option[value="fc100-100-10"]').waitFor({state: 'attached'});
    await t.page.locator('#dataset option').first().waitFor({state: 'attached'});
}

// Loads sample index of mnist's test split and waits for its prediction.
async function loadSample(t, index) {
    await t.page.getByLabel('Index').fill(String(index));
    await t.page.getByRole('button', {name: 'Load', exact: true}).click();
    await t.page.locator('#seen-caption').filter({hasText: `mnist test #${index}:`}).waitFor();
}

// Opens / with sample 18 of mnist's test split (a 7) as the input, model
// and target chosen.
async function attackSeven(t, model, target) {
    await openStudio(t);
    await loadSample(t, 18);
    await t.page.getByLabel('Model to attack').selectOption(model);
    await t.page.getByLabel('Target', {exact: true}).selectOption(target);
}

// Runs the attack as set on the page and waits for its end (the status line
// says how it ended).
async function runAttack(t, timeout = 60000) {
    await t.page.getByRole('button', {name: 'Run the attack'}).click();
    await t.page.locator('#status').filter({hasText: /^(Done\.|Stopped|cancelled|The attack)/}).waitFor({timeout});
}

// The label model gives the PNG of a data: URL, asked of the daemon.
async function labelOf(t, model, dataUrl) {
    const png = Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
    const r = await t.api(`/v1/models/${model}/predict?invert=no`, {method: 'POST',
        headers: {'Content-Type': 'image/png'}, body: png});
    t.assert.equal(r.status, 200);
    return (await r.json()).label;
}

export const tests = [
    {
        name: 'a colour model of a non-square input: upload, attack, colour results the daemon labels as the target',
        timeout: 90000,
        async run(t) {
            const dir = mkdtempSync(join(tmpdir(), 'blindspot-colour-'));
            try {
                writeFileSync(join(dir, 'rgb-line.safetensors'), regressionModel(3, 24, 64, 4));
                const daemon = await t.startDaemon(['--models', dir]);
                t.allowOrigin(daemon.base);
                const page = t.page;
                await page.goto(daemon.base + '/');
                await page.locator('#model option[value="rgb-line"]').waitFor({state: 'attached'});
                // no drawing pad for a colour model, a plain note instead
                await page.locator('#pad-note').filter({hasText: 'colour images of 64x24'}).waitFor();
                t.assert.equal(await page.locator('#pad').isVisible(), false);
                t.assert.match(await page.locator('#model-info').textContent(), /input RGB 64x24/);
                t.assert.equal(await page.locator('#target option').count(), 5); // all, 0..3

                // an upload of another shape (40x30), padded around
                await page.getByLabel('Another shape than the model\'s').selectOption('pad');
                const png = rgbPng(40, 30, (x, y) => [200 + (x % 50), 40 + 5 * (y % 30), 90]);
                await page.getByLabel('A PNG or JPEG file').setInputFiles({name: 'photo.png', mimeType: 'image/png', buffer: png});
                await page.locator('#seen-caption').filter({hasText: 'photo.png: rgb-line says'}).waitFor();
                const seen = pngHeader(await page.locator('#seen').getAttribute('src'));
                t.assert.deepEqual([seen.width, seen.height, seen.colourType], [64, 24, 2]);
                // shown at its own aspect ratio
                const box = await page.locator('#seen').boundingBox();
                t.assert.ok(Math.abs(box.width / box.height - 64 / 24) < 0.1, `seen is ${box.width}x${box.height}`);

                const label = Number(await page.locator('#pred').getAttribute('data-label'));
                const target = (label + 1) % 4;
                await page.getByLabel('Target', {exact: true}).selectOption(String(target));
                await runAttack(t);
                t.assert.equal(await page.locator('#status').textContent(), 'Done.');
                const adv = pngHeader(await page.locator('#adv').getAttribute('src'));
                t.assert.deepEqual([adv.width, adv.height, adv.colourType], [64, 24, 2]);
                const orig = pngHeader(await page.locator('#orig').getAttribute('src'));
                t.assert.equal(orig.colourType, 2);
                const r = await fetch(`${daemon.base}/v1/models/rgb-line/predict?invert=no`, {method: 'POST',
                    headers: {'Content-Type': 'image/png'}, body: adv.png});
                t.assert.equal(r.status, 200);
                t.assert.equal((await r.json()).label, target);
                // the heat map: the perturbation's size per pixel over the channels, at the image's aspect
                t.assert.match(await page.locator('#heat-title').textContent(), /over R, G and B/);
                t.assert.equal(await page.locator('#leg-min').textContent(), '0');
                t.assert.equal(await page.locator('#heat').getAttribute('width'), '64');
                const heat = await page.locator('#heat').boundingBox();
                t.assert.ok(Math.abs(heat.width / heat.height - 64 / 24) < 0.1, `heat is ${heat.width}x${heat.height}`);
            } finally {
                rmSync(dir, {recursive: true, force: true});
            }
        },
    },
    {
        name: 'a digit drawn with the mouse is predicted in the bars',
        async run(t) {
            await openStudio(t);
            t.assert.equal(await t.page.locator('#pred li').count(), 0);
            const box = await t.page.locator('#pad').boundingBox();
            const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
            await t.page.mouse.move(...at(0.35, 0.2));
            await t.page.mouse.down();
            await t.page.mouse.move(...at(0.65, 0.2), {steps: 8});
            await t.page.mouse.move(...at(0.45, 0.8), {steps: 12});
            await t.page.mouse.up();
            await t.page.locator('#seen-caption').filter({hasText: 'Drawn digit'}).waitFor();
            t.assert.equal(await t.page.locator('#pred li').count(), 10);
            // a 7, made into an MNIST digit, is a 7 to the model
            await t.page.locator('#pred[data-label="7"]').waitFor();
            t.assert.match(await t.page.locator('#seen-caption').textContent(), /fc100-100-10 says 7/);
            t.assert.match(await t.page.locator('#pred li.top').textContent(), /^7\d+\.\d%$/);
        },
    },
    {
        name: 'an attack to a chosen target shows an image the daemon labels as the target',
        timeout: 90000,
        async run(t) {
            await attackSeven(t, 'fc100-100-10', '2');
            await runAttack(t);
            t.assert.equal(await t.page.locator('#status').textContent(), 'Done.');
            const src = await t.page.locator('#adv').getAttribute('src');
            t.assert.match(src, /^data:image\/png;base64,/);
            t.assert.equal(await labelOf(t, 'fc100-100-10', src), 2);
            t.assert.equal(await t.page.getByRole('link', {name: 'Download the adversarial PNG'}).getAttribute('href'), src);
            // the norms, the heat map's scale and every model's two predictions
            t.assert.match(await t.page.locator('#norms').textContent(), /distortion0\.\d+/);
            t.assert.match(await t.page.locator('#leg-max').textContent(), /^\+0\.\d+/);
            await t.page.locator('#transfer tbody tr').nth(9).waitFor();
            await t.page.locator('#transfer tbody tr').filter({hasText: /^fc100-100-107 \(\d+\.\d%\)2, fooled/}).waitFor();
            await t.screenshot('studio');
            // copy as curl: the clipboard refused, the command is shown, and it reproduces the attack
            await t.page.evaluate(() => {
                navigator.clipboard.writeText = () => Promise.reject(new Error('denied'));
            });
            await t.page.getByRole('button', {name: 'Copy as curl'}).click();
            const box = t.page.getByLabel('The request as a curl command');
            await box.waitFor();
            const command = await box.inputValue();
            t.assert.ok(command.startsWith(`curl -s -H 'Content-Type: application/json' -d '{`), command);
            t.assert.ok(command.endsWith(` ${t.base}/v1/attacks`), command);
            const body = JSON.parse(command.slice(command.indexOf('-d \'') + 4, command.lastIndexOf('\' ')));
            t.assert.deepEqual(body, {model: 'fc100-100-10', image: {dataset: 'mnist', split: 'test', index: 18}, target: 2});
            const again = await (await t.api('/v1/attacks', {method: 'POST', headers: {'Content-Type': 'application/json'},
                body: JSON.stringify(body)})).json();
            t.assert.equal(`data:image/png;base64,${again.results[0].image.data}`, src);
        },
    },
    {
        name: 'a PNG file is predicted; a file that is no image gets a readable error',
        async run(t) {
            await openStudio(t);
            const png = Buffer.from(await (await t.api('/v1/datasets/mnist/test/18')).arrayBuffer());
            await t.page.getByLabel('A PNG or JPEG file').setInputFiles({name: 'seven.png', mimeType: 'image/png', buffer: png});
            await t.page.locator('#seen-caption').filter({hasText: 'seven.png: fc100-100-10 says 7.'}).waitFor();
            t.assert.equal(await t.page.locator('#pred').getAttribute('data-label'), '7');
            t.assert.equal(await t.page.locator('#error').isVisible(), false);

            t.allowConsoleError(/status of 400/);
            const noise = Buffer.from(Array.from({length: 300}, (_, i) => (i * 97 + 13) % 256));
            await t.page.getByLabel('A PNG or JPEG file').setInputFiles({name: 'x.png', mimeType: 'image/png', buffer: noise});
            const error = t.page.getByRole('alert');
            await error.filter({hasText: 'This file is not a PNG or JPEG image that can be read.'}).waitFor();
            t.assert.equal(await t.page.locator('#pred li').count(), 0);
            t.assert.equal(await t.page.locator('#seen-caption').textContent(), 'No input yet.');
            // the bad file is not kept as the input: attacking asks for an image
            await t.page.getByRole('button', {name: 'Run the attack'}).click();
            await error.filter({hasText: 'Give an image first'}).waitFor();
        },
    },
    {
        name: 'cancel stops a running attack job',
        timeout: 90000,
        async run(t) {
            await attackSeven(t, 'cnn', 'all');
            await t.page.getByRole('button', {name: 'Run the attack'}).click();
            await t.page.locator('#status[data-job]').waitFor();
            const id = await t.page.locator('#status').getAttribute('data-job');
            await t.page.locator('#progress:not([hidden])').waitFor();
            await t.page.getByRole('button', {name: 'Cancel'}).click();
            await t.page.locator('#status').filter({hasText: /^cancelled$/}).waitFor({timeout: 30000});
            const job = await (await t.api(`/v1/jobs/${id}`)).json();
            t.assert.equal(job.state, 'cancelled');
            t.assert.equal(await t.page.locator('#result').isVisible(), false);
            t.assert.equal(await t.page.getByRole('button', {name: 'Run the attack'}).isEnabled(), true);
            t.assert.equal(await t.page.getByRole('button', {name: 'Cancel'}).isEnabled(), false);
        },
    },
    {
        name: 'an attack cut short by its time budget shows the best results so far',
        timeout: 90000,
        async run(t) {
            await attackSeven(t, 'cnn', 'all');
            await t.page.getByText('Advanced parameters').click();
            await t.page.getByLabel('Time budget').fill('1');
            t.assert.equal(await t.page.getByLabel('search_steps').inputValue(), '8');
            // a search far longer than the budget: 100 runs, SciPy's tolerance
            await t.page.getByLabel('search_steps').fill('100');
            await t.page.getByLabel('factr').fill('1e7');
            await runAttack(t);
            await t.page.getByRole('alert').filter({hasText: 'ran out of time'}).waitFor();
            t.assert.match(await t.page.locator('#status').textContent(), /^Stopped by its time budget/);
            await t.page.locator('#result').waitFor();
            t.assert.equal(await t.page.locator('#targets button').count(), 9);
            t.assert.match(await t.page.locator('#adv').getAttribute('src'), /^data:image\/png;base64,/);
        },
    },
    {
        name: 'a daemon that has gone away is said so in plain words',
        async run(t) {
            const daemon = await t.startDaemon([]);
            t.allowOrigin(daemon.base);
            t.allowConsoleError(/ERR_CONNECTION_REFUSED/);
            await t.page.goto(daemon.base + '/');
            await t.page.locator('#dataset option').first().waitFor({state: 'attached'});
            t.assert.equal(await daemon.stop(), null);
            await t.page.getByRole('button', {name: 'Random'}).click();
            await t.page.getByRole('alert').filter({hasText: 'The daemon could not be reached. Is blindspotd still running?'}).waitFor();
        },
    },
    {
        name: 'the keyboard alone reaches every control and runs an attack',
        timeout: 90000,
        async run(t) {
            await openStudio(t);
            const controls = await t.page.evaluate(() => {
                const all = [...document.querySelectorAll('button, select, input, textarea, a[href], summary')]
                    .filter((e) => !e.disabled && e.checkVisibility());
                all.forEach((e, i) => {
                    e.dataset.k = String(i);
                });
                return all.map((e) => e.id || e.textContent.trim());
            });
            t.assert.ok(controls.length >= 15, controls.join(', '));
            const reached = new Set();
            for (let i = 0; i < controls.length + 10; i++) {
                await t.page.keyboard.press('Tab');
                const k = await t.page.evaluate(() => document.activeElement && document.activeElement.dataset.k);
                if (k !== undefined)
                    reached.add(Number(k));
            }
            const missed = controls.filter((_, i) => !reached.has(i));
            t.assert.deepEqual(missed, [], `not reached by Tab: ${missed.join(', ')}`);

            // a fresh start: tab to the index, load sample 4 with Enter, tab to Run and press Enter
            await openStudio(t);
            const tabTo = async (id) => {
                for (let i = 0; i < 40; i++) {
                    await t.page.keyboard.press('Tab');
                    if (await t.page.evaluate((want) => document.activeElement.id === want, id))
                        return;
                }
                throw new Error(`Tab never reached #${id}`);
            };
            await tabTo('index');
            await t.page.keyboard.press('Control+A');
            await t.page.keyboard.type('4');
            await t.page.keyboard.press('Enter');
            await t.page.locator('#seen-caption').filter({hasText: 'mnist test #4:'}).waitFor();
            await tabTo('run');
            await t.page.keyboard.press('Enter');
            await t.page.locator('#status').filter({hasText: 'Done.'}).waitFor({timeout: 60000});
            const src = await t.page.locator('#adv').getAttribute('src');
            t.assert.equal(await labelOf(t, 'fc100-100-10', src), 3);
        },
    },
    {
        name: 'at 375 px nothing overflows sideways, with a result shown',
        timeout: 90000,
        async run(t) {
            await t.page.setViewportSize({width: 375, height: 800});
            await openStudio(t);
            const width = () => t.page.evaluate(() => document.scrollingElement.scrollWidth);
            t.assert.ok(await width() <= 375, `the page is ${await width()} px wide`);
            const pad = await t.page.locator('#pad').boundingBox();
            t.assert.ok(pad.x >= 0 && pad.x + pad.width <= 375, `the pad spans ${pad.x}..${pad.x + pad.width}`);
            await attackSeven(t, 'fc100-100-10', 'all');
            await runAttack(t);
            await t.page.locator('#targets button').nth(8).waitFor();
            await t.page.locator('#advanced summary').click();
            t.assert.ok(await width() <= 375, `with a result the page is ${await width()} px wide`);
            // the targets of "all" can be switched
            await t.page.getByRole('button', {name: 'target 0'}).click();
            t.assert.match(await t.page.locator('#adv-caption').textContent(), /target 0/);
            t.assert.equal(await t.page.getByRole('button', {name: 'target 0'}).getAttribute('aria-pressed'), 'true');
        },
    },
];
