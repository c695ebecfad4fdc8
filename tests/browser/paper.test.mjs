// paper.test.mjs — the paper view (/paper): an evaluation's Table 1 and
// transfer matrix fill in (while it runs, from the job's partial tables,
// and at the end with the result's numbers), a cancel that cancels, the
// Lipschitz chart's bars, the unit grids, keyboard reach and phone width.

// Opens /paper with the models listed; checks exactly the models named.
async function openPaper(t, names) {
    await t.page.goto(t.base + '/paper');
    await t.page.locator('#model-list input').first().waitFor();
    if (names) {
        for (const box of await t.page.locator('#model-list input').all())
            await box.setChecked(names.includes(await box.getAttribute('value')));
    }
}

// Starts an evaluation of n images from the form; answers the job's id.
async function start(t, n) {
    await t.page.getByLabel('Images (n)').fill(String(n));
    await t.page.getByRole('button', {name: 'Start the evaluation'}).click();
    await t.page.waitForFunction(() => document.getElementById('evaluation').dataset.job);
    return t.page.locator('#evaluation').getAttribute('data-job');
}

// Shows the Lipschitz chart and the unit grids of the models selected.
async function showAnalyses(t) {
    await t.page.getByRole('button', {name: 'Show the bounds'}).click();
    await t.page.getByRole('button', {name: 'Show the images'}).click();
    await t.page.locator('#units-grids img').nth(1).waitFor();
    await t.page.locator('#lip-chart rect').first().waitFor();
}

async function job(t, id) {
    return (await t.api(`/v1/jobs/${id}`)).json();
}

// The data-value of every cell matching selector, keyed by key(cell attrs).
async function cellValues(t, selector, attrs) {
    return t.page.locator(selector).evaluateAll((cells, attrs) => cells.map((c) =>
        [attrs.map((a) => c.getAttribute(a)).join('/'), c.dataset.value === undefined ? null : Number(c.dataset.value)]),
    attrs);
}

async function tablesMatch(t, result) {
    const {assert} = t;
    const t1 = await t.page.locator('#table1 tbody tr').evaluateAll((rows) => rows.map((r) =>
        [r.dataset.model, Object.fromEntries([...r.querySelectorAll('td')].map((c) =>
            [c.dataset.field, c.dataset.value === undefined ? null : Number(c.dataset.value)]))]));
    assert.deepEqual(t1.map(([m]) => m), result.models);
    for (const [model, row] of t1)
        for (const field of ['train_error', 'test_error', 'slice_error', 'success_rate', 'mean_distortion'])
            assert.equal(row[field], result.table1[model][field], `${model} ${field}`);
    const cells = await cellValues(t, '#transfer td', ['data-row', 'data-col']);
    assert.equal(cells.length, result.models.length ** 2);
    for (const [key, v] of cells) {
        const [row, col] = key.split('/');
        assert.equal(v, result.table2.error[row][col], `transfer ${key}`);
    }
    const noise = await cellValues(t, '#noise td', ['data-noise', 'data-col']);
    assert.equal(noise.length, result.table2.noise.length * result.models.length);
    for (const [key, v] of noise) {
        const [s, col] = key.split('/');
        assert.equal(v, result.table2.noise.find((r) => String(r.stddev) === s).error[col], `noise ${key}`);
    }
}

