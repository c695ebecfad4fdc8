/* cli_reproduce — `blindspot reproduce`: the paper's MNIST experiments in
 * one command, written as a Markdown report with PNG figures, every number
 * from this run and the paper's beside ours where it has one. */
#include "api/cli.h"

#include "api/image.h"
#include "core/adversarial.h"
#include "core/analysis.h"
#include "core/evaluate.h"
#include "core/model_file.h"
#include "core/train.h"

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
    "  §3       the test images maximising single units and random directions\n"
    "           of a hidden layer (FC100-100-10, CNN), and the label purity of\n"
    "           the top 8 over 100 units vs 100 random directions\n"
    "  §4.3     upper Lipschitz bounds per layer and per network, beside the\n"
    "           largest ratio ||f(x+r)-f(x)||/||r|| over the examples found\n"
    "  §4.1     FC100-100-10 trained with a refreshed pool of adversarial\n"
    "           (FGSM) examples in half of every minibatch, against the plain one\n"
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

/* Unit-analysis grids: row r holds the top images of direction r. */
typedef struct units_ctx {
    const bs_dataset *d;
    const bs_units_top *tops;
} units_ctx;

static const float *units_tile(void *vctx, int r, int c, float *buf)
{
    (void)buf;
    units_ctx *u = vctx;
    return u->d->images + (size_t)u->tops[r].indices[c] * u->d->input_size;
}

#define UNITS_ROWS 4  /* units and random directions shown per layer */
#define UNITS_K 8     /* top images per direction */
#define UNITS_U 100   /* directions in the purity summary */

/* §3 for one model and layer: a grid of the top images of UNITS_ROWS units
 * and UNITS_ROWS random directions, and the purity summary. */
