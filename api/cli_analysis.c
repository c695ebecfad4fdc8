/* cli_analysis — `blindspot lipschitz` (the paper's §4.3 upper Lipschitz
 * bounds of a model, layer by layer, beside the ratios its adversarial
 * examples reach) and `blindspot units` (§3: the images that maximise a unit
 * or a random direction of a layer, their label purity, an image grid). */
#include "api/cli.h"

#include "api/analysis_json.h"
#include "api/base64.h"
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
    "  --model FILE     the model (.safetensors or .onnx)\n"
    "  --attacks N      also attack the first N images of the split with the\n"
    "                   paper's L-BFGS (default settings, target label+1) and\n"
    "                   report the largest and mean ratio\n"
    "                   ||f(x+r) - f(x)|| / ||r|| on the logits over the examples\n"
    "                   found; no ratio can exceed the product (default: 0)\n"
    "  --seed S         start of the power iterations (default: 1)\n"
    "  --dataset NAME   dataset of --attacks (default: the model's, else mnist)\n"
    "  --split SPLIT    train or test (default: test)\n"
    "  --data DIR       data folder (default: $BLINDSPOT_DATA or data)\n"
    "  --json           print the result as JSON on stdout (the document of the\n"
    "                   daemon's GET /v1/models/NAME/lipschitz)\n"
    CLI_SERVER_HELP;

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
    "  --model FILE     the model (.safetensors or .onnx)\n"
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
    "  --json           print the result as JSON on stdout (the document of the\n"
    "                   daemon's POST /v1/models/NAME/units)\n"
    CLI_SERVER_HELP;

static int check_split(const char *cmd, const char *split)
{
    if (strcmp(split, "train") && strcmp(split, "test")) {
        fprintf(stderr, "blindspot %s: --split is train or test, got '%s'\n", cmd, split);
        return -1;
    }
    return 0;
}

static void print_shape(const json_t *shape)
{
    char buf[48];
    int s[3];
    for (int i = 0; i < 3; i++)
        s[i] = (int)json_integer_value(json_array_get(shape, (size_t)i));
    if (s[1] == 1 && s[2] == 1)
        snprintf(buf, sizeof buf, "(%d)", s[0]);
    else
        snprintf(buf, sizeof buf, "(%d,%d,%d)", s[0], s[1], s[2]);
    printf("%-12s", buf);
}

static double num(const json_t *doc, const char *key)
{
    return json_number_value(json_object_get(doc, key));
}

static int integer(const json_t *doc, const char *key)
{
    return (int)json_integer_value(json_object_get(doc, key));
}

static const char *str(const json_t *doc, const char *key)
{
    return json_string_value(json_object_get(doc, key));
}

/* The text form of the Lipschitz document (api/analysis_json.h). */
static void print_lipschitz(const json_t *doc)
{
    printf("%s: upper Lipschitz bounds (L2, input to logits)\n", str(doc, "model"));
    printf("  layer  type        output      bound       iterations\n");
    size_t i;
    const json_t *l;
    json_array_foreach(json_object_get(doc, "layers"), i, l) {
        printf("  %5zu  %-10s  ", i, str(l, "type"));
        print_shape(json_object_get(l, "output_shape"));
        printf("%-12.6g", num(l, "bound"));
        if (integer(l, "iterations"))
            printf("%d", integer(l, "iterations"));
        putchar('\n');
    }
    double product = num(doc, "product");
    printf("  product %.6g\n", product);
    const json_t *e = json_object_get(doc, "empirical");
    if (e)
        printf("  lbfgs examples on the first %d %s %s images: %d found, "
               "ratio ||f(x+r)-f(x)||/||r|| max %.4g, mean %.4g (max/bound %.3g)\n",
               integer(e, "images"), str(e, "dataset"), str(e, "split"), integer(e, "examples"),
               num(e, "max_ratio"), num(e, "mean_ratio"),
               product > 0.0 ? num(e, "max_ratio") / product : 0.0);
}

