/* cli_attack — `blindspot attack`: one image, one or more target labels,
 * the attack core, and its answer as text, JSON or an adversarial PNG. */
#include "api/cli.h"

#include "api/attack_json.h"
#include "api/attack_request.h"
#include "api/base64.h"
#include "core/attack.h"
#include "core/dataset.h"
#include "core/model_file.h"
#include "core/team.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The usage text around the parts made from core/attack.h's tables. */
static const char *attack_usage_head =
    "usage: blindspot attack --model FILE --target T [image] [options]\n"
    "\n"
    "Finds, for each target label, a small perturbation r such that the model\n"
    "calls x+r the target, and reports the perturbation's norms (L0, L1, L2,\n"
    "Linf and the paper's distortion sqrt(sum r_i^2 / n)), the search's c, the\n"
    "optimiser's iterations and evaluations, and the model's label before and\n"
    "after. The returned image is the 8-bit one a PNG holds, checked again after\n"
    "rounding.\n"
    "\n"
    "image (one of):\n"
    "  --dataset NAME --index I [--split S]   a dataset sample (split default test)\n"
    "  --image FILE       a PNG or JPEG, converted to the model's input (gray or\n"
    "                     RGB, fitted per --resize, area-averaged) and inverted\n"
    "                     per --invert\n"
    "  --invert MODE      auto (default: invert dark-on-light images for a\n"
    "                     one-channel model), yes, no\n"
    "  --resize MODE      an image of another aspect ratio: stretch (default),\n"
    "                     crop (the centred part of the model's aspect ratio),\n"
    "                     pad (fit inside, centred, background around) or\n"
    "                     pad-right (full height, at the left: text lines)\n"
    "options:\n"
    "  --model FILE       the model to attack (.safetensors or .onnx)\n"
    "  --target T         a label, a comma-separated list, or all\n"
    "  --method M         the attack, one of (default lbfgs):\n";
static const char *attack_usage_params =
    "  --param KEY=VALUE  a parameter of the method; repeatable. Each method's\n"
    "                     parameters with their defaults (a|b: a choice):\n";
static const char *attack_usage_tail =
    "                     optimizer native is the C port of L-BFGS-B 3.0 in\n"
    "                     core/lbfgsb.c, reference the Fortran original.\n"
    "  --timeout S        stop after S seconds with the best result so far\n"
    "  --threads N        threads inside the attack (default 1, at most 64): the\n"
    "                     model's big products (convolutions and wide linear\n"
    "                     layers) are split among them; the result is bit for\n"
    "                     bit that of one thread. Local attacks only\n"
    "  --models DIR       every model in DIR taking the same input predicts each\n"
    "                     result, listed by name (default: models; --models none:\n"
    "                     only the attacked one). With --server, every resident\n"
    "                     model taking the same input, or none\n"
    "  -o, --out FILE     write the adversarial PNG (FILE-T.png per target when\n"
    "                     several), the one the answer holds\n"
    "  --data DIR         data folder (default: $BLINDSPOT_DATA or data)\n"
    "  --json             print the answer as JSON (as the daemon's POST /v1/attacks)\n"
    CLI_SERVER_HELP
    "Remotely the attack is a job of the daemon (POST /v1/attacks?async=true), its\n"
    "budget the daemon's --job-timeout unless --timeout is lower; the image file\n"
    "is sent with it, a dataset sample is the daemon's own (--data is not used).\n"
    "\n"
    "A target the model already gives for the image is not searched: it is\n"
    "reported as already classified (status already_target in JSON), not as a\n"
    "success. A reported model is \"fooled\" when its answer moved to the target.\n"
    "\n"
    "Exit status: 0 when every target was reached by a perturbation, 1 when one\n"
    "was not (or was already the label) or on an error, 2 on bad usage.\n"
    "\n"
    "The c search: the objective is c*||r||^2 + xent(f(x+r), target); c grows\n"
    "(or shrinks) by c_factor from initial_c until success flips, then is\n"
    "bisected; the largest c that succeeds gives the smallest r.\n";

