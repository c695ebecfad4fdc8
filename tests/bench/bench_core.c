/* bench_core — blindspot's side of `make bench`: the L-BFGS attack through
 * bs_attack_run on the images and targets the peer (tests/bench/peer.py)
 * attacks, the network evaluation on its own, and the machine's single-core
 * sgemm peak to compare it with. Each command prints one JSON object on
 * stdout; tests/bench/report.py turns them into docs/benchmarks.md.
 *
 *   bench_core peak
 *       cblas_sgemm on 1024x1024 matrices, one OpenBLAS thread: GFLOP/s
 *   bench_core predict MODEL IMAGES
 *       the model's label for every image, one a line (for the peer's
 *       prediction check), instead of JSON
 *   bench_core net MODEL BATCH
 *       forward, softmax cross-entropy and backward to the input (what one
 *       attack evaluation does) on BATCH images at once: GFLOP/s (the
 *       fastest of ten blocks of repetitions)
 *   bench_core infer MODEL IMAGES BATCH
 *       the forward pass alone on the first BATCH images at once: images/s
 *       (the fastest of ten blocks), then every image's logits and label
 *       from forward passes of BATCH images (for the check against ONNX
 *       Runtime)
 *   bench_core attack MODEL IMAGES N [THREADS [TARGETS]]
 *       lbfgs with bs_attack_defaults on images 0..N-1; image i
 *       is attacked towards (label+1) mod 10, or with TARGETS > 1 towards
 *       the TARGETS labels label+1 .. label+TARGETS (mod 10) in one call;
 *       THREADS threads share the images, each taking the next one not
 *       yet taken (as daemon workers take jobs from a queue); the
 *       environment variable BENCH_OPTIMIZER=reference|native picks the
 *       L-BFGS-B implementation, BENCH_LANES=L, BENCH_WARM_START=true|false
 *       and BENCH_FACTR=F set those parameters (unset: the attack's
 *       defaults; BENCH_FACTR=1e7 BENCH_WARM_START=false is the search
 *       before warm starts, SciPy's tolerance, what the peer does). The
 *       JSON names the three and gives per image [successes, distortion
 *       of the first target's result or -1, first target]
 *
 * With the environment variable BENCH_THREADS=N (1 to 64, default 1), net
 * and attack lend a team of N threads (core/team.h) to each evaluation's
 * workspace: the time of one evaluation or one attack with N cores, the
 * results the same bits as with one. Their JSON names it team_threads.
 *
 * MODEL is a safetensors file or an ONNX file (core/onnx.h). IMAGES is a
 * folder with mnist's test split, whose labels are the files', or a raw
 * little-endian float32 file of images of the model's input shape (C, H,
 * W order, values in [0,1]), whose labels are the model's own answers.
 *
 * FLOPs are counted from the layer shapes: 2 per multiply-add of the linear
 * and conv2d layers, for the forward pass and again for the gradient to the
 * layer's input (an attack needs no weight gradients); activations, pooling
 * and the loss are not counted. */
#include "core/attack.h"
#include "core/dataset.h"
#include "core/layers.h"
#include "core/model.h"
#include "core/model_file.h"
#include "core/onnx.h"
#include "core/team.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static int usage(void)
{
    fputs("usage: bench_core peak\n"
          "       bench_core predict MODEL IMAGES\n"
          "       bench_core net MODEL BATCH\n"
          "       bench_core infer MODEL IMAGES BATCH\n"
          "       bench_core attack MODEL IMAGES N [THREADS [TARGETS]]\n",
          stderr);
    return 2;
}

/* CPU seconds used by the process so far (all threads): set beside the
 * wall time, it shows whether the benchmark had its cores to itself. */
static double cpu_seconds(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + (double)u.ru_stime.tv_sec
           + u.ru_stime.tv_usec * 1e-6;
}

/* FLOPs of one sample's forward pass through the linear and conv2d layers. */
static double forward_flops(const bs_model *m)
{
    return 2.0 * (double)bs_model_macs(m);
}