export const tests = [
    {name: 'an evaluation fills in Table 1 and the transfer heat map with the result', timeout: 120000, async run(t) {
        await openPaper(t, ['fc10-1e-4', 'fc100-100-10']);
        const id = await start(t, 4);
        await t.page.locator('#evaluation[data-state="done"]').waitFor({timeout: 100000});
        const doc = await job(t, id);
        t.assert.equal(doc.state, 'done');
        await tablesMatch(t, doc.result);
        // the heat map is coloured by rate
        const bg = await t.page.locator('#transfer td').first().evaluate((c) => getComputedStyle(c).backgroundColor);
        t.assert.match(bg, /^rgb/);
        t.assert.match(await t.page.locator('#eval-status').textContent(), /Done/);
    }},

    {name: 'the tables fill in while the evaluation runs', timeout: 180000, async run(t) {
        await openPaper(t, ['fc10-1e-4', 'fc100-100-10', 'cnn']);
        const n = 60;
        const id = await start(t, n);
        await t.page.locator('#table1 td[data-field="success_rate"][data-value]').first().waitFor({timeout: 120000});
        const doc = await job(t, id);
        t.assert.notEqual(doc.state, 'done', 'the cells filled only once the job was done');
        t.assert.ok(doc.partial && doc.partial.images < n);
        t.assert.match(await t.page.locator('#table1-note').textContent(), new RegExp(`So far: \\d+ of ${n} images`));
        t.assert.ok(await t.page.locator('#transfer td[data-value]').count() === 9);
        await t.page.getByRole('button', {name: 'Cancel'}).click();
        await t.page.locator('#evaluation[data-state="cancelled"]').waitFor({timeout: 60000});
    }},

    {name: 'cancel stops a running evaluation', timeout: 120000, async run(t) {
        await openPaper(t, ['fc100-100-10', 'cnn']);
        const id = await start(t, 500);
        await t.page.waitForFunction(() => document.getElementById('eval-progress').value > 0, null, {timeout: 60000});
        await t.page.getByRole('button', {name: 'Cancel'}).click();
        await t.page.locator('#evaluation[data-state="cancelled"]').waitFor({timeout: 60000});
        t.assert.match(await t.page.locator('#eval-status').textContent(), /Cancelled after \d+ of 1000 attacks/);
        t.assert.equal((await job(t, id)).state, 'cancelled');
        t.assert.ok(await t.page.getByRole('button', {name: 'Start the evaluation'}).isEnabled());
    }},

    {name: 'the Lipschitz chart has one bar per layer', async run(t) {
        await openPaper(t);
        for (const name of ['cnn', 'fc100-100-10']) {
            await t.page.locator('#lip-model').selectOption(name);
            await t.page.getByRole('button', {name: 'Show the bounds'}).click();
            await t.page.locator('#lip-caption', {hasText: name}).waitFor();
            const layers = (await (await t.api(`/v1/models/${name}`)).json()).layers.length;
            const bounds = (await (await t.api(`/v1/models/${name}/lipschitz`)).json()).layers.map((l) => l.bound);
            t.assert.equal(await t.page.locator('#lip-chart rect.layer-bar').count(), layers);
            t.assert.equal(await t.page.locator('#lip-chart rect.product-bar').count(), 1);
            const values = await t.page.locator('#lip-chart rect.layer-bar').evaluateAll((r) => r.map((e) => Number(e.dataset.value)));
            t.assert.deepEqual(values, bounds);
        }
    }},

    {name: 'the unit grid shows a unit beside a random direction', async run(t) {
        await openPaper(t);
        await t.page.locator('#units-layer option').first().waitFor({state: 'attached'});
        await t.page.getByRole('button', {name: 'Show the images'}).click();
        const imgs = t.page.locator('#units-grids img');
        await imgs.nth(1).waitFor();
        t.assert.equal(await imgs.count(), 2);
        for (const img of await imgs.all()) {
            t.assert.ok(await img.evaluate((e) => e.complete && e.naturalWidth > 0));
            t.assert.equal(await img.evaluate((e) => getComputedStyle(e).imageRendering), 'pixelated');
        }
        t.assert.match(await t.page.locator('#units-grids figcaption').first().textContent(), /Purity \d/);
    }},

    {name: 'an unknown unit is refused in plain words', async run(t) {
        await openPaper(t);
        await t.page.locator('#units-layer option').first().waitFor({state: 'attached'});
        await t.page.evaluate(() => { document.getElementById('units-unit').removeAttribute('max'); });
        await t.page.getByLabel('Unit', {exact: true}).fill('100000');
        t.allowConsoleError(/status of 4\d\d/); // the refusal is the point here
        await t.page.getByRole('button', {name: 'Show the images'}).click();
        await t.page.locator('#units-error').waitFor();
        t.assert.ok((await t.page.locator('#units-error').textContent()).length > 10);
    }},

    {name: 'every control takes focus by Tab', async run(t) {
        await openPaper(t);
        await t.page.getByRole('button', {name: 'Show the bounds'}).click();
        await t.page.locator('#lip-chart rect').first().waitFor();
        const controls = await t.page.evaluate(() => {
            const all = [...document.querySelectorAll('a[href], button, input, select, [tabindex]')];
            const shown = all.filter((e) => !e.disabled && e.offsetParent !== null && e.tabIndex >= 0);
            shown.forEach((e, i) => { e.dataset.k = String(i); });
            return shown.length;
        });
        const seen = new Set();
        for (let i = 0; i < controls + 5; i++) {
            await t.page.keyboard.press('Tab');
            const k = await t.page.evaluate(() => document.activeElement && document.activeElement.dataset.k);
            if (k !== undefined && k !== null)
                seen.add(k);
        }
        t.assert.equal(seen.size, controls);
    }},

    {name: 'at 375 px nothing overflows sideways', timeout: 90000, async run(t) {
        await t.page.setViewportSize({width: 375, height: 800});
        await openPaper(t, ['fc10-1e-4', 'fc100-100-10', 'cnn']);
        await start(t, 2);
        await t.page.locator('#evaluation[data-state="done"]').waitFor({timeout: 80000});
        await showAnalyses(t);
        const width = await t.page.evaluate(() => document.documentElement.scrollWidth);
        t.assert.ok(width <= 375, `the page is ${width} px wide`);
    }},

    {name: 'a screenshot of a finished evaluation', timeout: 120000, async run(t) {
        await openPaper(t, ['fc10-1e-4', 'fc100-100-10', 'cnn']);
        await start(t, 10);
        await t.page.locator('#evaluation[data-state="done"]').waitFor({timeout: 100000});
        await showAnalyses(t);
        await t.screenshot('paper');
    }},
];
