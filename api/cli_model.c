/* cli_model — `blindspot info` (what a model file holds) and `blindspot
 * predict` (a model's error rate and confusion matrix on a dataset split). */
#include "api/cli.h"

#include "core/dataset.h"
#include "core/model.h"
#include "core/model_file.h"
#include "core/train.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *info_usage =
    "usage: blindspot info FILE [--json]\n"
    "\n"
    "Describes a model file: its layers with their output shapes, the number of\n"
    "parameters, the input shape, the classes, and every metadata entry (the\n"
    "dataset it was trained on, its measured train and test error, the command\n"
    "that trained it).\n"
    "\n"
    "  --json   print the same as JSON on stdout\n";

static const char *predict_usage =
    "usage: blindspot predict --model FILE [--dataset NAME] [--split SPLIT] [--json]\n"
    "\n"
    "Runs a model over every image of a dataset split and prints its error rate\n"
    "and confusion matrix (rows: true label, columns: prediction), beside the\n"
    "test error recorded in the file when there is one.\n"
    "\n"
    "  --model FILE     the model (.safetensors)\n"
    "  --dataset NAME   mnist, mnist:P1, mnist:P2, fashion-mnist or a folder of\n"
    "                   IDX files (default: the dataset recorded in the model,\n"
    "                   else mnist)\n"
    "  --split SPLIT    train or test (default: test)\n"
    "  --data DIR       data folder (default: $BLINDSPOT_DATA or data)\n"
    "  --json           print the result as JSON on stdout\n";

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    return 0;
}

static json_t *shape_json(const int s[3])
{
    return json_pack("[i,i,i]", s[0], s[1], s[2]);
}

static void print_shape(const int s[3])
{
    if (s[1] == 1 && s[2] == 1)
        printf("(%d)", s[0]);
    else
        printf("(%d,%d,%d)", s[0], s[1], s[2]);
}

int cli_info(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    if (wants_help(argc, argv)) {
        fputs(info_usage, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
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
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load(path, err);
    if (!m)
        return cli_fail("info", "%s", err);
    if (json) {
        json_t *layers = json_array(), *meta = json_object();
        for (int i = 0; i < m->n_layers; i++) {
            const bs_layer *l = &m->layers[i];
            json_array_append_new(layers, json_pack(
                "{s:i, s:s, s:o, s:o, s:I}", "index", i, "type", bs_layer_name(l->kind),
                "input_shape", shape_json(l->in_shape), "output_shape", shape_json(l->out_shape),
                "parameters", (json_int_t)(l->weight_size + l->bias_size)));
        }
        for (int i = 0; i < m->n_meta; i++)
            json_object_set_new(meta, m->meta[i].key, json_string(m->meta[i].value));
        const char *spec = bs_model_get_meta(m, "blindspot.spec");
        char *arch = bs_arch_to_json(m);
        cli_print_json(json_pack("{s:s, s:s?, s:o, s:I, s:o, s:i, s:o, s:o}",
                                 "file", path, "spec", spec,
                                 "arch", arch ? json_loads(arch, 0, NULL) : json_null(),
                                 "parameters", (json_int_t)m->n_params,
                                 "input_shape", shape_json(m->input_shape),
                                 "classes", m->classes, "layers", layers, "metadata", meta));
        free(arch);
    } else {
        printf("%s\n", path);
        const char *spec = bs_model_get_meta(m, "blindspot.spec");
        if (spec)
            printf("  arch        %s\n", spec);
        printf("  input       ");
        print_shape(m->input_shape);
        printf("\n  classes     %d\n  parameters  %zu\n  layers\n", m->classes, m->n_params);
        for (int i = 0; i < m->n_layers; i++) {
            const bs_layer *l = &m->layers[i];
            printf("    %2d %-10s -> ", i, bs_layer_name(l->kind));
            print_shape(l->out_shape);
            if (l->weight_size)
                printf("  %zu parameters", l->weight_size + l->bias_size);
            putchar('\n');
        }
        printf("  metadata\n");
        for (int i = 0; i < m->n_meta; i++)
            printf("    %-24s %s\n", m->meta[i].key, m->meta[i].value);
    }
    bs_model_free(m);
    return 0;
}

int cli_predict(int argc, char **argv)
{
    enum { O_MODEL = 1000, O_DATASET, O_SPLIT, O_DATA, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, 0, O_MODEL},
        {"dataset", required_argument, 0, O_DATASET},
        {"split", required_argument, 0, O_SPLIT},
        {"data", required_argument, 0, O_DATA},
        {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *path = NULL, *dataset = NULL, *split = "test", *data_flag = NULL;
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: path = optarg; break;
        case O_DATASET: dataset = optarg; break;
        case O_SPLIT: split = optarg; break;
        case O_DATA: data_flag = optarg; break;
        case O_JSON: json = 1; break;
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
    char err[BS_ERR_LEN];
    bs_model *m = bs_model_load(path, err);
    if (!m)
        return cli_fail("predict", "%s", err);
    if (!dataset)
        dataset = bs_model_get_meta(m, "blindspot.dataset");
    if (!dataset)
        dataset = "mnist";
    bs_dataset d = {0};
    int *confusion = NULL, rc = 1;
    if (bs_dataset_load(cli_data_dir(data_flag), dataset, split, &d, err)) {
        cli_fail("predict", "%s", err);
        goto out;
    }
    confusion = calloc((size_t)m->classes * m->classes, sizeof(int));
    double error = confusion ? bs_evaluate(m, &d, confusion, err) : -1.0;
    if (error < 0) {
        cli_fail("predict", "%s", confusion ? err : "out of memory");
        goto out;
    }
    /* The recorded error was measured on the model's own test split. */
    const char *recorded = bs_model_get_meta(m, "blindspot.test_error");
    int V = m->classes;
    if (json) {
        json_t *rows = json_array();
        for (int y = 0; y < V; y++) {
            json_t *row = json_array();
            for (int p = 0; p < V; p++)
                json_array_append_new(row, json_integer(confusion[y * V + p]));
            json_array_append_new(rows, row);
        }
        json_t *out = json_pack("{s:s, s:s, s:s, s:i, s:i, s:f, s:o}",
                                "model", path, "dataset", dataset, "split", split,
                                "images", d.n, "errors", (int)(error * d.n + 0.5),
                                "error_rate", error, "confusion", rows);
        if (recorded && !strcmp(split, "test"))
            json_object_set_new(out, "recorded_test_error", json_real(atof(recorded)));
        cli_print_json(out);
    } else {
        printf("%s on %s %s: error %.2f%% (%d of %d images)", path, dataset, split,
               100.0 * error, (int)(error * d.n + 0.5), d.n);
        if (recorded && !strcmp(split, "test"))
            printf(", recorded test error %.2f%%", 100.0 * atof(recorded));
        printf("\nconfusion (rows: true label, columns: prediction)\n      ");
        for (int p = 0; p < V; p++)
            printf("%6d", p);
        putchar('\n');
        for (int y = 0; y < V; y++) {
            printf("%6d", y);
            for (int p = 0; p < V; p++)
                printf("%6d", confusion[y * V + p]);
            putchar('\n');
        }
    }
    rc = 0;
out:
    free(confusion);
    bs_dataset_free(&d);
    bs_model_free(m);
    return rc;
}