/* Progress of --attacks on a terminal. */
static void show_attacks(void *ctx, int done, int total)
{
    (void)ctx;
    fprintf(stderr, "\rlipschitz: attack %d/%d%s", done, total, done == total ? "\n" : "");
}

int cli_lipschitz(int argc, char **argv)
{
    enum { O_MODEL = 1000, O_ATTACKS, O_SEED, O_DATASET, O_SPLIT, O_DATA, O_JSON, O_SERVER };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"attacks", required_argument, 0, O_ATTACKS},
        {"seed", required_argument, 0, O_SEED}, {"dataset", required_argument, 0, O_DATASET},
        {"split", required_argument, 0, O_SPLIT}, {"data", required_argument, 0, O_DATA},
        {"json", no_argument, 0, O_JSON}, {"server", required_argument, 0, O_SERVER},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *path = NULL, *dataset = NULL, *split = "test", *data_flag = NULL;
    const char *server_flag = NULL;
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
        case O_SERVER: server_flag = optarg; break;
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
    char err[BS_ERR_LEN], name[256];
    cli_model_name(path, name, sizeof name);
    const char *server = cli_server(server_flag);
    if (server) {
        char route[1024];
        int len = snprintf(route, sizeof route, "/v1/models/%s/lipschitz?seed=%ld", name, seed);
        if (attacks > 0)
            len += snprintf(route + len, sizeof route - (size_t)len, "&attacks=%ld&split=%s",
                            attacks, split);
        if (attacks > 0 && dataset) /* the daemon's names need no escaping */
            snprintf(route + len, sizeof route - (size_t)len, "&dataset=%s", dataset);
        json_t *doc = cli_remote_json("lipschitz", server, "GET", route, NULL);
        return doc ? cli_output("lipschitz", doc, json, print_lipschitz) : 1;
    }
    bs_model *m = cli_load_model(path, err);
    if (!m)
        return cli_fail("lipschitz", "%s", err);
    bs_dataset d = {0};
    bs_lipschitz lip;
    bs_lipschitz_empirical emp;
    int rc = 1;
    if (bs_lipschitz_bounds(m, (uint64_t)seed, &lip, err)) {
        cli_fail("lipschitz", "%s", err);
        goto out;
    }
    if (attacks > 0) {
        dataset = cli_dataset_of(m, dataset, split);
        if (bs_dataset_load(cli_data_dir(data_flag), dataset, split, &d, err)) {
            cli_fail("lipschitz", "%s", err);
            goto out;
        }
        if (attacks > d.n)
            attacks = d.n;
        bs_attack_control ctl = {.progress = !json && isatty(2) ? show_attacks : NULL};
        if (bs_lipschitz_attack(m, &d, (int)attacks, &ctl, &emp, err)) {
            cli_fail("lipschitz", "%s", err);
            goto out;
        }
    }
    rc = cli_output("lipschitz",
                    bs_lipschitz_json(name, m, (uint64_t)seed, &lip, attacks > 0 ? &emp : NULL,
                                      dataset, split),
                    json, print_lipschitz);
out:
    bs_dataset_free(&d);
    bs_model_free(m);
    return rc;
}

/* Writes the document's grid (base64 PNG) to path. */
static int write_grid(const json_t *doc, const char *path, char *err)
{
    const json_t *data = json_object_get(json_object_get(doc, "grid"), "data");
    size_t len;
    uint8_t *png = bs_base64_decode(json_string_value(data), json_string_length(data), &len, err);
    if (!png)
        return -1;
    FILE *f = fopen(path, "wb");
    int rc = 0;
    if (!f || fwrite(png, 1, len, f) != len)
        rc = -1;
    if (f && fclose(f))
        rc = -1;
    if (rc)
        snprintf(err, BS_ERR_LEN, "cannot write %s", path);
    free(png);
    return rc;
}

