/* cli_model — `blindspot info` (what a model file holds) and `blindspot
 * predict` (a model's error rate and confusion matrix on a dataset split,
 * or its label for one image): the documents of api/model_json.h and
 * api/predict_json.h, printed as JSON or as text. */
#include "api/cli.h"

#include "api/image_input.h"
#include "api/model_json.h"
#include "api/predict_json.h"
#include "core/dataset.h"
#include "core/model.h"
#include "core/model_file.h"
#include "core/train.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *info_usage =
    "usage: blindspot info FILE [--json] [--server URL]\n"
    "\n"
    "Describes a model file: its layers with their output shapes, the number of\n"
    "parameters, the input shape, the classes, and every metadata entry (the\n"
    "dataset it was trained on, its measured train and test error, the command\n"
    "that trained it).\n"
    "\n"
    "  --json           print the same as JSON on stdout (the document of the\n"
    "                   daemon's GET /v1/models/NAME)\n"
    CLI_SERVER_HELP;

static const char *predict_usage =
    "usage: blindspot predict --model FILE [--dataset NAME] [--split SPLIT]\n"
    "                         [--first F] [--n N] [--json]\n"
    "       blindspot predict --model FILE --image FILE [--invert MODE] [--json]\n"
    "\n"
    "Runs a model over the images of a dataset split (all, or the slice F..F+N-1)\n"
    "and prints its error rate and confusion matrix (rows: true label, columns:\n"
    "prediction), beside the test error recorded in the file when there is one.\n"
    "With --image, classifies one PNG or JPEG instead: its label, the\n"
    "probabilities of every class, and the image as the model saw it after\n"
    "conversion (gray or RGB, area-averaged resize, inversion).\n"
    "\n"
    "  --model FILE     the model (.safetensors or .onnx)\n"
    "  --dataset NAME   mnist, mnist:P1, mnist:P2, fashion-mnist or a folder of\n"
    "                   IDX files (default: the dataset recorded in the model,\n"
    "                   else mnist)\n"
    "  --split SPLIT    train or test (default: test)\n"
    "  --first F        first image of the slice (default 0)\n"
    "  --n N            images in the slice (default: the rest of the split)\n"
    "  --image FILE     a PNG or JPEG to classify\n"
    "  --invert MODE    auto (default: invert dark-on-light images), yes, no\n"
    "  --data DIR       data folder (default: $BLINDSPOT_DATA or data)\n"
    "  --json           print the result as JSON on stdout (the document the\n"
    "                   daemon's POST /v1/models/NAME/predict answers)\n"
    CLI_SERVER_HELP;

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    return 0;
}

static void print_shape(const json_t *s)
{
    int c = (int)json_integer_value(json_array_get(s, 0));
    int h = (int)json_integer_value(json_array_get(s, 1));
    int w = (int)json_integer_value(json_array_get(s, 2));
    if (h == 1 && w == 1)
        printf("(%d)", c);
    else
        printf("(%d,%d,%d)", c, h, w);
}

/* The text form of api/model_json.h's document. */
static void print_info(const json_t *doc)
{
    printf("%s (%s)\n", json_string_value(json_object_get(doc, "name")),
           json_string_value(json_object_get(doc, "file")));
    const char *arch = json_string_value(json_object_get(doc, "arch"));
    if (arch)
        printf("  arch        %s\n", arch);
    printf("  input       ");
    print_shape(json_object_get(doc, "input_shape"));
    printf("\n  classes     %d\n  parameters  %lld\n  layers\n",
           (int)json_integer_value(json_object_get(doc, "classes")),
           (long long)json_integer_value(json_object_get(doc, "parameters")));
    size_t i;
    const json_t *l;
    json_array_foreach(json_object_get(doc, "layers"), i, l) {
        printf("    %2zu %-10s -> ", i, json_string_value(json_object_get(l, "type")));
        print_shape(json_object_get(l, "output_shape"));
        json_int_t n = json_integer_value(json_object_get(l, "parameters"));
        if (n)
            printf("  %lld parameters", (long long)n);
        putchar('\n');
    }
    printf("  metadata\n");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(doc, "metadata"), key, v)
        printf("    %-24s %s\n", key, json_string_value(v));
}

int cli_info(int argc, char **argv)
{
    const char *path = NULL, *server_flag = NULL;
    int json = 0;
    if (wants_help(argc, argv)) {
        fputs(info_usage, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--server") && i + 1 < argc)
            server_flag = argv[++i];
        else if (!strncmp(argv[i], "--server=", 9))
            server_flag = argv[i] + 9;
        else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "blindspot info: unexpected argument '%s'\n\n%s", argv[i], info_usage);
            return 2;
        } else
            path = argv[i];
    }
    if (!path) {
        fputs(info_usage, stderr);
        return 2;
    }
    char name[256];
    cli_model_name(path, name, sizeof name);
    const char *server = cli_server(server_flag);
    if (server) {
        char route[512];
        snprintf(route, sizeof route, "/v1/models/%s", name);
        json_t *doc = cli_remote_json("info", server, "GET", route, NULL);
        return doc ? cli_output("info", doc, json, print_info) : 1;
    }
    char err[BS_ERR_LEN];
    bs_model *m = cli_load_model(path, err);
    if (!m)
        return cli_fail("info", "%s", err);
    json_t *doc = bs_model_json(name, path, m);
    bs_model_free(m);
    return cli_output("info", doc, json, print_info);
}

