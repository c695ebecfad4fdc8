// ort_run.mjs — ONNX Runtime (npm onnxruntime-node, CPU) on raw float32
// inputs: the reference the importer's outputs are compared with.
//
//   node tests/oracle/ort_run.mjs MODEL IN.f32 C H W OUT
//
// IN.f32 holds N images of C x H x W little-endian float32 in C order; N is
// the file's size over 4*C*H*W. The model's first graph input gets the
// N,C,H,W tensor; its first output is written to OUT: raw little-endian
// float32 when OUT ends in .f32, else JSON {"name", "dims", "data"} (OUT "-"
// is JSON on stdout). One line on stderr says what ran. Exit status 2 for a
// wrong command line, 1 when ONNX Runtime fails.
//
// onnxruntime-node is loaded from build/npm-tools (make ort).
import {readFileSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const usage = 'usage: node tests/oracle/ort_run.mjs MODEL IN.f32 C H W OUT';

function fail(status, message) {
    process.stderr.write(`ort_run: ${message}\n`);
    process.exit(status);
}

const args = process.argv.slice(2);
if (args.length !== 6)
    fail(2, usage);
const [modelPath, inPath, ...rest] = args;
const outPath = rest[3];
const chw = rest.slice(0, 3).map(Number);
if (!chw.every((d) => Number.isInteger(d) && d > 0))
    fail(2, `C H W must be positive integers, not ${rest.slice(0, 3).join(' ')}\n${usage}`);

const bytes = readFileSync(inPath);
const sample = chw[0] * chw[1] * chw[2] * 4;
if (bytes.length === 0 || bytes.length % sample !== 0)
    fail(2, `${inPath}: ${bytes.length} bytes is not a whole number of ${chw.join('x')} float32 images`);
const n = bytes.length / sample;
// a copy, aligned for Float32Array and little-endian as the file is
const data = new Float32Array(n * sample / 4);
for (let i = 0; i < data.length; i++)
    data[i] = bytes.readFloatLE(i * 4);

let ort;
try {
    ort = createRequire(join(root, 'build/npm-tools/package.json'))('onnxruntime-node');
} catch (e) {
    fail(1, `onnxruntime-node is not in build/npm-tools (make ort): ${e.message}`);
}

try {
    const session = await ort.InferenceSession.create(modelPath, {
        executionProviders: ['cpu'],
        intraOpNumThreads: 1,
        interOpNumThreads: 1,
    });
    const inName = session.inputNames[0];
    const outName = session.outputNames[0];
    const feeds = {[inName]: new ort.Tensor('float32', data, [n, ...chw])};
    const result = await session.run(feeds, [outName]);
    const out = result[outName];
    if (out.type !== 'float32')
        fail(1, `output ${outName} is ${out.type}, not float32`);
    if (outPath.endsWith('.f32')) {
        const buf = Buffer.alloc(out.data.length * 4);
        out.data.forEach((v, i) => buf.writeFloatLE(v, i * 4));
        writeFileSync(outPath, buf);
    } else {
        const json = JSON.stringify({name: outName, dims: out.dims, data: Array.from(out.data)}) + '\n';
        if (outPath === '-')
            process.stdout.write(json);
        else
            writeFileSync(outPath, json);
    }
    process.stderr.write(`ort_run: ${modelPath} ${inName} [${[n, ...chw]}] -> ${outName} [${out.dims}]\n`);
    await session.release();
} catch (e) {
    fail(1, `${modelPath}: ${e.message}`);
}