/* Prints words, starting at column `col`, wrapped before column 80 onto
 * lines indented by `indent` spaces. */
static void print_wrapped(FILE *f, const char *words, int col, int indent)
{
    for (const char *w = words; *w;) {
        int len = (int)strcspn(w, " ");
        if (col > indent && col + 1 + len >= 80) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fprintf(f, "%.*s", len, w);
        col += len;
        w += len;
        w += strspn(w, " ");
    }
    fputc('\n', f);
}

/* The usage, its method list and parameters from bs_attack_methods. */
static void attack_usage(FILE *f)
{
    fputs(attack_usage_head, f);
    for (int i = 0; i < BS_ATTACK_N_METHODS; i++) {
        const bs_attack_method_info *m = &bs_attack_methods[i];
        fprintf(f, "%23s%-8s", "", m->name);
        print_wrapped(f, m->summary, 31, 31);
    }
    fputs(attack_usage_params, f);
    for (int i = 0; i < BS_ATTACK_N_METHODS; i++) {
        const bs_attack_method_info *m = &bs_attack_methods[i];
        char list[1024], value[32];
        size_t used = 0;
        for (const char *s = m->params; *s && used < sizeof list;) {
            int len = (int)strcspn(s, " ");
            char name[32];
            snprintf(name, sizeof name, "%.*s", len, s);
            const bs_attack_param_info *p = bs_attack_param_find(name);
            bs_attack_param_format(&m->defaults, p, value, sizeof value);
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%s=%s%s%s",
                                     used ? " " : "", name, value,
                                     p->kind == BS_PARAM_CHOICE ? "|" : "",
                                     p->kind != BS_PARAM_CHOICE ? ""
                                     : strcmp(value, p->choices[0]) ? p->choices[0]
                                                                    : p->choices[1]);
            s += len;
            s += strspn(s, " ");
        }
        fprintf(f, "%23s%s:", "", m->name);
        print_wrapped(f, list, 23 + (int)strlen(m->name) + 1, 25);
    }
    fputs(attack_usage_tail, f);
}

/* api/attack_request.h's view of the command line: the model of --model
 * under its file name, the models of --models, the dataset of --data. */
typedef struct cli_env {
    const bs_report_model *report;  /* m under its name, then the models of --models */
    int n_report;
    const char *data_dir;
    bs_dataset d;                   /* the split asked for, once loaded */
} cli_env;

static const bs_model *env_model(void *ctx, const char *name, const char **canonical, char *err)
{
    cli_env *c = ctx;
    for (int i = 0; i < c->n_report; i++)
        if (!strcmp(name, c->report[i].name)) {
            *canonical = c->report[i].name;
            return c->report[i].model;
        }
    snprintf(err, BS_ERR_LEN, "No model named '%.64s' is loaded; --model and --models name "
             "the files.", name);
    return NULL;
}

static int env_report_all(void *ctx, const bs_model *m, bs_report_model *out, int cap)
{
    cli_env *c = ctx;
    int n = 0;
    for (int i = 0; i < c->n_report && n < cap; i++)
        if (c->report[i].model->input_size == m->input_size &&
            c->report[i].model->input_shape[0] == m->input_shape[0])
            out[n++] = c->report[i];
    return n;
}

static int env_split(void *ctx, const char *dataset, const char *split, bs_image_split *out,
                     char *err)
{
    cli_env *c = ctx;
    bs_dataset_free(&c->d);
    if (bs_dataset_load(c->data_dir, dataset, split, &c->d, err))
        return -1;
    *out = (bs_image_split){.dataset = dataset, .split = split, .n = c->d.n,
                            .input_size = c->d.input_size,
                            .shape = {c->d.shape[0], c->d.shape[1], c->d.shape[2]}};
    return 0;
}

static int env_sample(void *ctx, const bs_image_split *split, int index, float *x)
{
    cli_env *c = ctx;
    memcpy(x, c->d.images + (size_t)index * split->input_size, split->input_size * sizeof *x);
    return 0;
}

