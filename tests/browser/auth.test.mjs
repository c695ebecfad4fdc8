// auth.test.mjs — the studio on a daemon with --auth-tokens: the page asks
// for the token when the daemon answers 401, then works with it, the
// job's event stream included (its token goes as ?access_token=); a
// refused token is asked for again.
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';

const token = 'studio-token-5e1f0c';

// A daemon whose one client may infer and attack with token.
async function daemonWithTokens(t) {
    const dir = mkdtempSync(join(tmpdir(), 'blindspot-auth-'));
    const file = join(dir, 'tokens');
    writeFileSync(file, `${token} studio infer,attack\n`);
    const daemon = await t.startDaemon(['--auth-tokens', file]);
    t.allowOrigin(daemon.base);
    // the refused requests before the token is given
    t.allowConsoleError(/status of 401/);
    return {daemon, cleanup: () => rmSync(dir, {recursive: true, force: true})};
}

export const tests = [
    {
        name: 'the studio asks for the token, then lists the models and runs an attack as a job',
        timeout: 120000,
        async run(t) {
            const {daemon, cleanup} = await daemonWithTokens(t);
            try {
                await t.page.goto(daemon.base + '/');
                await t.page.getByText('This daemon needs an access token').waitFor();
                t.assert.equal(await t.page.locator('#model option').count(), 0);
                await t.page.getByLabel('Access token').fill(token);
                await t.page.getByRole('button', {name: 'Use this token'}).click();
                await t.page.locator('#model option[value="fc100-100-10"]').waitFor({state: 'attached'});
                await t.page.locator('#dataset option').first().waitFor({state: 'attached'});
                t.assert.equal(await t.page.getByText('This daemon needs an access token').count(), 0);
                t.assert.equal(await t.page.evaluate(() => sessionStorage.getItem('blindspot-token')), token);

                await t.page.getByLabel('Index').fill('18');
                await t.page.getByRole('button', {name: 'Load', exact: true}).click();
                await t.page.locator('#seen-caption').filter({hasText: 'mnist test #18:'}).waitFor();
                await t.page.getByLabel('Model to attack').selectOption('fc100-100-10');
                await t.page.getByLabel('Target', {exact: true}).selectOption('2');
                await t.page.getByRole('button', {name: 'Run the attack'}).click();
                await t.page.locator('#status').filter({hasText: /^Done\./}).waitFor({timeout: 90000});
                t.assert.match(await t.page.locator('#adv').getAttribute('src'), /^data:image\/png;base64,/);
                // copy as curl names the token by variable, never the secret itself
                await t.page.getByRole('button', {name: 'Copy as curl'}).click();
                const command = await t.page.getByLabel('The request as a curl command').inputValue();
                t.assert.ok(command.startsWith('curl -s -H "Authorization: Bearer $BLINDSPOT_TOKEN" '), command);
                t.assert.ok(!command.includes(token), command);
            } finally {
                await daemon.stop();
                cleanup();
            }
        },
    },
    {
        name: 'a refused token is asked for again',
        async run(t) {
            const {daemon, cleanup} = await daemonWithTokens(t);
            try {
                await t.page.goto(daemon.base + '/');
                await t.page.getByLabel('Access token').fill('not-the-token');
                await t.page.getByRole('button', {name: 'Use this token'}).click();
                await t.page.getByText('The daemon refused this access token. Enter another one.').waitFor();
                await t.page.getByLabel('Access token').fill(token);
                await t.page.getByRole('button', {name: 'Use this token'}).click();
                await t.page.locator('#model option[value="fc100-100-10"]').waitFor({state: 'attached'});
            } finally {
                await daemon.stop();
                cleanup();
            }
        },
    },
];
