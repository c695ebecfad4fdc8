// api.js — the studio's calls to blindspotd: JSON requests whose errors
// become readable Error objects, and jobs followed to their end through
// server-sent events. Every request goes to the page's own origin.
//
// A daemon with --auth-tokens answers 401 without a token: the page then
// asks for one (a field at the top of the page), keeps it in the tab's
// sessionStorage and sends it as Authorization: Bearer; the request that
// was refused is sent again with it. EventSource cannot send headers, so
// the job's event stream gets the token as ?access_token=.

// An Error with the daemon's error code and HTTP status, and a message a
// person can read (the daemon's own message, or a plain description when
// the answer is not the daemon's JSON).
export class ApiError extends Error {
    constructor(status, code, message, body) {
        super(message);
        this.status = status;
        this.code = code;
        this.body = body;
    }
}

const plainWords = {
    0: 'The daemon could not be reached. Is blindspotd still running?',
    413: 'The file is larger than the daemon accepts (--max-body).',
    503: 'The daemon is busy: every place in its queue is taken. Try again in a moment.',
    504: 'The attack ran out of time.',
};

// Turns a failed answer into an ApiError (the body is read as JSON when it is).
async function failure(resp) {
    let body = null;
    try {
        body = await resp.json();
    } catch (e) {
        body = null;
    }
    const err = body && body.error;
    const code = err && typeof err === 'object' ? err.code : (body && body.code) || 'http_' + resp.status;
    let message = err && typeof err === 'object' ? err.message : typeof err === 'string' ? err : null;
    if (!message)
        message = plainWords[resp.status] || `The daemon answered ${resp.status} ${resp.statusText}.`;
    return new ApiError(resp.status, code, message, body);
}

const tokenKey = 'blindspot-token';

// The access token the page was given ('' for none).
export function accessToken() {
    try {
        return sessionStorage.getItem(tokenKey) || '';
    } catch (e) {
        return '';
    }
}

let asking = null;
let memoryToken = ''; // the token entered, when sessionStorage cannot keep it

// Shows the token field (once, however many requests were refused) and
// answers when a token was entered and kept. refused: the page's token
// was sent and refused.
function askToken(refused) {
    if (asking)
        return asking;
    asking = new Promise((resolve) => {
        const form = document.createElement('form');
        form.className = 'token-prompt';
        form.setAttribute('aria-label', 'Sign in to the daemon');
        const say = document.createElement('p');
        say.textContent = refused
            ? 'The daemon refused this access token. Enter another one.'
            : 'This daemon needs an access token.';
        const label = document.createElement('label');
        label.textContent = 'Access token ';
        const input = document.createElement('input');
        input.type = 'password';
        input.name = 'token';
        input.autocomplete = 'off';
        input.required = true;
        label.append(input);
        const button = document.createElement('button');
        button.type = 'submit';
        button.textContent = 'Use this token';
        form.append(say, label, button);
        form.addEventListener('submit', (ev) => {
            ev.preventDefault();
            const value = input.value.trim();
            if (!value)
                return;
            try {
                sessionStorage.setItem(tokenKey, value);
            } catch (e) {
                // no storage (a private window's limits): the token lasts while the page does
            }
            memoryToken = value;
            form.remove();
            asking = null;
            resolve();
        });
        document.body.prepend(form);
        input.focus();
    });
    return asking;
}

// The token to send: the kept one, or the one entered when nothing keeps it.
const currentToken = () => accessToken() || memoryToken;

// Sends a request to the daemon and answers the parsed JSON. body: an object
// (sent as JSON), a FormData, a Blob (sent as it is, with its type), or
// undefined. Throws an ApiError for any answer but 2xx, and for no answer.
export async function request(method, path, body, options = {}) {
    const init = {method, headers: {Accept: 'application/json'}, signal: options.signal};
    if (body instanceof FormData || body instanceof Blob) {
        init.body = body;
    } else if (body !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(body);
    }
    let resp;
    for (;;) {
        const token = currentToken();
        if (token)
            init.headers.Authorization = `Bearer ${token}`;
        try {
            resp = await fetch(path, init);
        } catch (e) {
            if (e.name === 'AbortError')
                throw e;
            throw new ApiError(0, 'unreachable', plainWords[0], null);
        }
        if (resp.status !== 401)
            break;
        await askToken(token !== '');
    }
    if (!resp.ok)
        throw await failure(resp);
    const location = resp.headers.get('Location');
    const doc = resp.status === 204 ? {} : await resp.json();
    if (location && doc && typeof doc === 'object' && !doc.location)
        Object.defineProperty(doc, 'location', {value: location, enumerable: false});
    return doc;
}

export const getJSON = (path, options) => request('GET', path, undefined, options);
export const postJSON = (path, body, options) => request('POST', path, body, options);

// Starts work as a job: POSTs body to path (with ?async=true for attacks,
// whose synchronous form is the default) and answers the job's id.
export async function startJob(path, body) {
    const doc = await request('POST', path, body);
    if (!doc.id)
        throw new ApiError(500, 'internal_error', 'The daemon did not answer with a job.', doc);
    return doc.id;
}

// Follows job id through GET /v1/jobs/{id}/events until it ends. onProgress
// gets each progress event's {state, done, total}. Answers the final job
// document (state done, failed or cancelled). A dropped stream reconnects
// by itself (EventSource); the job is read with GET if the stream fails for
// good.
export function followJob(id, onProgress) {
    return new Promise((resolve, reject) => {
        const token = currentToken();
        const query = token ? `?access_token=${encodeURIComponent(token)}` : '';
        const source = new EventSource(`/v1/jobs/${encodeURIComponent(id)}/events${query}`);
        const finish = (ev) => {
            source.close();
            try {
                resolve(JSON.parse(ev.data));
            } catch (e) {
                reject(new ApiError(500, 'internal_error', 'The job\'s last event could not be read.', null));
            }
        };
        source.addEventListener('progress', (ev) => {
            if (onProgress)
                onProgress(JSON.parse(ev.data));
        });
        for (const name of ['done', 'failed', 'cancelled'])
            source.addEventListener(name, finish);
        source.onerror = () => {
            if (source.readyState !== EventSource.CLOSED)
                return; // reconnecting with Last-Event-ID
            getJSON(`/v1/jobs/${encodeURIComponent(id)}`).then((doc) => {
                if (['done', 'failed', 'cancelled'].includes(doc.state))
                    resolve(doc);
                else
                    followJob(id, onProgress).then(resolve, reject);
            }, reject);
        };
    });
}

// Cancels job id (DELETE /v1/jobs/{id}); answers the job document.
export const cancelJob = (id) => request('DELETE', `/v1/jobs/${encodeURIComponent(id)}`);

// The message to show for an error thrown by the functions above.
export function describe(err) {
    if (err instanceof ApiError)
        return err.message;
    return `Something went wrong in the page: ${err.message || err}`;
}