/* The text form of api/predict_json.h's split document. */
static void print_split(const json_t *doc)
{
    int first = (int)json_integer_value(json_object_get(doc, "first"));
    int n = (int)json_integer_value(json_object_get(doc, "images"));
    const json_t *conf = json_object_get(doc, "confusion");
    const json_t *recorded = json_object_get(doc, "recorded_test_error");
    printf("%s on %s %s images %d..%d: error %.2f%% (%d of %d images)",
           json_string_value(json_object_get(doc, "model")),
           json_string_value(json_object_get(doc, "dataset")),
           json_string_value(json_object_get(doc, "split")), first, first + n - 1,
           100.0 * json_number_value(json_object_get(doc, "error_rate")),
           (int)json_integer_value(json_object_get(doc, "errors")), n);
    if (recorded)
        printf(", recorded test error %.2f%%", 100.0 * json_number_value(recorded));
    printf("\nconfusion (rows: true label, columns: prediction)\n      ");
    size_t V = json_array_size(conf);
    for (size_t p = 0; p < V; p++)
        printf("%6zu", p);
    putchar('\n');
    for (size_t y = 0; y < V; y++) {
        printf("%6zu", y);
        for (size_t p = 0; p < V; p++)
            printf("%6lld", (long long)json_integer_value(json_array_get(json_array_get(conf, y), p)));
        putchar('\n');
    }
}

/* The text form of api/predict_json.h's image document. */
static void print_image(const json_t *doc)
{
    const json_t *probs = json_object_get(doc, "probabilities");
    const json_t *input = json_object_get(doc, "input");
    int label = (int)json_integer_value(json_object_get(doc, "label"));
    int channels = (int)json_integer_value(json_object_get(input, "channels"));
    printf("%s: label %d (probability %.4f) for the image as the model saw it (%lldx%lld, "
           "%d channel%s%s)\n  label  probability\n",
           json_string_value(json_object_get(doc, "model")), label,
           json_number_value(json_array_get(probs, (size_t)label)),
           (long long)json_integer_value(json_object_get(input, "width")),
           (long long)json_integer_value(json_object_get(input, "height")), channels,
           channels == 1 ? "" : "s",
           json_is_true(json_object_get(input, "inverted")) ? ", inverted" : "");
    size_t i;
    const json_t *p;
    json_array_foreach(probs, i, p)
        printf("  %5zu  %.6g\n", i, json_number_value(p));
}

/* The image document for a PNG or JPEG file, classified here. */
static json_t *predict_file(const char *name, const bs_model *m, const char *file,
                            bs_invert inv, char *err)
{
    size_t len;
    uint8_t *bytes = cli_read_file(file, &len, err);
    float *x = malloc(m->input_size * sizeof *x);
    bs_workspace *ws = bs_workspace_new(m, 1);
    json_t *doc = NULL;
    bs_image_target t = {{m->input_shape[0], m->input_shape[1], m->input_shape[2]},
                         CLI_MAX_PIXELS, x, 0, name};
    bs_error_code code;
    if (bytes && (!x || !ws))
        snprintf(err, BS_ERR_LEN, "out of memory");
    else if (bytes && !bs_image_input_encoded(bytes, len, inv, &t, &code, err)) {
        doc = bs_predict_image_json(name, m, ws, x, t.inverted, err);
    }
    bs_workspace_free(ws);
    free(x);
    free(bytes);
    return doc;
}

/* The split document for images first .. first+n-1 (n 0: to the end). */
static json_t *predict_split(const char *name, const bs_model *m, const char *data_dir,
                             const char *dataset, const char *split, long first, long n,
                             char *err)
{
    bs_dataset d = {0};
    int *confusion = NULL;
    json_t *doc = NULL;
    if (bs_dataset_load(data_dir, dataset, split, &d, err))
        return NULL;
    if (first >= d.n || (n && first + n > d.n)) {
        snprintf(err, BS_ERR_LEN, "%s %s has images 0 to %d; the slice %ld..%ld runs past them",
                 dataset, split, d.n - 1, first, first + (n ? n : 1) - 1);
        goto out;
    }
    /* the slice, as a view into d */
    bs_dataset slice = d;
    slice.n = n ? (int)n : d.n - (int)first;
    slice.images = d.images + (size_t)first * d.input_size;
    slice.labels = d.labels + first;
    confusion = calloc((size_t)m->classes * m->classes, sizeof(int));
    if (!confusion) {
        snprintf(err, BS_ERR_LEN, "out of memory");
        goto out;
    }
    if (bs_evaluate(m, &slice, confusion, err) >= 0)
        doc = bs_predict_split_json(name, m, dataset, split, (int)first, slice.n, confusion);
out:
    free(confusion);
    bs_dataset_free(&d);
    return doc;
}