void cli_attack_print_text(const json_t *answer)
{
    const char *model = json_string_value(json_object_get(answer, "model"));
    int original = (int)json_integer_value(
        json_object_get(json_object_get(answer, "original"), "label"));
    printf("%s: label %d, method %s\n", model, original,
           json_string_value(json_object_get(answer, "method")));
    size_t j, i;
    const json_t *r, *pred;
    json_array_foreach(json_object_get(answer, "results"), j, r) {
        int target = (int)json_integer_value(json_object_get(r, "target"));
        const char *status = json_string_value(json_object_get(r, "status"));
        const json_t *norms = json_object_get(r, "norms");
        if (status && !strcmp(status, "already_target")) {
            printf("target %d: already classified as %d; nothing to do\n", target, original);
            continue;
        }
        printf("target %d: %s%s, label %d (p=%.3f), L2 %.4f, Linf %.4f, L0 %d, "
               "distortion %.4f, c %.4g, %d iterations, %d evaluations, %.3f s\n",
               target, json_is_true(json_object_get(r, "success")) ? "success" : "failed",
               status && !strcmp(status, "timeout") ? " (timeout)"
               : status && !strcmp(status, "cancelled") ? " (cancelled)" : "",
               (int)json_integer_value(json_object_get(r, "label")),
               json_number_value(json_object_get(r, "target_probability")),
               json_number_value(json_object_get(norms, "l2")),
               json_number_value(json_object_get(norms, "linf")),
               (int)json_integer_value(json_object_get(norms, "l0")),
               json_number_value(json_object_get(norms, "distortion")),
               json_number_value(json_object_get(r, "c")),
               (int)json_integer_value(json_object_get(r, "iterations")),
               (int)json_integer_value(json_object_get(r, "evaluations")),
               json_number_value(json_object_get(r, "seconds")));
        int skipped = 0;
        json_array_foreach(json_object_get(r, "predictions"), i, pred) {
            const char *who = json_string_value(json_object_get(pred, "model"));
            if (!skipped && who && model && !strcmp(who, model)) {
                skipped = 1;
                continue;
            }
            int label = (int)json_integer_value(json_object_get(pred, "label"));
            printf("    %-20s says %d%s\n", who ? who : "?", label,
                   json_is_true(json_object_get(pred, "fooled")) ? " (fooled)"
                   : label == target ? " (already so on the original)" : "");
        }
    }
}

/* The answer to request (taken) attacked here: the model of model_path,
 * the models of models_dir to report on (NULL: none), the image file's
 * bytes (or NULL for the request's dataset sample), with a team of threads
 * lent to the attack's workspace when threads > 1. NULL after a message. */