/* The text form of the summary document (api/analysis_json.h). */
static void print_summary(const json_t *doc)
{
    int units = integer(doc, "units");
    long seed = (long)json_integer_value(json_object_get(doc, "first_seed"));
    const json_t *up = json_object_get(doc, "unit_purity");
    const json_t *rp = json_object_get(doc, "random_purity");
    printf("%s, layer %d (%s, %d values), top %d of %s %s, label purity:\n", str(doc, "model"),
           integer(doc, "layer"), str(doc, "layer_type"), integer(doc, "dim"),
           integer(doc, "k"), str(doc, "dataset"), str(doc, "split"));
    char what[3][64];
    snprintf(what[0], sizeof what[0], "units 0..%d", units - 1);
    snprintf(what[1], sizeof what[1], "%d random directions", units);
    snprintf(what[2], sizeof what[2], "%d random image sets", units);
    printf("  %-26s mean %.3f (sd %.3f)\n", what[0], num(up, "mean"), num(up, "std"));
    printf("  %-26s mean %.3f (sd %.3f), seeds %ld..%ld\n", what[1], num(rp, "mean"),
           num(rp, "std"), seed, seed + units - 1);
    printf("  %-26s mean %.3f (chance)\n", what[2], num(doc, "chance_purity"));
}

/* The text form of the one-direction document (api/analysis_json.h). */
static void print_units(const json_t *doc)
{
    if (json_object_get(doc, "unit_purity")) {
        print_summary(doc);
        return;
    }
    const json_t *dir = json_object_get(doc, "direction");
    printf("%s, layer %d (%s, %d values), ", str(doc, "model"), integer(doc, "layer"),
           str(doc, "layer_type"), integer(doc, "dim"));
    if (!strcmp(str(dir, "type"), "random"))
        printf("random direction of seed %lld", (long long)json_integer_value(json_object_get(dir, "seed")));
    else
        printf("unit %d", integer(dir, "unit"));
    int k = integer(doc, "k");
    printf(", top %d of %s %s (%d images):\n  rank   index  label  score\n", k,
           str(doc, "dataset"), str(doc, "split"), integer(doc, "images"));
    const json_t *idx = json_object_get(doc, "indices"), *labels = json_object_get(doc, "labels");
    const json_t *scores = json_object_get(doc, "scores");
    for (int i = 0; i < k; i++)
        printf("  %4d  %6d  %5d  %.6g\n", i + 1,
               (int)json_integer_value(json_array_get(idx, (size_t)i)),
               (int)json_integer_value(json_array_get(labels, (size_t)i)),
               json_number_value(json_array_get(scores, (size_t)i)));
    double purity = num(doc, "purity");
    printf("  majority label %d, purity %.3f (%d of %d)\n", integer(doc, "majority"), purity,
           (int)(purity * k + 0.5), k);
}

/* One run of `blindspot units`, as the options say. */
typedef struct units_run {
    const char *name, *path;     /* the model's name and file */
    const char *dataset, *split; /* dataset NULL: the model's own */
    const char *data_dir;
    int layer;                   /* as asked (bs_units_layer resolves it) */
    int unit;                    /* -1: the random direction of seed */
    uint64_t seed;
    int k;
    int summary;                 /* U > 0: the summary over U units instead */
} units_run;

