/* cli_analysis — `blindspot lipschitz` (the paper's §4.3 upper Lipschitz
 * bounds of a model, layer by layer, beside the ratios its adversarial
 * examples reach) and `blindspot units` (§3: the images that maximise a unit
 * or a random direction of a layer, their label purity, an image grid). */
#include "api/cli.h"

#include "api/image.h"
#include "core/analysis.h"
#include "core/attack.h"
#include "core/dataset.h"
#include "core/model_file.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *lipschitz_usage =
    "usage: blindspot lipschitz --model FILE [--attacks N] [--json]\n"
    "\n"
    "Upper bounds of the Lipschitz constant (L2 norm) of every layer of a model\n"
    "and of the whole network from the input to the logits, their product\n"
    "(Szegedy et al. §4.3):\n"
    "  linear     the largest singular value of W (power iteration on W^T W)\n"
    "  conv2d     the largest singular value over the frequencies of the padded\n"
    "             input grid of the matrix of kernel DFTs (also a bound with a\n"
    "             stride: subsampling does not increase a norm)\n"
    "  maxpool2d  1 for non-overlapping windows, ceil(kernel/stride) otherwise\n"
    "  sigmoid    1/4;  relu, tanh, flatten, dropout  1\n"
    "Power iteration stops at a relative change below 1e-6 or after 1000 steps.\n"
    "\n"
    "  --model FILE     the model (.safetensors)\n"
    "  --attacks N      also attack the first N images of the split with the\n"
    "                   paper's L-BFGS (default settings, target label+1) and\n"
    "                   report the largest and mean ratio\n"
    "                   ||f(x+r) - f(x)|| / ||r|| on the logits over the examples\n"
    "                   found; no ratio can exceed the product (default: 0)\n"
    "  --seed S         start of the power iterations (default: 1)\n"
    "  --dataset NAME   dataset of --attacks (default: the model's, else mnist)\n"
    "  --split SPLIT    train or test (default: test)\n"
    "  --data DIR       data folder (default: $BLINDSPOT_DATA or data)\n"
    "  --json           print the result as JSON on stdout\n";

static const char *units_usage =
    "usage: blindspot units --model FILE --layer L (--unit I | --random [--seed S])\n"
    "                       [--k K] [--out grid.png] [--json]\n"
    "       blindspot units --model FILE --layer L --summary U [--k K] [--json]\n"
    "\n"
    "The paper's unit analysis (Szegedy et al. §3): ranks the images of a dataset\n"
    "split by <phi(x), v>, where phi(x) is the output of layer L and v a unit\n"
    "vector e_I (one unit) or a random direction, and prints the top K images'\n"
    "indices, labels and scores and their label purity: the share of the K that\n"
    "carry their most frequent label. A linear or conv2d layer followed by an\n"
    "activation is read after the activation (`blindspot info` lists layers).\n"
    "\n"
    "  --model FILE     the model (.safetensors)\n"
    "  --layer L        index of the layer in the model (required)\n"
    "  --unit I         rank by unit I of the layer's output\n"
    "  --random         rank by a random Gaussian direction of length 1\n"
    "  --seed S         the random direction's seed; with --summary, the first\n"
    "                   of the U seeds S..S+U-1 (default: 1)\n"
    "  --k K            how many top images, 1 to 64 (default: 8)\n"
    "  --out FILE       write the K images side by side as a PNG\n"
    "  --summary U      instead of one direction: mean label purity of the top K\n"
    "                   over units 0..U-1 against U random directions (the\n"
    "                   measure the paper lacks), and the purity of K images\n"
    "                   drawn at random, which carries no information\n"
    "  --dataset NAME   the images (default: the model's dataset, else mnist)\n"
    "  --split SPLIT    train or test (default: test)\n"
    "  --data DIR       data folder (default: $BLINDSPOT_DATA or data)\n"
    "  --json           print the result as JSON on stdout\n";

/* The model's own dataset unless one is named. */
static const char *dataset_of(const bs_model *m, const char *flag)
{
    const char *d = flag ? flag : bs_model_get_meta(m, "blindspot.dataset");
    return d ? d : "mnist";
}

static int check_split(const char *cmd, const char *split)
{
    if (strcmp(split, "train") && strcmp(split, "test")) {
        fprintf(stderr, "blindspot %s: --split is train or test, got '%s'\n", cmd, split);
        return -1;
    }
    return 0;
}

static void print_shape(const int s[3])
{
    char buf[48];
    if (s[1] == 1 && s[2] == 1)
        snprintf(buf, sizeof buf, "(%d)", s[0]);
    else
        snprintf(buf, sizeof buf, "(%d,%d,%d)", s[0], s[1], s[2]);
    printf("%-12s", buf);
}