static json_t *attack_here(json_t *request, const char *model_path, const char *models_dir,
                           const uint8_t *file, size_t file_len, const char *data_dir,
                           int threads)
{
    char err[BS_ERR_LEN], name[256];
    bs_attack_request req = {0};
    bs_attack_result *res = NULL;
    bs_report_model report[CLI_MAX_REPORT];
    int n_report = 0, k = 0, targets[BS_MAX_TARGETS];
    cli_env env = {.data_dir = data_dir};
    json_t *doc = NULL;
    bs_team *team = NULL;
    bs_scratch *scratch = NULL;
    bs_model *m = cli_load_model(model_path, err);
    if (!m) {
        cli_fail("attack", "%s", err);
        goto done;
    }
    report[n_report++] = (bs_report_model){strdup(cli_model_name(model_path, name, sizeof name)),
                                           m};
    if (models_dir && cli_load_models(models_dir, m, model_path, report, &n_report, err)) {
        cli_fail("attack", "%s", err);
        goto done;
    }
    env.report = report;
    env.n_report = n_report;
    bs_attack_env callbacks = {.ctx = &env, .model = env_model, .report_all = env_report_all,
                               .max_report = n_report,
                               .datasets = {&env, env_split, env_sample},
                               .max_pixels = CLI_MAX_PIXELS};
    bs_api_error e;
    if (bs_attack_request_parse(request, file, file_len, &callbacks, &req, &e)) {
        cli_fail("attack", "%s", e.message);
        goto done;
    }
    bs_workspace *ws = bs_workspace_new(m, 1);
    int original = ws ? bs_argmax(bs_model_forward(m, ws, req.x, 1), m->classes) : 0;
    bs_workspace_free(ws);
    if (bs_attack_request_targets(&req, original, targets, &k, &e)) {
        cli_fail("attack", "%s", e.message);
        goto done;
    }
    if (threads > 1) {
        if (!(team = bs_team_new(threads)) || !(scratch = bs_scratch_new())) {
            cli_fail("attack", "cannot start %d threads", threads);
            goto done;
        }
        bs_scratch_team(scratch, team);
    }
    res = calloc((size_t)k, sizeof *res);
    bs_control ctl = {.deadline = req.timeout > 0 ? bs_now() + req.timeout : 0.0};
    if (!res || bs_attack_run(m, req.x, targets, k, &req.params, &ctl, scratch, res,
                              res ? err : "out of memory")) {
        cli_fail("attack", "%s", res ? err : "out of memory");
        free(res);
        res = NULL;
        goto done;
    }
    if (!(doc = bs_attack_request_answer(&req, res, k, err)))
        cli_fail("attack", "%s", err);
done:
    if (res)
        for (int j = 0; j < k; j++)
            bs_attack_result_free(&res[j]);
    free(res);
    bs_scratch_free(scratch);
    bs_team_free(team);
    bs_attack_request_free(&req);
    json_decref(request);
    bs_dataset_free(&env.d);
    for (int i = 0; i < n_report; i++) {
        free((char *)report[i].name);
        if (i > 0)
            bs_model_free((bs_model *)report[i].model);
    }
    bs_model_free(m);
    return doc;
}

/* The answer to request (taken) attacked by the daemon at server, the
 * image file's bytes sent as base64 in it. As a job: its budget is the
 * daemon's --job-timeout, not a request's, as a local run has none. NULL
 * after a message. */
static json_t *attack_remote(const char *server, json_t *request, const uint8_t *file,
                             size_t file_len)
{
    if (file) {
        /* the daemon sniffs the format; the key only has to be one */
        char *b64 = bs_base64_encode(file, file_len);
        int png = file_len >= 4 && !memcmp(file, "\x89PNG", 4);
        if (!b64) {
            json_decref(request);
            cli_fail("attack", "out of memory");
            return NULL;
        }
        json_object_set_new(request, "image", json_pack("{s:s}", png ? "png" : "jpeg", b64));
        free(b64);
    }
    return cli_remote_job("attack", server, "/v1/attacks?async=true", request, NULL);
}

/* Writes the PNG of each result of the answer to out (out-T.png for
 * target T when there are several), as the answer holds it. 0, or -1
 * after a message. */
static int write_images(const json_t *doc, const char *out)
{
    const json_t *results = json_object_get(doc, "results");
    size_t k = json_array_size(results), j;
    const json_t *r;
    json_array_foreach(results, j, r) {
        char path[1024], err[BS_ERR_LEN];
        if (k == 1) {
            snprintf(path, sizeof path, "%s", out);
        } else {
            const char *dot = strrchr(out, '.');
            int stem = dot ? (int)(dot - out) : (int)strlen(out);
            snprintf(path, sizeof path, "%.*s-%d%s", stem, out,
                     (int)json_integer_value(json_object_get(r, "target")), dot ? dot : ".png");
        }
        const json_t *data = json_object_get(json_object_get(r, "image"), "data");
        size_t len;
        uint8_t *png = json_is_string(data) ? bs_base64_decode(json_string_value(data),
                                                               json_string_length(data), &len,
                                                               err)
                                            : NULL;
        if (!png) {
            cli_fail("attack", "the answer holds no PNG for target %d",
                     (int)json_integer_value(json_object_get(r, "target")));
            return -1;
        }
        FILE *f = fopen(path, "wb");
        int ok = f && fwrite(png, 1, len, f) == len;
        if (f && fclose(f) != 0)
            ok = 0;
        free(png);
        if (!ok) {
            cli_fail("attack", "cannot write %s", path);
            return -1;
        }
    }
    return 0;
}