/* The document, computed here; NULL with a message in err. */
static json_t *units_here(const units_run *o, char *err)
{
    bs_model *m = cli_load_model(o->path, err);
    if (!m)
        return NULL;
    bs_dataset d = {0};
    float *v = NULL;
    json_t *doc = NULL;
    const char *dataset = cli_dataset_of(m, o->dataset, o->split);
    int L = bs_units_layer(m, o->layer, err);
    if (L < 0 || bs_dataset_load(o->data_dir, dataset, o->split, &d, err))
        goto out;
    if (o->summary > 0) {
        bs_units_summary s;
        if (!bs_units_summarise(m, o->layer, &d, o->summary, o->k, o->seed, &s, err) &&
            !(doc = bs_units_summary_json(o->name, m, dataset, o->split, o->seed, &s)))
            snprintf(err, BS_ERR_LEN, "out of memory");
        goto out;
    }
    size_t dim = m->layers[L].out_size;
    if (o->unit >= 0 && (size_t)o->unit >= dim) {
        snprintf(err, BS_ERR_LEN, "layer %d has %zu units (0..%zu), not %d", L, dim, dim - 1,
                 o->unit);
        goto out;
    }
    if (!(v = malloc(dim * sizeof *v))) {
        snprintf(err, BS_ERR_LEN, "out of memory");
        goto out;
    }
    if (o->unit < 0)
        bs_units_random(v, dim, o->seed);
    else
        bs_units_basis(v, dim, o->unit);
    bs_units_top t;
    if (!bs_units_rank(m, o->layer, &d, v, 1, o->k, &t, err))
        doc = bs_units_json(o->name, m, L, o->unit, o->seed, &d, &t, err);
out:
    free(v);
    bs_dataset_free(&d);
    bs_model_free(m);
    return doc;
}

/* The document, from the daemon; NULL after a message. */
static json_t *units_remote(const char *server, const units_run *o)
{
    json_t *body = json_pack("{s:i, s:I, s:i, s:s}", "layer", o->layer, "seed",
                             (json_int_t)o->seed, "k", o->k, "split", o->split);
    if (body && o->dataset)
        json_object_set_new(body, "dataset", json_string(o->dataset));
    if (body)
        json_object_set_new(body, o->summary ? "summary" : "direction",
                            o->summary    ? json_integer(o->summary)
                            : o->unit < 0 ? json_string("random")
                                          : json_integer(o->unit));
    char route[512];
    snprintf(route, sizeof route, "/v1/models/%s/units", o->name);
    return cli_remote_json("units", server, "POST", route, body);
}

int cli_units(int argc, char **argv)
{
    enum { O_MODEL = 1000, O_LAYER, O_UNIT, O_RANDOM, O_SEED, O_K, O_OUT, O_SUMMARY,
           O_DATASET, O_SPLIT, O_DATA, O_JSON, O_SERVER };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"layer", required_argument, 0, O_LAYER},
        {"unit", required_argument, 0, O_UNIT}, {"random", no_argument, 0, O_RANDOM},
        {"seed", required_argument, 0, O_SEED}, {"k", required_argument, 0, O_K},
        {"out", required_argument, 0, O_OUT}, {"summary", required_argument, 0, O_SUMMARY},
        {"dataset", required_argument, 0, O_DATASET}, {"split", required_argument, 0, O_SPLIT},
        {"data", required_argument, 0, O_DATA}, {"json", no_argument, 0, O_JSON},
        {"server", required_argument, 0, O_SERVER}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *path = NULL, *out_path = NULL, *dataset = NULL, *split = "test";
    const char *data_flag = NULL, *server_flag = NULL;
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
        case O_SERVER: server_flag = optarg; break;
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
    char err[BS_ERR_LEN], name[256];
    units_run o = {cli_model_name(path, name, sizeof name), path, dataset, split,
                   cli_data_dir(data_flag), (int)layer, random ? -1 : (int)unit,
                   (uint64_t)seed, (int)k, (int)summary};
    const char *server = cli_server(server_flag);
    json_t *doc = server ? units_remote(server, &o) : units_here(&o, err);
    if (!doc)
        return server ? 1 : cli_fail("units", "%s", err);
    if (out_path && write_grid(doc, out_path, err)) {
        json_decref(doc);
        return cli_fail("units", "%s", err);
    }
    int rc = cli_output("units", doc, json, print_units);
    if (!rc && !json && out_path)
        printf("  grid written to %s\n", out_path);
    return rc;
}