/* One attack evaluation: forward, backward to the input (the same sizes). */
static double evaluation_flops(const bs_model *m)
{
    return 2.0 * forward_flops(m);
}

/* BENCH_THREADS: the threads of the team lent to each workspace, 1 for
 * none; 0 when the value is not one of 1..64. */
static int team_threads(void)
{
    const char *s = getenv("BENCH_THREADS");
    if (!s)
        return 1;
    int n = atoi(s);
    if (n < 1 || n > BS_TEAM_MAX) {
        fprintf(stderr, "bench_core: BENCH_THREADS wants 1 to %d\n", BS_TEAM_MAX);
        return 0;
    }
    return n;
}

/* A team of n threads, or NULL for n = 1. *failed is set when it cannot
 * be made. */
static bs_team *team_of(int n, int *failed)
{
    bs_team *t = n > 1 ? bs_team_new(n) : NULL;
    if (n > 1 && !t) {
        fprintf(stderr, "bench_core: cannot start %d threads\n", n);
        *failed = 1;
    }
    return t;
}

static bs_model *load_model(const char *path)
{
    char err[BS_ERR_LEN];
    bs_model *m = bs_onnx_is_path(path) ? bs_onnx_load(path, NULL, err)
                                        : bs_model_load(path, err);
    if (!m)
        fprintf(stderr, "bench_core: %s\n", err);
    return m;
}

/* labels[i] = the model's answer on image i of n, forward passes of up to
 * batch images at once. With logits not NULL, also the (n, classes) logits. */
static int predict_all(const bs_model *m, const float *images, int n, int batch, int *labels,
                       float *logits)
{
    bs_workspace *ws = bs_workspace_new(m, batch);
    if (!ws) {
        fprintf(stderr, "bench_core: out of memory\n");
        return -1;
    }
    int V = m->classes;
    for (int i = 0; i < n; i += batch) {
        int B = n - i < batch ? n - i : batch;
        const float *out = bs_model_forward(m, ws, images + (size_t)i * m->input_size, B);
        for (int b = 0; b < B; b++)
            labels[i + b] = bs_argmax(out + (size_t)b * V, V);
        if (logits)
            memcpy(logits + (size_t)i * V, out, (size_t)B * V * sizeof(float));
    }
    bs_workspace_free(ws);
    return 0;
}

/* A raw float32 file of images of m's input shape, labelled with m's own
 * answers. */
static int load_raw(const char *path, const bs_model *m, bs_dataset *d)
{
    FILE *f = fopen(path, "rb");
    long len = -1;
    if (f && !fseek(f, 0, SEEK_END))
        len = ftell(f);
    size_t sample = m->input_size * sizeof(float);
    if (len <= 0 || (size_t)len % sample || (size_t)len / sample > 1000000) {
        fprintf(stderr, "bench_core: %s: not a whole number of %dx%dx%d float32 images\n",
                path, m->input_shape[0], m->input_shape[1], m->input_shape[2]);
        if (f)
            fclose(f);
        return -1;
    }
    d->n = (int)((size_t)len / sample);
    memcpy(d->shape, m->input_shape, sizeof d->shape);
    d->input_size = m->input_size;
    d->classes = m->classes;
    d->images = malloc((size_t)len);
    d->labels = malloc((size_t)d->n * sizeof(int));
    int ok = d->images && d->labels && !fseek(f, 0, SEEK_SET)
             && fread(d->images, sample, (size_t)d->n, f) == (size_t)d->n;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "bench_core: %s: cannot read it\n", path);
        return -1;
    }
    return predict_all(m, d->images, d->n, 100, d->labels, NULL);
}