int cli_attack(int argc, char **argv)
{
    enum { O_MODEL = 1000, O_TARGET, O_DATASET, O_SPLIT, O_INDEX, O_IMAGE, O_INVERT, O_RESIZE,
           O_METHOD, O_PARAM, O_TIMEOUT, O_THREADS, O_REPORT, O_OUT, O_DATA, O_JSON,
           O_SERVER };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"target", required_argument, 0, O_TARGET},
        {"dataset", required_argument, 0, O_DATASET}, {"split", required_argument, 0, O_SPLIT},
        {"index", required_argument, 0, O_INDEX}, {"image", required_argument, 0, O_IMAGE},
        {"invert", required_argument, 0, O_INVERT}, {"resize", required_argument, 0, O_RESIZE},
        {"method", required_argument, 0, O_METHOD},
        {"param", required_argument, 0, O_PARAM}, {"timeout", required_argument, 0, O_TIMEOUT},
        {"threads", required_argument, 0, O_THREADS},
        {"models", required_argument, 0, O_REPORT}, {"out", required_argument, 0, 'o'},
        {"data", required_argument, 0, O_DATA}, {"json", no_argument, 0, O_JSON},
        {"server", required_argument, 0, O_SERVER}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *model_path = NULL, *target_s = NULL, *dataset = NULL, *split = "test";
    const char *image = NULL, *method = NULL, *invert = NULL, *resize = NULL;
    const char *models_dir = "models";
    const char *out = NULL, *data_flag = NULL, *server_flag = NULL;
    int models_flag = 0;
    long index = -1, threads = 1;
    float timeout = 0.0f;
    int json = 0, c, rc = 2;
    json_t *params = json_object();
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_TARGET: target_s = optarg; break;
        case O_DATASET: dataset = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_INDEX:
            if (cli_parse_long("--index", optarg, 0, 100000000, &index)) goto out;
            break;
        case O_IMAGE: image = optarg; break;
        case O_INVERT: invert = optarg; break;
        case O_RESIZE: resize = optarg; break;
        case O_METHOD: method = optarg; break;
        case O_PARAM:
            if (cli_add_param(params, optarg)) {
                fprintf(stderr, "blindspot attack: --param wants KEY=VALUE, got '%s'\n", optarg);
                goto out;
            }
            break;
        case O_TIMEOUT:
            if (cli_parse_float("--timeout", optarg, 0.001, 1e6, &timeout)) goto out;
            break;
        case O_THREADS:
            if (cli_parse_long("--threads", optarg, 1, BS_TEAM_MAX, &threads)) goto out;
            break;
        case O_REPORT: models_dir = optarg; models_flag = 1; break;
        case 'o': out = optarg; break;
        case O_DATA: data_flag = optarg; break;
        case O_JSON: json = 1; break;
        case O_SERVER: server_flag = optarg; break;
        case 'h': attack_usage(stdout); rc = 0; goto out;
        default: attack_usage(stderr); goto out;
        }
    }
    if (!model_path || !target_s || optind != argc || (!image == !(dataset && index >= 0))) {
        fprintf(stderr, "blindspot attack: %s\n\n",
                optind != argc ? "unexpected argument"
                : !model_path || !target_s ? "--model and --target are required"
                : "give either --image FILE or --dataset NAME --index I");
        attack_usage(stderr);
        goto out;
    }
    const char *server = cli_server(server_flag);
    int no_report = !strcmp(models_dir, "none");
    if (server && threads > 1) {
        fprintf(stderr, "blindspot attack: --threads applies to a local attack; the daemon "
                        "runs its own\n");
        goto out;
    }
    if (server && models_flag && !no_report) {
        fprintf(stderr, "blindspot attack: --models names a folder here; on the daemon every "
                        "resident model taking the same input reports (--models none: only "
                        "the attacked one)\n");
        goto out;
    }

    char err[BS_ERR_LEN], name[256];
    rc = 1;
    uint8_t *file = NULL;
    size_t file_len = 0;
    if (image && !(file = cli_read_file(image, &file_len, err))) {
        cli_fail("attack", "%s", err);
        goto out;
    }
    /* The request POST /v1/attacks takes, parsed here by the same code. */
    cli_model_name(model_path, name, sizeof name);
    json_t *request = json_pack("{s:s, s:o}", "model", name, "target",
                                bs_attack_form_value("target", target_s));
    if (!image)
        json_object_set_new(request, "image", json_pack("{s:s, s:s, s:I}", "dataset", dataset,
                                                        "split", split, "index",
                                                        (json_int_t)index));
    if (method)
        json_object_set_new(request, "method", json_string(method));
    if (json_object_size(params))
        json_object_set(request, "params", params);
    if (invert)
        json_object_set_new(request, "invert", json_string(invert));
    if (resize)
        json_object_set_new(request, "resize", json_string(resize));
    if (timeout > 0)
        json_object_set_new(request, "timeout", json_real(timeout));
    if (no_report)
        json_object_set_new(request, "report", json_pack("[s]", name));
    /* the default folder may be absent here; a folder the user named may not */
    struct stat st;
    int use_dir = !no_report &&
                  (models_flag || (stat(models_dir, &st) == 0 && S_ISDIR(st.st_mode)));
    json_t *doc = server ? attack_remote(server, request, file, file_len)
                         : attack_here(request, model_path, use_dir ? models_dir : NULL, file,
                                       file_len, cli_data_dir(data_flag), (int)threads);
    free(file);
    if (!doc || (out && write_images(doc, out))) {
        json_decref(doc);
        goto out;
    }
    /* 0 only when every target was reached by a perturbation */
    size_t j;
    const json_t *r;
    int missed = 0;
    json_array_foreach(json_object_get(doc, "results"), j, r)
        missed |= !json_is_true(json_object_get(r, "success"));
    rc = cli_output("attack", doc, json, cli_attack_print_text);
    if (rc == 0)
        rc = missed;
