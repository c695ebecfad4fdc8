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
// onnxruntime-node is loaded from build/npm-tools (make ort), by
// tests/oracle/ort_common.mjs.
import {writeFileSync} from 'node:fs';

import {cpuSession, failWith, loadOrt, parseShape, readImages} from './ort_common.mjs';

const usage = 'usage: node tests/oracle/ort_run.mjs MODEL IN.f32 C H W OUT';
const fail = failWith('ort_run');

const args = process.argv.slice(2);
if (args.length !== 6)
    fail(2, usage);
const [modelPath, inPath, ...rest] = args;
const outPath = rest[3];
const chw = parseShape(rest.slice(0, 3), usage, fail);
const {data, n} = readImages(inPath, chw, fail);
const {ort} = loadOrt(fail);

try {
    const session = await cpuSession(ort, modelPath);
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