/* The images a command works on: see IMAGES above. */
static int load_images(const char *source, const bs_model *m, bs_dataset *d)
{
    size_t len = strlen(source);
    if (len > 4 && !strcmp(source + len - 4, ".f32"))
        return load_raw(source, m, d);
    char err[BS_ERR_LEN];
    if (bs_dataset_load(source, "mnist", "test", d, err)) {
        fprintf(stderr, "bench_core: %s\n", err);
        return -1;
    }
    if (d->input_size != m->input_size) {
        fprintf(stderr, "bench_core: mnist images do not fit the model's input\n");
        return -1;
    }
    return 0;
}

/* The model at model_path and the images of source in *d; NULL when either
 * does not load (message printed). */
static bs_model *load_model_images(const char *model_path, const char *source, bs_dataset *d)
{
    bs_model *m = load_model(model_path);
    if (m && load_images(source, m, d)) {
        bs_dataset_free(d);
        bs_model_free(m);
        return NULL;
    }
    return m;
}

/* Runs step(ctx) in ten blocks of at least 0.1 s and keeps the fastest block
 * (the least disturbed by other work): its repetitions in *reps, its
 * seconds in *secs. */
static void time_best_block(void (*step)(void *), void *ctx, long *reps, double *secs)
{
    double best = 1e30;
    for (int block = 0; block < 10; block++) {
        long r = 0;
        double t0 = bs_now(), t;
        do {
            step(ctx);
            r++;
            t = bs_now() - t0;
        } while (t < 0.1);
        if (t / r < best) {
            best = t / r;
            *reps = r;
            *secs = t;
        }
    }
}

/* ------------------------------------------------------------------------ */