static int units_section(FILE *f, const char *outdir, const char *file, const char *paper,
                         const bs_model *m, int layer, const bs_dataset *d, uint64_t seed,
                         char *err)
{
    int L = bs_units_layer(m, layer, err);
    if (L < 0)
        return -1;
    int dim = (int)m->layers[L].out_size, rows = 2 * UNITS_ROWS;
    float *dirs = malloc((size_t)rows * dim * sizeof(float));
    bs_units_top tops[2 * UNITS_ROWS];
    bs_units_summary sum;
    char path[1024];
    int rc = -1;
    if (!dirs) {
        snprintf(err, BS_ERR_LEN, "out of memory");
        return -1;
    }
    for (int r = 0; r < UNITS_ROWS; r++) {
        bs_units_basis(dirs + (size_t)r * dim, (size_t)dim, r);
        bs_units_random(dirs + (size_t)(UNITS_ROWS + r) * dim, (size_t)dim, seed + (uint64_t)r);
    }
    units_ctx uc = {.d = d, .tops = tops};
    snprintf(path, sizeof path, "%s/figures/units-%s.png", outdir, file);
    if (bs_units_rank(m, L, d, dirs, rows, UNITS_K, tops, err) ||
        write_grid(path, rows, UNITS_K, d->shape[1], d->shape[2], units_tile, &uc, err) ||
        bs_units_summarise(m, L, d, dim < UNITS_U ? dim : UNITS_U, UNITS_K, seed, &sum, err))
        goto out;
    fprintf(f, "\n### %s, layer %d (%s, %d units)\n\n"
               "![units of %s](figures/units-%s.png)\n\n"
               "Rows 1-%d: units 0-%d; rows %d-%d: random directions (seeds %llu-%llu). "
               "Top-%d labels and purity:\n\n| direction | labels | purity |\n| --- | --- | --- |\n",
            paper, L, bs_layer_name(m->layers[L].kind), dim, paper, file, UNITS_ROWS,
            UNITS_ROWS - 1, UNITS_ROWS + 1, rows, (unsigned long long)seed,
            (unsigned long long)seed + UNITS_ROWS - 1, UNITS_K);
    for (int r = 0; r < rows; r++) {
        if (r < UNITS_ROWS)
            fprintf(f, "| unit %d |", r);
        else
            fprintf(f, "| random %d |", r - UNITS_ROWS);
        for (int c = 0; c < UNITS_K; c++)
            fprintf(f, " %d", tops[r].labels[c]);
        fprintf(f, " | %.3f |\n", tops[r].purity);
    }
    fprintf(f, "\nMean purity of the top %d over %d directions (± standard deviation): "
               "units %.3f ± %.3f, random directions %.3f ± %.3f, random sets of images "
               "%.3f.\n", sum.k, sum.units, sum.unit_mean, sum.unit_std, sum.random_mean,
            sum.random_std, sum.chance_mean);
    rc = 0;
out:
    free(dirs);
    return rc;
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
    cli_progress pc = {.start = time(NULL), .tty = isatty(2)};
    fprintf(stderr, "reproduce: attacking %ld test images with each of %d models (%ld threads)\n",
            n, ZOO_N, threads);
    bs_control ctl = {.progress = cli_show_progress, .ctx = &pc};
    if (bs_evaluate_transfer(models, ZOO_N, &d, &cfg, &ctl, res, adv, ok, err)) {
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

    /* §3: units against random directions */
    fprintf(stderr, "reproduce: unit analysis\n");
    fprintf(f, "\n## §3: units and random directions\n\n"
               "The test images that maximise <phi(x), v> for a hidden layer's output phi,\n"
               "with v a single unit or a random direction. The paper finds both equally\n"
               "\"semantic\"; the label purity of the top %d (the share carrying their most\n"
               "frequent label) puts a number on it.\n", UNITS_K);
    if (units_section(f, outdir, "fc100-100-10", "FC100-100-10", models[3], 2, &d,
                      (uint64_t)seed, err) ||
        units_section(f, outdir, "cnn", "CNN", models[6], 7, &d, (uint64_t)seed, err)) {
        free(res);
        cli_fail("reproduce", "%s", err);
        goto out;
    }

    /* §4.3: Lipschitz bounds */
    fprintf(stderr, "reproduce: Lipschitz bounds\n");
    fprintf(f, "\n## §4.3: Lipschitz bounds\n\n"
               "Upper bounds of each layer's L2 Lipschitz constant (linear: largest singular\n"
               "value by power iteration; conv2d: through the Fourier transform of the\n"
               "kernel; sigmoid 1/4; relu, tanh, non-overlapping max-pooling 1), their\n"
               "product from input to logits, and the largest ratio\n"
               "||f(x+r) - f(x)|| / ||r|| of the logits over the adversarial examples found\n"
               "above for the model.\n\n"
               "| model | bounds of the linear and conv layers | network bound | largest ratio |\n"
               "| --- | --- | --- | --- |\n");
    for (int i = 0; i < ZOO_N; i++) {
        bs_lipschitz lb;
        if (bs_lipschitz_bounds(models[i], (uint64_t)seed, &lb, err)) {
            free(res);
            cli_fail("reproduce", "%s", err);
            goto out;
        }
        fprintf(f, "| %s |", zoo[i].paper);
        for (int l = 0, first = 1; l < models[i]->n_layers; l++)
            if (models[i]->layers[l].weight_size) {
                fprintf(f, "%s %.4g", first ? "" : ",", lb.layers[l].bound);
                first = 0;
            }
        fprintf(f, " | %.4g | %.4g |\n", lb.product, res->max_ratio[i]);
    }

    /* §4.1: adversarial training */
    fprintf(stderr, "reproduce: adversarial training of FC100-100-10\n");
    bs_dataset train = {0};
    bs_model *advm = NULL;
    bs_advtrain_stats st = {0};
    if (bs_dataset_load(cli_data_dir(data_flag), dataset, "train", &train, err)) {
        free(res);
        cli_fail("reproduce", "%s", err);
        goto out;
    }
    bs_layer layers[BS_MAX_LAYERS];
    int n_layers;
    bs_train_config tc = bs_train_defaults();
    tc.epochs = 40;
    tc.lambda = 1e-4f;
    tc.seed = (uint64_t)seed;
    bs_advtrain_config ac = bs_advtrain_defaults(BS_ATTACK_FGSM);
    int trc = bs_arch_parse("fc:100,100", train.classes, layers, &n_layers, err) ||
              !(advm = bs_model_build(layers, n_layers, train.shape, err)) ||
              bs_advtrain(advm, &train, &tc, &ac, NULL, NULL, &st, err);
    bs_dataset_free(&train);
    double adv_test = trc ? -1.0 : bs_evaluate(advm, &d, NULL, err);
    bs_eval_result *cmp = trc || adv_test < 0 ? NULL : malloc(sizeof *cmp);
    const bs_model *pair[2] = {models[3], advm};
    bs_eval_config c2 = cfg;
    c2.n_noise = 0;
    c2.magnify = 0.0;
    pc.start = time(NULL);
    if (!cmp || bs_evaluate_transfer(pair, 2, &d, &c2, &ctl, cmp, NULL, NULL, err)) {
        free(cmp);
        free(res);
        bs_model_free(advm);
        cli_fail("reproduce", "%s", cmp ? err : trc || adv_test < 0 ? err : "out of memory");
        goto out;
    }
    fprintf(f, "\n## §4.1: adversarial training\n\n"
               "FC100-100-10 trained as the zoo's (`fc:100,100`, weight decay 1e-4, 40\n"
               "epochs, seed %ld) but with half of every minibatch taken from a pool of\n"
               "%d adversarial examples (FGSM towards a random wrong label, against the\n"
               "model being trained, kept with their true labels), remade every epoch after\n"
               "one plain epoch: %ld examples made in %d pools, mean distortion %.4f. Test\n"
               "error over the whole test split; distortion of the L-BFGS attack on the same\n"
               "%ld images and targets as above.\n\n"
               "| training | test error | attack success | avg. min. distortion |\n"
               "| --- | --- | --- | --- |\n"
               "| plain (the zoo's) | %.2f%% | %.1f%% | %.4f |\n"
               "| adversarial | %.2f%% | %.1f%% | %.4f |\n\n"
               "The paper reports 1.6%% -> below 1.2%% test error for its 100-100-10 net\n"
               "(60,000 training images).\n",
            seed, ac.pool_size, st.made, st.refreshes, st.mean_distortion, n,
            100.0 * meta_error(models[3], "blindspot.test_error"), 100.0 * cmp->successes[0] / n,
            cmp->mean_distortion[0], 100.0 * adv_test, 100.0 * cmp->successes[1] / n,
            cmp->mean_distortion[1]);
    free(cmp);
    bs_model_free(advm);
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
