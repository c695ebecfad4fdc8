/* cli_reproduce — `blindspot reproduce`: the paper's MNIST experiments in
 * one command, written as a Markdown report with PNG figures, every number
 * from this run and the paper's beside ours where it has one. */
#include "api/cli.h"

#include "api/image.h"
#include "core/evaluate.h"
#include "core/model_file.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef BS_VERSION
#define BS_VERSION "unknown"
#endif

static const char *reproduce_usage =
    "usage: blindspot reproduce [--dataset mnist] [--n N] [--seed S] [--out DIR]\n"
    "\n"
    "Regenerates the paper's MNIST experiments with the zoo in --models and\n"
    "writes DIR/reproduction.md with its figures in DIR/figures/:\n"
    "  Table 1  train and test error, attack success and average minimum\n"
    "           distortion of the L-BFGS attack over the first N test images\n"
    "  Table 2  error rate of every model on every model's adversarial\n"
    "           examples, and on Gaussian noise of stddev 0.1 and 0.3\n"
    "  Table 3  the same across the disjoint training halves P1 and P2, also\n"
    "           with each perturbation magnified to distortion 0.1\n"
    "  a figure of originals, adversarial images and magnified perturbations\n"
    "Targets are drawn uniformly among the wrong labels from the seed; the same\n"
    "seed gives the same tables.\n"
    "\n"
    "  --dataset NAME   default mnist (its test split)\n"
    "  --n N            test images attacked per model (default 100)\n"
    "  --seed S         targets and noise (default 1)\n"
    "  --out DIR        where the report goes (default docs)\n"
    "  --models DIR     the zoo (default models)\n"
    "  --threads T      attacks in parallel (default 2)\n"
    "  --data DIR       data folder (default: $BLINDSPOT_DATA or data)\n";

/* The zoo as the paper names it; the order of the report's rows. */
typedef struct zoo_entry {
    const char *file, *paper;
    const char *paper_figures; /* Table 1: train / test / distortion */
    int table1, table3;
} zoo_entry;

static const zoo_entry zoo[] = {
    {"fc10-1e-4", "FC10(1e-4)", "6.7% / 7.4% / 0.062", 1, 0},
    {"fc10-1e-2", "FC10(1e-2)", "10% / 9.4% / 0.1", 1, 0},
    {"fc10-1", "FC10(1)", "21.2% / 20% / 0.14", 1, 0},
    {"fc100-100-10", "FC100-100-10", "0% / 1.64% / 0.058", 1, 0},
    {"fc200-200-10", "FC200-200-10", "0% / 1.54% / 0.065", 1, 0},
    {"ae400-10", "AE400-10", "0.57% / 1.9% / 0.086", 1, 0},
    {"cnn", "CNN (ours)", NULL, 1, 0},
    {"fc100-100-10-p1", "FC100-100-10' (P')", NULL, 0, 1},
    {"fc123-456-10-p1", "FC123-456-10' (P')", NULL, 0, 1},
    {"fc100-100-10-p2", "FC100-100-10'' (P'')", NULL, 0, 1},
};
#define ZOO_N ((int)(sizeof zoo / sizeof zoo[0]))

typedef struct progress_ctx {
    time_t start;
    int tty;
} progress_ctx;

static void show_progress(void *vctx, int done, int total)
{
    progress_ctx *p = vctx;
    double el = difftime(time(NULL), p->start);
    double eta = done ? el * (total - done) / done : 0.0;
    if (p->tty)
        fprintf(stderr, "\rattacks %d/%d, ETA %d:%02d ", done, total, (int)eta / 60,
                (int)eta % 60);
    else if (done % 50 == 0 || done == total)
        fprintf(stderr, "attacks %d/%d, elapsed %.0fs, ETA %.0fs\n", done, total, el, eta);
    if (p->tty && done == total)
        fputc('\n', stderr);
}

static double meta_error(const bs_model *m, const char *key)
{
    const char *v = bs_model_get_meta(m, key);
    return v ? atof(v) : -1.0;
}

static void pct(FILE *f, double v)
{
    if (v < 0)
        fprintf(f, " — |");
    else
        fprintf(f, " %.1f%% |", 100.0 * v);
}

