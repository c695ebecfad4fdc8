/* cli_evaluate — `blindspot evaluate`: the paper's Tables 1-3 over a slice
 * of a dataset for chosen models (core/evaluate.h), as text tables or as
 * the JSON document of api/evaluate_json.h, the result of the daemon's
 * POST /v1/evaluations jobs; or one shard of it (--shard I/N, a shard
 * document), and the merge of every shard's document (--merge). */
#include "api/cli.h"

#include "api/attack_json.h"
#include "api/evaluate_json.h"
#include "core/attack.h"
#include "core/evaluate.h"
#include "core/model_file.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The usage around the method list, made from core/attack.h's table. */
static const char *evaluate_usage_head =
    "usage: blindspot evaluate [--models A,B,...] [--dataset mnist] [--split test]\n"
    "                          [--first F] [--n N] [--seed S] [--method M]\n"
    "                          [--param K=V] [--threads T] [--json] [--server URL]\n"
    "                          [--shard I/N [-o FILE]]\n"
    "       blindspot evaluate --merge [--json] FILE...\n"
    "\n"
    "Attacks images first..first+N-1 of a dataset split with every model, each\n"
    "image towards a wrong label drawn from the seed, and measures (Szegedy et\n"
    "al., Tables 1-3):\n"
    "  Table 1  per model: error on the slice, attacks that reached their target,\n"
    "           mean minimum distortion sqrt(sum r_i^2 / n) of those; the train\n"
    "           and test error recorded in the model file\n"
    "  Table 2  error rate of every model (columns) on the adversarial examples\n"
    "           made for each model (rows; the diagonal is 100% by construction),\n"
    "           and on the clean images plus Gaussian noise\n"
    "  Table 3  the same with each perturbation magnified to a fixed distortion\n"
    "  and the largest ratio ||f(x+r) - f(x)|| / ||r|| (logits) per model.\n"
    "The numbers do not depend on --threads, nor on running in shards (--shard,\n"
    "--merge). The daemon's POST /v1/evaluations job's result is the document\n"
    "--json prints.\n"
    "\n"
    "  --models LIST    comma-separated model names (files NAME.safetensors in\n"
    "                   --model-dir) or .safetensors paths; default every model of\n"
    "                   --model-dir that takes the dataset's input, by name\n"
    "  --model-dir DIR  default models\n"
    "  --dataset NAME   default mnist\n"
    "  --split SPLIT    default test\n"
    "  --first F        first image of the slice (default 0)\n"
    "  --n N            images in the slice (default 100)\n"
    "  --seed S         targets and noise (default 1)\n";
static const char *evaluate_usage_tail =
    "  --param KEY=VALUE  a method parameter, repeatable (see blindspot attack --help)\n"
    "  --noise LIST     standard deviations of the noise rows (default 0.1,0.3;\n"
    "                   none for no rows)\n"
    "  --magnify D      distortion of Table 3's magnified rows (default 0.1; 0: none)\n"
    "  --threads T      attacks in parallel (default 1)\n"
    "  --data DIR       data folder (default: $BLINDSPOT_DATA or data)\n"
    "  --json           print the result as JSON\n"
    "  --shard I/N      run shard I (0-based) of N only: the slice's images at\n"
    "                   positions S*I/N .. S*(I+1)/N-1, S the slice's size (--n;\n"
    "                   whole-number division, a shard may be empty), each with the\n"
    "                   target and noise the whole run draws for it, and print\n"
    "                   the shard's document (JSON with every image's exact\n"
    "                   records) instead of the tables. Not with --server (the\n"
    "                   daemon shards its evaluation jobs over its free workers\n"
    "                   by itself)\n"
    "  -o FILE          write the shard document to FILE (replaced whole, never\n"
    "                   left half written) instead of stdout\n"
    "  --merge FILE...  the tables (or with --json the document) of the evaluation\n"
    "                   whose N shards the files are, in any order: byte for byte\n"
    "                   what the run without --shard prints (the output holds no\n"
    "                   timings, so nothing needs dropping before a comparison).\n"
    "                   No other option applies. Exit status 2 with a message when\n"
    "                   the files are not the N shards of one evaluation: one is\n"
    "                   not a readable shard document, shards differ in N, slice,\n"
    "                   seed, method, params, noise, magnify or models, or a shard\n"
    "                   is missing or given twice\n"
    CLI_SERVER_HELP
    "Remotely the evaluation is a job of the daemon (its progress shown here);\n"
    "--model-dir, --threads and --data are the daemon's own.\n";

