// site.test.mjs — what every page shares: the API document rendered at
// /docs, the pages' weight and time to first render, and pages of other
// origins, which may call the daemon only when --cors-origins allows them.
import {createServer} from 'node:http';

// A web site on another origin (another loopback port): / is a page whose
// script runs `script` once loaded, on port (0: any free one). Answers
// {base, close()}.
function otherSite(script, port = 0) {
    const html = `<!doctype html><html><head><meta charset="utf-8"><title>elsewhere</title><link rel="icon" href="data:,"></head>
<body><p>another site</p><script>${script}</script></body></html>`;
    const server = createServer((req, res) => {
        if (req.url === '/') {
            res.writeHead(200, {'Content-Type': 'text/html; charset=utf-8'});
            res.end(html);
        } else {
            res.writeHead(404, {'Content-Type': 'text/plain'});
            res.end('not found');
        }
    });
    return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok({
        base: `http://127.0.0.1:${server.address().port}`,
        close: () => new Promise((done) => server.close(done)),
    })));
}

// The attack counters and job table of a daemon's /metrics, summed into one
// line per family, so that "nothing ran" is one comparison.
async function workTrace(base) {
    const text = await (await fetch(`${base}/metrics`)).text();
    const sum = (family) => text.split('\n')
        .filter((l) => l.startsWith(family + '{') || l.startsWith(family + ' '))
        .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    return {
        attack_targets: sum('blindspot_attack_targets_total'),
        work: sum('blindspot_work_total'),
        jobs: sum('blindspot_jobs'),
    };
}

// The page's script: a multipart form POST (a "simple" request, sent with no
// preflight) that would start an attack job, then a JSON POST (preflighted);
// each outcome lands in window.outcome.
const crossSiteScript = (daemon) => `
window.outcome = (async () => {
  const out = {};
  const form = new FormData();
  form.append('model', 'fc100-100-10');
  form.append('target', '3');
  form.append('image', new Blob([await (await fetch('data:image/png;base64,${'$'}{png}')).arrayBuffer()], {type: 'image/png'}), 'seven.png');
  try {
    const r = await fetch('${daemon}/v1/attacks?async=true', {method: 'POST', body: form});
    out.form = r.status + ' ' + (await r.json()).state;
  } catch (e) { out.form = 'blocked'; }
  try {
    const r = await fetch('${daemon}/v1/models/fc100-100-10/predict', {method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({image: {dataset: 'mnist', split: 'test', index: 18}})});
    out.json = r.status + ' ' + (await r.json()).label;
  } catch (e) { out.json = 'blocked'; }
  return out;
})();`;

async function crossSite(t, daemon, port = 0) {
    const png = Buffer.from(await (await t.api('/v1/datasets/mnist/test/18')).arrayBuffer()).toString('base64');
    const site = await otherSite(crossSiteScript(daemon.base).replace('${png}', png), port);
    try {
        t.allowOrigin(site.base);
        t.allowOrigin(daemon.base);
        const before = await workTrace(daemon.base);
        await t.page.goto(site.base + '/');
        const outcome = await t.page.evaluate(() => window.outcome);
        // let a job that might have been made start and count
        await new Promise((ok) => setTimeout(ok, 500));
        return {outcome, before, after: await workTrace(daemon.base)};
    } finally {
        await site.close();
    }
}

export const tests = [
    {
        name: '/docs renders the API document from the daemon alone',
        async run(t) {
            await t.page.goto(t.base + '/docs');
            // Redoc's menu lists the document's tags; the attack endpoint is described
            await t.page.getByRole('menuitem', {name: 'attacks'}).first().waitFor({timeout: 20000});
            await t.page.getByText('POST /v1/attacks', {exact: false}).first().waitFor({timeout: 20000});
            const title = await t.page.locator('h1').first().textContent();
            t.assert.match(title, /blindspot/i);
        },
    },
    {
        name: 'the pages\' weight and time to first render; the studio under 300 KB',
        async run(t) {
            // each page in a browser context of its own (an empty cache),
            // after the page of the test has woken the browser up
            await t.page.goto(t.base + '/');
            for (const path of ['/', '/paper', '/docs']) {
                const context = await t.page.context().browser().newContext();
                const page = await context.newPage();
                const files = [];
                page.on('requestfinished', async (r) => {
                    const url = new URL(r.url());
                    if (r.url().startsWith('blob:') || url.origin !== t.base || url.pathname.startsWith('/v1/') || url.pathname.startsWith('/v2/'))
                        return;
                    const resp = await r.response();
                    const body = resp ? await resp.body().catch(() => null) : null;
                    const sizes = await r.sizes();
                    files.push({path: url.pathname, bytes: body ? body.length : 0, sent: sizes.responseBodySize});
                });
                await page.goto(t.base + path, {waitUntil: 'load'});
                const timing = await page.evaluate(() => new Promise((ok) => {
                    const nav = performance.getEntriesByType('navigation')[0];
                    const done = (fcp) => ok({fcp, load: nav.loadEventStart});
                    const seen = performance.getEntriesByName('first-contentful-paint');
                    if (seen.length)
                        return done(seen[0].startTime);
                    new PerformanceObserver((list) => done(list.getEntries()[0].startTime))
                        .observe({type: 'paint', buffered: true});
                }));
                await page.waitForLoadState('networkidle');
                const bytes = files.reduce((s, f) => s + f.bytes, 0);
                const sent = files.reduce((s, f) => s + f.sent, 0);
                console.log(`${path}: ${files.length} files, ${bytes} bytes (${sent} sent), ` +
                    `first contentful paint ${timing.fcp.toFixed(0)} ms, load ${timing.load.toFixed(0)} ms ` +
                    `[${files.map((f) => `${f.path} ${f.bytes}/${f.sent}`).join(', ')}]`);
                if (path === '/')
                    t.assert.ok(bytes > 0 && bytes < 300 * 1024, `the studio's files weigh ${bytes} bytes`);
                await context.close();
            }
        },
    },
    {
        name: 'a page of an allowed origin calls the API (--cors-origins)',
        timeout: 90000,
        async run(t) {
            // the origin is known once the site listens: start it first, then the daemon naming it
            const probe = await otherSite('');
            const origin = probe.base;
            await probe.close();
            const port = new URL(origin).port;
            const daemon = await t.startDaemon(['--cors-origins', `http://127.0.0.1:${port}`]);
            const {outcome} = await crossSite(t, daemon, Number(port));
            t.assert.equal(outcome.form, '202 queued');
            t.assert.equal(outcome.json, '200 7');
        },
    },
    {
        name: 'a page of another origin is refused and leaves no trace',
        timeout: 90000,
        async run(t) {
            const daemon = await t.startDaemon([]);
            // the browser reports the refused requests on the console
            t.allowConsoleError(/blocked by CORS policy|net::ERR_FAILED/);
            const {outcome, before, after} = await crossSite(t, daemon);
            // the browser hides a refused answer from the page...
            t.assert.equal(outcome.form, 'blocked');
            t.assert.equal(outcome.json, 'blocked');
            // ...and the daemon did nothing: no attack, no inference, no job
            t.assert.deepEqual(after, before);
        },
    },
];