/* The ratios the L-BFGS attack's examples reach on the first n images. */
typedef struct empirical {
    int images, found;
    double max_ratio, mean_ratio;
} empirical;

static int measure_empirical(const bs_model *m, const bs_dataset *d, int n, int tty,
                             empirical *e, char *err)
{
    bs_attack_params p = bs_attack_defaults(BS_ATTACK_LBFGS);
    *e = (empirical){.images = n};
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *x = d->images + (size_t)i * d->input_size;
        int target = (d->labels[i] + 1) % m->classes;
        bs_attack_result r;
        if (bs_attack_run(m, x, &target, 1, &p, NULL, &r, err))
            return -1;
        if (r.success && r.norms.l2 > 0.0) {
            double ratio = bs_lipschitz_ratio(m, x, r.adv, err);
            if (ratio < 0.0) {
                bs_attack_result_free(&r);
                return -1;
            }
            e->found++;
            sum += ratio;
            if (ratio > e->max_ratio)
                e->max_ratio = ratio;
        }
        bs_attack_result_free(&r);
        if (tty)
            fprintf(stderr, "\rlipschitz: attack %d/%d", i + 1, n);
    }
    if (tty)
        fputc('\n', stderr);
    e->mean_ratio = e->found ? sum / e->found : 0.0;
    return 0;
}

int cli_lipschitz(int argc, char **argv)
{
    enum { O_MODEL = 1000, O_ATTACKS, O_SEED, O_DATASET, O_SPLIT, O_DATA, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"attacks", required_argument, 0, O_ATTACKS},
        {"seed", required_argument, 0, O_SEED}, {"dataset", required_argument, 0, O_DATASET},
        {"split", required_argument, 0, O_SPLIT}, {"data", required_argument, 0, O_DATA},
        {"json", no_argument, 0, O_JSON}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *path = NULL, *dataset = NULL, *split = "test", *data_flag = NULL;
    long attacks = 0, seed = 1;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: path = optarg; break;
        case O_ATTACKS:
            if (cli_parse_long("--attacks", optarg, 0, 1000000, &attacks)) return 2;
            break;
        case O_SEED:
            if (cli_parse_long("--seed", optarg, 0, 0x7fffffffL, &seed)) return 2;
            break;
        case O_DATASET: dataset = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_DATA: data_flag = optarg; break;
        case O_JSON: json = 1; break;
        case 'h': fputs(lipschitz_usage, stdout); return 0;
        default: fputs(lipschitz_usage, stderr); return 2;
        }
    }
    if (!path || optind != argc) {
        fprintf(stderr, "blindspot lipschitz: %s\n\n%s",
                path ? "unexpected argument" : "--model is required", lipschitz_usage);
        return 2;
    }
    if (check_split("lipschitz", split))
        return 2;
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load(path, err);
    if (!m)
        return cli_fail("lipschitz", "%s", err);
    bs_dataset d = {0};
    bs_lipschitz lip;
    empirical emp = {0};
    int rc = 1;
    if (bs_lipschitz_bounds(m, (uint64_t)seed, &lip, err)) {
        cli_fail("lipschitz", "%s", err);
        goto out;
    }
    if (attacks > 0) {
        dataset = dataset_of(m, dataset);
        if (bs_dataset_load(cli_data_dir(data_flag), dataset, split, &d, err)) {
            cli_fail("lipschitz", "%s", err);
            goto out;
        }
        if (d.input_size != m->input_size) {
            cli_fail("lipschitz", "dataset %s does not fit the model's input", dataset);
            goto out;
        }
        if (attacks > d.n)
            attacks = d.n;
        if (measure_empirical(m, &d, (int)attacks, !json && isatty(2), &emp, err)) {
            cli_fail("lipschitz", "%s", err);
            goto out;
        }
    }
    if (json) {
        json_t *layers = json_array();
        for (int i = 0; i < m->n_layers; i++)
            json_array_append_new(layers, json_pack(
                "{s:i, s:s, s:f, s:i}", "index", i, "type", bs_layer_name(m->layers[i].kind),
                "bound", lip.layers[i].bound, "iterations", lip.layers[i].iterations));
        json_t *out = json_pack("{s:s, s:o, s:f}", "model", path, "layers", layers,
                                "product", lip.product);
        if (attacks > 0)
            json_object_set_new(out, "empirical", json_pack(
                "{s:s, s:s, s:s, s:i, s:i, s:f, s:f}", "method", "lbfgs", "dataset", dataset,
                "split", split, "images", emp.images, "examples", emp.found,
                "max_ratio", emp.max_ratio, "mean_ratio", emp.mean_ratio));
        cli_print_json(out);
    } else {
        printf("%s: upper Lipschitz bounds (L2, input to logits)\n", path);
        printf("  layer  type        output      bound       iterations\n");
        for (int i = 0; i < m->n_layers; i++) {
            const bs_layer *l = &m->layers[i];
            printf("  %5d  %-10s  ", i, bs_layer_name(l->kind));
            print_shape(l->out_shape);
            printf("%-12.6g", lip.layers[i].bound);
            if (lip.layers[i].iterations)
                printf("%d", lip.layers[i].iterations);
            putchar('\n');
        }
        printf("  product %.6g\n", lip.product);
        if (attacks > 0)
            printf("  lbfgs examples on the first %d %s %s images: %d found, "
                   "ratio ||f(x+r)-f(x)||/||r|| max %.4g, mean %.4g (max/bound %.3g)\n",
                   emp.images, dataset, split, emp.found, emp.max_ratio, emp.mean_ratio,
                   lip.product > 0.0 ? emp.max_ratio / lip.product : 0.0);
    }
    rc = 0;