static void evaluate_usage(FILE *f)
{
    char methods[128];
    fputs(evaluate_usage_head, f);
    fprintf(f, "  --method M       one of %s (default lbfgs)\n",
            bs_attack_method_list(", ", methods, sizeof methods));
    fputs(evaluate_usage_tail, f);
}

/* The evaluated models, by name. */
typedef struct model_set {
    char *names[BS_EVAL_MAX_MODELS];
    bs_model *models[BS_EVAL_MAX_MODELS];
    int n;
} model_set;

static void model_set_free(model_set *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->names[i]);
        bs_model_free(s->models[i]);
    }
    s->n = 0;
}

/* Loads one model by name (in dir) or path. */
static int add_model(model_set *s, const char *dir, const char *item, char *err)
{
    char path[4096], name[256];
    size_t len = strlen(item);
    int is_path = strchr(item, '/') || (len > 12 && !strcmp(item + len - 12, ".safetensors")) ||
                  (len > 5 && !strcmp(item + len - 5, ".onnx"));
    if (is_path)
        snprintf(path, sizeof path, "%s", item);
    else
        snprintf(path, sizeof path, "%s/%s.safetensors", dir, item);
    cli_model_name(path, name, sizeof name);
    if (s->n == BS_EVAL_MAX_MODELS) {
        snprintf(err, BS_ERR_LEN, "an evaluation takes at most %d models", BS_EVAL_MAX_MODELS);
        return -1;
    }
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            snprintf(err, BS_ERR_LEN, "model %s is listed twice", name);
            return -1;
        }
    bs_model *m = cli_load_model(path, err);
    if (!m)
        return -1;
    s->names[s->n] = strdup(name);
    s->models[s->n++] = m;
    return s->names[s->n - 1] ? 0 : -1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every model of dir that takes the dataset's input, ordered by name (as
 * the daemon orders its resident models). */
static int add_all(model_set *s, const char *dir, const bs_dataset *d, char *err)
{
    DIR *dp = opendir(dir);
    if (!dp) {
        snprintf(err, BS_ERR_LEN, "cannot read the models folder %s", dir);
        return -1;
    }
    char *names[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) && n < 1024) {
        size_t len = strlen(e->d_name);
        if (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors"))
            names[n++] = strndup(e->d_name, len - 12);
    }
    closedir(dp);
    qsort(names, (size_t)n, sizeof *names, by_name);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (!rc && names[i]) {
            rc = add_model(s, dir, names[i], err);
            if (!rc && s->models[s->n - 1]->input_size != d->input_size) {
                s->n--;
                free(s->names[s->n]);
                bs_model_free(s->models[s->n]);
            }
        }
        free(names[i]);
    }
    if (!rc && s->n == 0) {
        snprintf(err, BS_ERR_LEN, "no model in %s takes the inputs of %s", dir, d->name);
        rc = -1;
    }
    return rc;
}

/* A number in [lo, hi] as a double: --noise 0.1 must be the 0.1 the
 * daemon reads from JSON, not the float nearest it. */