static int cmd_peak(void)
{
    enum { N = 1024, REPS = 5 };
    float *a = malloc((size_t)N * N * sizeof(float));
    float *b = malloc((size_t)N * N * sizeof(float));
    float *c = malloc((size_t)N * N * sizeof(float));
    if (!a || !b || !c) {
        fprintf(stderr, "bench_core: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < (size_t)N * N; i++) {
        a[i] = (float)(i % 17) * 0.01f;
        b[i] = (float)(i % 13) * 0.02f;
    }
    double best = 1e30;
    for (int r = 0; r < REPS + 1; r++) { /* the first is a warm-up */
        double t0 = bs_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b,
                    N, 0.0f, c, N);
        double dt = bs_now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    printf("{\"sgemm_n\": %d, \"seconds\": %.6f, \"gflops\": %.2f, "
           "\"openblas_core\": \"%s\", \"openblas_config\": \"%s\", \"check\": %g}\n",
           N, best, 2.0 * N * N * (double)N / best * 1e-9, openblas_get_corename(),
           openblas_get_config(), (double)c[N + 1]);
    free(a);
    free(b);
    free(c);
    return 0;
}

static int cmd_predict(const char *model_path, const char *source)
{
    bs_dataset d = {0};
    bs_model *m = load_model_images(model_path, source, &d);
    if (!m)
        return 1;
    int *labels = malloc((size_t)d.n * sizeof(int));
    if (!labels || predict_all(m, d.images, d.n, 100, labels, NULL)) {
        fprintf(stderr, "bench_core: out of memory\n");
        return 1;
    }
    for (int i = 0; i < d.n; i++)
        printf("%d\n", labels[i]);
    free(labels);
    bs_dataset_free(&d);
    bs_model_free(m);
    return 0;
}

/* One repetition of cmd_net or cmd_infer: B images x through m. */
typedef struct net_step {
    const bs_model *m;
    bs_workspace *ws;
    const float *x;
    int B;
    int *targets;     /* net: (B) labels of the loss */
    float *dlogits;   /* net: (B, classes) */
    float *dx;        /* net: (B, input_size) */
} net_step;

static void forward_backward_step(void *arg)
{
    net_step *s = arg;
    int V = s->m->classes;
    const float *logits = bs_model_forward(s->m, s->ws, s->x, s->B);
    bs_softmax_xent_forward(s->ws->probs, s->ws->losses, logits, s->targets, s->B, V);
    bs_softmax_xent_backward(s->dlogits, s->ws->probs, s->targets, s->B, V, 1.0f);
    bs_model_backward(s->m, s->ws, s->dlogits, NULL, s->dx, s->B);
}

static void forward_step(void *arg)
{
    net_step *s = arg;
    bs_model_forward(s->m, s->ws, s->x, s->B);
}

/* The network evaluation of an attack step, timed by time_best_block. */
static int cmd_net(const char *model_path, int B)
{
    int threads = team_threads(), failed = 0;
    if (!threads)
        return 2;
    bs_model *m = load_model(model_path);
    if (!m)
        return 1;
    size_t n = m->input_size;
    int V = m->classes;
    bs_workspace *ws = bs_workspace_new(m, B);
    float *x = malloc((size_t)B * n * sizeof(float));
    float *dx = malloc((size_t)B * n * sizeof(float));
    float *dlogits = malloc((size_t)B * V * sizeof(float));
    int *targets = malloc((size_t)B * sizeof(int));
    if (!ws || !x || !dx || !dlogits || !targets) {
        fprintf(stderr, "bench_core: out of memory\n");
        return 1;
    }
    bs_team *team = team_of(threads, &failed);
    if (failed)
        return 1;
    ws->team = team;
    for (size_t i = 0; i < (size_t)B * n; i++)
        x[i] = (float)((i * 2654435761u) % 256) / 255.0f;
    for (int b = 0; b < B; b++)
        targets[b] = b % V;
    long reps = 0;
    double dt = 0.0;
    net_step step = {.m = m, .ws = ws, .x = x, .B = B, .targets = targets,
                     .dlogits = dlogits, .dx = dx};
    time_best_block(forward_backward_step, &step, &reps, &dt);
    double evals = (double)reps * B, flops = evaluation_flops(m);
    printf("{\"model\": \"%s\", \"batch\": %d, \"team_threads\": %d, \"evaluations\": %.0f, "
           "\"seconds\": %.4f, \"us_per_evaluation\": %.3f, \"flops_per_evaluation\": %.0f, "
           "\"gflops\": %.3f}\n",
           model_path, B, threads, evals, dt, dt / evals * 1e6, flops,
           evals * flops / dt * 1e-9);
    bs_team_free(team);
    free(x);
    free(dx);
    free(dlogits);
    free(targets);
    bs_workspace_free(ws);
    bs_model_free(m);
    return 0;
}

/* Inference beside ONNX Runtime (tests/bench/ort_bench.mjs prints the same
 * fields): the forward pass on the first B images, timed by
 * time_best_block, then the logits and labels of all images. */
static int cmd_infer(const char *model_path, const char *source, int B)
{
    bs_dataset d = {0};
    bs_model *m = load_model_images(model_path, source, &d);
    if (!m)
        return 1;
    if (d.n < B) {
        fprintf(stderr, "bench_core: %s has %d images, fewer than the batch %d\n", source, d.n,
                B);
        bs_dataset_free(&d);
        bs_model_free(m);
        return 2;
    }
    int V = m->classes;
    bs_workspace *ws = bs_workspace_new(m, B);
    int *labels = malloc((size_t)d.n * sizeof(int));
    float *logits = malloc((size_t)d.n * V * sizeof(float));
    if (!ws || !labels || !logits || predict_all(m, d.images, d.n, B, labels, logits)) {
        fprintf(stderr, "bench_core: out of memory\n");
        return 1;
    }
    long reps = 0;
    double dt = 0.0;
    net_step step = {.m = m, .ws = ws, .x = d.images, .B = B};
    time_best_block(forward_step, &step, &reps, &dt);
    double images = (double)reps * B;
    printf("{\"model\": \"%s\", \"runtime\": \"blindspot\", \"batch\": %d, "
           "\"runs\": %ld, \"seconds\": %.4f, \"runs_per_s\": %.2f, \"images_per_s\": %.2f, "
           "\"us_per_image\": %.3f, \"flops_per_image\": %.0f, \"gflops\": %.3f, "
           "\"images\": %d, \"labels\": [",
           model_path, B, reps, dt, reps / dt, images / dt, dt / images * 1e6, forward_flops(m),
           images * forward_flops(m) / dt * 1e-9, d.n);
    for (int i = 0; i < d.n; i++)
        printf("%s%d", i ? ", " : "", labels[i]);
    printf("], \"logits\": [");
    for (size_t i = 0; i < (size_t)d.n * V; i++)
        printf("%s%.9g", i ? ", " : "", (double)logits[i]);
    printf("]}\n");
    free(labels);
    free(logits);
    bs_workspace_free(ws);
    bs_dataset_free(&d);
    bs_model_free(m);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* attacks */

/* What one thread attacks and what it found. */
typedef struct worker {
    const bs_model *m;
    const bs_dataset *d;
    atomic_int *next;       /* the next image to take, shared by all threads */
    int count;              /* images 0..count-1 */
    int targets;            /* labels attacked together per image */
    int team_threads;       /* of the team lent to its scratch (1: none) */
    long attacks, successes, evaluations, iterations;
    double distortion_sum;  /* over the successes */
    int *success;           /* per image (count): successes among its targets */
    double *distortion;     /* per image: distortion of its first target's result */
    int failed;             /* bs_attack_run refused (message printed) */
} worker;

/* lbfgs's defaults with the BENCH_* variables of the attack command. */
static bs_attack_params attack_params(void)
{
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    const char *opt = getenv("BENCH_OPTIMIZER");
    if (opt)
        p.optimizer = !strcmp(opt, "native");
    const char *lanes = getenv("BENCH_LANES"), *warm = getenv("BENCH_WARM_START");
    if (lanes)
        p.lanes = atoi(lanes);
    if (warm)
        p.warm_start = !strcmp(warm, "true");
    if (getenv("BENCH_FACTR"))
        p.factr = atof(getenv("BENCH_FACTR"));
    return p;
}

static void *attack_images(void *arg)
{
    worker *w = arg;
    bs_attack_params p = attack_params();
    bs_attack_result res[10];
    int targets[10];
    char err[BS_ERR_LEN];
    /* one scratch per thread, as the daemon's workers have */
    bs_scratch *scratch = bs_scratch_new();
    if (!scratch) {
        fprintf(stderr, "bench_core: out of memory\n");
        w->failed = 1;
        return NULL;
    }
    bs_team *team = team_of(w->team_threads, &w->failed);
    if (w->failed) {
        bs_scratch_free(scratch);
        return NULL;
    }
    bs_scratch_team(scratch, team);
    for (int i; (i = atomic_fetch_add(w->next, 1)) < w->count;) {
        const float *x = w->d->images + (size_t)i * w->d->input_size;
        for (int j = 0; j < w->targets; j++)
            targets[j] = (w->d->labels[i] + 1 + j) % w->m->classes;
        if (bs_attack_run(w->m, x, targets, w->targets, &p, NULL, scratch, res, err)) {
            fprintf(stderr, "bench_core: image %d: %s\n", i, err);
            w->failed = 1;
            break;
        }
        w->success[i] = 0;
        w->distortion[i] = res[0].success ? res[0].norms.distortion : -1.0;
        for (int j = 0; j < w->targets; j++) {
            w->attacks++;
            w->evaluations += res[j].evaluations;
            w->iterations += res[j].iterations;
            if (res[j].success) {
                w->successes++;
                w->success[i]++;
                w->distortion_sum += res[j].norms.distortion;
            }
            bs_attack_result_free(&res[j]);
        }
    }
    bs_scratch_free(scratch);
    bs_team_free(team);
    return NULL;
}

static int cmd_attack(const char *model_path, const char *source, int n, int threads,
                      int k)
{
    int team = team_threads();
    if (!team)
        return 2;
    bs_dataset d = {0};
    bs_model *m = load_model_images(model_path, source, &d);
    if (!m)
        return 1;
    if (n < 1 || n > d.n || threads < 1 || threads > 64 || k < 1 || k >= m->classes) {
        fprintf(stderr, "bench_core: want 1 <= N <= %d, 1 <= THREADS <= 64, "
                        "1 <= TARGETS < %d\n", d.n, m->classes);
        return 2;
    }
    worker w[64];
    pthread_t tid[64];
    int *success = calloc((size_t)n, sizeof(int));
    double *distortion = calloc((size_t)n, sizeof(double));
    if (!success || !distortion) {
        fprintf(stderr, "bench_core: out of memory\n");
        return 1;
    }
    atomic_int next = 0;
    double t0 = bs_now(), cpu0 = cpu_seconds();
    for (int t = 0; t < threads; t++) {
        w[t] = (worker){.m = m, .d = &d, .next = &next, .count = n,
                        .targets = k, .team_threads = team, .success = success,
                        .distortion = distortion};
        if (pthread_create(&tid[t], NULL, attack_images, &w[t])) {
            fprintf(stderr, "bench_core: cannot start thread %d\n", t);
            return 1;
        }
    }
    worker all = {0};
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        all.failed |= w[t].failed;
        all.attacks += w[t].attacks;
        all.successes += w[t].successes;
        all.evaluations += w[t].evaluations;
        all.iterations += w[t].iterations;
        all.distortion_sum += w[t].distortion_sum;
    }
    double secs = bs_now() - t0, cpu = cpu_seconds() - cpu0;
    if (all.failed)
        return 1;
    double flops = evaluation_flops(m);
    bs_attack_params p = attack_params();
    printf("{\"model\": \"%s\", \"n\": %d, \"threads\": %d, \"team_threads\": %d, "
           "\"targets\": %d, \"lanes\": %d, \"warm_start\": %s, \"factr\": %g, "
           "\"attacks\": %ld, \"seconds\": %.4f, \"cpu_seconds\": %.4f, \"attacks_per_s\": %.4f, "
           "\"calls_per_s\": %.4f, \"evaluations_per_s\": %.1f, "
           "\"evaluations_per_attack\": %.2f, \"iterations_per_attack\": %.2f, "
           "\"success\": %.4f, \"distortion\": %.6f, \"flops_per_evaluation\": %.0f, "
           "\"effective_gflops\": %.4f, \"per_image\": [",
           model_path, n, threads, team, k, p.lanes, p.warm_start ? "true" : "false", p.factr,
           all.attacks, secs, cpu, all.attacks / secs, n / secs,
           all.evaluations / secs, (double)all.evaluations / all.attacks,
           (double)all.iterations / all.attacks, (double)all.successes / all.attacks,
           all.successes ? all.distortion_sum / all.successes : 0.0, flops,
           all.evaluations * flops / secs * 1e-9);
    for (int i = 0; i < n; i++)
        printf("%s[%d, %.6f, %d]", i ? ", " : "", success[i], distortion[i],
               (d.labels[i] + 1) % m->classes);
    printf("]}\n");
    free(success);
    free(distortion);
    bs_dataset_free(&d);
    bs_model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    /* every worker single-threaded, as in the daemon */
    openblas_set_num_threads(1);
    if (argc == 2 && !strcmp(argv[1], "peak"))
        return cmd_peak();
    if (argc == 4 && !strcmp(argv[1], "predict"))
        return cmd_predict(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "net")) {
        int B = atoi(argv[3]);
        return B >= 1 && B <= 4096 ? cmd_net(argv[2], B) : usage();
    }
    if (argc == 5 && !strcmp(argv[1], "infer")) {
        int B = atoi(argv[4]);
        return B >= 1 && B <= 4096 ? cmd_infer(argv[2], argv[3], B) : usage();
    }
    if (argc >= 5 && argc <= 7 && !strcmp(argv[1], "attack"))
        return cmd_attack(argv[2], argv[3], atoi(argv[4]), argc > 5 ? atoi(argv[5]) : 1,
                          argc > 6 ? atoi(argv[6]) : 1);
    return usage();
}
