// run.mjs — the browser tests: every tests/browser/*.test.mjs in Debian's
// Chromium, driven by playwright-core, against a blindspotd of the build.
//
//   node tests/browser/run.mjs [BUILD] [FILTER]
//
// BUILD is the build folder (default build); FILTER keeps the test files
// whose names contain it. A test file exports `tests`, a list of
// {name, timeout (ms, default 60000), run(t)}; t holds:
//   page            a fresh page in its own browser context (1280x900)
//   base            the shared daemon's URL (models/, data/, --state none)
//   assert          node:assert/strict
//   api(path, init) fetch from node against base
//   screenshot(n)   docs/figures/n.png of the page (full page)
//   startDaemon(a)  another blindspotd with the extra flags a: {base, port, stop()}
//   allowOrigin(u)  the page may also call origin u in this test
//   allowConsoleError(re)  console errors matching re are expected
// After each test its page must have logged no console error and thrown no
// uncaught exception, and made no request to an origin not allowed (data:
// and blob: are the page's own). The output follows cmocka's, so that
// tests/run.sh counts the results with the C tests'.
import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {readdirSync} from 'node:fs';
import {createServer} from 'node:net';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const build = resolve(root, process.argv[2] || 'build');
const filter = process.argv[3] || '';
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const {chromium} = await import(pathToFileURL(join(root, 'build/npm-tools/node_modules/playwright-core/index.mjs')));

// A port nobody listens on now.
function freePort() {
    return new Promise((ok, fail) => {
        const s = createServer();
        s.on('error', fail);
        s.listen(0, '127.0.0.1', () => {
            const port = s.address().port;
            s.close(() => ok(port));
        });
    });
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

// Starts blindspotd on a free loopback port with extra flags and waits until
// it is ready. Its log goes to stderr only when it fails to start.
async function startDaemon(extra = []) {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const args = ['--listen', `127.0.0.1:${port}`, '--models', 'models', '--data', 'data',
        '--state', 'none', '--workers', '2', ...extra];
    const proc = spawn(join(build, 'blindspotd'), args, {cwd: root, stdio: ['ignore', 'ignore', 'pipe']});
    let log = '';
    proc.stderr.on('data', (d) => {
        log = (log + d).slice(-20000);
    });
    let exited = null;
    proc.on('exit', (code, signal) => {
        exited = signal || code;
    });
    for (let i = 0; i < 600 && exited === null; i++) {
        try {
            const r = await fetch(`${base}/v2/health/ready`);
            if (r.ok)
                return {base, port, stop: () => stopDaemon(proc, () => log)};
        } catch (e) {
            // not listening yet
        }
        await sleep(100);
    }
    proc.kill('SIGKILL');
    throw new Error(`blindspotd ${args.join(' ')} did not become ready (exit ${exited}):\n${log}`);
}

// Stops a daemon with SIGTERM (SIGKILL after 10 s); answers null when it
// exited 0, else what went wrong with the end of its log (a sanitizer's
// report, for one).
function stopDaemon(proc, log) {
    const verdict = () => (proc.exitCode === 0 ? null
        : `blindspotd exited with ${proc.exitCode ?? proc.signalCode}:\n${log().slice(-4000)}`);
    if (proc.exitCode !== null || proc.signalCode !== null)
        return Promise.resolve(verdict());
    return new Promise((ok) => {
        const kill = setTimeout(() => proc.kill('SIGKILL'), 10000);
        proc.on('exit', () => {
            clearTimeout(kill);
            ok(verdict());
        });
        proc.kill('SIGTERM');
    });
}

function originOf(url) {
    try {
        return new URL(url).origin;
    } catch (e) {
        return url;
    }
}

async function runTest(browser, daemon, test) {
    const context = await browser.newContext({viewport: {width: 1280, height: 900}});
    const page = await context.newPage();
    const problems = [];
    const allowed = new Set([daemon.base]);
    const extraDaemons = [];
    const expectedErrors = [];
    page.on('console', (m) => {
        if (m.type() === 'error' && !expectedErrors.some((re) => re.test(m.text())))
            problems.push(`console error: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`uncaught exception: ${e.message}`));
    page.on('request', (r) => {
        const url = r.url();
        if (url.startsWith('data:') || url.startsWith('blob:'))
            return;
        if (!allowed.has(originOf(url)))
            problems.push(`request to another origin: ${r.method()} ${url}`);
    });
    const t = {
        page,
        base: daemon.base,
        assert,
        api: (path, init) => fetch(daemon.base + path, init),
        screenshot: (name) => page.screenshot({path: join(root, 'docs/figures', `${name}.png`), fullPage: true}),
        startDaemon: async (extra) => {
            const d = await startDaemon(extra);
            extraDaemons.push(d);
            return d;
        },
        allowOrigin: (url) => allowed.add(originOf(url)),
        allowConsoleError: (re) => expectedErrors.push(re),
    };
    const timeout = test.timeout || 60000;
    let timer;
    try {
        await Promise.race([
            test.run(t),
            new Promise((_, fail) => {
                timer = setTimeout(() => fail(new Error(`timed out after ${timeout} ms`)), timeout);
            }),
        ]);
    } finally {
        clearTimeout(timer);
        await context.close().catch(() => {});
        for (const d of extraDaemons) {
            const wrong = await d.stop();
            if (wrong)
                problems.push(wrong);
        }
    }
    if (problems.length)
        throw new Error(problems.join('\n'));
}

const files = readdirSync(join(root, 'tests/browser'))
    .filter((f) => f.endsWith('.test.mjs') && f.includes(filter))
    .sort();
let passed = 0;
const failed = [];
let browser = null;
let daemon = null;
try {
    daemon = await startDaemon();
    browser = await chromium.launch({executablePath: chromiumPath, args: ['--no-sandbox']});
    for (const file of files) {
        const {tests} = await import(pathToFileURL(join(root, 'tests/browser', file)));
        console.log(`[==========] ${file}: ${tests.length} test(s)`);
        for (const test of tests) {
            console.log(`[ RUN      ] ${test.name}`);
            const t0 = Date.now();
            try {
                await runTest(browser, daemon, test);
                passed++;
                console.log(`[       OK ] ${test.name} (${Date.now() - t0} ms)`);
            } catch (e) {
                failed.push(test.name);
                console.log(`[  ERROR   ] ${test.name}: ${(e && e.stack) || e}`);
                console.log(`[  FAILED  ] ${test.name}`);
            }
        }
    }
} catch (e) {
    // the daemon or the browser did not start: one failure, said plainly
    failed.push('browser tests');
    console.log(`[  ERROR   ] the browser tests could not start: ${(e && e.stack) || e}`);
} finally {
    if (browser)
        await browser.close().catch(() => {});
    if (daemon) {
        const wrong = await daemon.stop();
        if (wrong) {
            failed.push('the shared daemon');
            console.log(`[  ERROR   ] ${wrong}`);
        }
    }
}
console.log(`[  PASSED  ] ${passed} test(s).`);
if (failed.length) {
    console.log(`[  FAILED  ] ${failed.length} test(s), listed below:`);
    for (const name of failed)
        console.log(`[  FAILED  ] ${name}`);
}
process.exit(failed.length ? 1 : 0);