out:
    json_decref(params);
    return rc;
}

/* A printf format: %s takes the method list. */
static const char *eval_usage =
    "usage: blindspot eval --model FILE [--n N] [--method M] [options]\n"
    "\n"
    "Attacks the first N images of a dataset split, each towards the target\n"
    "(label+1) mod classes, and prints the success rate (judged on the 8-bit\n"
    "image), the untargeted rate (label no longer the original), the mean and\n"
    "median distortion of the successes, mean iterations and evaluations, and\n"
    "attacks per second (one thread).\n"
    "\n"
    "  --model FILE       the model (.safetensors or .onnx)\n"
    "  --dataset NAME     default mnist; --split S default test; --data DIR\n"
    "  --n N              images (default 100)\n"
    "  --method M         %s (default lbfgs)\n"
    "  --param KEY=VALUE  a method parameter, as for `blindspot attack`\n"
    "  --json             print the figures as JSON\n";

static void eval_help(FILE *f)
{
    char methods[128];
    fprintf(f, eval_usage, bs_attack_method_list(", ", methods, sizeof methods));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cli_eval(int argc, char **argv)
{
    enum { O_MODEL = 1000, O_DATASET, O_SPLIT, O_N, O_METHOD, O_PARAM, O_DATA, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL}, {"dataset", required_argument, 0, O_DATASET},
        {"split", required_argument, 0, O_SPLIT}, {"n", required_argument, 0, O_N},
        {"method", required_argument, 0, O_METHOD}, {"param", required_argument, 0, O_PARAM},
        {"data", required_argument, 0, O_DATA}, {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
    };
    const char *model_path = NULL, *dataset = "mnist", *split = "test", *method = "lbfgs";
    const char *data_flag = NULL;
    long n = 100;
    int json = 0, c, rc = 2;
    json_t *params = json_object();
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: model_path = optarg; break;
        case O_DATASET: dataset = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_N:
            if (cli_parse_long("--n", optarg, 1, 1000000, &n)) goto out;
            break;
        case O_METHOD: method = optarg; break;
        case O_PARAM:
            if (cli_add_param(params, optarg)) {
                fprintf(stderr, "blindspot eval: --param wants KEY=VALUE, got '%s'\n", optarg);
                goto out;
            }
            break;
        case O_DATA: data_flag = optarg; break;
        case O_JSON: json = 1; break;
        case 'h': eval_help(stdout); rc = 0; goto out;
        default: eval_help(stderr); goto out;
        }
    }
    if (!model_path || optind != argc) {
        fprintf(stderr, "blindspot eval: %s\n\n",
                model_path ? "unexpected argument" : "--model is required");
        eval_help(stderr);
        goto out;
    }
    char err[BS_ERR_LEN];
    bs_attack_params p;
    bs_dataset d = {0};
    double *dist = NULL;
    bs_scratch *scratch = NULL;
    rc = 1;
    bs_model *m = cli_load_model(model_path, err);
    if (!m || bs_attack_params_from_json(params, method, &p, err) ||
        bs_dataset_load(cli_data_dir(data_flag), dataset, split, &d, err)) {
        cli_fail("eval", "%s", err);
        goto done;
    }
    if (d.input_size != m->input_size) {
        cli_fail("eval", "dataset %s does not fit the model's input", dataset);
        goto done;
    }
    if (n > d.n)
        n = d.n;
    dist = malloc((size_t)n * sizeof(double));
    if (!dist) {
        cli_fail("eval", "out of memory");
        goto done;
    }
    int success = 0, untargeted = 0;
    long iterations = 0, evaluations = 0;
    /* one scratch for every attack: their buffers and workspace made once */
    scratch = bs_scratch_new();
    double t0 = bs_now();
    for (long i = 0; i < n; i++) {
        int target = (d.labels[i] + 1) % m->classes;
        bs_attack_result r;
        if (bs_attack_run(m, d.images + (size_t)i * d.input_size, &target, 1, &p, NULL, scratch,
                          &r, err)) {
            cli_fail("eval", "image %ld: %s", i, err);
            goto done;
        }
        if (r.success)
            dist[success++] = r.norms.distortion;
        untargeted += r.untargeted;
        iterations += r.iterations;
        evaluations += r.evaluations;
        bs_attack_result_free(&r);
        if (!json && isatty(2))
            fprintf(stderr, "\reval %ld/%ld", i + 1, n);
    }
    double secs = bs_now() - t0, mean = 0.0, median = 0.0;
    if (!json && isatty(2))
        fputc('\n', stderr);
    for (int i = 0; i < success; i++)
        mean += dist[i] / success;
    qsort(dist, (size_t)success, sizeof(double), cmp_double);
    if (success)
        median = success % 2 ? dist[success / 2]
                             : 0.5 * (dist[success / 2 - 1] + dist[success / 2]);
    if (json) {
        cli_print_json(json_pack("{s:s, s:s, s:s, s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o}",
                                 "model", model_path, "method", method, "dataset", dataset,
                                 "split", split, "images", (json_int_t)n,
                                 "success_rate", (double)success / n,
                                 "untargeted_rate", (double)untargeted / n,
                                 "mean_distortion", mean, "median_distortion", median,
                                 "mean_iterations", (double)iterations / n,
                                 "mean_evaluations", (double)evaluations / n,
                                 "attacks_per_second", n / secs,
                                 "params", bs_attack_params_to_json(&p)));
    } else {
        printf("%s, %s on %ld %s %s images (target label+1):\n"
               "  success %.1f%% (8-bit), untargeted %.1f%%\n"
               "  distortion mean %.4f, median %.4f\n"
               "  %.1f iterations, %.1f evaluations per attack, %.1f attacks/s\n",
               model_path, method, n, dataset, split, 100.0 * success / n,
               100.0 * untargeted / n, mean, median, (double)iterations / n,
               (double)evaluations / n, n / secs);
    }
    rc = 0;
done:
    bs_scratch_free(scratch);
    free(dist);
    bs_dataset_free(&d);
    bs_model_free(m);
out:
    json_decref(params);
    return rc;
}