static int parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "blindspot evaluate: %s wants a number in [%g, %g], got '%s'\n", opt, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_noise(const char *s, bs_eval_config *cfg)
{
    cfg->n_noise = 0;
    if (!strcmp(s, "none"))
        return 0;
    char *copy = strdup(s), *save = NULL;
    int rc = copy ? 0 : -1;
    for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !rc;
         t = strtok_r(NULL, ",", &save)) {
        if (cfg->n_noise == BS_EVAL_MAX_NOISE) {
            fprintf(stderr, "blindspot evaluate: --noise takes at most %d values\n",
                    BS_EVAL_MAX_NOISE);
            rc = -1;
        } else if (parse_double("--noise", t, 1e-9, 10, &cfg->noise[cfg->n_noise])) {
            rc = -1;
        } else {
            cfg->n_noise++;
        }
    }
    free(copy);
    return rc;
}

static void pct(double v)
{
    printf(" %7.1f%%", 100.0 * v);
}

static double num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

/* A share, or "-" when the document has null (no recorded error). */
static void pct_or_dash(const json_t *v)
{
    if (json_is_number(v))
        pct(json_number_value(v));
    else
        printf(" %8s", "-");
}

/* Rows: the examples made for each model; columns: the models judged. */
static void print_matrix(const json_t *names, const json_t *m, const json_t *distortion,
                         double fixed)
{
    size_t i, j;
    const json_t *row, *col;
    printf("  %-18s %10s", "examples for", "distortion");
    json_array_foreach(names, j, col)
        printf(" %8.8s", json_string_value(col));
    putchar('\n');
    json_array_foreach(names, i, row) {
        const char *name = json_string_value(row);
        printf("  %-18s %10.4f", name, distortion ? num(distortion, name) : fixed);
        json_array_foreach(names, j, col)
            pct(num(json_object_get(m, name), json_string_value(col)));
        putchar('\n');
    }
}

/* The text form of api/evaluate_json.h's document: the paper's tables. */
static void print_evaluation(const json_t *doc)
{
    const json_t *names = json_object_get(doc, "models");
    const json_t *t1 = json_object_get(doc, "table1"), *t2 = json_object_get(doc, "table2");
    const json_t *ratio = json_object_get(doc, "max_ratio");
    int first = (int)json_integer_value(json_object_get(doc, "first"));
    int n = (int)json_integer_value(json_object_get(doc, "n"));
    printf("%s %s images %d..%d, %s, seed %lld: %s\n\n",
           json_string_value(json_object_get(doc, "dataset")),
           json_string_value(json_object_get(doc, "split")), first, first + n - 1,
           json_string_value(json_object_get(doc, "method")),
           (long long)json_integer_value(json_object_get(doc, "seed")),
           json_string_value(json_object_get(doc, "status")));
    printf("Table 1\n  %-18s %9s %9s %9s %9s %11s %9s\n", "model", "train err", "test err",
           "slice err", "success", "distortion", "max ratio");
    size_t i;
    const json_t *v;
    json_array_foreach(names, i, v) {
        const char *name = json_string_value(v);
        const json_t *row = json_object_get(t1, name);
        printf("  %-18s", name);
        pct_or_dash(json_object_get(row, "train_error"));
        pct_or_dash(json_object_get(row, "test_error"));
        pct(num(row, "slice_error"));
        pct(num(row, "success_rate"));
        printf(" %11.4f %9.4g\n", num(row, "mean_distortion"), num(ratio, name));
    }
    printf("\nTable 2: error rate of each model (columns) on the examples made for each "
           "model (rows)\n");
    print_matrix(names, json_object_get(t2, "error"), json_object_get(t2, "distortion"), 0);
    json_array_foreach(json_object_get(t2, "noise"), i, v) {
        char label[32];
        snprintf(label, sizeof label, "noise stddev %.2g", num(v, "stddev"));
        printf("  %-18s %10.4f", label, num(v, "distortion"));
        size_t j;
        const json_t *col;
        json_array_foreach(names, j, col)
            pct(num(json_object_get(v, "error"), json_string_value(col)));
        putchar('\n');
    }
    const json_t *magnified = json_object_get(doc, "magnified");
    if (json_is_object(magnified)) {
        printf("\nTable 3: the same with each perturbation magnified to distortion %g\n",
               num(magnified, "distortion"));
        print_matrix(names, json_object_get(magnified, "error"), NULL,
                     num(magnified, "distortion"));
    }
}