/* A grid of gray 28x28-style tiles: rows x cols tiles of (h,w), 1-pixel
 * white gaps. tile(r,c) gives n floats in [0,1]. */
typedef const float *(*tile_fn)(void *ctx, int r, int c, float *buf);

static int write_grid(const char *path, int rows, int cols, int h, int w, tile_fn tile,
                      void *ctx, char *err)
{
    int W = cols * (w + 1) + 1, H = rows * (h + 1) + 1;
    uint8_t *px = malloc((size_t)W * H), *png = NULL;
    float *buf = malloc((size_t)h * w * sizeof(float));
    size_t len = 0;
    int rc = -1;
    if (!px || !buf) {
        snprintf(err, BS_ERR_LEN, "out of memory");
        goto out;
    }
    memset(px, 255, (size_t)W * H);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const float *t = tile(ctx, r, c, buf);
            for (int y = 0; y < h; y++)
                bs_image_to_bytes(t + (size_t)y * w, (size_t)w,
                                  px + (size_t)(1 + r * (h + 1) + y) * W + 1 + c * (w + 1));
        }
    if (bs_image_encode(px, W, H, 1, BS_IMAGE_PNG, 0, &png, &len, err))
        goto out;
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(png, 1, len, f) != len || fclose(f) != 0) {
        snprintf(err, BS_ERR_LEN, "cannot write %s", path);
        goto out;
    }
    rc = 0;
out:
    free(px);
    free(buf);
    free(png);
    return rc;
}

/* The figure: for each of a few models a row of (original, adversarial,
 * perturbation magnified 10x around grey) triples. */
typedef struct figure_ctx {
    const bs_dataset *d;
    const float *adv;       /* n_models*n*input */
    const int *model_index; /* figure row -> model */
    int n, first;
    size_t in;
} figure_ctx;

static const float *figure_tile(void *vctx, int r, int c, float *buf)
{
    figure_ctx *f = vctx;
    int k = c / 3, kind = c % 3, i = f->model_index[r];
    const float *x = f->d->images + (size_t)(f->first + k) * f->in;
    const float *a = f->adv + ((size_t)i * f->n + k) * f->in;
    if (kind == 0)
        return x;
    if (kind == 1)
        return a;
    for (size_t q = 0; q < f->in; q++)
        buf[q] = 0.5f + 5.0f * (a[q] - x[q]);
    return buf;
}

static char *command_line(int argc, char **argv)
{
    static char s[1024];
    snprintf(s, sizeof s, "blindspot");
    for (int i = 0; i < argc; i++) {
        strncat(s, " ", sizeof s - strlen(s) - 1);
        strncat(s, argv[i], sizeof s - strlen(s) - 1);
    }
    return s;
}