out:
    bs_dataset_free(&d);
    bs_model_free(m);
    return rc;
}

static int write_grid(const bs_dataset *d, const bs_units_top *t, const char *path,
                      char *err)
{
    bs_units_grid g;
    uint8_t *png = NULL;
    size_t len = 0;
    if (bs_units_grid_make(d, t->indices, t->k, &g, err))
        return -1;
    int rc = bs_image_encode(g.pixels, g.width, g.height, g.channels, BS_IMAGE_PNG, 0,
                             &png, &len, err);
    bs_units_grid_free(&g);
    if (rc)
        return -1;
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(png, 1, len, f) != len) {
        snprintf(err, BS_ERR_LEN, "cannot write %s", path);
        rc = -1;
    }
    if (f && fclose(f) && rc == 0) {
        snprintf(err, BS_ERR_LEN, "cannot write %s", path);
        rc = -1;
    }
    free(png);
    return rc;
}

static void print_summary(const char *path, const bs_model *m, const char *dataset,
                          const char *split, const bs_units_summary *s, long seed, int json)
{
    const char *type = bs_layer_name(m->layers[s->layer].kind);
    if (json) {
        cli_print_json(json_pack(
            "{s:s, s:i, s:s, s:i, s:s, s:s, s:i, s:i, s:{s:f, s:f}, s:{s:f, s:f, s:I}, s:f}",
            "model", path, "layer", s->layer, "layer_type", type, "dim", s->dim,
            "dataset", dataset, "split", split, "k", s->k, "units", s->units,
            "unit_purity", "mean", s->unit_mean, "std", s->unit_std,
            "random_purity", "mean", s->random_mean, "std", s->random_std,
            "first_seed", (json_int_t)seed, "chance_purity", s->chance_mean));
        return;
    }
    printf("%s, layer %d (%s, %d values), top %d of %s %s, label purity:\n", path,
           s->layer, type, s->dim, s->k, dataset, split);
    char what[3][64];
    snprintf(what[0], sizeof what[0], "units 0..%d", s->units - 1);
    snprintf(what[1], sizeof what[1], "%d random directions", s->units);
    snprintf(what[2], sizeof what[2], "%d random image sets", s->units);
    printf("  %-26s mean %.3f (sd %.3f)\n", what[0], s->unit_mean, s->unit_std);
    printf("  %-26s mean %.3f (sd %.3f), seeds %ld..%ld\n", what[1], s->random_mean,
           s->random_std, seed, seed + s->units - 1);
    printf("  %-26s mean %.3f (chance)\n", what[2], s->chance_mean);
}