/* The request of the daemon's POST /v1/evaluations for these options
 * (models NULL: every resident one that takes the dataset's input). */
static json_t *remote_request(const char *list, const char *dataset, const char *split,
                              const char *method, const json_t *params,
                              const bs_eval_config *cfg)
{
    json_t *noise = json_array();
    for (int k = 0; k < cfg->n_noise; k++)
        json_array_append_new(noise, json_real(cfg->noise[k]));
    json_t *body = json_pack("{s:s, s:s, s:i, s:i, s:I, s:s, s:O, s:o, s:f}", "dataset",
                             dataset, "split", split, "first", cfg->first, "n", cfg->n, "seed",
                             (json_int_t)cfg->seed, "method", method, "params", params,
                             "noise", noise, "magnify", cfg->magnify);
    if (body && list) {
        json_t *models = json_array();
        char *copy = strdup(list), *save = NULL, name[256];
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(models, json_string(cli_model_name(t, name, sizeof name)));
        free(copy);
        json_object_set_new(body, "models", models);
    }
    return body;
}

/* --shard I/N into index and count. */
static int parse_shard(const char *s, long *index, long *count)
{
    char *slash = strchr(s, '/'), head[32];
    if (slash && (size_t)(slash - s) < sizeof head) {
        memcpy(head, s, (size_t)(slash - s));
        head[slash - s] = '\0';
        if (!cli_parse_long("--shard's N", slash + 1, 1, 1000000, count) &&
            !cli_parse_long("--shard's I", head, 0, *count - 1, index))
            return 0;
    }
    fprintf(stderr, "blindspot evaluate: --shard wants I/N with 0 <= I < N, got '%s'\n", s);
    return -1;
}

/* Writes a shard document to path (through a temporary file renamed over
 * it, so that a stopped run leaves no half document), or stdout for NULL.
 * Takes doc. Returns the exit status. */
