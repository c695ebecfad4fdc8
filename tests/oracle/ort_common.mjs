// ort_common.mjs — what the scripts running ONNX Runtime share
// (tests/oracle/ort_run.mjs, tests/bench/ort_bench.mjs): failing with an exit
// status, reading raw float32 images, and onnxruntime-node from
// build/npm-tools (make ort) in a CPU session of one thread.
import {readFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const tools = createRequire(join(root, 'build/npm-tools/package.json'));

// A function (status, message) that prints "who: message" on stderr and
// exits with status.
export function failWith(who) {
    return (status, message) => {
        process.stderr.write(`${who}: ${message}\n`);
        process.exit(status);
    };
}

// The C H W of a command line's three strings, or fail(2, ...).
export function parseShape(strings, usage, fail) {
    const chw = strings.map(Number);
    if (!chw.every((d) => Number.isInteger(d) && d > 0))
        fail(2, `C H W must be positive integers, not ${strings.join(' ')}\n${usage}`);
    return chw;
}

// {data, n}: the N images of C x H x W little-endian float32 (C order) in
// the file at path, copied into a Float32Array (aligned, host order).
export function readImages(path, chw, fail) {
    const bytes = readFileSync(path);
    const sample = chw[0] * chw[1] * chw[2] * 4;
    if (bytes.length === 0 || bytes.length % sample !== 0)
        fail(2, `${path}: ${bytes.length} bytes is not a whole number of ${chw.join('x')} float32 images`);
    const data = new Float32Array(bytes.length / 4);
    for (let i = 0; i < data.length; i++)
        data[i] = bytes.readFloatLE(i * 4);
    return {data, n: bytes.length / sample};
}

// onnxruntime-node and its version, or fail(1, ...).
export function loadOrt(fail) {
    try {
        return {ort: tools('onnxruntime-node'), version: tools('onnxruntime-node/package.json').version};
    } catch (e) {
        fail(1, `onnxruntime-node is not in build/npm-tools (make ort): ${e.message}`);
    }
}

// An InferenceSession on the CPU with one intra-op and one inter-op thread.
export function cpuSession(ort, modelPath) {
    return ort.InferenceSession.create(modelPath, {
        executionProviders: ['cpu'],
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
    });
}