int cli_units(int argc, char **argv)
{
    enum { O_MODEL = 1000, O_LAYER, O_UNIT, O_RANDOM, O_SEED, O_K, O_OUT, O_SUMMARY,
           O_DATASET, O_SPLIT, O_DATA, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"layer", required_argument, 0, O_LAYER},
        {"unit", required_argument, 0, O_UNIT}, {"random", no_argument, 0, O_RANDOM},
        {"seed", required_argument, 0, O_SEED}, {"k", required_argument, 0, O_K},
        {"out", required_argument, 0, O_OUT}, {"summary", required_argument, 0, O_SUMMARY},
        {"dataset", required_argument, 0, O_DATASET}, {"split", required_argument, 0, O_SPLIT},
        {"data", required_argument, 0, O_DATA}, {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *path = NULL, *out_path = NULL, *dataset = NULL, *split = "test";
    const char *data_flag = NULL;
    long layer = -1, unit = -1, seed = 1, k = 8, summary = 0;
    int random = 0, json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: path = optarg; break;
        case O_LAYER:
            if (cli_parse_long("--layer", optarg, 0, BS_MAX_LAYERS - 1, &layer)) return 2;
            break;
        case O_UNIT:
            if (cli_parse_long("--unit", optarg, 0, 1L << 26, &unit)) return 2;
            break;
        case O_RANDOM: random = 1; break;
        case O_SEED:
            if (cli_parse_long("--seed", optarg, 0, 0x7fffffffL, &seed)) return 2;
            break;
        case O_K:
            if (cli_parse_long("--k", optarg, 1, BS_UNITS_MAX_K, &k)) return 2;
            break;
        case O_OUT: out_path = optarg; break;
        case O_SUMMARY:
            if (cli_parse_long("--summary", optarg, 1, 1L << 20, &summary)) return 2;
            break;
        case O_DATASET: dataset = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_DATA: data_flag = optarg; break;
        case O_JSON: json = 1; break;
        case 'h': fputs(units_usage, stdout); return 0;
        default: fputs(units_usage, stderr); return 2;
        }
    }
    const char *bad = NULL;
    if (optind != argc)
        bad = "unexpected argument";
    else if (!path || layer < 0)
        bad = "--model and --layer are required";
    else if ((unit >= 0) + random + (summary > 0) != 1)
        bad = "give one of --unit I, --random or --summary U";
    else if (summary > 0 && out_path)
        bad = "--out goes with --unit or --random, not --summary";
    if (bad) {
        fprintf(stderr, "blindspot units: %s\n\n%s", bad, units_usage);
        return 2;
    }
    if (check_split("units", split))
        return 2;
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load(path, err);
    if (!m)
        return cli_fail("units", "%s", err);
    bs_dataset d = {0};
    float *v = NULL;
    int rc = 1;
    dataset = dataset_of(m, dataset);
    int L = bs_units_layer(m, (int)layer, err);
    if (L < 0 || bs_dataset_load(cli_data_dir(data_flag), dataset, split, &d, err)) {
        cli_fail("units", "%s", err);
        goto out;
    }
    if (summary > 0) {
        bs_units_summary s;
        if (bs_units_summarise(m, (int)layer, &d, (int)summary, (int)k, (uint64_t)seed, &s,
                               err)) {
            cli_fail("units", "%s", err);
            goto out;
        }
        print_summary(path, m, dataset, split, &s, seed, json);
        rc = 0;
        goto out;
    }
    size_t dim = m->layers[L].out_size;
    if (unit >= 0 && (size_t)unit >= dim) {
        cli_fail("units", "layer %d has %zu units (0..%zu), not %ld", L, dim, dim - 1, unit);
        goto out;
    }
    if (!(v = malloc(dim * sizeof *v))) {
        cli_fail("units", "out of memory");
        goto out;
    }
    if (random)
        bs_units_random(v, dim, (uint64_t)seed);
    else
        bs_units_basis(v, dim, (int)unit);
    bs_units_top t;
    if (bs_units_rank(m, (int)layer, &d, v, 1, (int)k, &t, err) ||
        (out_path && write_grid(&d, &t, out_path, err))) {
        cli_fail("units", "%s", err);
        goto out;
    }
    const char *type = bs_layer_name(m->layers[L].kind);
    if (json) {
        json_t *idx = json_array(), *labels = json_array(), *scores = json_array();
        for (int i = 0; i < t.k; i++) {
            json_array_append_new(idx, json_integer(t.indices[i]));
            json_array_append_new(labels, json_integer(t.labels[i]));
            json_array_append_new(scores, json_real(t.scores[i]));
        }
        json_t *dir = random ? json_pack("{s:s, s:I}", "type", "random", "seed", (json_int_t)seed)
                             : json_pack("{s:s, s:I}", "type", "unit", "unit", (json_int_t)unit);
        cli_print_json(json_pack(
            "{s:s, s:i, s:s, s:I, s:o, s:s, s:s, s:i, s:o, s:o, s:o, s:i, s:f, s:s?}",
            "model", path, "layer", L, "layer_type", type, "dim", (json_int_t)dim,
            "direction", dir, "dataset", dataset, "split", split, "k", t.k, "indices", idx,
            "labels", labels, "scores", scores, "majority", t.majority, "purity", t.purity,
            "grid", out_path));
    } else {
        printf("%s, layer %d (%s, %zu values), ", path, L, type, dim);
        if (random)
            printf("random direction of seed %ld", seed);
        else
            printf("unit %ld", unit);
        printf(", top %d of %s %s (%d images):\n  rank   index  label  score\n", t.k,
               dataset, split, d.n);
        for (int i = 0; i < t.k; i++)
            printf("  %4d  %6d  %5d  %.6g\n", i + 1, t.indices[i], t.labels[i], t.scores[i]);
        printf("  majority label %d, purity %.3f (%d of %d)\n", t.majority, t.purity,
               (int)(t.purity * t.k + 0.5), t.k);
        if (out_path)
            printf("  grid written to %s\n", out_path);
    }
    rc = 0;
out:
    free(v);
    bs_dataset_free(&d);
    bs_model_free(m);
    return rc;
}
