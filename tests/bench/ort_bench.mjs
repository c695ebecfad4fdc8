// ort_bench.mjs — ONNX Runtime's side of `make bench`'s inference figures:
// the forward pass of an ONNX model in onnxruntime-node (CPU, one intra-op
// and one inter-op thread, as a blindspot worker has one), timed as
// `bench_core infer` times blindspot's, on the same images.
//
//   node tests/bench/ort_bench.mjs MODEL IMAGES.f32 C H W BATCH
//
// IMAGES.f32 holds N >= BATCH images of C x H x W little-endian float32 in
// C order. InferenceSession.run on the first BATCH images as one N,C,H,W
// tensor in ten blocks of at least 0.1 s (the fastest block counts, the
// least disturbed by other work), then every image's logits and label from
// runs of BATCH images. Prints one JSON object with bench_core infer's
// fields. Exit status 2 for a wrong command line, 1 when ONNX Runtime fails.
//
// onnxruntime-node is loaded from build/npm-tools (make ort), by
// tests/oracle/ort_common.mjs.
import {cpuSession, failWith, loadOrt, parseShape, readImages} from '../oracle/ort_common.mjs';

const usage = 'usage: node tests/bench/ort_bench.mjs MODEL IMAGES.f32 C H W BATCH';
const fail = failWith('ort_bench');

const args = process.argv.slice(2);
if (args.length !== 6)
    fail(2, usage);
const [modelPath, imagesPath] = args;
const [c, h, w] = parseShape(args.slice(2, 5), usage, fail);
const batch = Number(args[5]);
if (!Number.isInteger(batch) || batch < 1)
    fail(2, `BATCH must be a positive integer\n${usage}`);
const sample = c * h * w;
const {data: images, n} = readImages(imagesPath, [c, h, w], fail);
if (n < batch)
    fail(2, `${imagesPath} has ${n} images, fewer than the batch ${batch}`);
const {ort, version} = loadOrt(fail);

function tensor(first, count) {
    return new ort.Tensor('float32', images.subarray(first * sample, (first + count) * sample),
        [count, c, h, w]);
}

try {
    const session = await cpuSession(ort, modelPath);
    const inName = session.inputNames[0];
    const outName = session.outputNames[0];

    const feeds = {[inName]: tensor(0, batch)};
    let best = Infinity, runs = 0, seconds = 0;
    for (let block = 0; block < 10; block++) {
        let r = 0, t;
        const t0 = process.hrtime.bigint();
        do {
            await session.run(feeds, [outName]);
            r++;
            t = Number(process.hrtime.bigint() - t0) * 1e-9;
        } while (t < 0.1);
        if (t / r < best) {
            best = t / r;
            runs = r;
            seconds = t;
        }
    }

    const labels = [], logits = [];
    for (let i = 0; i < n; i += batch) {
        const count = Math.min(batch, n - i);
        const out = (await session.run({[inName]: tensor(i, count)}, [outName]))[outName];
        const classes = out.data.length / count;
        for (let b = 0; b < count; b++) {
            const row = Array.from(out.data.subarray(b * classes, (b + 1) * classes));
            labels.push(row.indexOf(Math.max(...row)));
            logits.push(...row);
        }
    }
    const done = runs * batch;
    process.stdout.write(JSON.stringify({
        model: modelPath, runtime: 'onnxruntime',
        version,
        batch, runs, seconds, runs_per_s: runs / seconds, images_per_s: done / seconds,
        us_per_image: seconds / done * 1e6, images: n, labels, logits,
    }) + '\n');
    await session.release();
} catch (e) {
    fail(1, `${modelPath}: ${e.message}`);
}