static int write_shard(json_t *doc, const char *path)
{
    char *text = doc ? json_dumps(doc, BS_EVAL_SHARD_JSON_FLAGS) : NULL;
    json_decref(doc);
    if (!text)
        return cli_fail("evaluate", "out of memory");
    if (!path) {
        puts(text);
        free(text);
        return 0;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    ok = f && !fclose(f) && ok;
    free(text);
    if (!ok || rename(tmp, path)) {
        int e = errno;
        remove(tmp);
        return cli_fail("evaluate", "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

/* --shard: measures shard index of count of the evaluation of s's models
 * on d and writes its document to path (NULL: stdout). The exit status. */
static int run_shard(const model_set *s, const bs_dataset *d, const bs_eval_config *cfg,
                     int index, int count, cli_progress *pc, const char *path)
{
    const bs_model *const *models = (const bs_model *const *)s->models;
    char err[BS_ERR_LEN];
    if (bs_evaluate_check(models, s->n, d, cfg, err))
        return cli_fail("evaluate", "%s", err);
    bs_eval_images *im = bs_eval_images_new(s->n, cfg->n_noise, cfg->n);
    if (!im)
        return cli_fail("evaluate", "out of memory");
    int lo, hi, rc;
    bs_attack_status status;
    bs_eval_shard_range(cfg->n, index, count, &lo, &hi);
    if (bs_evaluate_images(models, s->n, d, cfg, lo, hi, NULL, cli_show_progress, NULL, pc, im,
                           NULL, NULL, &status, err)) {
        rc = cli_fail("evaluate", "%s", err);
    } else {
        bs_eval_labels l;
        bs_eval_labels_of(&l, (const char *const *)s->names, models, s->n, d);
        rc = write_shard(bs_eval_shard_json(im, index, count, status, &l, cfg), path);
    }
    bs_eval_images_free(im);
    return rc;
}

/* --merge: the documents of files[0..n-1] merged, printed as a run
 * without --shard prints. */
static int merge_files(char **files, int n, int json)
{
    if (n < 1) {
        fputs("blindspot evaluate: --merge wants the shard documents' files\n", stderr);
        return 2;
    }
    json_t **docs = calloc((size_t)n, sizeof *docs);
    if (!docs)
        return cli_fail("evaluate", "out of memory");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        json_error_t e;
        docs[i] = json_load_file(files[i], JSON_REJECT_DUPLICATES, &e);
        if (!docs[i]) {
            cli_fail("evaluate", "%s is not a shard document: %s (line %d)", files[i], e.text,
                     e.line);
            rc = 2;
        }
    }
    char err[BS_ERR_LEN];
    json_t *doc = rc ? NULL : bs_eval_merge(docs, (const char *const *)files, n, err);
    if (!rc && !doc) {
        cli_fail("evaluate", "%s", err);
        rc = 2;
    }
    for (int i = 0; i < n; i++)
        json_decref(docs[i]);
    free(docs);
    return rc ? rc : cli_output("evaluate", doc, json, print_evaluation);
}

int cli_evaluate(int argc, char **argv)
{
    enum { O_MODELS = 1000, O_MODEL_DIR, O_DATASET, O_SPLIT, O_FIRST, O_N, O_SEED, O_METHOD,
           O_PARAM, O_NOISE, O_MAGNIFY, O_THREADS, O_DATA, O_JSON, O_SERVER, O_SHARD, O_MERGE };
    static const struct option opts[] = {
        {"models", required_argument, 0, O_MODELS}, {"model-dir", required_argument, 0, O_MODEL_DIR},
        {"dataset", required_argument, 0, O_DATASET}, {"split", required_argument, 0, O_SPLIT},
        {"first", required_argument, 0, O_FIRST}, {"n", required_argument, 0, O_N},
        {"seed", required_argument, 0, O_SEED}, {"method", required_argument, 0, O_METHOD},
        {"param", required_argument, 0, O_PARAM}, {"noise", required_argument, 0, O_NOISE},
        {"magnify", required_argument, 0, O_MAGNIFY}, {"threads", required_argument, 0, O_THREADS},
        {"data", required_argument, 0, O_DATA}, {"json", no_argument, 0, O_JSON},
        {"server", required_argument, 0, O_SERVER}, {"shard", required_argument, 0, O_SHARD},
        {"merge", no_argument, 0, O_MERGE}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *list = NULL, *dir = "models", *dataset = "mnist", *split = "test";
    const char *method = "lbfgs", *data_flag = NULL, *server_flag = NULL, *out_path = NULL;
    bs_eval_config cfg = bs_eval_defaults();
    long first = cfg.first, n = cfg.n, seed = (long)cfg.seed, threads = 1;
    long shard = -1, shards = 0;
    int json = 0, merge = 0, others = 0, c, rc = 2;
    json_t *params = json_object();
    model_set s = {0};
    bs_dataset d = {0};
    bs_eval_result *r = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        others += c != O_JSON && c != O_MERGE && c != 'h';
        switch (c) {
        case O_MODELS: list = optarg; break;
        case O_MODEL_DIR: dir = optarg; break;
        case O_DATASET: dataset = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_FIRST:
            if (cli_parse_long("--first", optarg, 0, 10000000, &first)) goto out;
            break;
        case O_N:
            if (cli_parse_long("--n", optarg, 1, 10000000, &n)) goto out;
            break;
        case O_SEED:
            if (cli_parse_long("--seed", optarg, 0, 0x7fffffffL, &seed)) goto out;
            break;
        case O_METHOD: method = optarg; break;
        case O_PARAM:
            if (cli_add_param(params, optarg)) {
                fprintf(stderr, "blindspot evaluate: --param wants KEY=VALUE, got '%s'\n", optarg);
                goto out;
            }
            break;
        case O_NOISE:
            if (parse_noise(optarg, &cfg)) goto out;
            break;
        case O_MAGNIFY:
            if (parse_double("--magnify", optarg, 0, 1, &cfg.magnify)) goto out;
            break;
        case O_THREADS:
            if (cli_parse_long("--threads", optarg, 1, 64, &threads)) goto out;
            break;
        case O_DATA: data_flag = optarg; break;
        case O_JSON: json = 1; break;
        case O_SERVER: server_flag = optarg; break;
        case O_SHARD:
            if (parse_shard(optarg, &shard, &shards)) goto out;
            break;
        case 'o': out_path = optarg; break;
        case O_MERGE: merge = 1; break;
        case 'h': evaluate_usage(stdout); rc = 0; goto out;
        default: evaluate_usage(stderr); goto out;
        }
    }
    if (merge) {
        if (others) {
            fputs("blindspot evaluate: --merge takes only --json and the files; the "
                  "evaluation is the one the shards made\n", stderr);
            goto out;
        }
        rc = merge_files(argv + optind, argc - optind, json);
        goto out;
    }
    if (optind != argc) {
        fputs("blindspot evaluate: unexpected argument\n\n", stderr);
        evaluate_usage(stderr);
        goto out;
    }
    const char *server = cli_server(server_flag);
    if (shards && server) {
        fputs("blindspot evaluate: --shard runs here, not with --server: the daemon shards "
              "its evaluation jobs by itself\n", stderr);
        goto out;
    }
    if (out_path && !shards) {
        fputs("blindspot evaluate: -o writes a shard document; it goes with --shard\n", stderr);
        goto out;
    }
    rc = 1;
    char err[BS_ERR_LEN];
    if (bs_attack_params_from_json(params, method, &cfg.params, err)) {
        cli_fail("evaluate", "%s", err);
        goto out;
    }
    cfg.first = (int)first;
    cfg.n = (int)n;
    cfg.seed = (uint64_t)seed;
    cfg.threads = (int)threads;
    cli_progress pc = {.start = time(NULL), .tty = isatty(2)};
    if (server) {
        json_t *doc = cli_remote_job("evaluate", server, "/v1/evaluations",
                                     remote_request(list, dataset, split, method, params, &cfg),
                                     &pc);
        rc = doc ? cli_output("evaluate", doc, json, print_evaluation) : 1;
        goto out;
    }
    if (bs_dataset_load(cli_data_dir(data_flag), dataset, split, &d, err)) {
        cli_fail("evaluate", "%s", err);
        goto out;
    }
    if (list) {
        char *copy = strdup(list), *save = NULL;
        int bad = !copy;
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !bad;
             t = strtok_r(NULL, ",", &save))
            bad = add_model(&s, dir, t, err);
        free(copy);
        if (bad) {
            cli_fail("evaluate", "%s", err);
            goto out;
        }
    } else if (add_all(&s, dir, &d, err)) {
        cli_fail("evaluate", "%s", err);
        goto out;
    }
    if (shards) {
        rc = run_shard(&s, &d, &cfg, (int)shard, (int)shards, &pc, out_path);
        goto out;
    }
    r = malloc(sizeof *r);
    if (!r) {
        cli_fail("evaluate", "out of memory");
        goto out;
    }
    if (bs_evaluate_transfer((const bs_model *const *)s.models, s.n, &d, &cfg, NULL,
                             cli_show_progress, &pc, r, NULL, NULL, err)) {
        cli_fail("evaluate", "%s", err);
        goto out;
    }
    rc = cli_output("evaluate", bs_eval_result_json(r, (const char *const *)s.names,
                                                    (const bs_model *const *)s.models, &d, &cfg),
                    json, print_evaluation);
out:
    json_decref(params);
    free(r);
    model_set_free(&s);
    bs_dataset_free(&d);
    return rc;
}