int cli_reproduce(int argc, char **argv)
{
    enum { O_DATASET = 1000, O_N, O_SEED, O_OUT, O_MODELS, O_THREADS, O_DATA };
    static const struct option opts[] = {
        {"dataset", required_argument, 0, O_DATASET}, {"n", required_argument, 0, O_N},
        {"seed", required_argument, 0, O_SEED}, {"out", required_argument, 0, O_OUT},
        {"models", required_argument, 0, O_MODELS}, {"threads", required_argument, 0, O_THREADS},
        {"data", required_argument, 0, O_DATA}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *dataset = "mnist", *outdir = "docs", *models_dir = "models", *data_flag = NULL;
    long n = 100, seed = 1, threads = 2;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_DATASET: dataset = optarg; break;
        case O_N:
            if (cli_parse_long("--n", optarg, 1, 100000, &n)) return 2;
            break;
        case O_SEED:
            if (cli_parse_long("--seed", optarg, 0, 0x7fffffffL, &seed)) return 2;
            break;
        case O_OUT: outdir = optarg; break;
        case O_MODELS: models_dir = optarg; break;
        case O_THREADS:
            if (cli_parse_long("--threads", optarg, 1, 64, &threads)) return 2;
            break;
        case O_DATA: data_flag = optarg; break;
        case 'h': fputs(reproduce_usage, stdout); return 0;
        default: fputs(reproduce_usage, stderr); return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "blindspot reproduce: unexpected argument\n\n%s", reproduce_usage);
        return 2;
    }
    char err[BS_ERR_LEN], path[1024];
    const bs_model *models[ZOO_N] = {0};
    bs_dataset d = {0};
    float *adv = NULL;
    int *ok = NULL, rc = 1;
    FILE *f = NULL;
    for (int i = 0; i < ZOO_N; i++) {
        snprintf(path, sizeof path, "%s/%s.safetensors", models_dir, zoo[i].file);
        if (!(models[i] = bs_model_load(path, err))) {
            cli_fail("reproduce", "%s (make models trains the zoo)", err);
            goto out;
        }
    }
    if (bs_dataset_load(cli_data_dir(data_flag), dataset, "test", &d, err)) {
        cli_fail("reproduce", "%s", err);
        goto out;
    }
    if (n > d.n)
        n = d.n;
    snprintf(path, sizeof path, "%s/figures", outdir);
    if ((mkdir(outdir, 0755) && errno != EEXIST) || (mkdir(path, 0755) && errno != EEXIST)) {
        cli_fail("reproduce", "cannot create %s", path);
        goto out;
    }

    bs_eval_config cfg = bs_eval_defaults();
    cfg.n = (int)n;
    cfg.seed = (uint64_t)seed;
    cfg.threads = (int)threads;
    adv = malloc((size_t)ZOO_N * n * d.input_size * sizeof(float));
    ok = malloc((size_t)ZOO_N * n * sizeof(int));
    bs_eval_result *res = malloc(sizeof *res);
    if (!adv || !ok || !res) {
        free(res);
        cli_fail("reproduce", "out of memory");
        goto out;
    }
    progress_ctx pc = {.start = time(NULL), .tty = isatty(2)};
    fprintf(stderr, "reproduce: attacking %ld test images with each of %d models (%ld threads)\n",
            n, ZOO_N, threads);
    if (bs_evaluate_transfer(models, ZOO_N, &d, &cfg, NULL, show_progress, &pc, res, adv, ok,
                             err)) {
        free(res);
        cli_fail("reproduce", "%s", err);
        goto out;
    }
    /* Table 2's diagonal is 100% by construction: check it. */
    for (int i = 0; i < ZOO_N; i++)
        if (res->successes[i] && res->error[i][i] != 1.0) {
            cli_fail("reproduce", "%s misclassifies only %.1f%% of its own adversarial "
                     "examples; they must all fool it", zoo[i].file, 100.0 * res->error[i][i]);
            free(res);
            goto out;
        }

    snprintf(path, sizeof path, "%s/reproduction.md", outdir);
    f = fopen(path, "w");
    if (!f) {
        free(res);
        cli_fail("reproduce", "cannot write %s", path);
        goto out;
    }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d", gmtime(&now));
    fprintf(f, "# Reproducing Szegedy et al. (2013) on MNIST\n\n"
               "Made by `%s` (seed %ld) on %s, build %s. Every number below comes from\n"
               "that run; the paper's are beside ours where the paper has them. Models:\n"
               "the zoo of `make models` (trained on mnist's 8,000-image training split,\n"
               "or its halves P1 = P' and P2 = P''); images: the first %ld of the %d-image\n"
               "test split; attack: `lbfgs` with its defaults (the box-constrained L-BFGS,\n"
               "8 runs of the c search), each image towards a wrong label drawn from the\n"
               "seed; success and distortion are judged on the 8-bit images.\n\n",
            command_line(argc, argv), seed, date, BS_VERSION, n, d.n);

    fprintf(f, "## Table 1: error and minimum distortion\n\n"
               "| model | train error | test error | attack success | avg. min. distortion "
               "| paper: train / test / distortion |\n| --- | --- | --- | --- | --- | --- |\n");
    for (int i = 0; i < ZOO_N; i++) {
        fprintf(f, "| %s |", zoo[i].paper);
        pct(f, meta_error(models[i], "blindspot.train_error"));
        pct(f, meta_error(models[i], "blindspot.test_error"));
        fprintf(f, " %.1f%% | %.4f | %s |\n", 100.0 * res->successes[i] / n,
                res->mean_distortion[i], zoo[i].paper_figures ? zoo[i].paper_figures : "—");
    }

    fprintf(f, "\n## Table 2: cross-model generalisation\n\n"
               "Rows: adversarial examples made for a model (and Gaussian noise); columns:\n"
               "error rate of each model on them. The diagonal is 100%% by construction\n"
               "(checked by the command).\n\n| examples for | distortion |");
    for (int j = 0; j < ZOO_N; j++)
        if (zoo[j].table1)
            fprintf(f, " %s |", zoo[j].paper);
    fprintf(f, "\n| --- | --- |");
    for (int j = 0; j < ZOO_N; j++)
        if (zoo[j].table1)
            fprintf(f, " --- |");
    for (int i = 0; i < ZOO_N; i++) {
        if (!zoo[i].table1)
            continue;
        fprintf(f, "\n| %s | %.4f |", zoo[i].paper, res->mean_distortion[i]);
        for (int j = 0; j < ZOO_N; j++)
            if (zoo[j].table1)
                pct(f, res->error[i][j]);
    }
    for (int s = 0; s < cfg.n_noise; s++) {
        fprintf(f, "\n| Gaussian noise, stddev %.1f | %.4f |", cfg.noise[s],
                res->noise_distortion[s]);
        for (int j = 0; j < ZOO_N; j++)
            if (zoo[j].table1)
                pct(f, res->noise_error[s][j]);
    }

    fprintf(f, "\n\n## Table 3: cross-training-set generalisation\n\n"
               "Models trained on the disjoint halves P' and P'' of the training set. Rows:\n"
               "adversarial examples for a model, as found and with each perturbation\n"
               "magnified to distortion %.1f; columns: error rate of each model on them.\n\n"
               "| examples for | distortion |", cfg.magnify);
    for (int j = 0; j < ZOO_N; j++)
        if (zoo[j].table3)
            fprintf(f, " %s |", zoo[j].paper);
    fprintf(f, "\n| --- | --- |");
    for (int j = 0; j < ZOO_N; j++)
        if (zoo[j].table3)
            fprintf(f, " --- |");
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < ZOO_N; i++) {
            if (!zoo[i].table3)
                continue;
            if (pass == 0)
                fprintf(f, "\n| %s | %.4f |", zoo[i].paper, res->mean_distortion[i]);
            else
                fprintf(f, "\n| %s, magnified | %.4f |", zoo[i].paper, cfg.magnify);
            for (int j = 0; j < ZOO_N; j++)
                if (zoo[j].table3)
                    pct(f, pass ? res->magnified[i][j] : res->error[i][j]);
        }
    for (int s = 0; s < cfg.n_noise; s++) {
        fprintf(f, "\n| Gaussian noise, stddev %.1f | %.4f |", cfg.noise[s],
                res->noise_distortion[s]);
        for (int j = 0; j < ZOO_N; j++)
            if (zoo[j].table3)
                pct(f, res->noise_error[s][j]);
    }

    /* the figure: four models, the first six images */
    int fig_models[4] = {3, 4, 5, 6}, fig_images = n < 6 ? (int)n : 6;
    figure_ctx fc = {.d = &d, .adv = adv, .model_index = fig_models, .n = (int)n,
                     .first = 0, .in = d.input_size};
    snprintf(path, sizeof path, "%s/figures/adversarial.png", outdir);
    if (write_grid(path, 4, 3 * fig_images, d.shape[1], d.shape[2], figure_tile, &fc, err)) {
        free(res);
        cli_fail("reproduce", "%s", err);
        goto out;
    }
    fprintf(f, "\n\n## Figure: adversarial examples\n\n"
               "![adversarial examples](figures/adversarial.png)\n\n"
               "Rows: FC100-100-10, FC200-200-10, AE400-10, CNN. For each of the first %d\n"
               "test images: the original, the adversarial image the attack returned\n"
               "(8-bit), and the perturbation magnified 5x around grey.\n",
            fig_images);
    free(res);
    fprintf(stderr, "reproduce: wrote %s/reproduction.md and %s/figures/\n", outdir, outdir);
    rc = 0;
out:
    if (f && fclose(f) != 0 && rc == 0)
        rc = cli_fail("reproduce", "cannot write the report");
    for (int i = 0; i < ZOO_N; i++)
        bs_model_free((bs_model *)models[i]);
    bs_dataset_free(&d);
    free(adv);
    free(ok);
    return rc;
}