/* The image document of a PNG or JPEG file, classified by the daemon. */
static json_t *remote_file(const char *server, const char *name, const char *file,
                           const char *invert)
{
    char err[BS_ERR_LEN], route[512];
    size_t len;
    uint8_t *bytes = cli_read_file(file, &len, err);
    if (!bytes) {
        cli_fail("predict", "%s", err);
        return NULL;
    }
    /* the daemon sniffs the format; the media type only has to be one */
    int png = len >= 4 && !memcmp(bytes, "\x89PNG", 4);
    snprintf(route, sizeof route, "/v1/models/%s/predict?invert=%s", name, invert);
    json_t *doc = cli_remote_call("predict", server, "POST", route,
                                  png ? "image/png" : "image/jpeg", bytes, len);
    free(bytes);
    return doc;
}

/* The split document of a slice, scored by the daemon (dataset NULL: the
 * model's own, as here). */
static json_t *remote_split(const char *server, const char *name, const char *dataset,
                            const char *split, long first, long n)
{
    char route[512];
    snprintf(route, sizeof route, "/v1/models/%s/predict", name);
    json_t *body = json_pack("{s:s, s:I}", "split", split, "first", (json_int_t)first);
    if (body && dataset)
        json_object_set_new(body, "dataset", json_string(dataset));
    if (body && n)
        json_object_set_new(body, "n", json_integer(n));
    return cli_remote_json("predict", server, "POST", route, body);
}

int cli_predict(int argc, char **argv)
{
    enum { O_MODEL = 1000, O_DATASET, O_SPLIT, O_FIRST, O_N, O_IMAGE, O_INVERT, O_DATA,
           O_JSON, O_SERVER };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL},
        {"dataset", required_argument, 0, O_DATASET},
        {"split", required_argument, 0, O_SPLIT},
        {"first", required_argument, 0, O_FIRST},
        {"n", required_argument, 0, O_N},
        {"image", required_argument, 0, O_IMAGE},
        {"invert", required_argument, 0, O_INVERT},
        {"data", required_argument, 0, O_DATA},
        {"json", no_argument, 0, O_JSON},
        {"server", required_argument, 0, O_SERVER},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *path = NULL, *dataset = NULL, *split = "test", *data_flag = NULL;
    const char *image = NULL, *invert = "auto", *server_flag = NULL;
    long first = 0, n = 0;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: path = optarg; break;
        case O_DATASET: dataset = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_FIRST:
            if (cli_parse_long("--first", optarg, 0, 100000000, &first)) return 2;
            break;
        case O_N:
            if (cli_parse_long("--n", optarg, 1, 100000000, &n)) return 2;
            break;
        case O_IMAGE: image = optarg; break;
        case O_INVERT: invert = optarg; break;
        case O_DATA: data_flag = optarg; break;
        case O_JSON: json = 1; break;
        case O_SERVER: server_flag = optarg; break;
        case 'h': fputs(predict_usage, stdout); return 0;
        default: fputs(predict_usage, stderr); return 2;
        }
    }
    if (!path || optind != argc) {
        fprintf(stderr, "blindspot predict: %s\n\n%s",
                path ? "unexpected argument" : "--model is required", predict_usage);
        return 2;
    }
    if (strcmp(split, "train") && strcmp(split, "test")) {
        fprintf(stderr, "blindspot predict: --split is train or test, got '%s'\n", split);
        return 2;
    }
    bs_invert inv;
    if (bs_invert_parse(invert, &inv)) {
        fprintf(stderr, "blindspot predict: --invert is auto, yes or no, got '%s'\n", invert);
        return 2;
    }
    if (image && (dataset || first || n)) {
        fprintf(stderr, "blindspot predict: --image goes without --dataset, --first and --n\n");
        return 2;
    }
    char err[BS_ERR_LEN], name[256];
    cli_model_name(path, name, sizeof name);
    const char *server = cli_server(server_flag);
    if (server) {
        json_t *doc = image ? remote_file(server, name, image, invert)
                            : remote_split(server, name, dataset, split, first, n);
        return doc ? cli_output("predict", doc, json, image ? print_image : print_split) : 1;
    }
    bs_model *m = cli_load_model(path, err);
    if (!m)
        return cli_fail("predict", "%s", err);
    json_t *doc = image ? predict_file(name, m, image, inv, err)
                        : predict_split(name, m, cli_data_dir(data_flag),
                                        cli_dataset_of(m, dataset, split), split, first, n, err);
    bs_model_free(m);
    if (!doc)
        return cli_fail("predict", "%s", err);
    return cli_output("predict", doc, json, image ? print_image : print_split);
}
